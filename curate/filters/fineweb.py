"""FineWeb's extra quality rules (Penedo et al. 2024, "The FineWeb Datasets"), with
datatrove's ``FineWebQualityFilter`` defaults and decision order."""
from __future__ import annotations

from curate.filters.gopher import dup_count_and_chars, fmt_number
from curate.filters.languages import LanguageFilter, LanguageRouter
from curate.filters.text import TERMINAL_TUPLE, split_words
from curate.pipeline.params import flag, number
from curate.pipeline.step import register


@register("fineweb_quality")
class FineWebQuality(LanguageFilter):
    """Drop documents whose non-empty lines mostly lack terminal punctuation, are mostly
    short, repeat each other, or that are lists (many newlines per word). Words and
    thresholds follow ``meta.lang`` as in ``gopher_quality``."""

    def __init__(
        self,
        line_punct_thr: float = 0.12,
        line_punct_exclude_zero: bool = False,
        stop_chars: list[str] | None = None,
        short_line_thr: float = 0.67,
        short_line_length: int = 30,
        char_duplicates_ratio: float = 0.01,
        new_line_ratio: float = 0.3,
        language: str | None = None,
        languages: dict | None = None,
        text_key: str = "text",
    ):
        super().__init__()
        for key in ("line_punct_thr", "short_line_thr", "char_duplicates_ratio"):
            number(f"fineweb_quality.{key}", locals()[key], 0, 1)
        number("fineweb_quality.short_line_length", short_line_length, 0, integer=True)
        number("fineweb_quality.new_line_ratio", new_line_ratio, 0)
        flag("fineweb_quality.line_punct_exclude_zero", line_punct_exclude_zero)
        self.line_punct_thr = line_punct_thr
        self.line_punct_exclude_zero = line_punct_exclude_zero
        self.stop_chars = tuple(stop_chars) if stop_chars is not None else TERMINAL_TUPLE
        self.short_line_thr = short_line_thr
        self.short_line_length = short_line_length
        self.char_duplicates_ratio = char_duplicates_ratio
        self.new_line_ratio = new_line_ratio
        self.text_key = text_key
        self.language = language or "en"
        self.router = LanguageRouter(self, locals(), language, languages)

    def reason_in_language(self, doc):
        text = doc.get(self.text_key) or ""
        lines = [ln for ln in text.split("\n") if ln.strip()]
        if not lines:
            return "empty"
        ratio = sum(1 for ln in lines if ln.endswith(self.stop_chars)) / len(lines)
        if ratio < self.line_punct_thr and not (ratio == 0 and self.line_punct_exclude_zero):
            return f"line_punct_ratio {fmt_number(ratio)} < {self.line_punct_thr}"
        ratio = sum(1 for ln in lines if len(ln) <= self.short_line_length) / len(lines)
        if ratio > self.short_line_thr:
            return f"short_line_ratio {fmt_number(ratio)} > {self.short_line_thr}"
        ratio = dup_count_and_chars(lines)[1] / max(1, len(text) - text.count("\n"))
        if ratio > self.char_duplicates_ratio:
            return f"char_dup_ratio {fmt_number(ratio)} > {self.char_duplicates_ratio}"
        n_words = len(split_words(text, self.language))
        ratio = text.count("\n") / n_words if n_words else float("inf")
        if ratio > self.new_line_ratio:
            return f"list_ratio {fmt_number(ratio)} > {self.new_line_ratio}"
        return None
