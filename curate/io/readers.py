"""Readers: turn a shard of input into batches of Documents plus rejects.

Every reader streams: memory is bounded by ``batch_size`` (and, for JSON
arrays, by the file), never by the whole input. Bad records never raise; each
becomes a :class:`Reject` with its source, line and reason.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from typing import Any, Iterator

from curate.basics.jsonarray import salvage_array
from curate.io.mediawiki import iter_pages
from curate.io.sources import Shard, TruncatedInput, iter_lines, open_binary
from curate.record import Document

RAW_PREVIEW_BYTES = 200


@dataclass(slots=True)
class Reject:
    source: str
    line: int
    reason: str
    raw: str  # the start of the raw bytes, decoded with replacement

    def to_dict(self) -> dict:
        return asdict(self)


def _preview(raw: bytes | str) -> str:
    if isinstance(raw, str):
        return raw[:RAW_PREVIEW_BYTES]
    return raw[:RAW_PREVIEW_BYTES].decode("utf-8", errors="replace")


def record_to_doc(obj: Any, shard: Shard, line: int) -> Document | str:
    """A parsed record (dict) as a Document, or the reason it is unusable."""
    spec = shard.spec
    if not isinstance(obj, dict):
        return f"record is a {type(obj).__name__}, not an object"
    if spec.text_field not in obj:
        return f"missing text field {spec.text_field!r}"
    text = obj[spec.text_field]
    if not isinstance(text, str):
        return f"text field {spec.text_field!r} is {type(text).__name__}, not a string"
    if not text.strip():
        return "empty text"
    raw_id = obj.get(spec.id_field)
    doc_id = str(raw_id) if raw_id is not None else f"{shard.source}:{line}"
    meta = {k: v for k, v in obj.items() if k not in (spec.text_field, spec.id_field)}
    return Document(doc_id, text, shard.source, meta)


class _Batcher:
    def __init__(self, batch_size: int):
        self.batch_size = batch_size
        self.docs: list[Document] = []
        self.rejects: list[Reject] = []

    def full(self) -> bool:
        return len(self.docs) + len(self.rejects) >= self.batch_size

    def take(self):
        out = (self.docs, self.rejects)
        self.docs, self.rejects = [], []
        return out


def read_shard(shard: Shard, batch_size: int = 1000) -> Iterator[tuple[list[Document], list[Reject]]]:
    """Yield (documents, rejects) batches for one shard, in input order."""
    records = {
        "jsonl": _jsonl_records, "json": _json_array_records, "text": _text_records,
        "csv": _csv_records, "parquet": _parquet_records, "hf": _hf_records, "mediawiki": _mediawiki_records,
    }[shard.format](shard)
    batch = _Batcher(batch_size)
    for line, item in records:
        if isinstance(item, Reject):
            batch.rejects.append(item)
        elif isinstance(item, Document):
            batch.docs.append(item)
        if batch.full():
            yield batch.take()
    if batch.docs or batch.rejects:
        yield batch.take()


def _too_long(shard: Shard, raw: bytes | str, line: int) -> Reject | None:
    limit = shard.spec.max_record_bytes
    if len(raw) > limit:
        return Reject(shard.source, line, f"record over {limit} bytes ({len(raw)})", _preview(raw))
    return None


def _truncated(shard: Shard, line: int, error: Exception) -> Reject:
    return Reject(shard.source, line, f"truncated or corrupt compressed input: {error}", "")


def _line_records(shard: Shard, parse):
    """``parse(shard, raw, line)`` on each non-blank line (blank lines separate records,
    they are not records); a damaged compressed stream ends with one Reject."""
    try:
        for line, raw in iter_lines(shard):
            if raw.strip():
                yield line, parse(shard, raw, line)
    except TruncatedInput as e:
        yield e.line, _truncated(shard, e.line, e)


def _read_whole(shard: Shard) -> bytes | Reject:
    with open_binary(shard.path) as f:
        try:
            return f.read()
        except (EOFError, OSError) as e:
            return _truncated(shard, 1, e)


def _jsonl_doc(shard: Shard, raw: bytes, line: int) -> Document | Reject:
    if (rej := _too_long(shard, raw, line)) is not None:
        return rej
    try:
        obj = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        return Reject(shard.source, line, f"invalid UTF-8 at byte {e.start}", _preview(raw))
    except json.JSONDecodeError as e:
        return Reject(shard.source, line, f"malformed JSON: {e.msg} at column {e.colno}", _preview(raw))
    doc = record_to_doc(obj, shard, line)
    return doc if isinstance(doc, Document) else Reject(shard.source, line, doc, _preview(raw))


def _jsonl_records(shard: Shard):
    return _line_records(shard, _jsonl_doc)


def _text_records(shard: Shard):
    if shard.spec.text_mode == "line":
        yield from _line_records(shard, _text_doc)
        return
    raw = _read_whole(shard)
    yield 1, raw if isinstance(raw, Reject) else _text_doc(shard, raw, 1)


def _text_doc(shard: Shard, raw: bytes, line: int) -> Document | Reject:
    if (rej := _too_long(shard, raw, line)) is not None:
        return rej
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return Reject(shard.source, line, f"invalid UTF-8 at byte {e.start}", _preview(raw))
    if not text.strip():
        return Reject(shard.source, line, "empty text", _preview(raw))
    return Document(f"{shard.source}:{line}", text, shard.source, {})


def _json_array_records(shard: Shard):
    """A JSON array of objects (Alpaca-style files). Elements are decoded one at a
    time, so a truncated array keeps every complete element before the damage.
    ``line`` is the line on which each element starts."""
    data = _read_whole(shard)
    if isinstance(data, Reject):
        yield 1, data
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        yield line, Reject(shard.source, line, f"invalid UTF-8 at byte {e.start}; file not read", _preview(data[e.start:]))
        return
    for el in salvage_array(text):
        line = el.line
        if el.error == "not a JSON array":
            yield line, Reject(shard.source, line, "not a JSON array", _preview(text))
        elif el.error == "array not closed":
            yield line, Reject(shard.source, line, "truncated JSON array (no closing ']')", "")
        elif el.error is not None:
            yield line, Reject(shard.source, line, f"malformed JSON element: {el.error}; rest of file not read",
                               _preview(text[el.start:]))
        else:
            raw = text[el.start:el.end]
            rej = _too_long(shard, raw, line)
            doc = rej if rej is not None else record_to_doc(el.obj, shard, line)
            yield line, doc if not isinstance(doc, str) else Reject(shard.source, line, doc, _preview(raw))


def _csv_records(shard: Shard):
    delimiter = "\t" if shard.path.lower().rstrip(".gzbz2zst").endswith(".tsv") else ","
    csv.field_size_limit(shard.spec.max_record_bytes + 1)
    with open_binary(shard.path) as fb:
        f = io.TextIOWrapper(fb, encoding="utf-8", errors="surrogateescape", newline="")
        reader = csv.DictReader(f, delimiter=delimiter)
        line = 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                yield reader.line_num, Reject(shard.source, reader.line_num, f"malformed CSV: {e}", "")
                continue
            except (EOFError, OSError) as e:
                yield line + 1, _truncated(shard, line + 1, e)
                return
            line = reader.line_num
            values = [v for v in row.values() if isinstance(v, str)]
            if any(_has_surrogates(v) for v in values):
                yield line, Reject(shard.source, line, "invalid UTF-8", _preview(",".join(values).encode("utf-8", "surrogateescape")))
                continue
            if None in row:
                yield line, Reject(shard.source, line, "row has more fields than the header", _preview(str(row)))
                continue
            doc = record_to_doc(row, shard, line)
            yield line, doc if isinstance(doc, Document) else Reject(shard.source, line, doc, _preview(str(row)))


def _has_surrogates(s: str) -> bool:
    try:
        s.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def _parquet_records(shard: Shard):
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(shard.path)
        line = 0
        for batch in pf.iter_batches(batch_size=1000):
            for row in batch.to_pylist():
                line += 1
                doc = record_to_doc(row, shard, line)
                yield line, doc if isinstance(doc, Document) else Reject(shard.source, line, doc, _preview(str(row)))
    except OSError as e:  # pyarrow.ArrowInvalid subclasses ValueError; both mean a damaged file
        yield 0, Reject(shard.source, 0, f"unreadable Parquet: {e}", "")
    except ValueError as e:
        yield 0, Reject(shard.source, 0, f"unreadable Parquet: {e}", "")


def _hf_records(shard: Shard):
    import datasets

    try:
        ds = datasets.load_from_disk(shard.path)
    except FileNotFoundError:
        ds = datasets.load_dataset(shard.path, split=shard.spec.split)
    if isinstance(ds, datasets.DatasetDict):
        ds = ds[shard.spec.split]
    for line, row in enumerate(ds, start=1):
        doc = record_to_doc(row, shard, line)
        yield line, doc if isinstance(doc, Document) else Reject(shard.source, line, doc, _preview(str(row)))


def _mediawiki_records(shard: Shard):
    for line, page in iter_pages(shard):
        if isinstance(page, str):
            yield line, Reject(shard.source, line, page, "")
        else:
            yield line, page
