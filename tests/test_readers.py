"""Each reader on the real files in ../shared/data, and on converted copies of them."""
import bz2
import gzip
import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from curate.io.readers import read_shard
from curate.io.sources import InputSpec, plan_shards


def read_all(spec):
    docs, rejects = [], []
    for shard in plan_shards([InputSpec.parse(spec)]):
        for d, r in read_shard(shard, batch_size=64):
            docs += d
            rejects += r
    return docs, rejects


def c4_texts(shared):
    return [json.loads(line)["text"] for line in (shared / "data/pretrain/c4_demo.jsonl").read_text().splitlines()]


def test_jsonl_real(shared):
    docs, rejects = read_all(str(shared / "data/pretrain/c4_demo.jsonl"))
    assert [d.text for d in docs] == c4_texts(shared)
    assert not rejects
    assert docs[0].id == "c4_demo.jsonl:1" and docs[-1].id == "c4_demo.jsonl:300"


@pytest.mark.parametrize("suffix,opener", [(".gz", gzip.open), (".zst", None), (".bz2", bz2.open)])
def test_compressed_jsonl(shared, tmp_path, suffix, opener):
    raw = (shared / "data/pretrain/c4_demo.jsonl").read_bytes()
    path = tmp_path / f"c4.jsonl{suffix}"
    if opener is None:
        path.write_bytes(zstandard.ZstdCompressor().compress(raw))
    else:
        with opener(path, "wb") as f:
            f.write(raw)
    docs, rejects = read_all(str(path))
    assert [d.text for d in docs] == c4_texts(shared) and not rejects


def test_text_lines_and_files(shared, tmp_path):
    docs, _ = read_all(str(shared / "data/pretrain/lee_background.cor"))
    assert len(docs) == 300
    docs, _ = read_all(str(shared / "data/pretrain/wiki_demo.txt"))
    assert len(docs) == 30 and docs[0].text.startswith("Anarchism")
    (tmp_path / "a.txt").write_text("first file\nwith two lines\n")
    (tmp_path / "b.txt").write_text("second file\n")
    docs, _ = read_all({"path": str(tmp_path), "text_mode": "file"})
    assert [d.text for d in docs] == ["first file\nwith two lines\n", "second file\n"]
    assert [d.source for d in docs] == ["a.txt", "b.txt"]


def test_mediawiki_dump(shared):
    path = next((shared / "data/pretrain").glob("enwiki-*.bz2"))
    docs, rejects = read_all(str(path))
    raw = bz2.open(path).read().decode()
    assert len(docs) + len(rejects) == raw.count("<page>") == 206
    assert all(r.reason.startswith("skipped page: ") for r in rejects)
    pages = raw.split("<page>")[1:]
    articles = [p for p in pages if "<ns>0</ns>" in p and "<redirect " not in p]
    assert len(docs) == len(articles)
    titles = {d.meta["title"] for d in docs}
    assert "Anarchism" in titles
    anarchism = next(d for d in docs if d.meta["title"] == "Anarchism")
    assert "[[" not in anarchism.text and "{{" not in anarchism.text and "<ref" not in anarchism.text
    assert "political philosophy" in anarchism.text
    # line numbers point at the <page> line of the decompressed file
    lines = raw.splitlines()
    assert lines[rejects[0].line - 1].strip() == "<page>"
    raw_docs, _ = read_all({"path": str(path), "keep_markup": True})
    assert "[[" in next(d for d in raw_docs if d.meta["title"] == "Anarchism").text


def test_json_array_alpaca(shared):
    data = json.loads((shared / "data/sft/alpaca_en_demo.json").read_text())
    docs, rejects = read_all({"path": str(shared / "data/sft/alpaca_en_demo.json"), "text_field": "output"})
    assert len(docs) == len(data) == 999 and not rejects
    assert docs[5].meta["instruction"] == data[5]["instruction"]


def test_parquet_csv_hf(shared, tmp_path):
    texts = c4_texts(shared)
    ids = [f"doc-{i}" for i in range(len(texts))]
    pq.write_table(pa.table({"id": ids, "text": texts, "url": ["u"] * len(texts)}), tmp_path / "c4.parquet")
    docs, _ = read_all(str(tmp_path / "c4.parquet"))
    assert [d.text for d in docs] == texts and [d.id for d in docs] == ids and docs[0].meta == {"url": "u"}

    pd.DataFrame({"body": texts}).to_csv(tmp_path / "c4.csv", index=False)
    docs, rejects = read_all({"path": str(tmp_path / "c4.csv"), "text_field": "body"})
    assert [d.text for d in docs] == texts and not rejects

    import datasets

    datasets.Dataset.from_dict({"text": texts[:50], "id": ids[:50]}).save_to_disk(str(tmp_path / "hfds"))
    docs, _ = read_all(str(tmp_path / "hfds"))
    assert [d.text for d in docs] == texts[:50] and docs[3].id == "doc-3"


def test_large_file_splits_into_shards_with_right_lines(shared, tmp_path):
    raw = (shared / "data/pretrain/c4_demo.jsonl").read_bytes()
    path = tmp_path / "big.jsonl"
    path.write_bytes(raw * 3)
    shards = plan_shards([InputSpec.parse({"path": str(path), "shard_bytes": 200_000})])
    assert len(shards) > 5
    docs = [d for s in shards for batch, _ in read_shard(s) for d in batch]
    assert [d.id for d in docs] == [f"big.jsonl:{i}" for i in range(1, 901)]
    assert [d.text for d in docs] == c4_texts(shared) * 3
