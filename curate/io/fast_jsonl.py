"""The fast path for clean JSONL: whole blocks of lines parsed by pyarrow's JSON reader.

A block is taken only when it is certain to give exactly what the line-by-line reader
gives: every line one object whose fields are all strings, no blank line, no line over
``max_record_bytes``, no NUL or CR, no empty text, no field that is
null or missing in some rows. Any other block is handed back, whole, to the line-by-line
reader, so line numbers, rejects and counts never change. Surrogate escapes need no scan of
their own: pyarrow refuses a lone one (the block then goes line by line) and decodes a pair
to the character ``json.loads`` gives. The block's ``meta`` column is
built in Arrow as the same text ``json.dumps(meta, ensure_ascii=False, sort_keys=True)``
writes, so a block can go to the Parquet writer without a Python object per document.
"""
from __future__ import annotations

import json
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from curate.io.sources import Shard, TruncatedInput, iter_lines, open_binary
from curate.record import SCHEMA, Document, from_table, to_table

BLOCK_BYTES = 8 << 20  # bytes of whole lines handed to pyarrow at a time
# Characters json.dumps escapes as \u00XX (it writes \n \r \t \b \f as two-character escapes).
_OTHER_CONTROL = "[\x00-\x07\x0b\x0e-\x1f]"
# A superset of what str.strip() removes: a text made only of these might be "empty text".
_MAYBE_BLANK = "^[\\t-\\r\\x1c-\\x20\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}]*$"
_JSON_ESCAPES = [("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"), ("\b", "\\b"), ("\f", "\\f")]


class _ReadFailed(Exception):
    """The compressed stream broke; the line-by-line reader takes over from ``line``."""

    def __init__(self, line: int):
        self.line = line


def iter_blocks(shard: Shard, block_bytes: int | None = None) -> Iterator[tuple[int, bytes, np.ndarray]]:
    """(first line number, block, offsets of its newlines) over a JSONL shard; each block is
    whole lines (newline included) except possibly the file's last line. ``block_bytes``:
    how much to read at a time (default BLOCK_BYTES)."""
    block_bytes = block_bytes or BLOCK_BYTES
    line, carry = shard.first_line, []  # carry: pieces of a line not yet ended
    with open_binary(shard.path) as f:
        if shard.start:
            f.seek(shard.start)
        remaining = None if shard.end is None else shard.end - shard.start
        while remaining is None or remaining > 0:
            try:
                chunk = f.read(block_bytes if remaining is None else min(block_bytes, remaining))
            except (EOFError, OSError, ValueError):
                raise _ReadFailed(line) from None
            if not chunk:
                break
            if remaining is not None:
                remaining -= len(chunk)
            cut = chunk.rfind(b"\n") + 1
            if not cut:
                carry.append(chunk)  # a line longer than a block
                continue
            block = b"".join(carry + [chunk[:cut]]) if carry else chunk[:cut]
            ends = np.flatnonzero(np.frombuffer(block, np.uint8) == 10)
            yield line, block, ends
            line += len(ends)
            carry = [chunk[cut:]] if cut < len(chunk) else []
    if carry:
        yield line, b"".join(carry), np.zeros(0, np.int64)


class BlockParser:
    """Parses blocks of one shard; remembers the string fields seen so far, so that pyarrow
    reads them as strings (it would otherwise turn ISO dates into timestamps)."""

    def __init__(self, shard: Shard):
        self.shard = shard
        self.fields: dict[str, pa.DataType] = {}

    def parse(self, block: bytes, first_line: int, ends: np.ndarray) -> pa.Table | None:
        """The block (whose newlines are at ``ends``) as a table in :data:`curate.record.SCHEMA`,
        or None when it must go line by line."""
        if not len(ends) or not block.endswith(b"\n") or b"\r" in block or b"\x00" in block:
            return None
        starts = np.concatenate(([0], ends[:-1] + 1))
        if (np.frombuffer(block, np.uint8)[starts] != ord("{")).any():
            return None  # a blank line, leading white space or not an object: line by line
        if (ends - starts).max() > self.shard.spec.max_record_bytes:
            return None
        table = self._read(block)
        if table is None or table.num_rows != len(ends):
            return None
        return self._to_schema(table, block, first_line)

    def _read(self, block: bytes) -> pa.Table | None:
        for _ in range(3):  # a new field may need a second read as a string
            opts = pj.ParseOptions(explicit_schema=pa.schema(list(self.fields.items())) if self.fields else None,
                                   unexpected_field_behavior="infer")
            try:
                table = pj.read_json(pa.BufferReader(block), read_options=pj.ReadOptions(block_size=1 << 20), parse_options=opts)
                table.validate(full=True)  # the JSON reader passes invalid UTF-8 through; this finds it
            except (pa.ArrowInvalid, UnicodeDecodeError):
                return None
            new = {f.name: f.type for f in table.schema if f.name not in self.fields}
            if not new:
                return table
            if not all(pa.types.is_string(t) or pa.types.is_timestamp(t) for t in new.values()):
                return None
            self.fields.update({name: pa.string() for name in new})
        return None

    def _to_schema(self, table: pa.Table, block: bytes, first_line: int) -> pa.Table | None:
        spec = self.shard.spec
        columns = {}
        for name in table.column_names:
            col = table[name]
            if col.null_count == len(col) and b"null" not in block:
                continue  # a field of earlier blocks that no row of this one has (with no "null" anywhere, none is null)
            if col.null_count:
                return None  # null, or missing in some rows: json would differ
            columns[name] = col
        text = columns.pop(spec.text_field, None)
        if text is None or pc.any(pc.match_substring_regex(pc.utf8_slice_codeunits(text, 0, 1), _MAYBE_BLANK)).as_py():
            return None  # a text that starts with white space might be all white space: line by line
        ids = columns.pop(spec.id_field, None)
        if ids is None:
            lines = pc.cast(pa.array(np.arange(first_line, first_line + table.num_rows)), pa.string())
            ids = pc.binary_join_element_wise(f"{self.shard.source}:", lines, "")  # SOURCE:LINE, as record_to_doc makes them
        meta = _meta_json(columns, table.num_rows)
        if meta is None:
            return None
        source = pa.array([self.shard.source] * table.num_rows, pa.string())
        return pa.Table.from_arrays([pc.cast(ids, pa.string()), text, source, meta], schema=SCHEMA)


