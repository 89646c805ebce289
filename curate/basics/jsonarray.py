"""The one JSON-array salvage: decode an array element by element, so a truncated or damaged
file keeps every complete element before the damage (Alpaca-style files, vendor exports), and
a malformed element in the middle costs only itself: decoding resumes at the next element, as
the line readers go on after a bad line."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterator

_SEPARATORS = re.compile(r"[\s,]*")


@dataclass
class Element:
    """One element of the array, or why it could not be decoded (``error`` not None: then
    ``obj`` is None and ``text[start:end]`` is the undecoded element). ``line``: 1-based line of ``start``."""

    index: int
    line: int
    start: int
    end: int
    obj: Any = None
    error: str | None = None


def salvage_array(text: str) -> Iterator[Element]:
    """Elements of the JSON array in ``text`` in order. A malformed element yields an Element
    with the JSON decoder's message as ``error`` and decoding resumes at the next element: in
    a pretty-printed array (its first two elements each start a line, indented alike) the
    next line indented so, else the next ``,`` outside strings and brackets. ``not a JSON
    array`` and ``array not closed`` (truncated) end the array; a malformed element that
    runs to the end of the text says ``(file ends inside this element)``."""
    decoder = json.JSONDecoder()
    pos = len(text) - len(text.lstrip())
    line = 1 + text.count("\n", 0, pos)
    if not text.startswith("[", pos):
        yield Element(0, line, pos, len(text), error="not a JSON array")
        return
    pos, index = pos + 1, 0
    first_indent = indent = None
    while True:
        m = _SEPARATORS.match(text, pos)
        line += text.count("\n", pos, m.end())
        pos = m.end()
        if pos >= len(text):
            yield Element(index, line, pos, pos, error="array not closed")
            return
        if text[pos] == "]":
            return
        if index == 0:
            first_indent = _indent_at(text, pos)
        elif index == 1:  # pretty-printed when the second element starts a line like the first
            indent = first_indent if _indent_at(text, pos) == first_indent else None
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            end = _skip_element(text, pos, indent)
            if end >= len(text):  # the damage runs to the end of the file
                yield Element(index, line, pos, end, error=f"{e.msg} (file ends inside this element)")
                return
            yield Element(index, line, pos, end, error=e.msg)
        else:
            yield Element(index, line, pos, end, obj)
        line += text.count("\n", pos, end)
        pos, index = end, index + 1


def _indent_at(text: str, pos: int) -> str | None:
    """The whitespace before ``pos`` on its line when nothing else precedes it there."""
    start = text.rfind("\n", 0, pos) + 1
    prefix = text[start:pos]
    return prefix if start > 0 and not prefix.strip() else None


def _skip_element(text: str, pos: int, indent: str | None) -> int:
    """Where the element that starts (malformed) at ``pos`` ends."""
    if indent is not None:
        m = re.compile(rf"\n{re.escape(indent)}(?=[{{\[\]])|\n\s*\]\s*$").search(text, pos + 1)
        return m.start() if m else len(text)
    depth, in_string, i = 0, False, pos
    while i < len(text):
        ch = text[i]
        if in_string:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
            if depth < 0:
                return i
        elif ch == "," and depth == 0:
            return i
        i += 1
    return len(text)
