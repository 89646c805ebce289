"""The Ray executor on a real local Ray cluster: same output as the local executor
on real data, a worker killed mid-run is retried to the same output, a rerun
skips finished shards, progress counts survive retries, and the distributed
dedup clustering finds the in-process clusters. (Without Ray: test_ray_optional.py.)"""
import json
import os
import random
import socket
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curate.basics.errors import CurateError
from curate.pipeline.executor import report_progress
from curate.pipeline.runner import run_pipeline

ray = pytest.importorskip("ray")
from curate.pipeline.ray_executor import RayExecutor  # noqa: E402

PLANTED = 60  # near-duplicate copies of C4 documents planted in another file


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=150 << 20, log_to_driver=False,
             configure_logging=False)
    yield
    ray.shutdown()


def edit_one_word(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    words[rng.randrange(len(words))] = "curated"
    return " ".join(words)


@pytest.fixture(scope="module")
def corpus(shared, tmp_path_factory) -> dict:
    """Real C4 and news text in 3 files (6 shards), with planted
    near-duplicates of C4 documents in the last file; returns a pipeline config."""
    root = tmp_path_factory.mktemp("ray-corpus")
    data = root / "in"
    data.mkdir()
    rng = random.Random(8)
    c4 = (shared / "data/pretrain/c4_demo.jsonl").read_text().splitlines()
    news = (shared / "data/pretrain/lee_background.cor").read_text(errors="replace").splitlines()
    (data / "a-c4.jsonl").write_text("\n".join(c4) + "\n")
    (data / "b-news.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in news if t.strip()))
    picked = sorted(rng.sample(range(len(c4)), PLANTED))
    long_enough = [i for i in picked if len(json.loads(c4[i])["text"].split()) >= 150]
    copies = [json.dumps({"text": edit_one_word(json.loads(c4[i])["text"], rng)}) for i in long_enough]
    (data / "d-copies.jsonl").write_text("\n".join(copies) + "\n")
    steps = [{"step": "length", "min_words": 50}, {"step": "gopher_quality"}, {"step": "c4_quality"},
             {"step": "exact_dedup"}, {"step": "minhash_dedup", "threshold": 0.8}]
    config = {"inputs": [{"path": str(data), "shard_bytes": 250_000}], "steps": steps, "batch_size": 64,
              "output": {"dir": str(root / "unused")}}
    return {"config": config, "root": root, "planted": [f"a-c4.jsonl:{i + 1}" for i in long_enough],
            "n_copies": len(copies)}


def output_of(out: Path) -> dict:
    """What a run produced: kept (id, text) in file order, removed (id, step, reason, extra), stats."""
    kept = pq.read_table(sorted((out / "data").glob("*.parquet")), columns=["id", "text"])
    removed = pq.read_table(sorted((out / "removed").glob("*.parquet")), columns=["id", "step", "reason", "extra"])
    stats = json.loads((out / "stats.json").read_text())
    per_step = [{k: s[k] for k in ("step", "in", "kept", "removed", "removed_by_rule")} for s in stats["steps"]]
    return {"kept": list(zip(kept["id"].to_pylist(), kept["text"].to_pylist())),
            "removed": sorted(zip(*(removed[c].to_pylist() for c in ("id", "step", "reason", "extra")))),
            "counts": (stats["read"], stats["written"], stats["removed"], stats["rejected"], stats["balanced"]),
            "steps": per_step}


@pytest.fixture(scope="module")
def local_output(corpus) -> dict:
    out = corpus["root"] / "local"
    run_pipeline(corpus["config"], out=out, workers=1, quiet=True)
    return output_of(out)


def test_local_reference_removes_planted_copies(corpus, local_output):
    """The reference run itself is right: every planted copy is removed, and those that
    reach dedup are near-duplicates of the document they were copied from."""
    removed = {r[0]: r for r in local_output["removed"]}
    copies = [f"d-copies.jsonl:{k + 1}" for k in range(corpus["n_copies"])]
    assert corpus["n_copies"] >= 20 and set(copies) <= removed.keys()
    by_dedup = [(c, o) for c, o in zip(copies, corpus["planted"]) if removed[c][1] == "minhash_dedup"]
    assert len(by_dedup) >= 0.8 * len(copies)
    assert all(json.loads(removed[c][3])["kept_id"] == o and removed[c][2].endswith(f" of {o}") for c, o in by_dedup)
    assert local_output["counts"][4]  # read = written + removed + rejected
    by_step = {s["step"]: s["removed"] for s in local_output["steps"]}
    assert all(by_step[f] > 0 for f in ("length", "gopher_quality", "c4_quality", "minhash_dedup")), by_step


def test_ray_matches_local(ray_cluster, corpus, local_output, monkeypatch):
    """Filters and dedup on Ray, with the dedup clustering also on Ray (spread_cluster over
    the executor's map in place of the in-process reducer), give the local executor's output."""
    import curate.dedup.base

    out = corpus["root"] / "ray"
    progress, reduces = [], []
    distributed = curate.dedup.base.spread_cluster

    def cluster_on_ray(shards, bands, verify, executor, **kw):
        reduces.append(bands)
        return distributed(shards, bands, verify, executor, partition_rows=200)

    # DedupStep.reduce clusters with spread_cluster over a distributed executor's map.
    monkeypatch.setattr(curate.dedup.base, "spread_cluster", cluster_on_ray)

    class Counting(RayExecutor):
        def map(self, fn, payloads, on_progress=None):
            return super().map(fn, payloads, lambda n: (progress.append(n), on_progress and on_progress(n)))

    stats = run_pipeline(corpus["config"], out=out, quiet=True, executor=Counting())
    got = output_of(out)
    assert got["kept"] == local_output["kept"]
    assert got["removed"] == local_output["removed"]
    assert got["counts"] == local_output["counts"] and got["steps"] == local_output["steps"]
    assert stats["shards"] >= 5 and len(reduces) == 2  # exact and MinHash dedup both reduced on Ray
    # Stage 1 reports every document read; each later stage the documents the previous dedup kept.
    dedup_kept = sum(s["kept"] for s in stats["steps"] if s["step"].endswith("_dedup"))
    assert sum(progress) == stats["read"] - stats["rejected"] + dedup_kept


def kill_once(marker_dir: str, targets: set) -> callable:
    """A task function that SIGKILLs its own worker process after the first batch of each
    target (stage, shard), once; defined in a closure so Ray ships it by value."""

    def fn(payload):
        import os as os_
        import signal

        from curate.pipeline import runner

        key = (payload["stage"], payload["shard"]["index"])
        marker = Path(marker_dir) / f"killed-{key[0]}-{key[1]}"
        if key in targets and not marker.exists():
            marker.write_text(str(os_.getpid()))
            runner.report_progress = lambda n: os_.kill(os_.getpid(), signal.SIGKILL)
        return runner.run_task(payload)

    return fn


@pytest.mark.slow
def test_worker_killed_mid_run_completes_same_output(ray_cluster, corpus, local_output, tmp_path):
    targets = {(0, 1), (0, 4), (1, 2), (2, 3)}  # while indexing, applying dedup, writing the final shards

    class Killing(RayExecutor):
        def map(self, fn, payloads, on_progress):
            return super().map(kill_once(str(tmp_path), targets), payloads, on_progress)

    run_pipeline(corpus["config"], out=tmp_path / "out", quiet=True, executor=Killing(max_retries=2))
    killed = sorted(p.name for p in tmp_path.glob("killed-*"))
    assert killed == ["killed-0-1", "killed-0-4", "killed-1-2", "killed-2-3"]
    for p in tmp_path.glob("killed-*"):  # the process really died
        with pytest.raises(ProcessLookupError):
            os.kill(int(p.read_text()), 0)
    assert output_of(tmp_path / "out") == local_output


def fail_on(stage: int, shard: int) -> callable:
    def fn(payload):
        from curate.pipeline import runner

        if (payload["stage"], payload["shard"]["index"]) == (stage, shard):
            raise CurateError(f"planted failure in stage {stage} shard {shard}")
        return runner.run_task(payload)

    return fn


def test_rerun_after_failure_skips_finished_shards(ray_cluster, corpus, local_output, tmp_path):
    out = tmp_path / "out"
    runs: list[list[tuple[int, int]]] = []

    class Recording(RayExecutor):
        def __init__(self, fn=None, **kw):
            super().__init__(**kw)
            self.fn = fn

        def map(self, fn, payloads, on_progress):
            runs.append(sorted((p["stage"], p["shard"]["index"]) for p in payloads))
            return super().map(self.fn or fn, payloads, on_progress)

    # workers=1: one task at a time, in order, so shards 0..2 of stage 1 finish before shard 3 fails
    with pytest.raises(CurateError, match=r"^planted failure in stage 1 shard 3$"):
        run_pipeline(corpus["config"], out=out, quiet=True, executor=Recording(fail_on(1, 3), workers=1))
    n_shards = len(runs[0])
    assert runs == [[(0, s) for s in range(n_shards)], [(1, s) for s in range(n_shards)]]
    finished = {int(p.stem.split("-")[1]) for p in (out / "_work/markers").glob("stage1-*.json")}
    assert finished == {0, 1, 2}
    runs.clear()
    run_pipeline(corpus["config"], out=out, quiet=True, executor=Recording())
    # stage 0 and the first reduce are not redone, nor the finished shards of stage 1
    assert runs == [[], [(1, s) for s in range(3, n_shards)], [(2, s) for s in range(n_shards)]]
    assert output_of(out) == local_output


def test_progress_counts_once_per_task_across_retries(ray_cluster, tmp_path):
    def fn(payload):
        import os as os_
        import signal

        for _ in range(3):
            report_progress(7)
        marker = Path(payload["marker"])
        if payload["die"] and not marker.exists():
            marker.touch()
            os_.kill(os_.getpid(), signal.SIGKILL)
        return {"task": payload["task"]}

    ex = RayExecutor(max_retries=1)
    payloads = [{"task": i, "die": i == 2, "marker": str(tmp_path / "died")} for i in range(5)]
    seen = []
    results = list(ex.map(fn, payloads, seen.append))
    assert sorted(r["task"] for r in results) == list(range(5))
    assert (tmp_path / "died").exists()
    assert sum(seen) == 5 * 21  # the killed attempt's 21 are not counted twice


def test_task_error_is_the_tasks_own_one_line_error(ray_cluster):
    def fn(payload):
        raise CurateError("input shard 3 is not UTF-8")

    with pytest.raises(CurateError) as err:
        list(RayExecutor().map(fn, [{"stage": 0, "shard": {"index": 3}}], lambda n: None))
    assert str(err.value) == "input shard 3 is not UTF-8"


def test_ray_cluster_equals_local_cluster_on_real_index(ray_cluster, corpus, local_output):
    """The distributed reducer's components equal the in-process reducer's on the
    MinHash index of the reference run, with 1 and with several key ranges per band."""
    from curate.dedup.lsh import cluster, gather_rows
    from curate.dedup.minhash import jaccard
    from curate.dedup.spread import spread_cluster
    from experiments.steps import build_step

    step = build_step({"step": "minhash_dedup", "threshold": 0.8})
    workdir = next((corpus["root"] / "local/_work").glob("step*-minhash_dedup"))
    n_shards = len(list(workdir.glob("*.ids.json")))
    shards, _ = step._shards(workdir, n_shards)

    def verify(u, v):
        return step.verify(gather_rows(shards, "sig", u), gather_rows(shards, "sig", v))

    def verify_strict(u, v):  # turns down some candidate pairs the 0.8 threshold accepts
        return jaccard(gather_rows(shards, "sig", u), gather_rows(shards, "sig", v)) >= 0.97

    for check in (verify, verify_strict):
        want, local_counts = cluster(shards, step.bands, check)
        roots = want.roots()
        assert (roots != range(len(roots))).sum() >= 10  # real clusters to find
        for rows in (None, 150):
            got, counts = spread_cluster(shards, step.bands, check, RayExecutor(), partition_rows=rows)
            assert (got.roots() == roots).all()
            assert counts["candidate_pairs"] >= local_counts["candidate_pairs"]
        got, _ = spread_cluster(shards, step.bands, check, RayExecutor())  # default key ranges
        assert (got.roots() == roots).all()
    assert local_counts["rejected_pairs"] > 0 and counts["rejected_pairs"] > 0


def test_unreachable_address_fails_fast_with_one_line():
    from curate.pipeline.ray_executor import _check_reachable

    with socket.socket() as s:  # a port nobody listens at once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(CurateError, match=rf"^no Ray cluster at 127.0.0.1:{port}: .*ray start --head"):
        _check_reachable(f"127.0.0.1:{port}", timeout_s=2)
