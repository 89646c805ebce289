"""Compressed line files split into shards while streaming: line numbers run on across
pieces, the output equals the run on the same file uncompressed, dedup across pieces
finds the same duplicates, and a damaged stream still ends in one reject at its line."""
import bz2
import gzip
import json

import pandas as pd
import pytest
import zstandard

from curate.io.sources import InputSpec, plan_shards
from curate.io.spool import split_shards
from curate.pipeline.runner import run_pipeline

COMPRESS = {".gz": lambda b: gzip.compress(b, compresslevel=1), ".bz2": bz2.compress,
            ".zst": lambda b: zstandard.ZstdCompressor().compress(b)}


def _lines(shared) -> bytes:
    """Real C4 lines without ids (so ids are SOURCE:LINE), three times over, with two bad lines."""
    good = (shared / "data/pretrain/c4_demo.jsonl").read_bytes().splitlines()
    lines = good * 3
    lines.insert(400, b'{"text": broken')
    lines.insert(700, b"")
    return b"\n".join(lines) + b"\n"


def _rows(out) -> pd.DataFrame:
    df = pd.concat([pd.read_parquet(f) for f in sorted((out / "data").glob("*.parquet"))], ignore_index=True)
    df["line"] = df["id"].str.rsplit(":", n=1).str[1].astype(int)
    return df.sort_values("line").reset_index(drop=True)


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".zst"])
def test_split_pieces_give_the_uncompressed_output(shared, tmp_path, suffix):
    raw = _lines(shared)
    (tmp_path / "plain").mkdir()
    (tmp_path / "packed").mkdir()
    (tmp_path / "plain/web.jsonl").write_bytes(raw)
    (tmp_path / f"packed/web.jsonl{suffix}").write_bytes(COMPRESS[suffix](raw))
    spec = {"shard_bytes": 300_000}
    shards = split_shards(plan_shards([InputSpec.parse({"path": str(tmp_path / "packed"), **spec})]), tmp_path / "spool")
    assert len(shards) == len(raw) // 300_000 + 1 >= 4
    assert [s.first_line for s in shards][0] == 1 and all(s.origin.endswith(suffix) for s in shards)
    steps = [{"step": "exact_dedup"}, {"step": "minhash_dedup", "threshold": 0.8}]
    runs = {}
    for name in ("plain", "packed"):
        out = tmp_path / f"out-{name}"
        runs[name] = run_pipeline({"inputs": [{"path": str(tmp_path / name), **spec}], "steps": steps,
                                   "output": {"dir": str(out)}}, workers=2, quiet=True)
    a, b = runs["plain"], runs["packed"]
    assert (a["read"], a["written"], a["removed"], a["rejected"]) == (b["read"], b["written"], b["removed"], b["rejected"])
    assert b["shards"] == len(shards) and b["steps"][0]["removed"] >= 600  # the 2nd and 3rd copies
    plain, packed = _rows(tmp_path / "out-plain"), _rows(tmp_path / "out-packed")
    same_name = packed["id"].str.replace(f"web.jsonl{suffix}:", "web.jsonl:", regex=False)
    assert plain["id"].tolist() == same_name.tolist() and plain["text"].tolist() == packed["text"].tolist()
    rejects = [json.loads(x) for f in (tmp_path / "out-packed/rejects").glob("*.jsonl") for x in f.read_text().splitlines()]
    assert [(r["source"], r["line"]) for r in rejects] == [(f"web.jsonl{suffix}", 401)]
    manifest = json.loads((tmp_path / "out-packed/manifest.json").read_text())
    assert [i["path"] for i in manifest["inputs"]] == [str(tmp_path / f"packed/web.jsonl{suffix}")]
    assert not (tmp_path / "out-packed/_work/spool").exists()


def test_damaged_stream_stays_one_shard_with_a_reject(shared, tmp_path):
    raw = _lines(shared)
    packed = gzip.compress(raw, compresslevel=1)
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(packed[: len(packed) // 2])
    shards = split_shards(plan_shards([InputSpec.parse({"path": str(path), "shard_bytes": 100_000})]), tmp_path / "spool")
    assert len(shards) == 1 and shards[0].path == str(path)
    stats = run_pipeline({"inputs": [{"path": str(path), "shard_bytes": 100_000}], "steps": [],
                          "output": {"dir": str(tmp_path / "out")}}, workers=1, quiet=True)
    rejects = [json.loads(x) for x in (tmp_path / "out/rejects/00000.jsonl").read_text().splitlines()]
    assert stats["balanced"] and rejects[-1]["reason"].startswith("truncated or corrupt compressed input")
    line = rejects[-1]["line"]  # the line after the last whole one: the kept lines, the broken one (401), the blank one (701)
    assert 401 < line and line - 1 == stats["written"] + 1 + (line > 701) and len(rejects) == 2