def _meta_json(columns: dict[str, pa.ChunkedArray], n: int) -> pa.Array | None:
    """``json.dumps(row, ensure_ascii=False, sort_keys=True)`` of string columns, in Arrow; None
    when a value holds a control character json.dumps would write as \\u00XX."""
    if not columns:
        return pa.array(["{}"] * n, pa.string())
    parts = []
    for k, name in enumerate(sorted(columns)):
        col = columns[name]
        if pc.any(pc.match_substring_regex(col, _OTHER_CONTROL)).as_py():
            return None
        for raw, escaped in _JSON_ESCAPES:
            col = pc.replace_substring(col, raw, escaped)
        key = ("{" if k == 0 else ", ") + json.dumps(name, ensure_ascii=False) + ': "'
        parts += [pa.scalar(key), col, pa.scalar('"')]
    parts.append(pa.scalar("}"))
    return pc.binary_join_element_wise(*parts, "").combine_chunks()


def jsonl_batches(shard: Shard, batch_size: int, parse_line: Callable, truncated: Callable,
                  mode: str = "docs") -> Iterator[tuple]:
    """Batches of a JSONL shard as ``(documents, rejects)``: with mode ``docs`` lists of Documents
    batched exactly as the line-by-line reader batches them (``batch_size`` records, rejects
    included); ``tables``: the same batches as ``pa.Table``; ``blocks``: one table per block read.
    ``parse_line(shard, raw, line)`` and ``truncated(shard, line, error)`` are the line-by-line
    reader's own."""
    parser = BlockParser(shard)
    batch = _Batches(batch_size, mode)
    try:
        for first_line, block, ends in iter_blocks(shard):
            table = parser.parse(block, first_line, ends)
            if table is not None:
                yield from batch.add_table(table)
                continue
            for k, raw in enumerate(_lines(block)):
                if raw.strip():
                    yield from batch.add(parse_line(shard, raw, first_line + k))
            yield from batch.flush_block()
    except _ReadFailed as failed:
        yield from batch.flush_block()
        try:
            for line, raw in iter_lines(shard):
                if line >= failed.line and raw.strip():
                    yield from batch.add(parse_line(shard, raw, line))
        except TruncatedInput as e:
            yield from batch.add(truncated(shard, e.line, e))
    yield from batch.finish()


def _lines(block: bytes) -> list[bytes]:
    """A block's lines as :func:`curate.io.sources.iter_lines` gives them: line ends stripped,
    a last line without a newline left as it is."""
    if not block.endswith(b"\n"):
        return block.split(b"\n")
    return [raw.rstrip(b"\r") for raw in block[:-1].split(b"\n")]


class _Batches:
    """Groups documents (and table slices) and rejects into batches: full at ``batch_size``
    records (modes ``docs`` and ``tables``), or one per block (mode ``blocks``)."""

    def __init__(self, batch_size: int, mode: str):
        if mode not in ("docs", "tables", "blocks"):
            raise ValueError(f"unknown batch mode {mode!r}")
        self.batch_size, self.mode = batch_size, mode
        self.pieces: list = []  # Documents and pa.Table slices, in input order
        self.n_docs = 0
        self.rejects: list = []

    def _full(self):
        return self.n_docs + len(self.rejects) >= self.batch_size

    def _take(self):
        out = (_joined(self.pieces, as_table=self.mode != "docs"), self.rejects)
        self.pieces, self.n_docs, self.rejects = [], 0, []
        return out

    def add(self, item) -> Iterator[tuple]:
        if isinstance(item, Document):
            self.pieces.append(item)
            self.n_docs += 1
        else:
            self.rejects.append(item)
        if self.mode != "blocks" and self._full():
            yield self._take()

    def add_table(self, table: pa.Table) -> Iterator[tuple]:
        if self.mode == "blocks":
            yield from self.flush_block()
            self.pieces.append(table)
            yield self._take()
            return
        pos = 0
        while pos < table.num_rows:
            piece = table.slice(pos, self.batch_size - self.n_docs - len(self.rejects))
            self.pieces.append(piece)
            self.n_docs += piece.num_rows
            pos += piece.num_rows
            if self._full():
                yield self._take()

    def flush_block(self) -> Iterator[tuple]:
        if self.mode == "blocks" and (self.pieces or self.rejects):
            yield self._take()

    def finish(self) -> Iterator[tuple]:
        if self.pieces or self.rejects:
            yield self._take()


def _joined(pieces: list, as_table: bool):
    """Documents and table slices, in order, as one table or one list of Documents."""
    if not as_table:
        return [d for p in pieces for d in (from_table(p) if isinstance(p, pa.Table) else [p])]
    tables, run = [], []
    for p in pieces:
        if isinstance(p, Document):
            run.append(p)
            continue
        if run:
            tables.append(to_table(run))
            run = []
        tables.append(p)
    if run or not tables:
        tables.append(to_table(run))
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)
