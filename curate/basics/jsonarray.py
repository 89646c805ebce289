"""Reading a JSON array element by element, salvaging what follows a broken element.

A file such as Alpaca's is one JSON array; one bad byte must not cost the whole file,
and a malformed element in the middle must not cost the elements after it. Elements
are decoded one at a time; after a malformed one the reader skips to the start of the
next element and goes on, as the line readers go on after a bad line.
"""
from __future__ import annotations

import json
import re
from typing import Any, Iterator, NamedTuple

_SEPARATORS = re.compile(r"[\s,]*")
_DECODER = json.JSONDecoder()


class Element(NamedTuple):
    index: int  # 0-based position in the array
    line: int  # 1-based line on which the element starts
    obj: Any  # the decoded value, None when ``error`` is set
    raw: str  # the element's text
    error: str | None  # why it could not be decoded (or the array's own damage)


def iter_array(text: str) -> Iterator[Element]:
    """Elements of the JSON array in ``text``. A malformed element yields an Element
    with ``error`` and the reader resumes at the next element: in a pretty-printed array
    (the first two elements each start a line, indented alike) the next line indented
    so, else the next ``,`` outside strings and brackets. A missing ``[`` or ``]``
    yields a final Element with ``error``."""
    pos = len(text) - len(text.lstrip())
    if not text.startswith("[", pos):
        yield Element(0, 1, None, text[:200], "not a JSON array")
        return
    pos += 1
    line = 1 + text.count("\n", 0, pos)
    first_indent = indent = None
    index = 0
    while True:
        m = _SEPARATORS.match(text, pos)
        line += text.count("\n", pos, m.end())
        pos = m.end()
        if pos >= len(text):
            yield Element(index, line, None, "", "truncated JSON array (no closing ']')")
            return
        if text[pos] == "]":
            return
        if index == 0:
            first_indent = _indent_at(text, pos)
        elif index == 1:  # pretty-printed when the second element starts a line like the first
            indent = first_indent if _indent_at(text, pos) == first_indent else None
        try:
            obj, end = _DECODER.raw_decode(text, pos)
            error = None
        except json.JSONDecodeError as e:
            obj, end, error = None, _skip_element(text, pos, indent), f"malformed JSON element: {e.msg}"
        if error is not None and end >= len(text):  # the damage runs to the end of the file
            yield Element(index, line, None, text[pos:end], f"{error} (file ends inside this element)")
            return
        yield Element(index, line, obj, text[pos:end], error)
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
