"""Named validation checks for annotation records, each with a severity.

``error`` checks find records that should not be trained on (they are removed by the
``annotation_checks`` step by default); ``warning`` checks find records worth a look
(flagged in ``meta["flags"]``, kept unless the step is told otherwise). The ``parse``
checks (bad_json, wrong_types, missing_fields, unknown_format) run while reading a
file (see :mod:`annotations.formats`) and send the element to rejects.

Which answers a check reads: most read every answer (assistant turns, or both chosen
and rejected). ``refusal`` reads only the answers the data teaches: SFT assistant turns,
``chosen``, and KTO answers labelled desirable -- a refusal as the rejected answer is a
fine training signal.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from annotations.records import KTOExample, PreferencePair, Record, prompt_text


@dataclass(frozen=True)
class Check:
    name: str
    severity: str  # "error" | "warning"
    description: str
    stage: str = "record"  # "record": run by Checker; "parse": while reading the file


PARSE_CHECKS = [
    Check("bad_json", "error", "the element is not valid JSON (truncated file, broken line)", "parse"),
    Check("wrong_types", "error", "a field has the wrong type (number for text, unknown role ...)", "parse"),
    Check("missing_fields", "error", "a field the format needs is absent or null", "parse"),
    Check("unknown_format", "error", "the element's keys fit no known format", "parse"),
]
RECORD_CHECKS = [
    Check("empty_answer", "error", "an answer is empty or only whitespace"),
    Check("role_order", "error", "turns are not system?, then user/assistant alternating, ending as the kind needs"),
    Check("truncated", "warning", "a long answer stops mid-sentence (no closing punctuation)"),
    Check("copies_prompt", "warning", "an answer repeats the prompt instead of answering it"),
    Check("placeholder", "error", "a template placeholder is left in an answer ({{name}}, [Your Name])"),
    Check("mojibake", "error", "text decoded with the wrong charset (Ã©, â€™) or U+FFFD"),
    Check("control_chars", "error", "control characters other than tab and newline"),
    Check("too_long", "warning", "a turn is longer than max_turn_chars"),
    Check("language_mismatch", "warning", "prompt and answer are in different languages (fastText lid)"),
    Check("refusal", "warning", "a taught answer refuses ('As an AI language model', 'I cannot')"),
    Check("chosen_equals_rejected", "error", "a preference pair's two answers are the same text"),
]
CHECKS: dict[str, Check] = {c.name: c for c in PARSE_CHECKS + RECORD_CHECKS}

PLACEHOLDER = re.compile(
    r"\{\{\s*[\w .-]{1,40}\s*\}\}"  # {{name}}
    r"|\[(?:your|insert|enter|add) [^\]\n]{1,40}\]"  # [Your Name], [Insert date]
    r"|<(?:placeholder|insert)[^>\n]{0,40}>",
    re.IGNORECASE,
)
MOJIBAKE = re.compile("Ã[\u0080-\u00bf]|â€|Â[\u00a0-\u00bf]|\ufffd")
CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
REFUSAL = re.compile(
    r"\bas an ai(?: language model)?\b|\bi'?m (?:just )?an ai\b"
    r"|^\W*(?:(?:i'?m|i am) sorry,?\s*(?:but\s*)?|i apologi[sz]e,?\s*(?:but\s*)?|unfortunately,?\s*)?"
    r"(?:i cannot|i can ?not|i can'?t|i'?m unable|i am unable|i'?m not able|i am not able|i won'?t)\b",
    re.IGNORECASE,
)
CLOSING = set(".!?…。！？\"'”’)]}>`*:;|")
WORD = re.compile(r"\w+")


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _trigrams(words: list[str]) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + 3]) for i in range(len(words) - 2)}


def _taught_answers(record: Record) -> list[str]:
    if isinstance(record, PreferencePair):
        return [record.chosen]
    if isinstance(record, KTOExample) and not record.label:
        return []
    return record.answers()


def _all_turns(record: Record) -> list[str]:
    if isinstance(record, PreferencePair):
        return [m["content"] for m in record.prompt] + [record.chosen, record.rejected]
    return [m["content"] for m in record.messages]


def _which(record: Record, i: int) -> str:
    if isinstance(record, PreferencePair):
        return ("chosen", "rejected")[i]
    return f"answer {i + 1}"


class Checker:
    """Runs the record checks.

    Args:
        names: which checks to run (default: every record-stage check).
        max_turn_chars: ``too_long`` limit per turn, in characters (default 16,000, ~4k tokens).
        truncated_min_words: ``truncated`` ignores answers whose last paragraph has fewer
            words (default 12): short answers and list items often end without a full stop.
        lid_model: path to a fastText language-ID model (lid.176); without one,
            ``language_mismatch`` is not run and :attr:`skipped` says so.
        lid_min_chars / lid_min_prob: texts shorter than this, or predictions less sure,
            do not count as a mismatch (defaults 40 characters, 0.6).
    """

    def __init__(self, names: list[str] | None = None, max_turn_chars: int = 16_000,
                 truncated_min_words: int = 12, lid_model: str | Path | None = None,
                 lid_min_chars: int = 40, lid_min_prob: float = 0.6):
        names = list(names) if names is not None else [c.name for c in RECORD_CHECKS]
        unknown = [n for n in names if n not in CHECKS or CHECKS[n].stage != "record"]
        if unknown:
            raise ValueError(f"unknown checks {unknown}; known: {', '.join(c.name for c in RECORD_CHECKS)}")
        self.max_turn_chars = max_turn_chars
        self.truncated_min_words = truncated_min_words
        self.lid_min_chars, self.lid_min_prob = lid_min_chars, lid_min_prob
        self.lid = load_lid(lid_model) if lid_model and "language_mismatch" in names else None
        self.skipped = [] if self.lid or "language_mismatch" not in names else ["language_mismatch"]
        self.names = [n for n in names if n not in self.skipped]
        self._languages: dict[str, tuple[str, float]] = {}
        self._funcs: dict[str, Callable[[Record], str | None]] = {n: getattr(self, n) for n in self.names}

    def run(self, record: Record) -> dict[str, str]:
        """``{check name: what is wrong}`` for each check the record fails."""
        failures = {}
        for name, func in self._funcs.items():
            detail = func(record)
            if detail is not None:
                failures[name] = detail
        return failures

    # One method per check, named as the check; each returns None when the record passes.

    def empty_answer(self, r: Record) -> str | None:
        for i, answer in enumerate(r.answers()):
            if not answer.strip():
                return f"{_which(r, i)} is blank"
        return None

    def role_order(self, r: Record) -> str | None:
        turns = [m["role"] for m in (r.prompt if isinstance(r, PreferencePair) else r.messages)]
        body = turns[1:] if turns[:1] == ["system"] else turns
        expected = ["user", "assistant"] * (len(body) // 2 + 1)
        if body != expected[: len(body)]:
            return "roles " + ", ".join(turns[:8])
        end = "user" if isinstance(r, PreferencePair) else "assistant"
        if not body or body[-1] != end:
            return f"ends with {body[-1] if body else 'no turn'}, expected {end}"
        return None

    def truncated(self, r: Record) -> str | None:
        for i, answer in enumerate(r.answers()):
            text = answer.rstrip()
            if not text or text.endswith("```") or text[-1] in CLOSING:
                continue
            last = text.rsplit("\n", 1)[-1]
            if len(WORD.findall(last)) >= self.truncated_min_words and unicodedata.category(text[-1]) != "So":
                return f"{_which(r, i)} ends with {text[-40:]!r}"
        return None

    def copies_prompt(self, r: Record) -> str | None:
        prompt = _norm(prompt_text(r))
        p_words = prompt.split()
        p_grams = _trigrams(p_words)
        for i, answer in enumerate(r.answers()):
            a_words = _norm(answer).split()
            if not a_words:
                continue
            if a_words == p_words:
                return f"{_which(r, i)} equals the prompt"
            a_grams = _trigrams(a_words)
            if len(a_words) >= 8 and 2 * len(a_words) >= len(p_words):
                shared = len(a_grams & p_grams) / len(a_grams)
                if shared >= 0.9:
                    return f"{shared:.0%} of {_which(r, i)}'s word trigrams are in the prompt"
        return None

    def placeholder(self, r: Record) -> str | None:
        for i, answer in enumerate(r.answers()):
            m = PLACEHOLDER.search(answer)
            if m:
                return f"{_which(r, i)} has {m.group(0)!r}"
        return None

    def mojibake(self, r: Record) -> str | None:
        for text in _all_turns(r):
            m = MOJIBAKE.search(text)
            if m:
                return f"{m.group(0)!r} in {text[max(0, m.start() - 20) : m.end() + 20]!r}"
        return None

    def control_chars(self, r: Record) -> str | None:
        for text in _all_turns(r):
            m = CONTROL.search(text)
            if m:
                return f"U+{ord(m.group(0)):04X} in {text[max(0, m.start() - 20) : m.end() + 20]!r}"
        return None

    def too_long(self, r: Record) -> str | None:
        longest = max((len(t) for t in _all_turns(r)), default=0)
        if longest > self.max_turn_chars:
            return f"a turn has {longest:,} characters > {self.max_turn_chars:,}"
        return None

    def language_mismatch(self, r: Record) -> str | None:
        prompt = self._language(prompt_text(r))
        if prompt is None:
            return None
        for i, answer in enumerate(r.answers()):
            lang = self._language(answer)
            if lang is not None and lang != prompt:
                return f"prompt is {prompt}, {_which(r, i)} is {lang}"
        return None

    def refusal(self, r: Record) -> str | None:
        for answer in _taught_answers(r):
            m = REFUSAL.search(answer[:300])
            if m:
                return f"answer says {m.group(0).strip()!r}"
        return None

    def chosen_equals_rejected(self, r: Record) -> str | None:
        if isinstance(r, PreferencePair) and _norm(r.chosen) == _norm(r.rejected):
            return "chosen and rejected are the same text"
        return None

    def language(self, text: str) -> tuple[str, float]:
        """``(label, probability)`` from the lid model, remembered per text (the profile asks again)."""
        if text not in self._languages:
            self._languages[text] = predict_language(self.lid, text)
        return self._languages[text]

    def _language(self, text: str) -> str | None:
        if len(text.strip()) < self.lid_min_chars:
            return None
        lang, prob = self.language(text)
        return lang if prob >= self.lid_min_prob else None


def load_lid(path: str | Path):
    """Load a fastText language-ID model. (curate.filters.lang will own this once it
    exists; until then the annotations package loads fastText directly.)"""
    import fasttext

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"language-ID model not found: {path}")
    fasttext.FastText.eprint = lambda *args, **kwargs: None  # silence the load-time warning
    return fasttext.load_model(str(path))


def predict_language(model, text: str) -> tuple[str, float]:
    """``("en", 0.97)``: the top fastText label without ``__label__``, and its probability."""
    labels, probs = model.predict(" ".join(text.split())[:2000], k=1)
    return labels[0].removeprefix("__label__"), float(probs[0])
