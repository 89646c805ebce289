"""Simple document rules: length bounds and character-class ratios."""
from __future__ import annotations

import re

from curate.filters.gopher import fmt_number
from curate.pipeline.step import Filter, register


@register("length")
class Length(Filter):
    """Keep documents with ``min_words <= words <= max_words`` and
    ``min_chars <= characters <= max_chars`` (words split on whitespace; None = no bound)."""

    def __init__(self, min_words: int | None = None, max_words: int | None = None,
                 min_chars: int | None = None, max_chars: int | None = None, text_key: str = "text"):
        super().__init__()
        if all(v is None for v in (min_words, max_words, min_chars, max_chars)):
            raise ValueError("length needs at least one of min_words, max_words, min_chars, max_chars")
        self.min_words, self.max_words, self.min_chars, self.max_chars = min_words, max_words, min_chars, max_chars
        self.text_key = text_key

    def reason(self, doc):
        text = str(doc.get(self.text_key) or "")
        if self.min_chars is not None and len(text) < self.min_chars:
            return f"chars {len(text)} < {self.min_chars}"
        if self.max_chars is not None and len(text) > self.max_chars:
            return f"chars {len(text)} > {self.max_chars}"
        if self.min_words is not None or self.max_words is not None:
            n = len(text.split())
            if self.min_words is not None and n < self.min_words:
                return f"words {n} < {self.min_words}"
            if self.max_words is not None and n > self.max_words:
                return f"words {n} > {self.max_words}"
        return None


# How to count each class of characters in a text (C-speed: map over the string).
_COUNTERS = {
    "digit": lambda t: sum(map(str.isdigit, t)),
    "uppercase": lambda t: sum(map(str.isupper, t)),
    "alpha": lambda t: sum(map(str.isalpha, t)),
    "whitespace": lambda t: sum(map(str.isspace, t)),
    "punctuation": lambda t: len(_PUNCTUATION.findall(t)),
    "non_ascii": lambda t: len(t) - len(t.encode("ascii", "ignore")),
}
_PUNCTUATION = re.compile(r"[^\w\s]|_")


@register("char_ratio")
class CharRatio(Filter):
    """Bounds on the fraction of a document's characters that are digits, upper-case
    letters, letters, whitespace, punctuation/symbols or non-ASCII. Parameters are
    ``max_<class>_ratio`` / ``min_<class>_ratio`` in [0, 1]; empty documents are removed."""

    def __init__(self, text_key: str = "text", **bounds: float):
        super().__init__()
        self.bounds: list[tuple[str, str, float]] = []
        for key, value in bounds.items():
            m = re.fullmatch(r"(min|max)_(\w+)_ratio", key)
            if not m or m.group(2) not in _COUNTERS:
                known = ", ".join(f"min/max_{k}_ratio" for k in _COUNTERS)
                raise ValueError(f"char_ratio: unknown parameter {key!r}; known: {known}")
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"char_ratio: {key} must be in [0, 1]")
            self.bounds.append((m.group(1), m.group(2), float(value)))
        if not self.bounds:
            raise ValueError("char_ratio needs at least one bound, e.g. max_digit_ratio: 0.3")
        self.text_key = text_key

    def reason(self, doc):
        text = str(doc.get(self.text_key) or "")
        if not text:
            return "empty"
        for side, kind, limit in self.bounds:
            ratio = _COUNTERS[kind](text) / len(text)
            if side == "max" and ratio > limit:
                return f"{kind}_ratio {fmt_number(ratio)} > {limit}"
            if side == "min" and ratio < limit:
                return f"{kind}_ratio {fmt_number(ratio)} < {limit}"
        return None
