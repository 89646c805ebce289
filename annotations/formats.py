"""Read vendor files into canonical records, detecting the format.

Formats (``FORMATS``), detected from the keys of the first object in a file:

* ``alpaca`` -- ``instruction``, optional ``input``, ``output`` (optional ``system``, ``history``).
* ``sharegpt`` -- ``conversations``: ``[{"from": "human"|"gpt"|"system", "value": str}]``.
* ``openai`` -- ``messages``: ``[{"role", "content"}]``; ``content`` is a string or a list of
  typed parts (``{"type": "text", "value"|"text": str}``), as in LLaMA-Factory's v1 format.
* ``prompt_response`` -- ``prompt`` and ``response`` (or ``completion``).
* ``preference`` -- ``chosen`` and ``rejected`` (strings, ``{"from","value"}`` /
  ``{"role","content"}`` dicts, or message lists ending in the answer) with the prompt in
  ``prompt``, ``conversations`` or ``messages``; optional ``rating`` (str) and ``margin`` (number).
* ``kto`` -- ``label`` (bool) with ``messages`` or ``conversations``, or ``prompt`` + ``completion``.

Files are JSONL (one object a line; ``line`` is 1-based) or a JSON array (``line`` is the
0-based element index); a ``.json`` file holding one object is element 0, and one holding
JSON lines is read as JSONL. A truncated array keeps every element before the break and rejects
the rest as one ``bad_json`` reject. Elements that cannot become records go to rejects with
the check that failed: ``bad_json``, ``wrong_types``, ``missing_fields``, ``unknown_format``.
A file's ``read`` count is records + rejects.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterator

from annotations.records import KTOExample, PreferencePair, Record, Reject, SFTConversation
from curate.basics.chat import (BadRecord, alpaca_messages, any_messages, detect_format, field,  # noqa: F401
                                openai_messages, prompt_response_messages, sharegpt_messages, with_system)
from curate.basics.jsonarray import salvage_array

RAW_CHARS = 300  # how much of a bad element's text a reject keeps

# ---------------------------------------------------------------- one parser per format

def parse_alpaca(obj: dict) -> SFTConversation:
    return SFTConversation(messages=alpaca_messages(obj))


def parse_sharegpt(obj: dict) -> SFTConversation:
    return SFTConversation(messages=sharegpt_messages(obj))


def parse_openai(obj: dict) -> SFTConversation:
    return SFTConversation(messages=openai_messages(obj))


def parse_prompt_response(obj: dict) -> SFTConversation:
    return SFTConversation(messages=prompt_response_messages(obj))


def _answer(obj: dict, key: str) -> str:
    value = obj.get(key)
    if value is None:
        raise BadRecord("missing_fields", f"no {key!r}")
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return any_messages({key: [value]}, key)[0]["content"]
    if isinstance(value, list) and value:
        return any_messages(obj, key)[-1]["content"]  # a full conversation: the answer is its last turn
    raise BadRecord("wrong_types", f"{key!r} is {type(value).__name__}")


def _prompt(obj: dict) -> list[dict]:
    for key in ("conversations", "messages", "prompt"):
        if obj.get(key) is not None:
            if isinstance(obj[key], str):
                return with_system(obj, [{"role": "user", "content": obj[key]}])
            return with_system(obj, any_messages(obj, key))
    raise BadRecord("missing_fields", "no prompt ('prompt', 'conversations' or 'messages')")


def parse_preference(obj: dict) -> PreferencePair:
    margin = field(obj, "margin", (int, float), required=False)
    return PreferencePair(prompt=_prompt(obj), chosen=_answer(obj, "chosen"), rejected=_answer(obj, "rejected"),
                          rating=field(obj, "rating", required=False),
                          margin=None if margin is None else float(margin))


def parse_kto(obj: dict) -> KTOExample:
    label = field(obj, "label", bool)
    if "completion" in obj:
        messages = _prompt(obj) + [{"role": "assistant", "content": field(obj, "completion")}]
    else:
        messages = _prompt(obj)
    return KTOExample(messages=messages, label=label)


FORMATS: dict[str, Callable[[dict], Record]] = {
    "alpaca": parse_alpaca,
    "sharegpt": parse_sharegpt,
    "openai": parse_openai,
    "prompt_response": parse_prompt_response,
    "preference": parse_preference,
    "kto": parse_kto,
}


# ---------------------------------------------------------------- files

def iter_elements(path: Path) -> Iterator[tuple[int, Any, str, str | None]]:
    """Yield ``(line, obj, raw, error)`` for each element of a JSON array or JSONL file;
    ``error`` is set (and ``obj`` None) when the element is not valid JSON."""
    text = path.read_text(encoding="utf-8", errors="replace")
    start = text.lstrip()[:1]
    if path.suffix != ".jsonl" and start == "{":
        try:
            whole = json.loads(text)
        except json.JSONDecodeError:
            whole = None  # not one object: JSON lines in a .json file
        if whole is not None:
            yield 0, whole, "", None
            return
    if path.suffix == ".jsonl" or start != "[":
        for number, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                yield number, json.loads(raw), raw, None
            except json.JSONDecodeError as e:
                yield number, None, raw, f"invalid JSON: {e.msg} at column {e.colno}"
        return
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        yield from _salvage_array(text)
        return
    for index, obj in enumerate(data):
        yield index, obj, "", None


def _salvage_array(text: str) -> Iterator[tuple[int, Any, str, str | None]]:
    """A broken JSON array element by element; everything from the first undecodable
    element on becomes a single error."""
    for el in salvage_array(text):
        if el.error is None:
            yield el.index, el.obj, "", None
        elif el.error == "array not closed":
            yield el.index, None, "", "invalid JSON: array not closed"
        else:
            yield el.index, None, text[el.start:], f"invalid JSON: {el.error} (element {el.index} and after)"


def read_file(path: str | Path, vendor: str = "", fmt: str | None = None,
              annotator: str | None = None) -> tuple[list[Record], list[Reject]]:
    """Read one vendor file into records and rejects.

    ``fmt`` overrides detection (one of ``FORMATS``). ``annotator`` is the default for
    records without their own ``annotator`` field. Every element ends up in exactly one
    of the two lists.
    """
    path = Path(path)
    if fmt is not None and fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    records: list[Record] = []
    rejects: list[Reject] = []
    for line, obj, raw, error in iter_elements(path):
        def reject(check: str, reason: str) -> None:
            start = raw or json.dumps(obj, ensure_ascii=False)
            rejects.append(Reject(vendor, str(path), line, check, reason, start[:RAW_CHARS]))

        if error is not None:
            reject("bad_json", error)
            continue
        if not isinstance(obj, dict):
            reject("wrong_types", f"element is {type(obj).__name__}, not an object")
            continue
        fmt = fmt or detect_format(obj)
        if fmt is None:
            reject("unknown_format", f"no known format has keys {sorted(obj)[:8]}")
            continue
        try:
            record = FORMATS[fmt](obj)
            who = field(obj, "annotator", (str, int), required=False)
        except BadRecord as e:
            reject(e.check, f"{fmt}: {e}")
            continue
        record.vendor, record.source, record.line, record.original = vendor, str(path), line, obj
        record.annotator = str(who) if who is not None else annotator
        records.append(record)
    return records, rejects
