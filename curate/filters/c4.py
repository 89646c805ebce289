"""C4's rules (Raffel et al. 2020, section 2.2), with datatrove's ``C4QualityFilter`` and
``C4BadWordsFilter`` defaults. The quality step also rewrites the text: it keeps only
the lines that pass, like C4 and datatrove do."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from curate.basics.errors import CurateError
from curate.filters.languages import LanguageFilter, LanguageRouter
from curate.filters.text import count_sentences
from curate.pipeline.params import flag, number
from curate.pipeline.step import Step, register
from curate.record import Removed

CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
END_PUNCTUATION = (".", "?", "!", '"', "'")
POLICY_PHRASES = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
BADWORDS_EN = Path(__file__).with_name("badwords_en.txt")


@register("c4_quality")
class C4Quality(Step):
    """Keep the lines of a document that end in terminal punctuation, have at least
    ``min_words_per_line`` words, no word over ``max_word_length`` characters, and do not
    mention javascript or cookie/terms-of-use policies; drop the whole document if a kept
    line says "lorem ipsum" or has a ``{``, or if fewer than ``min_num_sentences``
    sentences remain. Set a number to -1 or a flag to False to turn that rule off.
    ``end_punctuation`` and sentence splitting follow ``meta.lang`` (``。！？`` in zh and
    ja, ``।`` in hi, ``؟`` in ar; Thai has no sentence mark, so its line rule is off and
    a Thai sentence is a space-separated run of text).
    Counters: ``lines_removed_<rule>`` and ``lines_kept``."""

    def __init__(
        self,
        remove_citations: bool = True,
        filter_no_terminal_punct: bool = True,
        min_num_sentences: int = 5,
        min_words_per_line: int = 3,
        max_word_length: int = 1000,
        filter_lorem_ipsum: bool = True,
        filter_javascript: bool = True,
        filter_curly_bracket: bool = True,
        filter_policy: bool = True,
        end_punctuation: str | list[str] = END_PUNCTUATION,
        language: str | None = None,
        languages: dict | None = None,
        text_key: str = "text",
    ):
        super().__init__()
        for key in ("remove_citations", "filter_no_terminal_punct", "filter_lorem_ipsum", "filter_javascript",
                    "filter_curly_bracket", "filter_policy"):
            flag(f"c4_quality.{key}", locals()[key])
        for key in ("min_num_sentences", "min_words_per_line", "max_word_length"):
            number(f"c4_quality.{key}", locals()[key], -1, integer=True)  # -1 turns the rule off
        self.remove_citations = remove_citations
        self.filter_no_terminal_punct = filter_no_terminal_punct
        self.min_num_sentences = min_num_sentences
        self.min_words_per_line = min_words_per_line
        self.max_word_length = max_word_length
        self.filter_lorem_ipsum = filter_lorem_ipsum
        self.filter_javascript = filter_javascript
        self.filter_curly_bracket = filter_curly_bracket
        self.filter_policy = filter_policy
        self.end_punctuation = tuple(end_punctuation)
        if text_key != "text":
            raise ValueError("c4_quality rewrites the text, so text_key must be 'text'")
        self.language = language or "en"
        self.router = LanguageRouter(self, locals(), language, languages)

    def clean(self, text: str) -> tuple[str | None, str]:
        """Return ``(cleaned_text, "")`` for a kept document or ``(None, reason)``."""
        kept: list[str] = []
        n_sentences = 0
        counters = self.counters
        for line in text.splitlines():
            line = line.strip()
            words = line.split()
            if (self.max_word_length != -1 and len(line) > self.max_word_length
                    and max(map(len, words)) > self.max_word_length):
                counters["lines_removed_too_long_word"] += 1
                continue
            if self.remove_citations:
                line = CITATION.sub("", line)
            if self.filter_no_terminal_punct and (not line.endswith(self.end_punctuation) or line.endswith("...")):
                counters["lines_removed_no_terminal_punct"] += 1
                continue
            if len(words) < self.min_words_per_line:
                counters["lines_removed_too_few_words"] += 1
                continue
            lower = line.lower()
            if self.filter_lorem_ipsum and "lorem ipsum" in lower:
                return None, "lorem_ipsum"
            if self.filter_javascript and "javascript" in lower:
                counters["lines_removed_javascript"] += 1
                continue
            if self.filter_curly_bracket and "{" in line:
                return None, "curly_bracket"
            if self.filter_policy and any(p in lower for p in POLICY_PHRASES):
                counters["lines_removed_policy"] += 1
                continue
            if n_sentences < self.min_num_sentences:
                n_sentences += count_sentences(line, stop_at=self.min_num_sentences - n_sentences, lang=self.language)
            kept.append(line)
        if n_sentences < self.min_num_sentences:
            return None, f"sentences {n_sentences} < {self.min_num_sentences}"
        counters["lines_kept"] += len(kept)
        return "\n".join(kept).strip(), ""

    def process(self, docs):
        kept, removed = [], []
        for doc in docs:
            step = self.router.pick(doc) if self.router is not None else self
            new_text, why = step.clean(doc.text)
            if new_text is None:
                removed.append(Removed(doc, self.name, why))
            else:
                doc.text = new_text
                kept.append(doc)
        return kept, removed


def load_word_list(path: str | Path) -> list[str]:
    """Words or phrases, one a line; blank lines and lines starting with ``# `` are skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise CurateError(f"cannot read word list {path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise CurateError(f"word list {path} is not UTF-8 text (byte {e.start})") from None
    words = [w.strip() for w in lines if w.strip() and not w.startswith("# ")]
    if not words:  # an empty alternation would match every document
        raise CurateError(f"word list {path} has no words")
    return words


@register("c4_badwords")
class C4BadWords(LanguageFilter):
    """Drop documents containing a listed word or phrase as a whole word (case-insensitive).
    ``words_path`` defaults to the LDNOOBW list shipped with curate for the document's
    ``meta.lang`` (English when absent; languages without a list are kept); a file given
    here applies to every language (for languages written without spaces set
    ``whole_words=False``). ``keep_fraction`` of the matching documents are kept at
    random (seeded). ``allowed_words`` are taken off the list (for zh and ja, words
    that are common inside other words, as datatrove does)."""

    def __init__(self, words_path: str | None = None, whole_words: bool = True,
                 keep_fraction: float = 0.0, seed: int = 0, allowed_words: list[str] | None = None,
                 language: str | None = None,
                 languages: dict | None = None, text_key: str = "text"):
        super().__init__()
        number("c4_badwords.keep_fraction", keep_fraction, 0, 1)
        number("c4_badwords.seed", seed, integer=True)
        self.words_path = Path(words_path) if words_path else None
        self.allowed_words = frozenset(allowed_words or ())
        self.whole_words = whole_words
        self.keep_fraction = keep_fraction
        self.seed = seed
        self.text_key = text_key
        self._regex: re.Pattern | None = None
        self.language = language or "en"
        self.router = LanguageRouter(self, locals(), language, languages)

    def setup(self):
        if self.words_path is None:
            self._regex = re.compile(r"(?!)")  # no list for this language: matches nothing
            return
        words = sorted(set(load_word_list(self.words_path)) - self.allowed_words, key=len, reverse=True)
        alternation = "|".join(re.escape(w.lower()) for w in words)
        pattern = rf"(?:\W|^)({alternation})(?:\W|$)" if self.whole_words else f"({alternation})"
        self._regex = re.compile(pattern)
        self._rng = np.random.default_rng(self.seed)

    def reason_in_language(self, doc):
        if self._regex is None:
            self.setup()
        found = self._regex.search((doc.get(self.text_key) or "").lower())
        if found is None:
            return None
        if self.keep_fraction > 0 and self._rng.uniform() < self.keep_fraction:
            self.counters["kept_with_badwords"] += 1
            return None
        return f"badword {found.group(1)!r}"
