"""Text normalisation for deduplication.

Two flavours:

* :func:`normalize_exact` -- for exact dedup: Unicode NFC, lowercase, runs of
  whitespace collapsed to one space (each switch configurable).
* :func:`normalize_words` -- for shingling (MinHash, decontamination), close to
  datatrove's ``simplify_text``: lowercase, diacritics stripped (NFD, combining
  marks dropped), punctuation and symbols turned into spaces, every digit
  turned into ``0``, whitespace collapsed. Returns one string of words joined
  by single spaces, so a word n-gram is a plain substring.
"""
from __future__ import annotations

import re
import sys
import unicodedata

_WS = re.compile(r"\s+")


def normalize_exact(text: str, nfc: bool = True, lowercase: bool = True, collapse_whitespace: bool = True) -> str:
    """Normalise ``text`` for exact-duplicate hashing (defaults: all switches on)."""
    if nfc and not text.isascii():
        text = unicodedata.normalize("NFC", text)
    if lowercase:
        text = text.lower()
    if collapse_whitespace:
        text = _WS.sub(" ", text).strip()
    return text


def _word_table() -> dict[int, str | None]:
    # One translate table for the whole of Unicode: punctuation/symbols -> space,
    # decimal digits -> "0", combining marks (what NFD splits diacritics into) -> deleted,
    # control and format characters -> space.
    table: dict[int, str | None] = {}
    for cp in range(sys.maxunicode + 1):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        cat = unicodedata.category(chr(cp))
        if cat[0] in "PS" or cat in ("Cc", "Cf", "Zl", "Zp", "Zs"):
            table[cp] = " "
        elif cat == "Nd":
            table[cp] = "0"
        elif cat == "Mn":
            table[cp] = None
    return table


_TABLE: dict[int, str | None] | None = None


def normalize_words(text: str) -> str:
    """Lowercase, strip diacritics and punctuation, digits to ``0``; words joined by one space."""
    global _TABLE
    if _TABLE is None:
        _TABLE = _word_table()
    text = text.lower()
    if not text.isascii():
        text = unicodedata.normalize("NFD", text)
    return " ".join(text.translate(_TABLE).split())
