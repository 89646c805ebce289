"""Gopher's quality and repetition rules (Rae et al. 2021, "Scaling Language Models:
Methods, Analysis & Insights from Training Gopher", appendix A1), with datatrove's
default thresholds and decision order so results match ``GopherQualityFilter`` and
``GopherRepetitionFilter``. Every threshold can be set, or disabled with ``None``.
"""
from __future__ import annotations

import operator
import re
from itertools import compress

import numpy as np

from curate.filters.languages import LanguageFilter, LanguageRouter
from curate.filters.text import LETTERS, SYMBOL, WORD_KINDS, split_words
from curate.pipeline.params import number
from curate.pipeline.step import register

STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
_PARAGRAPHS = re.compile(r"\n{2,}")
_LINES = re.compile(r"\n+")


def fmt_number(x: float) -> str:
    return f"{x:.4g}"


@register("gopher_quality")
class GopherQuality(LanguageFilter):
    """Drop documents that fail Gopher's quality heuristics. Words are counted without
    pure-punctuation tokens; ratios are fractions in [0, 1]. Words, stop words and
    thresholds follow each document's ``meta.lang`` unless ``language`` fixes one
    (``curate/filters/languages.py``); ``languages`` overrides values per language."""

    def __init__(
        self,
        min_doc_words: int | None = 50,
        max_doc_words: int | None = 100_000,
        min_avg_word_length: float | None = 3,
        max_avg_word_length: float | None = 10,
        max_symbol_word_ratio: float | None = 0.1,
        max_bullet_lines_ratio: float | None = 0.9,
        max_ellipsis_lines_ratio: float | None = 0.3,
        min_alpha_words_ratio: float | None = 0.8,
        min_stop_words: int | None = 2,
        stop_words: list[str] | None = None,
        language: str | None = None,
        languages: dict | None = None,
        text_key: str = "text",
    ):
        super().__init__()
        for key in ("min_doc_words", "max_doc_words", "min_stop_words"):
            number(f"gopher_quality.{key}", locals()[key], 0, integer=True, optional=True)
        for key in ("min_avg_word_length", "max_avg_word_length"):
            number(f"gopher_quality.{key}", locals()[key], 0, optional=True)
        number("gopher_quality.max_symbol_word_ratio", max_symbol_word_ratio, 0, optional=True)
        for key in ("max_bullet_lines_ratio", "max_ellipsis_lines_ratio", "min_alpha_words_ratio"):
            number(f"gopher_quality.{key}", locals()[key], 0, 1, optional=True)
        self.min_doc_words, self.max_doc_words = min_doc_words, max_doc_words
        self.min_avg_word_length, self.max_avg_word_length = min_avg_word_length, max_avg_word_length
        self.max_symbol_word_ratio = max_symbol_word_ratio
        self.max_bullet_lines_ratio = max_bullet_lines_ratio
        self.max_ellipsis_lines_ratio = max_ellipsis_lines_ratio
        self.min_alpha_words_ratio = min_alpha_words_ratio
        self.min_stop_words = min_stop_words
        self.stop_words = frozenset(STOP_WORDS if stop_words is None else stop_words)
        self.text_key = text_key
        self.language = language or "en"
        self.router = LanguageRouter(self, locals(), language, languages)

    def reason_in_language(self, doc):
        text = doc.get(self.text_key) or ""
        words = split_words(text, self.language)
        n_words = len(words)
        kinds = list(map(WORD_KINDS.__getitem__, words))
        n_real = n_words - kinds.count(SYMBOL)
        if self.min_doc_words and n_real < self.min_doc_words:
            return f"words {n_real} < {self.min_doc_words}"
        if self.max_doc_words and n_real > self.max_doc_words:
            return f"words {n_real} > {self.max_doc_words}"
        if n_real == 0:
            return "words 0"
        symbol_chars = sum(map(len, compress(words, map(operator.not_, kinds))))  # SYMBOL is 0
        avg = (sum(map(len, words)) - symbol_chars) / n_real
        if self.min_avg_word_length and avg < self.min_avg_word_length:
            return f"avg_word_length {fmt_number(avg)} < {self.min_avg_word_length}"
        if self.max_avg_word_length and avg > self.max_avg_word_length:
            return f"avg_word_length {fmt_number(avg)} > {self.max_avg_word_length}"
        if self.max_symbol_word_ratio:
            ratio = text.count("#") / n_words
            if ratio > self.max_symbol_word_ratio:
                return f"hash_ratio {fmt_number(ratio)} > {self.max_symbol_word_ratio}"
            ratio = (text.count("...") + text.count("…")) / n_words
            if ratio > self.max_symbol_word_ratio:
                return f"ellipsis_ratio {fmt_number(ratio)} > {self.max_symbol_word_ratio}"
        lines = text.splitlines() or [""]
        if self.max_bullet_lines_ratio:
            ratio = sum(ln.lstrip().startswith(("•", "-")) for ln in lines) / len(lines)
            if ratio > self.max_bullet_lines_ratio:
                return f"bullet_lines {fmt_number(ratio)} > {self.max_bullet_lines_ratio}"
        if self.max_ellipsis_lines_ratio:
            ratio = sum(ln.rstrip().endswith(("...", "…")) for ln in lines) / len(lines)
            if ratio > self.max_ellipsis_lines_ratio:
                return f"ellipsis_lines {fmt_number(ratio)} > {self.max_ellipsis_lines_ratio}"
        if self.min_alpha_words_ratio:
            ratio = kinds.count(LETTERS) / n_words
            if ratio < self.min_alpha_words_ratio:
                return f"alpha_words {fmt_number(ratio)} < {self.min_alpha_words_ratio}"
        if self.min_stop_words:
            found = len(self.stop_words.intersection(words))
            if found < self.min_stop_words:
                return f"stop_words {found} < {self.min_stop_words}"
        return None


