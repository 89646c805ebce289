"""Readers: turn a shard of input into batches of Documents plus rejects.

Every reader streams: memory is bounded by ``batch_size`` (and, for JSON
arrays, by the file), never by the whole input. Bad records never raise; each
becomes a :class:`Reject` with its source, line and reason.
"""
from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import asdict, dataclass
from typing import Any, Iterator

from curate.basics.jsonarray import salvage_array
from curate.io.fast_jsonl import jsonl_batches
from curate.io.mediawiki import iter_pages
from curate.io.sources import Shard, TruncatedInput, iter_lines, open_binary
from curate.record import Document, to_table

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


def read_shard(shard: Shard, batch_size: int = 1000, as_table: bool = False,
               whole_blocks: bool = False) -> Iterator[tuple[list[Document], list[Reject]]]:
    """Yield (documents, rejects) batches of ``batch_size`` records (default 1000, rejects
    included) for one shard, in input order. ``as_table``: the documents come as a ``pa.Table``
    in :data:`curate.record.SCHEMA`; ``whole_blocks`` (with ``as_table``): for fast JSONL, one
    table per block read (about 8 MB) rather than per ``batch_size`` records."""
    if shard.format == "jsonl" and shard.spec.fast_jsonl:
        mode = ("blocks" if whole_blocks else "tables") if as_table else "docs"
        yield from jsonl_batches(shard, batch_size, _jsonl_doc, _truncated, mode)
        return
    for docs, rejects in _read_records(shard, batch_size):
        yield (to_table(docs) if as_table else docs), rejects


def _read_records(shard: Shard, batch_size: int):
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


# A JSON escape of a UTF-16 surrogate (\ud800-\udfff): valid JSON, but alone (unpaired) it
# decodes to a string no UTF-8 writer accepts. Only records that contain one are checked.
_LONE_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE_BYTES = re.compile(_LONE_SURROGATE.pattern.encode())


def lone_surrogate(doc: Document) -> str | None:
    """The reason to reject ``doc`` when its id, text or meta holds an unpaired surrogate."""
    for name, value in (("id", doc.id), ("text", doc.text), ("meta", doc.meta)):
        s = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        if _has_surrogates(s):
            return f"lone surrogate escape in {name} (not encodable as UTF-8)"
    return None


def _jsonl_doc(shard: Shard, raw: bytes, line: int) -> Document | Reject:
    if (rej := _too_long(shard, raw, line)) is not None:
        return rej
    try:
        obj = json.loads(raw.decode("utf-8", shard.spec.encoding_errors))
    except UnicodeDecodeError as e:
        return Reject(shard.source, line, f"invalid UTF-8 at byte {e.start}", _preview(raw))
    except json.JSONDecodeError as e:
        return Reject(shard.source, line, f"malformed JSON: {e.msg} at column {e.colno}", _preview(raw))
    doc = record_to_doc(obj, shard, line)
    if isinstance(doc, Document) and _LONE_SURROGATE_BYTES.search(raw):
        doc = lone_surrogate(doc) or doc
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
        text = raw.decode("utf-8", shard.spec.encoding_errors)
    except UnicodeDecodeError as e:
        return Reject(shard.source, line, f"invalid UTF-8 at byte {e.start}", _preview(raw))
    if not text.strip():
        return Reject(shard.source, line, "empty text", _preview(raw))
    return Document(f"{shard.source}:{line}", text, shard.source, {})


def _json_array_records(shard: Shard):
    """A JSON array of objects (Alpaca-style files), decoded one element at a time: a
    malformed element or one with invalid UTF-8 is a reject and the elements after it are
    still read; a truncated array keeps every complete element before the damage.
    ``line`` is the line on which each element starts."""
    data = _read_whole(shard)
    if isinstance(data, Reject):
        yield 1, data
        return
    errors = "replace" if shard.spec.encoding_errors == "replace" else "surrogateescape"
    text = data.decode("utf-8", errors)
    for el in salvage_array(text):
        line, raw = el.line, text[el.start:el.end]
        if el.error == "not a JSON array":
            yield line, Reject(shard.source, line, "not a JSON array", _preview(raw))
        elif el.error == "array not closed":
            yield line, Reject(shard.source, line, "truncated JSON array (no closing ']')", "")
        elif el.error is not None or (errors == "surrogateescape" and _has_surrogates(raw)):
            reason = f"malformed JSON element: {el.error}" if el.error is not None else "invalid UTF-8"
            yield line, Reject(shard.source, line, reason, _preview(raw.encode("utf-8", "surrogateescape")))
        else:
            rej = _too_long(shard, raw, line)
            doc = rej if rej is not None else record_to_doc(el.obj, shard, line)
            if isinstance(doc, Document) and _LONE_SURROGATE.search(raw):
                doc = lone_surrogate(doc) or doc
            yield line, doc if not isinstance(doc, str) else Reject(shard.source, line, doc, _preview(raw))


def _csv_records(shard: Shard):
    """CSV/TSV with a header row. Parsed strictly: a quote left open (which would swallow
    the rows after it) or text after a closing quote makes the record's first line a
    reject, and parsing resumes on the line after it, so the rows that follow are kept."""
    delimiter = "\t" if shard.path.lower().rstrip(".gzbz2zst").endswith(".tsv") else ","
    csv.field_size_limit(shard.spec.max_record_bytes + 1)
    errors = "replace" if shard.spec.encoding_errors == "replace" else "surrogateescape"
    with open_binary(shard.path) as fb:
        lines = _LineFeed(io.TextIOWrapper(fb, encoding="utf-8", errors=errors, newline=""))
        reader = csv.reader(lines, delimiter=delimiter, strict=True)
        header, line = None, 0  # line: physical lines consumed before the current record
        while True:
            lines.taken = []
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                why = "unterminated quote" if "unexpected end of data" in str(e) else str(e)
                raw = lines.taken[0] if lines.taken else ""
                yield line + 1, Reject(shard.source, line + 1, f"malformed CSV: {why}", _preview(raw))
                lines.push_back(lines.taken[1:])
                reader = csv.reader(lines, delimiter=delimiter, strict=True)
                line += 1
                continue
            except (EOFError, OSError) as e:
                yield line + 1, _truncated(shard, line + 1, e)
                return
            start, line = line + 1, line + len(lines.taken)
            if not row:
                continue
            if header is None:
                header = row
                continue
            yield start, _csv_doc(shard, header, row, start)


class _LineFeed:
    """Lines of a text stream for ``csv.reader``; remembers the lines of the record being
    parsed (``taken``) and can give lines back to be parsed again."""

    def __init__(self, f):
        self.f, self.taken, self.back = f, [], []

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = self.back.pop() if self.back else next(self.f)
        self.taken.append(line)
        return line

    def push_back(self, lines: list[str]) -> None:
        self.back.extend(reversed(lines))


def _csv_doc(shard: Shard, header: list[str], row: list[str], line: int) -> Document | Reject:
    if any(_has_surrogates(v) for v in row):
        return Reject(shard.source, line, "invalid UTF-8", _preview(",".join(row).encode("utf-8", "surrogateescape")))
    if len(row) > len(header):
        return Reject(shard.source, line, "row has more fields than the header", _preview(str(row)))
    record = dict(zip(header, row + [None] * (len(header) - len(row))))
    doc = record_to_doc(record, shard, line)
    return doc if isinstance(doc, Document) else Reject(shard.source, line, doc, _preview(str(record)))


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
