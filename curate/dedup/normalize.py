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


class _WordTable(dict):
    """``str.translate`` table for all of Unicode, filled on first sight of each
    character: punctuation, symbols, controls and separators -> space, decimal
    digits -> ``"0"``, combining marks (what NFD splits diacritics into) -> deleted."""

    def __missing__(self, cp: int) -> str | None:
        cat = unicodedata.category(chr(cp))
        if cat[0] in "PSZ" or cat in ("Cc", "Cf"):
            value: str | None = " "
        elif cat == "Nd":
            value = "0"
        elif cat == "Mn":
            value = None
        else:
            value = chr(cp)
        self[cp] = value
        return value


_TABLE = _WordTable()


def normalize_words(text: str) -> str:
    """Lowercase, strip diacritics and punctuation, digits to ``0``; words joined by one space."""
    text = text.lower()
    if not text.isascii():
        text = unicodedata.normalize("NFD", text)
    return " ".join(text.translate(_TABLE).split())
