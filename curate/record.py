"""The one record type that flows through curation: a :class:`Document`.

A batch is a plain ``list[Document]``. Steps that want columnar speed convert
with :func:`to_table` / :func:`from_table`; everything else stays readable.
SFT conversations and preference pairs travel as Documents too: their
structure lives in ``meta`` (``meta["messages"]``, ``meta["chosen"]`` ...) and
``text`` holds a flat rendering that text steps can work on.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

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
