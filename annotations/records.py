"""Canonical records for vendor-annotated data, and their lossless trip through
:class:`curate.record.Document`.

Three kinds, whatever the file format was:

* :class:`SFTConversation` -- ``messages``: ``[{"role": "system"|"user"|"assistant", "content": str}]``.
* :class:`PreferencePair` -- ``prompt`` messages, the ``chosen`` and ``rejected`` answers
  (strings), and an optional ``rating`` string ("slightly better") or numeric ``margin``.
* :class:`KTOExample` -- ``messages`` ending in the judged answer, and a boolean ``label``
  (True = desirable).

Every record carries ``vendor``, ``annotator`` (None when not given), ``source`` (the file)
and ``line``: the 1-based line number in a JSONL file, or the 0-based element index in a
JSON array file (so ``json.load(f)[line]`` is the element). ``original`` holds the
element exactly as read, so nothing the vendor sent is lost.

As a Document, ``text`` is a flat rendering ("user: ...") for text steps, and the
structure lives in ``meta``: ``meta["kind"]`` is "sft" | "preference" | "kto", plus
``meta["messages"]`` (or ``prompt``/``chosen``/``rejected``/``rating``/``margin``, or
``label``), ``vendor``, ``annotator``, ``source``, ``line`` and ``original``. ``source`` is
kept in meta too because a reader of exported records sets ``Document.source`` to its own
file. ``meta["prompt_text"]`` (the last user turn) is derived, for prompt-level steps:
``- step: minhash_dedup`` with ``text_key: prompt_text``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Union

from curate.record import Document

ROLES = ("system", "user", "assistant")


@dataclass
class _Base:
    vendor: str = ""
    annotator: str | None = None
    source: str = ""
    line: int = 0
    original: Any = None

    kind: ClassVar[str] = ""

    @property
    def id(self) -> str:
        return f"{self.vendor}:{self.source}:{self.line}"


@dataclass
class SFTConversation(_Base):
    messages: list[dict[str, str]] = field(default_factory=list)
    kind: ClassVar[str] = "sft"

    def prompt_messages(self) -> list[dict[str, str]]:
        """Everything before the last assistant turn."""
        return self.messages[:-1] if self.messages and self.messages[-1]["role"] == "assistant" else self.messages

    def answers(self) -> list[str]:
        return [m["content"] for m in self.messages if m["role"] == "assistant"]


@dataclass
class PreferencePair(_Base):
    prompt: list[dict[str, str]] = field(default_factory=list)
    chosen: str = ""
    rejected: str = ""
    rating: str | None = None
    margin: float | None = None
    kind: ClassVar[str] = "preference"

    def prompt_messages(self) -> list[dict[str, str]]:
        return self.prompt

    def answers(self) -> list[str]:
        return [self.chosen, self.rejected]


@dataclass
class KTOExample(_Base):
    messages: list[dict[str, str]] = field(default_factory=list)
    label: bool = True
    kind: ClassVar[str] = "kto"

    prompt_messages = SFTConversation.prompt_messages

    def answers(self) -> list[str]:
        return [m["content"] for m in self.messages if m["role"] == "assistant"]


Record = Union[SFTConversation, PreferencePair, KTOExample]
KINDS: dict[str, type] = {c.kind: c for c in (SFTConversation, PreferencePair, KTOExample)}


@dataclass
class Reject:
    """An input element that could not become a record. ``check`` names why
    ("bad_json", "missing_fields", "wrong_types", "unknown_format"); ``raw`` is the
    start of the element's text (at most 300 characters)."""

    vendor: str
    source: str
    line: int
    check: str
    reason: str
    raw: str


def prompt_text(record: Record) -> str:
    """The last user turn before the answer: what dedup and overlap compare."""
    users = [m["content"] for m in record.prompt_messages() if m["role"] == "user"]
    return users[-1] if users else ""


def render(record: Record) -> str:
    """Flat text for text steps: one "role: content" block per turn."""
    turns = [f"{m['role']}: {m['content']}" for m in record.prompt_messages()]
    if isinstance(record, PreferencePair):
        turns += [f"chosen: {record.chosen}", f"rejected: {record.rejected}"]
    elif record.messages and record.messages[-1]["role"] == "assistant":
        turns.append(f"assistant: {record.messages[-1]['content']}")
    return "\n\n".join(turns)


def to_document(record: Record) -> Document:
    """A Document that :func:`from_document` turns back into an equal record."""
    meta = {"kind": record.kind, **{f.name: getattr(record, f.name) for f in fields(record)}}
    meta["prompt_text"] = prompt_text(record)
    return Document(id=record.id, text=render(record), source=record.source, meta=meta)


def from_document(doc: Document) -> Record:
    """Inverse of :func:`to_document`; derived and step-added meta keys (prompt_text,
    scores, flags) are ignored."""
    kind = doc.meta.get("kind")
    if kind not in KINDS:
        raise ValueError(f"document {doc.id!r} has meta kind {kind!r}, not one of {sorted(KINDS)}")
    cls = KINDS[kind]
    values = {f.name: doc.meta[f.name] for f in fields(cls) if f.name in doc.meta}
    values.setdefault("source", doc.source)
    return cls(**values)


def as_dict(record: Record) -> dict[str, Any]:
    return {"kind": record.kind, **asdict(record)}
