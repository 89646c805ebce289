"""The runner: bad input never crashes a run and counts add up; kill -9 and rerun
gives the clean run's output; outputs load in datasets and pandas; CLI errors."""
import gzip
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from curate.pipeline.runner import run_pipeline
from reliability_helpers import BAD_LINES

ROOT = Path(__file__).resolve().parents[1]


def real_lines(shared, n=None):
    lines = (shared / "data/pretrain/c4_demo.jsonl").read_text().splitlines()
    return lines[:n] if n else lines


def make_fuzz_file(path: Path, good: list[str], seed: int = 0) -> dict[int, str]:
    """Interleave real lines with malformed ones; return {line number: expected reason prefix}."""
    rng = random.Random(seed)
    bad_kinds = BAD_LINES + [(b'{"text": "' + b"x" * 70_000 + b'"}', "record over 65536 bytes")]
    out, planted = [], {}
    for line in good:
        while rng.random() < 0.4:
            raw, reason = rng.choice(bad_kinds)
            out.append(raw)
            planted[len(out)] = reason
        out.append(line.encode())
    path.write_bytes(b"\n".join(out) + b"\n")
    return planted


def test_fuzz_malformed_lines(shared, tmp_path):
    good = real_lines(shared)
    planted = make_fuzz_file(tmp_path / "fuzz.jsonl", good)
    assert len(planted) > 100 and max(map(len, good)) < 65536
    config = {"inputs": [{"path": str(tmp_path / "fuzz.jsonl"), "max_record_bytes": 65536}], "steps": [], "output": {"dir": str(tmp_path / "out")}}
    stats = run_pipeline(config, workers=1, quiet=True)
    assert stats["read"] == len(good) + len(planted)
    assert stats["rejected"] == len(planted) and stats["written"] == len(good) and stats["balanced"]
    rejects = [json.loads(l) for f in sorted((tmp_path / "out/rejects").glob("*.jsonl")) for l in f.read_text().splitlines()]
    assert {r["line"]: r["reason"] for r in rejects}.keys() == planted.keys()
    for r in rejects:
        assert r["reason"].startswith(planted[r["line"]]), (r, planted[r["line"]])
        assert r["source"] == "fuzz.jsonl"
    kept = pq.read_table(tmp_path / "out/data").column("text").to_pylist()
    assert kept == [json.loads(l)["text"] for l in good]


