"""The fast JSONL reader (pyarrow blocks, line by line only where a block fails) changes no
output: the same files byte for byte with it on and off, on the real C4 sample and on a
file mixing good lines with every kind of bad line, whose rejects land at the planted lines."""
import gzip
import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pytest

from curate.io import fast_jsonl
from curate.io.sources import InputSpec, plan_shards
from curate.pipeline.runner import run_pipeline
from reliability_helpers import BAD_LINES

ROOT = Path(__file__).resolve().parents[1]


def _files(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file() and p.parts[len(out.parts)] in ("data", "removed", "rejects")}


def _run(path: Path, out: Path, fast: bool, steps=()) -> dict:
    cfg = {"inputs": [{"path": str(path), "fast_jsonl": fast}], "steps": list(steps), "output": {"dir": str(out)}}
    stats = run_pipeline(cfg, workers=1, quiet=True)
    assert stats["balanced"]
    return stats


def _fast_blocks(path: Path) -> int:
    shard = plan_shards([InputSpec(str(path))])[0]
    parser = fast_jsonl.BlockParser(shard)
    return sum(parser.parse(block, line, ends) is not None for line, block, ends in fast_jsonl.iter_blocks(shard))


def test_same_output_on_real_c4(shared, tmp_path, monkeypatch):
    monkeypatch.setattr(fast_jsonl, "BLOCK_BYTES", 64 * 1024)  # several blocks from the 0.5 MB sample
    src = shared / "data/pretrain/c4_demo.jsonl"
    assert _fast_blocks(src) >= 5  # the fast path really ran
    for steps in ([], [{"step": "gopher_quality"}, {"step": "c4_quality"}]):
        name = f"steps{len(steps)}"
        a = _run(src, tmp_path / f"fast-{name}", True, steps)
        b = _run(src, tmp_path / f"slow-{name}", False, steps)
        assert a["written"] == b["written"] > 0 and a["read"] == b["read"]
        assert _files(tmp_path / f"fast-{name}") == _files(tmp_path / f"slow-{name}") != {}


def _mixed_file(path: Path, good: list[bytes], seed: int = 0) -> dict[int, str]:
    """Good lines with bad ones, blank lines, CRLF ends and one 64 MiB line; {line: reason}."""
    rng = random.Random(seed)
    out, planted = [], {}
    for k, line in enumerate(good):
        if rng.random() < 0.15:
            raw, reason = rng.choice(BAD_LINES)
            out.append(raw)
            planted[len(out)] = reason
        if rng.random() < 0.05:
            out.append(b"")  # a blank separator, not a record
        out.append(line + (b"\r" if rng.random() < 0.03 else b""))
        if k == len(good) // 2:
            out.append(b'{"text": "' + b"x" * (64 << 20) + b'"}')
            planted[len(out)] = "record over"
    path.write_bytes(b"\n".join(out) + b"\n")
    return planted


@pytest.mark.slow
def test_same_output_and_rejects_on_mixed_bad_input(shared, tmp_path, monkeypatch):
    monkeypatch.setattr(fast_jsonl, "BLOCK_BYTES", 16 * 1024)  # many blocks: clean ones and damaged ones
    good = (shared / "data/pretrain/c4_demo.jsonl").read_bytes().splitlines()
    src = tmp_path / "mixed.jsonl"
    planted = _mixed_file(src, good)
    assert len(planted) > 30 and {r for r in planted.values()} >= {r for _, r in BAD_LINES}
    assert _fast_blocks(src) >= 3
    for path in (src, tmp_path / "mixed.jsonl.gz"):
        if path.suffix == ".gz":
            path.write_bytes(gzip.compress(src.read_bytes(), compresslevel=1))
        fast, slow = tmp_path / f"fast-{path.name}", tmp_path / f"slow-{path.name}"
        a, b = _run(path, fast, True), _run(path, slow, False)
        assert (a["read"], a["written"], a["rejected"]) == (b["read"], b["written"], b["rejected"]) == (
            len(good) + len(planted), len(good), len(planted))
        assert _files(fast) == _files(slow)
        rejects = [json.loads(line) for f in sorted((fast / "rejects").glob("*.jsonl")) for line in f.read_text().splitlines()]
        assert {r["line"]: r["reason"] for r in rejects}.keys() == planted.keys()
        for r in rejects:
            assert r["reason"].startswith(planted[r["line"]]), (r["line"], r["reason"])


def test_truncated_gzip_same_as_line_by_line(shared, tmp_path):
    good = (shared / "data/pretrain/c4_demo.jsonl").read_bytes()
    whole = gzip.compress(good * 3, compresslevel=1)
    src = tmp_path / "cut.jsonl.gz"
    src.write_bytes(whole[: int(len(whole) * 0.7)])
    a, b = _run(src, tmp_path / "fast", True), _run(src, tmp_path / "slow", False)
    assert (a["read"], a["written"], a["rejected"]) == (b["read"], b["written"], b["rejected"]) and a["rejected"] == 1
    assert _files(tmp_path / "fast") == _files(tmp_path / "slow")


