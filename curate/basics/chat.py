"""The one chat-message reader: conversation records in the common SFT formats as a list of
``{"role", "content"}`` messages with string contents. Used by the annotation readers
(``annotations.formats``, which add vendor bookkeeping and rejects) and by SFT training
(``train.sft``). Formats: OpenAI ``messages`` (string or typed-part contents), ShareGPT
``conversations`` (``from``/``value``), Alpaca ``instruction``/``input``/``output`` (+ ``history``),
``prompt``/``response`` (or ``completion``); each may carry a ``system`` prompt.
A malformed record raises :class:`BadRecord` naming the failed check."""
from __future__ import annotations

from typing import Any

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "model": "assistant", "system": "system"}
OPENAI_ROLES = {"user": "user", "assistant": "assistant", "system": "system"}


class BadRecord(Exception):
    def __init__(self, check: str, reason: str):
        super().__init__(reason)
        self.check = check


def detect_format(obj: Any) -> str | None:
    """The format of one parsed element, from its keys; None when nothing fits."""
    if not isinstance(obj, dict):
        return None
    keys = obj.keys()
    if "chosen" in keys and "rejected" in keys:
        return "preference"
    if "label" in keys and ({"messages", "conversations", "completion"} & keys):
        return "kto"
    if "conversations" in keys:
        return "sharegpt"
    if "messages" in keys:
        return "openai"
    if "instruction" in keys and "output" in keys:
        return "alpaca"
    if "prompt" in keys and ({"response", "completion"} & keys):
        return "prompt_response"
    return None


# ---------------------------------------------------------------- field helpers

def field(obj: dict, key: str, kind: type | tuple = str, required: bool = True) -> Any:
    if obj.get(key) is None:
        if required:
            raise BadRecord("missing_fields", f"no {key!r}")
        return None
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise BadRecord("wrong_types", f"{key!r} is {type(value).__name__}")
    return value


def content_text(value: Any, where: str) -> str:
    """A message body: a string, or a list of typed text parts joined with newlines."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for part in value:
            text = part.get("value", part.get("text")) if isinstance(part, dict) else None
            if not isinstance(text, str) or part.get("type", "text") != "text":
                raise BadRecord("wrong_types", f"{where}: content part {str(part)[:60]!r} is not text")
            parts.append(text)
        return "\n".join(parts)
    raise BadRecord("wrong_types", f"{where}: content is {type(value).__name__}")


def turns_to_messages(turns: Any, key: str, role_key: str, text_key: str, roles: dict[str, str]) -> list[dict]:
    if not isinstance(turns, list):
        raise BadRecord("wrong_types", f"{key!r} is {type(turns).__name__}, not a list")
    out = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise BadRecord("wrong_types", f"{key}[{i}] is {type(turn).__name__}")
        if role_key not in turn or text_key not in turn:
            raise BadRecord("missing_fields", f"{key}[{i}] has no {role_key!r} or {text_key!r}")
        role = roles.get(turn[role_key]) if isinstance(turn[role_key], str) else None
        if role is None:
            raise BadRecord("wrong_types", f"{key}[{i}] has unknown role {str(turn[role_key])[:40]!r}")
        out.append({"role": role, "content": content_text(turn[text_key], f"{key}[{i}]")})
    return out


def any_messages(obj: dict, key: str) -> list[dict]:
    """Messages in either ShareGPT (from/value) or OpenAI (role/content) shape."""
    turns = obj[key]
    if isinstance(turns, list) and turns and isinstance(turns[0], dict) and "from" in turns[0]:
        return turns_to_messages(turns, key, "from", "value", SHAREGPT_ROLES)
    return turns_to_messages(turns, key, "role", "content", OPENAI_ROLES)


def with_system(obj: dict, messages: list[dict]) -> list[dict]:
    system = field(obj, "system", required=False)
    return ([{"role": "system", "content": system}] if system else []) + messages


# ---------------------------------------------------------------- messages per format

def alpaca_messages(obj: dict) -> list[dict]:
    instruction, output = field(obj, "instruction"), field(obj, "output")
    extra = field(obj, "input", required=False)
    messages = []
    for pair in field(obj, "history", list, required=False) or []:
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(t, str) for t in pair)):
            raise BadRecord("wrong_types", "'history' entries must be [prompt, answer] string pairs")
        messages += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    prompt = f"{instruction}\n\n{extra}" if extra else instruction
    messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
    return with_system(obj, messages)


def sharegpt_messages(obj: dict) -> list[dict]:
    field(obj, "conversations", list)
    turns = turns_to_messages(obj["conversations"], "conversations", "from", "value", SHAREGPT_ROLES)
    return with_system(obj, turns)


def openai_messages(obj: dict) -> list[dict]:
    field(obj, "messages", list)
    return any_messages(obj, "messages")


def prompt_response_messages(obj: dict) -> list[dict]:
    answer_key = "response" if "response" in obj else "completion"
    messages = [{"role": "user", "content": field(obj, "prompt")},
                {"role": "assistant", "content": field(obj, answer_key)}]
    return with_system(obj, messages)


SFT_MESSAGES = {"sharegpt": sharegpt_messages, "openai": openai_messages, "alpaca": alpaca_messages,
                "prompt_response": prompt_response_messages}


def conversation_messages(obj: Any) -> list[dict]:
    """The messages of one SFT conversation record in any format above; raises
    :class:`BadRecord` when the record is malformed or no SFT format fits."""
    fmt = detect_format(obj)
    if fmt not in SFT_MESSAGES and isinstance(obj, dict) and isinstance(obj.get("messages"), list):
        fmt = "openai"  # e.g. a KTO example: its conversation is still one
    if fmt not in SFT_MESSAGES:
        raise BadRecord("unknown_format", "not an SFT conversation")
    return SFT_MESSAGES[fmt](obj)
