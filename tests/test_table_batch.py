"""TableBatch: documents read as an Arrow table go back to Arrow reusing the rows and meta JSON
no step changed. Whatever a step does to a document (new text, meta changed in place, nested
values mutated, new Documents), ``table_of`` must equal :func:`curate.record.to_table` of the
same documents, and ``text_bytes`` must equal :func:`curate.record.text_bytes`."""
import json
from pathlib import Path

import pyarrow as pa

from curate.io.readers import read_shard
from curate.io.sources import InputSpec, plan_shards
from curate.pipeline.runner import run_pipeline
from curate.record import Document, TableBatch, text_bytes, to_table

ROOT = Path(__file__).resolve().parents[1]
C4 = ROOT / "examples/data/c4_demo.jsonl"


def _batch(tmp_path: Path, rows: list[dict]) -> TableBatch:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    [(table, rejects)] = list(read_shard(plan_shards([InputSpec(str(path))])[0], batch_size=len(rows) + 1, as_table=True))
    assert not rejects and isinstance(table, pa.Table)
    return TableBatch(table)


def _same(batch: TableBatch, docs: list[Document]) -> None:
    assert batch.table_of(docs).equals(to_table(docs))
    assert batch.text_bytes(docs) == text_bytes(docs)


def test_unchanged_rows_come_from_the_table(tmp_path):
    rows = [{"text": f"doc {i} é", "url": f"u{i}", "n": i, "tags": ["a", "b"]} for i in range(6)]
    batch = _batch(tmp_path, rows)
    _same(batch, batch.docs)
    _same(batch, batch.docs[::2])  # a filter removed some
    _same(batch, [])


def test_every_kind_of_change_is_written_as_changed(tmp_path):
    rows = [{"text": f"doc {i}", "url": f"u{i}", "n": i, "tags": ["a"]} for i in range(8)]
    batch = _batch(tmp_path, rows)
    docs = batch.docs
    docs[0].text = "rewritten ünïcode"
    docs[1].meta["url"] = "changed"
    docs[2].meta["tags"].append("mutated in place")  # nested: identity of the list proves nothing
    docs[3].meta["n"] = 3.0  # equal to 3, but written 3.0
    del docs[4].meta["url"]
    docs[5].meta = {"replaced": True}
    docs[6].text = docs[6].text + ""  # the same text: either way is right
    new = Document(id="new", text="a document a step made", source="step", meta={"k": [1, {"x": None}]})
    _same(batch, docs + [new])
    assert json.loads(batch.table_of([docs[2]])["meta"][0].as_py())["tags"] == ["a", "mutated in place"]


def test_real_c4_with_a_rewriting_step_equals_to_table():
    batch = TableBatch(next(read_shard(plan_shards([InputSpec(str(C4))])[0], batch_size=300, as_table=True))[0])
    docs = batch.docs
    for d in docs[::3]:
        d.text = d.text.upper()
    for d in docs[1::5]:
        d.meta["lang"] = "en"
    _same(batch, docs)
    _same(batch, docs[1::2])


def test_stats_split_task_time_into_setup_steps_and_io(tmp_path):
    stats = run_pipeline({"inputs": [{"path": str(C4)}], "steps": [{"step": "gopher_quality"}],
                          "output": {"dir": str(tmp_path / "out")}}, workers=1, quiet=True)
    step_seconds = sum(s["seconds"] for s in stats["steps"])
    assert stats["task_seconds"] > 0 and stats["setup_seconds"] >= 0 and stats["io_seconds"] > 0
    assert abs(stats["task_seconds"] - stats["setup_seconds"] - step_seconds - stats["io_seconds"]) < 0.01
    assert stats["task_seconds"] <= stats["seconds"]
    html = (tmp_path / "out/report.html").read_text()
    assert "(read + write)" in html and "(set-up)" in html