@pytest.mark.parametrize("line,ok", [
    (b'{"text": "fine", "url": "http://x/\\"q\\"\\\\", "when": "2019-04-25T12:57:54Z"}', True),
    (b'{"text": "tab\\there", "n": 3}', False),  # a number: json.dumps writes it its own way
    (b'{"text": "ctl \\u0001"}', True),  # a control character inside the text is fine
    (b'{"text": "x", "note": "ctl \\u0001"}', False),  # inside meta json.dumps writes \\u0001
    (b'{"text": "lone \\ud800"}', False),  # pyarrow refuses a lone surrogate
    (b'{"text": "pair \\ud83d\\ude00", "m": "\\uD83D\\uDE00"}', True),  # a pair decodes as json.loads does
    (b'{"text": " leading space"}', False),  # might be all white space
])
def test_block_meta_equals_json_dumps(tmp_path, line, ok):
    """Where the fast path takes a block, its meta and id are exactly what json.loads + json.dumps give."""
    path = tmp_path / "one.jsonl"
    path.write_bytes(line + b"\n")
    shard = plan_shards([InputSpec(str(path))])[0]
    (first, block, ends), = list(fast_jsonl.iter_blocks(shard))
    table = fast_jsonl.BlockParser(shard).parse(block, first, ends)
    assert (table is not None) == ok
    if ok:
        obj = json.loads(line)
        row = table.to_pylist()[0]
        assert row["text"] == obj.pop("text") and row["id"] == "one.jsonl:1"
        assert row["meta"] == json.dumps(obj, ensure_ascii=False, sort_keys=True)


def test_fields_missing_or_null_across_blocks(tmp_path, monkeypatch):
    """A field that earlier blocks had is absent from a later block (fast), or null there (line by line)."""
    monkeypatch.setattr(fast_jsonl, "BLOCK_BYTES", 64)
    lines = ['{"text": "first block", "café": "x"}'.encode(), b'{"text": "no such field here"}',
             b'{"text": "explicit", "caf\\u00e9": null}']
    path = tmp_path / "f.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    shard = plan_shards([InputSpec(str(path))])[0]
    parser = fast_jsonl.BlockParser(shard)
    blocks = [(k + 1, raw + b"\n", np.array([len(raw)])) for k, raw in enumerate(lines)]  # a block per line
    tables = [parser.parse(block, line, ends) for line, block, ends in blocks]
    assert [t is not None for t in tables] == [True, True, False]
    assert [t.to_pylist()[0]["meta"] for t in tables[:2]] == ['{"café": "x"}', "{}"]
    a, b = _run(path, tmp_path / "fast", True), _run(path, tmp_path / "slow", False)
    assert a["written"] == b["written"] == 3 and _files(tmp_path / "fast") == _files(tmp_path / "slow")


def test_line_over_max_record_bytes_inside_a_block(tmp_path):
    """A block whose lines all fit max_record_bytes is taken whole, one with a line over the limit goes
    line by line (that line rejected either way), and both give the same files."""
    short = [f'{{"text": "line {k}"}}'.encode() for k in range(20)]
    long_line = b'{"text": "' + b"x" * 200 + b'"}'
    for name, lines, taken in (("fits", short, True), ("over", short[:10] + [long_line] + short[10:], False)):
        path = tmp_path / f"{name}.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        shard = plan_shards([InputSpec(str(path), max_record_bytes=100)])[0]
        (first, block, n), = list(fast_jsonl.iter_blocks(shard))
        assert len(block) > 100 and (fast_jsonl.BlockParser(shard).parse(block, first, n) is not None) == taken
        outs = []
        for fast in (True, False):
            out = tmp_path / f"{name}-{fast}"
            cfg = {"inputs": [{"path": str(path), "fast_jsonl": fast, "max_record_bytes": 100}], "steps": [], "output": {"dir": str(out)}}
            stats = run_pipeline(cfg, workers=1, quiet=True)
            assert stats["balanced"] and stats["rejected"] == (0 if taken else 1)
            outs.append(_files(out))
        assert outs[0] == outs[1]


def test_no_step_run_on_threads_gives_the_same_files(tmp_path, monkeypatch):
    """With no step and several workers, the shards run on threads of this process (no worker process
    is started) and the files equal those of a one-worker run, shard for shard."""
    from curate.pipeline.executor import LocalExecutor

    src = Path(__file__).resolve().parents[1] / "examples/data/c4_demo.jsonl"
    cfg = lambda out: {"inputs": [{"path": str(src), "shard_bytes": 100_000}], "steps": [], "output": {"dir": str(out)}}  # noqa: E731
    one = run_pipeline(cfg(tmp_path / "one"), workers=1, quiet=True)

    def no_pool(self):
        raise AssertionError("a worker process was started")

    monkeypatch.setattr(LocalExecutor, "_ensure_pool", no_pool)
    two = run_pipeline(cfg(tmp_path / "two"), workers=2, quiet=True)
    assert two["shards"] == one["shards"] >= 5 and two["read"] == one["read"] and two["balanced"]
    assert _files(tmp_path / "one") == _files(tmp_path / "two") != {}
