"""Shared helpers of the reliability tests: real texts to plant, a quiet one-worker run, and
the figures a run must satisfy (read = written + removed + rejected, nothing good lost)."""
import json
from pathlib import Path

import pyarrow.parquet as pq

from curate.pipeline.runner import run_pipeline

ROOT = Path(__file__).resolve().parents[1]

# One kind of bad JSONL line each, with the reason the line-by-line reader gives: planted by the
# rejects tests (test_runner, test_fast_jsonl) among real lines.
BAD_LINES = [
    (b'{"text": "unterminated', "malformed JSON"),
    (b'{"text": "bad \xff\xfe bytes"}', "invalid UTF-8"),
    (b'{"title": "no text field"}', "missing text field"),
    (b'{"text": 42}', "text field 'text' is int"),
    (b'{"text": null}', "text field 'text' is NoneType"),
    (b'{"text": "   "}', "empty text"),
    (b'{"text": "\\u2003\\u00a0"}', "empty text"),
    (b'["a", "list"]', "record is a list"),
    (b'{"text": "nul \x00 byte"}', "malformed JSON"),
    (b"not json at all", "malformed JSON"),
]


def real_texts(n: int) -> list[str]:
    """The first ``n`` distinct texts of the bundled C4 sample (real web text)."""
    texts = []
    for line in (ROOT / "examples/data/c4_demo.jsonl").read_text().splitlines():
        t = json.loads(line)["text"]
        if t not in texts:
            texts.append(t)
        if len(texts) == n:
            return texts
    raise AssertionError(f"only {len(texts)} texts")


def run(inputs, out, steps=None, **kw) -> dict:
    """``run_pipeline`` with one worker and no progress; ``inputs`` as in a config."""
    steps = steps if steps is not None else [{"step": "length", "min_chars": 1}]
    config = {"inputs": inputs, "steps": steps, "output": {"dir": str(out)}, **kw.pop("config", {})}
    return run_pipeline(config, workers=1, quiet=True, **kw)


def kept(out) -> dict[str, str]:
    """id -> text of every written document."""
    files = sorted(Path(out, "data").glob("*.parquet"))
    rows = [r for f in files for r in pq.read_table(f, columns=["id", "text"]).to_pylist()]
    return {r["id"]: r["text"] for r in rows}


def rejects(out) -> list[dict]:
    return [json.loads(line) for f in sorted(Path(out, "rejects").glob("*.jsonl")) for line in f.read_text().splitlines()]


def balanced(stats: dict) -> None:
    assert stats["balanced"] and stats["read"] == stats["written"] + stats["removed"] + stats["rejected"], stats
