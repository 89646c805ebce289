"""Fuzz: every kind of bad record, in every input format and compression, in one run.

Good records carry real text (the bundled C4 sample) and planted ids; bad records are
mixed in at seeded random places. The run must write exactly the good records (less the
one planted exact duplicate), reject exactly the bad ones, and balance its counts."""
import bz2
import gzip
import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard
from reliability_helpers import balanced, kept, real_texts, rejects, run

MAX_RECORD = 4096
COMPRESS = {"": lambda b: b, ".gz": gzip.compress, ".bz2": bz2.compress,
            ".zst": lambda b: zstandard.ZstdCompressor().compress(b)}

BAD_JSONL = [
    b'{"id": "x", "text": "unfinished',                              # malformed JSON
    b'{"id": "x", "text": "bad byte \xff here"}',                   # invalid UTF-8
    b'{"id": "x", "text": "lone \\ud800 surrogate"}',               # lone surrogate in text
    b'{"id": "x\\udc00", "text": "surrogate in the id"}',           # ... in the id
    b'{"id": "x", "text": "surrogate in meta", "m": ["\\udbff"]}',  # ... in meta
    b'{"id": "x", "body": "no text field"}',                        # missing text
    b'{"id": "x", "text": 42}',                                     # text not a string
    b'{"id": "x", "text": null}',
    b'{"id": "x", "text": "   "}',                                  # empty text
    b'[1, 2, 3]',                                                   # not an object
    b'"just a string"',
    b'{"id": "x", "text": "' + b"long " * (MAX_RECORD // 4) + b'"}',  # over-long record
]


class Corpus:
    def __init__(self, tmp_path, seed=0):
        self.dir, self.rng = tmp_path, random.Random(seed)
        self.texts = iter([t.replace("\n", " ")[:1500] for t in real_texts(150)])
        self.good: set[str] = set()
        self.bad = 0
        self.inputs: list[str] = []

    def mix(self, prefix: str, n_good: int, bad: list):
        """(good ids, records) with ``bad`` records at random places and blank lines between some."""
        items = [("good", f"{prefix}-{i}", next(self.texts)) for i in range(n_good)] + [("bad", None, b) for b in bad]
        self.rng.shuffle(items)
        return items

    def jsonl(self, suffix: str, truncate: bool = False):
        name = f"data{'-cut' if truncate else ''}.jsonl{suffix}"
        lines = []
        for kind, gid, value in self.mix(f"jsonl{suffix}{'-cut' if truncate else ''}", 8, BAD_JSONL):
            lines.append(json.dumps({"id": gid, "text": value}).encode() if kind == "good" else value)
            if self.rng.random() < 0.2:
                lines.append(b"   ")  # a blank line separates, it is not a record
            self.good.update([gid] if kind == "good" else [])
        self.bad += len(BAD_JSONL)
        data = COMPRESS[suffix](b"\n".join(lines) + b"\n")
        if truncate:  # a second stream cut inside its header: everything of the first is recoverable
            tail = COMPRESS[suffix](b'{"id": "lost", "text": "never decoded"}\n' * 50)
            data += tail[:10]
            self.bad += 1  # one 'truncated or corrupt compressed input' reject
        (self.dir / name).write_bytes(data)
        self.inputs.append(str(self.dir / name))

    def json_array(self):
        parts = []
        bad = ['{"id": "x", "text": oops}', '{"id": "x", "text": "bad \\udfff"}', '"not an object"',
               '{"id": "x", "no_text": 1}', '{"id": "x", "text": ""}']
        for kind, gid, value in self.mix("json", 8, bad):
            parts.append(json.dumps({"id": gid, "text": value}, indent=2) if kind == "good" else value)
            self.good.update([gid] if kind == "good" else [])
        self.bad += len(bad)
        (self.dir / "data.json").write_text("[\n" + ",\n".join(parts) + "\n]\n")
        self.inputs.append(str(self.dir / "data.json"))

    def csv(self):
        rows = [b"id,text"]
        bad = [b'x,"bad byte \xff"', b"x,too,many,fields", b"x,   "]
        for kind, gid, value in self.mix("csv", 8, bad):
            rows.append(f'{gid},"{value.replace(chr(34), chr(34) * 2)}"'.encode() if kind == "good" else value)
            self.good.update([gid] if kind == "good" else [])
        rows.append(b'x,"a quote never closed')  # unterminated: last, so it would swallow nothing
        self.bad += len(bad) + 1
        (self.dir / "data.csv").write_bytes(b"\n".join(rows) + b"\n")
        self.inputs.append(str(self.dir / "data.csv"))

    def text(self):
        lines = []
        for kind, _, value in self.mix("text", 8, [b"bad byte \xff", b"long " * MAX_RECORD]):
            lines.append(value.encode() if kind == "good" else value)
            if kind == "good":
                self.good.add(f"data.txt:{len(lines)}")
            if self.rng.random() < 0.2:
                lines.append(b"")
        self.bad += 2
        (self.dir / "data.txt").write_bytes(b"\n".join(lines) + b"\n")
        self.inputs.append(str(self.dir / "data.txt"))

    def parquet(self):
        rows = [{"id": f"parquet-{i}", "text": next(self.texts)} for i in range(8)]
        rows += [{"id": "x", "text": None}, {"id": "x", "text": " "}]
        self.good.update(r["id"] for r in rows[:8])
        self.bad += 2
        pq.write_table(pa.Table.from_pylist(rows), self.dir / "data.parquet")
        self.inputs.append(str(self.dir / "data.parquet"))

    def duplicate(self):
        """One exact duplicate of a good record, in a file of its own after the others."""
        (self.dir / "zz-dup.jsonl").write_text(json.dumps({"id": "dup", "text": real_texts(1)[0][:1500].replace("\n", " ")}) + "\n")
        self.inputs.append(str(self.dir / "zz-dup.jsonl"))


def test_fuzz_every_bad_record_in_every_format(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    corpus = Corpus(src)
    for suffix in COMPRESS:
        corpus.jsonl(suffix)
        if suffix:
            corpus.jsonl(suffix, truncate=True)
    corpus.json_array()
    corpus.csv()
    corpus.text()
    corpus.parquet()
    corpus.duplicate()  # the first jsonl good record with id ...-0 might not hold text 0: find its id below
    inputs = [{"path": p, "max_record_bytes": MAX_RECORD} for p in corpus.inputs]
    steps = [{"step": "length", "min_chars": 1}, {"step": "exact_dedup"}, {"step": "minhash_dedup", "threshold": 0.95}]
    stats = run(inputs, tmp_path / "out", steps=steps)
    balanced(stats)
    written = kept(tmp_path / "out")
    assert "dup" not in written and stats["removed"] == 1  # the duplicate goes, its original stays
    assert set(written) == corpus.good
    assert stats["rejected"] == corpus.bad == len(rejects(tmp_path / "out"))
    assert stats["read"] == len(corpus.good) + corpus.bad + 1
    assert all(r["source"] and r["line"] >= 1 and r["reason"] for r in rejects(tmp_path / "out"))
