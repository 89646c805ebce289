"""Word splitting for languages that spaCy's punctuation rules do not cover.

datatrove splits these languages with a dedicated segmenter; curate calls the same one,
installed with ``pip install 'curate[multilingual]'``:

* zh: jieba (accurate mode, as spaCy's ``zh`` tokenizer with ``segmenter = jieba``);
* ja: SudachiPy with its core dictionary, split mode A (spaCy's ``ja`` default);
* ko: kiwipiepy's ``Kiwi(model_type="sbg")`` morphemes;
* th: PyThaiNLP's ``newmm-safe`` dictionary segmenter;
* vi: pyvi's CRF syllable joiner, keeping the spaces inside a word (spaCy's ``vi``);
* hi: IndicNLP's "trivial" rule: every ASCII punctuation mark and danda is a token,
  except ``, . : /`` inside numbers; only spaces and tabs separate tokens. This is a
  rule, so it is re-implemented here and needs nothing installed.

Whitespace-only tokens are dropped and the others stripped, as datatrove does.
"""
from __future__ import annotations

import re
import string
from functools import lru_cache

from curate.basics.errors import CurateError

SEGMENTED = frozenset({"zh", "ja", "ko", "th", "vi", "hi"})
PACKAGES = {"zh": "jieba", "ja": "sudachipy", "ko": "kiwipiepy", "th": "pythainlp", "vi": "pyvi"}


def _missing(lang: str, package: str) -> CurateError:
    return CurateError(f"splitting '{lang}' text into words needs {package}: pip install 'curate[multilingual]'")


@lru_cache(maxsize=None)
def _segmenter(lang: str):
    """A function text -> raw tokens for ``lang``, built once per process."""
    try:
        if lang == "zh":
            import jieba

            jieba.setLogLevel(60)  # it logs the dictionary build at INFO
            jieba.initialize()
            return lambda text: jieba.lcut(text, cut_all=False)
        if lang == "ja":
            from sudachipy import Dictionary, SplitMode

            tok = Dictionary().create(mode=SplitMode.A)
            return lambda text: [m.surface() for part in _byte_chunks(text, 40_000) for m in tok.tokenize(part)]
        if lang == "ko":
            from kiwipiepy import Kiwi

            kiwi = Kiwi(model_type="sbg")
            long_numbers = re.compile("[0-9,]{20,}")
            # datatrove slices the original text at offsets found in the cleaned text; so do we.
            return lambda text: [text[t.start:t.end] for t in kiwi.tokenize(long_numbers.sub("", text))]
        if lang == "th":
            from pythainlp.tokenize import word_tokenize

            return lambda text: word_tokenize(text, keep_whitespace=False, engine="newmm-safe")
        if lang == "vi":
            from pyvi.ViTokenizer import ViTokenizer

            return lambda text: _vi_words(text, ViTokenizer)
    except ImportError:
        raise _missing(lang, PACKAGES[lang]) from None
    if lang == "hi":
        return _indic_words
    raise ValueError(f"no segmenter for {lang!r}")


def segment(text: str, lang: str) -> tuple[str, ...]:
    """Tokens of ``text`` in ``lang`` (one of ``SEGMENTED``), whitespace dropped."""
    return tuple(t for t in map(str.strip, _segmenter(lang)(text)) if t)


def available(lang: str) -> bool:
    """Whether the segmenter for ``lang`` can be loaded here."""
    try:
        _segmenter(lang)
    except CurateError:
        return False
    return True


def _byte_chunks(text: str, max_bytes: int) -> list[str]:
    """``text`` cut into pieces of at most ``max_bytes`` UTF-8 bytes (SudachiPy's input limit)."""
    if len(text) * 4 <= max_bytes:
        return [text]
    out, start = [], 0
    while start < len(text):
        end = min(len(text), start + max_bytes // 4)
        while end < len(text) and len(text[start:end + 256].encode()) <= max_bytes:
            end = min(len(text), end + 256)
        out.append(text[start:end])
        start = end
    return out


_INDIC_PUNCT = re.compile("([" + re.escape(string.punctuation) + "\u0964\u0965\uaaf1\uaaf0\uabeb\uabec\uabed\uabee\uabef\u1c7e\u1c7f])")
_INDIC_NUMBER = re.compile(r"(?:[0-9]+ [,.:/] )+[0-9]+")


def _indic_words(text: str) -> list[str]:
    spaced = re.sub(" +", " ", _INDIC_PUNCT.sub(r" \1 ", text.replace("\t", " "))).strip(" ")
    spaced = _INDIC_NUMBER.sub(lambda m: m.group().replace(" ", ""), spaced)
    return spaced.split(" ")


# pyvi's syllable pattern, with runs of whitespace kept as their own items.
_VI_SYLLABLE = re.compile(
    r"(\s+|[A-ZĐ]+\.|Tp\.|Mr\.|Mrs\.|Ms\.|Dr\.|ThS\.|==>|->|\.\.\.|>>|\w+://[^\s]+"
    r"|[a-zA-Z0-9_.+-]+@(?:[a-zA-Z0-9-]+\.)+[a-zA-Z0-9-]+|\d+(?:[.,_]\d+)+|[^\w\s]|\w+)"
)


def _vi_words(text: str, vi) -> list[str]:
    """Syllables joined into words where pyvi's CRF says a syllable continues a word
    (label I_W), never across punctuation, digits or a lower-to-title change."""
    syllables, gaps, gap = [], [], ""
    for item in _VI_SYLLABLE.findall(text):
        if item.isspace():
            gap = item
        else:
            syllables.append(item)
            gaps.append(gap)
            gap = ""
    if not syllables:
        return []
    labels = vi.model.predict([vi.sent2features(syllables, False)])[0]
    words = [syllables[0]]
    for i in range(1, len(syllables)):
        cur, prev = syllables[i], syllables[i - 1]
        joins = (labels[i] == "I_W" and cur not in string.punctuation and prev not in string.punctuation
                 and not cur[0].isdigit() and not prev[0].isdigit() and not (cur[0].istitle() and not prev[0].istitle()))
        if joins:
            words[-1] += gaps[i] + cur
        else:
            words.append(cur)
    return words
