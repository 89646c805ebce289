"""The one JSON-array salvage: decode an array element by element, so a truncated or damaged
file keeps every complete element before the damage (Alpaca-style files, vendor exports)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterator

_SEPARATORS = re.compile(r"[\s,]*")


@dataclass
class Element:
    """One element of the array, or the error that stopped decoding (``error`` not None: then
    ``obj`` is None and ``text[start:]`` is the undecoded rest). ``line``: 1-based line of ``start``."""

    index: int
    line: int
    start: int
    end: int
    obj: Any = None
    error: str | None = None


def salvage_array(text: str) -> Iterator[Element]:
    """Elements of the JSON array in ``text`` in order. Decoding stops at the first error:
    ``not a JSON array``, ``array not closed`` (truncated) or the JSON decoder's message."""
    decoder = json.JSONDecoder()
    pos = len(text) - len(text.lstrip())
    line = 1 + text.count("\n", 0, pos)
    if not text.startswith("[", pos):
        yield Element(0, line, pos, len(text), error="not a JSON array")
        return
    pos, index = pos + 1, 0
    while True:
        m = _SEPARATORS.match(text, pos)
        line += text.count("\n", pos, m.end())
        pos = m.end()
        if pos >= len(text):
            yield Element(index, line, pos, pos, error="array not closed")
            return
        if text[pos] == "]":
            return
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            yield Element(index, line, pos, len(text), error=e.msg)
            return
        yield Element(index, line, pos, end, obj)
        line += text.count("\n", pos, end)
        pos, index = end, index + 1