def test_truncated_gzip_keeps_good_lines(shared, tmp_path):
    raw = "\n".join(real_lines(shared, 100)).encode() + b"\n"
    blob = gzip.compress(raw)
    (tmp_path / "cut.jsonl.gz").write_bytes(blob[: len(blob) // 2])
    stats = run_pipeline({"inputs": [str(tmp_path / "cut.jsonl.gz")], "output": {"dir": str(tmp_path / "out")}}, workers=1, quiet=True)
    assert stats["rejected"] == 1 and 0 < stats["written"] < 100 and stats["balanced"]
    reject = json.loads((tmp_path / "out/rejects/00000.jsonl").read_text())
    assert "truncated or corrupt" in reject["reason"] and reject["line"] == stats["written"] + 1


def fingerprint_output(out: Path) -> list[tuple[str, str]]:
    table = pq.read_table(sorted((out / "data").glob("*.parquet")))
    return sorted((i, hashlib.sha256(t.encode()).hexdigest()) for i, t in zip(table["id"].to_pylist(), table["text"].to_pylist()))


def write_big_config(shared, tmp_path) -> Path:
    data = tmp_path / "in"
    data.mkdir()
    lines = real_lines(shared)
    for k in range(4):  # 4 files x 6 copies of C4, split into ~1 MB shards
        (data / f"c4-{k}.jsonl").write_text("\n".join(lines * 6) + "\n")
    steps = [{"step": "exact_dedup"}, {"step": "minhash_dedup"}]  # global steps: three stages to kill in
    config = {"inputs": [{"path": str(data), "shard_bytes": 1_000_000}], "steps": steps, "output": {"dir": str(tmp_path / "clean")}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def curate_cmd(*args):
    return [sys.executable, "-c", "from curate.cli import main; main()", *args]


@pytest.mark.slow
def test_kill_9_then_resume_equals_clean_run(shared, tmp_path):
    config = write_big_config(shared, tmp_path)
    t0 = time.perf_counter()
    subprocess.run(curate_cmd("run", str(config), "--workers", "2", "--quiet"), check=True, timeout=600)
    clean_seconds = time.perf_counter() - t0
    clean = fingerprint_output(tmp_path / "clean")
    assert len(clean) == 300  # every copy beyond the first is an exact duplicate
    for delay in (f * clean_seconds for f in (0.25, 0.5, 0.75, 0.95)):  # kills land in different stages
        out = tmp_path / f"killed-{delay}"
        proc = subprocess.Popen(curate_cmd("run", str(config), "--out", str(out), "--workers", "2", "--quiet"), start_new_session=True)
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        # whatever is visible under a final name is complete
        for f in (out / "data").glob("part-*.parquet") if (out / "data").exists() else []:
            pq.read_metadata(f)
        subprocess.run(curate_cmd("run", str(config), "--out", str(out), "--workers", "2", "--quiet"), check=True, timeout=600)
        assert fingerprint_output(out) == clean, f"resume after kill at {delay}s differs"
        assert not list(out.rglob(".tmp-*"))
        stats = json.loads((out / "stats.json").read_text())
        assert stats["balanced"] and stats["written"] == len(clean) and stats["read"] == 4 * 6 * 300


def test_output_loads_in_datasets_and_pandas(shared, tmp_path):
    run_pipeline({"inputs": [str(shared / "data/pretrain/c4_demo.jsonl"), str(shared / "data/pretrain/lee_background.cor")],
                  "output": {"dir": str(tmp_path / "out"), "max_shard_bytes": 100_000}}, workers=2, quiet=True)
    files = sorted(str(p) for p in (tmp_path / "out/data").glob("*.parquet"))
    assert len(files) > 2  # the size cap split the output
    import datasets

    ds = datasets.load_dataset("parquet", data_files=files, split="train")
    df = pd.concat(pd.read_parquet(f) for f in files)
    assert len(ds) == len(df) == 600
    assert set(ds.column_names) == {"id", "text", "source", "meta"}
    manifest = json.loads((tmp_path / "out/manifest.json").read_text())
    assert sum(f["rows"] for f in manifest["files"]) == 600
    assert [f["path"] for f in manifest["files"]] == [os.path.relpath(f, tmp_path / "out") for f in files]
    assert len(manifest["inputs"]) == 2 and all(len(i["xxh3_128"]) == 32 for i in manifest["inputs"])


def test_jsonl_output(shared, tmp_path):
    run_pipeline({"inputs": [str(shared / "data/pretrain/lee_background.cor")], "output": {"dir": str(tmp_path / "o"), "format": "jsonl"}},
                 workers=1, quiet=True)
    rows = [json.loads(l) for l in next((tmp_path / "o/data").glob("*.jsonl")).read_text().splitlines()]
    assert len(rows) == 300 and rows[0]["id"] == "lee_background.cor:1"


@pytest.mark.parametrize("args,needle", [
    (["run", "missing.yaml"], "config not found"),
    (["run", "CONFIG", "--bogus"], "No such option"),
    (["run", "BADKEY"], "unknown config key"),
    (["run", "BADYAML"], "invalid YAML"),
    (["run", "BADSTEP"], "unknown step"),
    (["run", "NOINPUT"], "input not found"),
    (["frobnicate"], "No such command"),
])
def test_cli_errors_are_one_line_exit_2(tmp_path, args, needle):
    configs = {
        "CONFIG": {"inputs": ["x.jsonl"], "output": {"dir": "o"}},
        "BADKEY": {"inputs": ["x.jsonl"], "output": {"dir": "o"}, "stpes": []},
        "BADSTEP": {"inputs": ["x.jsonl"], "steps": [{"step": "no_such_step"}], "output": {"dir": "o"}},
        "NOINPUT": {"inputs": [str(tmp_path / "absent.jsonl")], "output": {"dir": str(tmp_path / "o")}},
    }
    for name, body in configs.items():
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(body))
    (tmp_path / "BADYAML.yaml").write_text("inputs: [unclosed\n")
    args = [str(tmp_path / f"{a}.yaml") if a in {*configs, "BADYAML"} else a for a in args]
    r = subprocess.run(curate_cmd(*args), capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_every_command_has_help_with_an_example():
    import click

    from curate.cli import cli

    def leaves(cmd, path):
        if isinstance(cmd, click.Group):  # the root group loads its commands lazily
            ctx = click.Context(cmd)
            for name in cmd.list_commands(ctx):
                yield from leaves(cmd.get_command(ctx, name), [*path, name])
        else:
            yield " ".join(path), cmd

    commands = dict(leaves(cli, ["curate"]))
    assert {"curate run", "curate demo", "curate dedup", "curate filter", "curate train pretrain",
            "curate vendors compare", "curate sample", "curate ablate data"} <= set(commands)
    for path, cmd in commands.items():
        with click.Context(cmd, info_name=path) as ctx:
            assert "Example" in cmd.get_help(ctx), f"{path} --help has no example"
