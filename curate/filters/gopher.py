"""Gopher's quality and repetition rules (Rae et al. 2021, "Scaling Language Models:
Methods, Analysis & Insights from Training Gopher", appendix A1), with datatrove's
default thresholds and decision order so results match ``GopherQualityFilter`` and
``GopherRepetitionFilter``. Every threshold can be set, or disabled with ``None``.
"""
from __future__ import annotations

import operator
import re
from collections import Counter
from itertools import accumulate, compress

from curate.filters.text import LETTERS, SYMBOL, WORD_KINDS, split_words
from curate.pipeline.step import Filter, register

STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
_PARAGRAPHS = re.compile(r"\n{2,}")
_LINES = re.compile(r"\n+")


def fmt_number(x: float) -> str:
    return f"{x:.4g}"


@register("gopher_quality")
class GopherQuality(Filter):
    """Drop documents that fail Gopher's quality heuristics. Words are counted without
    pure-punctuation tokens; ratios are fractions in [0, 1]."""

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
        text_key: str = "text",
    ):
        super().__init__()
        self.min_doc_words, self.max_doc_words = min_doc_words, max_doc_words
        self.min_avg_word_length, self.max_avg_word_length = min_avg_word_length, max_avg_word_length
        self.max_symbol_word_ratio = max_symbol_word_ratio
        self.max_bullet_lines_ratio = max_bullet_lines_ratio
        self.max_ellipsis_lines_ratio = max_ellipsis_lines_ratio
        self.min_alpha_words_ratio = min_alpha_words_ratio
        self.min_stop_words = min_stop_words
        self.stop_words = frozenset(STOP_WORDS if stop_words is None else stop_words)
        self.text_key = text_key

    def reason(self, doc):
        text = doc.get(self.text_key) or ""
        words = split_words(text)
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


def _ngrams(words: tuple[str, ...], n: int) -> list[tuple[str, ...]]:
    return list(zip(*(words[k:] for k in range(n))))


def _top_ngram_chars(words: tuple[str, ...], n: int) -> int:
    """Characters of the most frequent n-gram (words joined by single spaces) times its
    count; ties go to the n-gram seen first. 0 when there are fewer than n words."""
    grams = _ngrams(words, n)
    if not grams:
        return 0
    gram, count = Counter(grams).most_common(1)[0]
    return (sum(map(len, gram)) + n - 1) * count


def _dup_ngram_chars(words: tuple[str, ...], n: int, cum_len: list[int]) -> int:
    """Characters (words joined without spaces) in repeated n-grams, scanning left to right
    and jumping past each repeat so overlapping repeats are not counted twice.
    ``cum_len[i]`` is the length of the first i words joined."""
    grams = _ngrams(words, n)
    m = len(grams)
    first = dict(zip(reversed(grams), range(m - 1, -1, -1)))  # n-gram -> first position
    if len(first) == m:
        return 0
    repeats = list(compress(range(m), map(operator.ne, map(first.__getitem__, grams), range(m))))
    seen: set[tuple[str, ...]] = set()
    total = idx = 0
    for r in repeats:
        if r < idx:
            continue
        seen.update(grams[idx:r])  # everything between repeats is a first occurrence
        if grams[r] in seen:
            total += cum_len[r + n] - cum_len[r]
            idx = r + n
        else:
            seen.add(grams[r])
            idx = r + 1
    return total


@register("gopher_repetition")
class GopherRepetition(Filter):
    """Drop documents with too much repeated content: duplicate lines and paragraphs
    (by count and by characters), the most frequent 2-4-grams, and repeated 5-10-grams.
    Fractions are of the document's characters unless they say otherwise."""

    def __init__(
        self,
        dup_line_frac: float | None = 0.3,
        dup_para_frac: float | None = 0.3,
        dup_line_char_frac: float | None = 0.2,
        dup_para_char_frac: float | None = 0.2,
        top_n_grams: list[tuple[int, float]] = ((2, 0.2), (3, 0.18), (4, 0.16)),
        dup_n_grams: list[tuple[int, float]] = ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)),
        text_key: str = "text",
    ):
        super().__init__()
        self.dup_line_frac, self.dup_para_frac = dup_line_frac, dup_para_frac
        self.dup_line_char_frac, self.dup_para_char_frac = dup_line_char_frac, dup_para_char_frac
        self.top_n_grams = sorted((int(n), float(f)) for n, f in top_n_grams)
        self.dup_n_grams = sorted((int(n), float(f)) for n, f in dup_n_grams)
        if any(n < 2 for n, _ in self.top_n_grams + self.dup_n_grams):
            raise ValueError("n-gram sizes must be at least 2")
        self.text_key = text_key

    def reason(self, doc):
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

        words = split_words(text)
        for n, frac in self.top_n_grams:
            value = _top_ngram_chars(words, n) / size
            if value > frac:
                return f"top_{n}_gram_char_frac {fmt_number(value)} > {frac}"
        cum_len = [0, *accumulate(map(len, words))]
        for n, frac in self.dup_n_grams:
            chars = _dup_ngram_chars(words, n, cum_len)
            if chars / size > frac:
                return f"dup_{n}_gram_char_frac {fmt_number(chars / size)} > {frac}"
            if chars == 0:
                break  # no n-gram repeats, so no longer one can
        return None