def dup_count_and_chars(items: list[str]) -> tuple[int, int]:
    """How many items repeat an earlier one, and their total characters."""
    seen: set[str] = set()
    n = chars = 0
    for item in items:
        if item in seen:
            n += 1
            chars += len(item)
        else:
            seen.add(item)
    return n, chars


class _WordIds(dict):
    """word -> a small integer, assigned on first sight; ids are compared within one
    document only, so the table may be cleared between documents."""

    def __missing__(self, word: str) -> int:
        i = self[word] = len(self)
        return i


_WORD_IDS = _WordIds()


class NGramIds:
    """``grams[n]`` is (ids, first) for the n-grams of ``words``: ``ids[i]`` numbers the
    n-gram starting at word i (equal n-grams, equal numbers) and ``first[g]`` is where
    n-gram number g first occurs. Built exactly and on demand, one sort per n: an
    (n-1)-gram's number and the next word's number make the n-gram's key."""

    def __init__(self, words: tuple[str, ...]):
        if len(_WORD_IDS) > 1_000_000:
            _WORD_IDS.clear()
        self.word_ids = np.fromiter(map(_WORD_IDS.__getitem__, words), dtype=np.int64, count=len(words))
        self.base = int(self.word_ids.max(initial=0)) + 1
        self.levels: dict[int, tuple[np.ndarray, np.ndarray]] = {1: (self.word_ids, np.empty(0, np.int64))}

    def __contains__(self, n: int) -> bool:
        return len(self.word_ids) - n + 1 > 0

    def __getitem__(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        k = max(k for k in self.levels if k <= n)
        ids = self.levels[k][0]
        for level in range(k + 1, n + 1):
            m = len(self.word_ids) - level + 1
            _, first, ids = np.unique(ids[:m] * self.base + self.word_ids[level - 1:], return_index=True, return_inverse=True)
            self.levels[level] = (ids, first)
        return self.levels[n]


def _top_ngram_chars(grams: tuple[np.ndarray, np.ndarray], n: int, cum_len: np.ndarray) -> int:
    """Characters of the most frequent n-gram (words joined by single spaces) times its
    count; ties go to the n-gram seen first."""
    ids, first = grams
    counts = np.bincount(ids)
    top = counts.max()
    start = int(first[counts == top].min())
    return int(cum_len[start + n] - cum_len[start] + n - 1) * int(top)


def _dup_ngram_chars(grams: tuple[np.ndarray, np.ndarray], n: int, cum_len: np.ndarray) -> int:
    """Characters (words joined without spaces) in repeated n-grams, scanning left to right
    and jumping past each repeat so overlapping repeats are not counted twice (datatrove's
    order). Only the positions of repeats are visited in Python."""
    ids, first = grams
    repeats = np.flatnonzero(first[ids] != np.arange(len(ids)))
    if len(repeats) == 0:
        return 0
    gram_list = ids.tolist()
    seen: set[int] = set()
    total = idx = 0
    for r in repeats.tolist():
        if r < idx:
            continue
        seen.update(gram_list[idx:r])  # everything between repeats is a first occurrence
        if gram_list[r] in seen:
            total += int(cum_len[r + n] - cum_len[r])
            idx = r + n
        else:
            seen.add(gram_list[r])
            idx = r + 1
    return total


@register("gopher_repetition")
class GopherRepetition(LanguageFilter):
    """Drop documents with too much repeated content: duplicate lines and paragraphs
    (by count and by characters), the most frequent 2-4-grams, and repeated 5-10-grams.
    Fractions are of the document's characters unless they say otherwise. Words and
    thresholds follow ``meta.lang`` as in ``gopher_quality``."""

    def __init__(
        self,
        dup_line_frac: float | None = 0.3,
        dup_para_frac: float | None = 0.3,
        dup_line_char_frac: float | None = 0.2,
        dup_para_char_frac: float | None = 0.2,
        top_n_grams: list[tuple[int, float]] = ((2, 0.2), (3, 0.18), (4, 0.16)),
        dup_n_grams: list[tuple[int, float]] = ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)),
        language: str | None = None,
        languages: dict | None = None,
        text_key: str = "text",
    ):
        super().__init__()
        for key in ("dup_line_frac", "dup_para_frac", "dup_line_char_frac", "dup_para_char_frac"):
            number(f"gopher_repetition.{key}", locals()[key], 0, 1, optional=True)
        for key, pairs in (("top_n_grams", top_n_grams), ("dup_n_grams", dup_n_grams)):
            if not isinstance(pairs, (list, tuple)) or \
                    not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in pairs):
                raise ValueError(f"gopher_repetition.{key} must be a list of [n, fraction] pairs, got {pairs!r}")
            for n, frac in pairs:
                number(f"gopher_repetition.{key} n", n, 2, integer=True)
                number(f"gopher_repetition.{key} fraction", frac, 0, 1)
        self.dup_line_frac, self.dup_para_frac = dup_line_frac, dup_para_frac
        self.dup_line_char_frac, self.dup_para_char_frac = dup_line_char_frac, dup_para_char_frac
        self.top_n_grams = sorted((int(n), float(f)) for n, f in top_n_grams)
        self.dup_n_grams = sorted((int(n), float(f)) for n, f in dup_n_grams)
        if any(n < 2 for n, _ in self.top_n_grams + self.dup_n_grams):
            raise ValueError("n-gram sizes must be at least 2")
        self.text_key = text_key
        self.language = language or "en"
        self.router = LanguageRouter(self, locals(), language, languages)

    def reason_in_language(self, doc):
        text = doc.get(self.text_key) or ""
        if not text:
            return "empty"
        size = len(text)
        paragraphs = _PARAGRAPHS.split(text.strip())
        n_dup, dup_chars = dup_count_and_chars(paragraphs)
        if self.dup_para_frac and n_dup / len(paragraphs) > self.dup_para_frac:
            return f"dup_para_frac {fmt_number(n_dup / len(paragraphs))} > {self.dup_para_frac}"
        if self.dup_para_char_frac and dup_chars / size > self.dup_para_char_frac:
            return f"dup_para_char_frac {fmt_number(dup_chars / size)} > {self.dup_para_char_frac}"
        lines = _LINES.split(text)
        n_dup, dup_chars = dup_count_and_chars(lines)
        if self.dup_line_frac and n_dup / len(lines) > self.dup_line_frac:
            return f"dup_line_frac {fmt_number(n_dup / len(lines))} > {self.dup_line_frac}"
        if self.dup_line_char_frac and dup_chars / size > self.dup_line_char_frac:
            return f"dup_line_char_frac {fmt_number(dup_chars / size)} > {self.dup_line_char_frac}"

        words = split_words(text, self.language)
        grams = NGramIds(words)
        cum_len = np.zeros(len(words) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, words), dtype=np.int64, count=len(words)), out=cum_len[1:])
        for n, frac in self.top_n_grams:
            value = _top_ngram_chars(grams[n], n, cum_len) / size if n in grams else 0.0
            if value > frac:
                return f"top_{n}_gram_char_frac {fmt_number(value)} > {frac}"
        for n, frac in self.dup_n_grams:
            chars = _dup_ngram_chars(grams[n], n, cum_len) if n in grams else 0
            if chars / size > frac:
                return f"dup_{n}_gram_char_frac {fmt_number(chars / size)} > {frac}"
            if chars == 0:
                break  # no n-gram repeats, so no longer one can
        return None
