"""The one record type that flows through curation: a :class:`Document`.

A batch is a plain ``list[Document]``. Steps that want columnar speed convert
with :func:`to_table` / :func:`from_table`; everything else stays readable.
SFT conversations and preference pairs travel as Documents too: their
structure lives in ``meta`` (``meta["messages"]``, ``meta["chosen"]`` ...) and
``text`` holds a flat rendering that text steps can work on.
"""
from __future__ import annotations

import json
import operator
from itertools import repeat
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.string()),
        ("source", pa.string()),
        ("meta", pa.string()),  # JSON object: keeps shards schema-stable when meta keys vary
    ]
)


@dataclass(slots=True)
class Document:
    id: str
    text: str
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        """``text``, ``id``, ``source`` or a meta key (dots walk nested dicts)."""
        if key in ("text", "id", "source"):
            return getattr(self, key)
        value: Any = self.meta
        for part in key.split("."):
            if not isinstance(value, dict) or part not in value:
                return default
            value = value[part]
        return value


@dataclass(slots=True)
class Removed:
    """A document a step took out, with the step's name and a human-readable reason
    (for example ``"stop_words 1 < 2"``). ``extra`` carries step-specific fields
    such as ``cluster_id`` and ``kept_id`` for dedup."""

    doc: Document
    step: str
    reason: str
    extra: dict[str, Any] = field(default_factory=dict)


def text_bytes(docs: list[Document]) -> int:
    """Total UTF-8 bytes of the documents' text."""
    return sum(len(d.text.encode("utf-8", "surrogatepass")) for d in docs)


def to_table(docs: list[Document]) -> pa.Table:
    return pa.Table.from_pydict(
        {
            "id": [d.id for d in docs],
            "text": [d.text for d in docs],
            "source": [d.source for d in docs],
            "meta": [json.dumps(d.meta, ensure_ascii=False, sort_keys=True) for d in docs],
        },
        schema=SCHEMA,
    )


def from_table(table: pa.Table) -> list[Document]:
    cols = table.to_pydict()
    metas = cols.get("meta") or [None] * table.num_rows
    return [
        Document(id=i, text=t, source=s or "", meta=json.loads(m) if m else {})
        for i, t, s, m in zip(cols["id"], cols["text"], cols["source"], metas)
    ]


_IMMUTABLE = (str, int, float, bool, type(None))  # meta values whose identity proves them unchanged
_ABSENT = object()


class TableBatch:
    """A batch read as an Arrow table (in :data:`SCHEMA`) with its Documents, ``docs``, for the
    steps. Remembers each document's row, so that documents no step changed go back to Arrow
    without rebuilding their fields: a text's UTF-8 length comes from the table, and a meta's
    JSON is reused while the dict still holds the very values read (immutable ones only). The
    table must be one curate's readers made: meta written as :func:`to_table` writes it."""

    def __init__(self, table: pa.Table):
        self.table = table
        self.docs = from_table(table)
        self._row = {id(d): i for i, d in enumerate(self.docs)}
        self._fields = [(d.id, d.text, d.source) for d in self.docs]
        # Each row's meta as read, when every value is immutable (else None: never reused).
        self._meta_read = [(tuple(d.meta), tuple(d.meta.values())) if all(type(v) in _IMMUTABLE for v in d.meta.values()) else None
                           for d in self.docs]
        self._meta_json = [m or "{}" for m in table["meta"].to_pylist()]
        self._same_as_read = not (table["source"].null_count or table["meta"].null_count)  # from_table fills nulls
        lengths = pc.binary_length(table["text"]).to_pylist()
        # id(text) -> (text, UTF-8 bytes); holding the text keeps its id from being reused
        self._bytes = {id(f[1]): (f[1], n) for f, n in zip(self._fields, lengths)}

    def _read_row(self, doc: Document) -> int | None:
        """The row ``doc`` was read from, when a step may have replaced its text but left its meta
        as read (the same keys holding the very same values); None for a new Document or a changed meta."""
        row = self._row.get(id(doc))
        if row is None or self._meta_read[row] is None:
            return None
        keys, values = self._meta_read[row]
        meta = doc.meta
        if len(meta) != len(keys) or not all(map(operator.is_, map(meta.get, keys, repeat(_ABSENT)), values)):
            return None
        return row

    def text_bytes(self, docs: list[Document]) -> int:
        """Total UTF-8 bytes of the documents' text (as :func:`text_bytes`); a text is measured once."""
        known, total = self._bytes, 0
        for d in docs:
            entry = known.get(id(d.text))
            if entry is None or entry[0] is not d.text:  # a step's new text
                entry = known[id(d.text)] = (d.text, len(d.text.encode("utf-8", "surrogatepass")))
            total += entry[1]
        return total

    def table_of(self, docs: list[Document]) -> pa.Table:
        """``to_table(docs)``: id, source and meta taken from the table where no step changed
        them, and the text column too when no text changed."""
        rows = [self._read_row(d) for d in docs]
        if self._same_as_read and all(r is not None and self._fields[r][0] == d.id and self._fields[r][2] == d.source
                                      for r, d in zip(rows, docs)):
            taken = pa.array(rows, pa.int64())
            if all(self._fields[r][1] is d.text for r, d in zip(rows, docs)):
                return self.table.take(taken)
            kept = self.table.select(["id", "source", "meta"]).take(taken)
            text = pa.array([d.text for d in docs], pa.string())
            return pa.Table.from_arrays([kept["id"], text, kept["source"], kept["meta"]], schema=SCHEMA)
        meta = [self._meta_json[r] if r is not None else json.dumps(d.meta, ensure_ascii=False, sort_keys=True)
                for r, d in zip(rows, docs)]
        return pa.Table.from_pydict({"id": [d.id for d in docs], "text": [d.text for d in docs],
                                     "source": [d.source for d in docs], "meta": meta}, schema=SCHEMA)
