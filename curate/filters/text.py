"""Word and sentence splitting shared by the heuristic filters, without spaCy.

datatrove splits text with spaCy's rule-based tokenizer (``spacy.blank(lang)``) for most
languages and counts sentences with spaCy's ``sentencizer``. Tokenizing is most of those
filters' cost, so this module re-implements the same algorithm -- split on whitespace,
peel prefixes and suffixes, keep special cases and URLs whole, split the rest at infixes
-- with compact rule sets of its own, and caches the tokens of each whitespace chunk
(word frequencies are Zipfian, so almost every chunk is a cache hit):

* punctuation comes off word edges one mark at a time (``"end."`` -> ``end`` ``.``);
  runs of dots (``...``) stay one token;
* English contractions split like spaCy: ``don't`` -> ``do`` ``n't``, ``John's`` ->
  ``John`` ``'s``, but elided forms stay whole: ``banish'd``, ``on't``, ``'em``;
* hyphens between letters split (``well-known`` -> ``well`` ``-`` ``known``) in the
  languages whose spaCy rules do so;
* numbers keep their inner ``. , : /`` (``3.5``, ``1,000``, ``10:30``, ``1/2``);
* abbreviations (``U.S.``, ``e.g.``, ``Mr.``, initials like ``J.``) and URLs stay whole;
* per language (``word_rules``): elisions in fr/it/ca (``l'homme`` -> ``l'`` ``homme``),
  clitics in ro/ca, Indonesian reduplications, units kept on numbers in es/ca/nl/ro/el.

Languages written without spaces go to the segmenters in ``segmenters.py``.

Known differences from spaCy: shorter lists of abbreviations and emoticons and of each
language's exceptions, runs of quote marks (wiki bold markup), and URLs without a scheme
that spaCy's URL pattern accepts but ours does not. ``benchmarks/filter_agreement.py``
measures the agreement, per language with ``--multilingual``.
"""
from __future__ import annotations

import re
import string
import unicodedata
from functools import lru_cache
from itertools import chain

from curate.filters.segmenters import SEGMENTED, segment

# Characters of Unicode's Sentence_Terminal property (UCD PropList.txt): the marks that
# end a sentence in any script. Used for "line ends in terminal punctuation" and
# for sentence counting.
TERMINAL_PUNCTUATION = frozenset(
    "!.?\u0589\u061d\u061e\u061f\u06d4\u0700\u0701\u0702\u07f9\u0837\u0839\u083d\u083e\u0964\u0965"
    "\u104a\u104b\u1362\u1367\u1368\u166e\u1735\u1736\u17d4\u17d5\u17d6\u17d9\u17da\u1803\u1809"
    "\u1944\u1945\u1aa8\u1aa9\u1aaa\u1aab\u1b5a\u1b5b\u1b5e\u1b5f\u1b7d\u1b7e\u1c3b\u1c3c\u1c7e"
    "\u1c7f\u203c\u203d\u2047\u2048\u2049\u2e2e\u2e3c\u2e53\u2e54\u3002\ua4ff\ua60e\ua60f\ua6f3"
    "\ua6f7\ua876\ua877\ua8ce\ua8cf\ua92f\ua9c8\ua9c9\uaa5d\uaa5e\uaa5f\uaaf0\uaaf1\uabeb\ufe52"
    "\ufe56\ufe57\uff01\uff0e\uff1f\uff61\U00010a56\U00010a57\U00010f55\U00010f56\U00010f57"
    "\U00010f58\U00010f59\U00010f86\U00010f87\U00010f88\U00010f89\U00011047\U00011048\U000110be"
    "\U000110bf\U000110c0\U000110c1\U00011141\U00011142\U00011143\U000111c5\U000111c6\U000111cd"
    "\U000111de\U000111df\U00011238\U00011239\U0001123b\U0001123c\U000112a9\U0001144b\U0001144c"
    "\U000115c2\U000115c3\U000115c9\U000115ca\U000115cb\U000115cc\U000115cd\U000115ce\U000115cf"
    "\U000115d0\U000115d1\U000115d2\U000115d3\U000115d4\U000115d5\U000115d6\U000115d7\U00011641"
    "\U00011642\U0001173c\U0001173d\U0001173e\U00011944\U00011946\U00011a42\U00011a43\U00011a9b"
    "\U00011a9c\U00011c41\U00011c42\U00011ef7\U00011ef8\U00011f43\U00011f44\U00016a6e\U00016a6f"
    "\U00016af5\U00016b37\U00016b38\U00016b44\U00016e98\U0001bc9f\U0001da88"
)
TERMINAL_TUPLE = tuple(sorted(TERMINAL_PUNCTUATION))

# A "symbol word" (Gopher) is a token made only of these: ASCII punctuation, the common
# typographic and CJK marks, control characters, and sentence terminals.
_CONTROL = "".join(map(chr, [*range(0, 9), *range(11, 32), *range(127, 160)]))
SYMBOLS = frozenset(
    string.punctuation + "\u201c\u201d\u201e\u2019\u00ab\u00bb\u2013\u2014\u2026\u00b4\u3001\u3002"
    "\uff0c\uff1b\uff1a\uff1f\uff01\uff08\uff09\u3010\u3011\u300c\u300d\u300a\u300b\u3008\u3009"
    "\uff5e\uff05\uff0e\u2501\u2236\u25ba\uff11" + _CONTROL
) | TERMINAL_PUNCTUATION
_SYMBOLS_CLASS = "".join(sorted(re.escape(c) for c in SYMBOLS))
SYMBOL_WORD = re.compile(f"[{_SYMBOLS_CLASS}]+")

# The tokenizer follows spaCy's algorithm: split on whitespace, then peel prefixes and
# suffixes off each chunk, keep special cases and URLs whole, and split what is left at
# infixes. The rule lists below are a compact English subset, written for this project.
_QUOTES = "'\"\u201d\u201c`\u2018\u00b4\u2019\u201a,\u201e\u00bb\u00ab\u300c\u300d\u300e\u300f\uff08\uff09\u3014\u3015\u3010\u3011\u300a\u300b\u3008\u3009\u27e6\u27e7"
_PUNCT = ",:;!?\u00bf\u061f\u00a1()[]{}<>_#*&\u3002\uff1f\uff01\uff0c\u3001\uff1b\uff1a\uff5e\u00b7\u0964\u060c\u06d4\u061b\u066a"
_CURRENCY = "$\u00a3\u20ac\u00a5\u0e3f\u20bd\u20b9\u20a9\u20aa\u20ba\u20b1\u20b4\u20a6"
_UNITS = (
    "km km² km³ m m² m³ dm cm cm² mm ha µm nm yd in ft kg g mg µg t lb lbs oz m/s km/h kmh mph "
    "hPa Pa mbar mb MB kb KB gb GB tb TB T G M K %"
).split()
# Pictographs and other symbols (Unicode "So"): split off on every side, like punctuation.
_ICONS = "\u00a6\u00a9\u00ae\u00b0\u2100-\u214f\u2190-\u21ff\u2300-\u23ff\u2500-\u27bf\u2b00-\u2bff\U0001f000-\U0001faff"
# Like spaCy's ALPHA_LOWER / ALPHA_UPPER: Latin, Cyrillic and Greek by case; letters of
# scripts without case (Arabic, Hebrew, Devanagari, Thai, CJK ...) count as lower case.
_UNCASED = "\u0590-\u05ff\u0600-\u06ff\u0750-\u077f\u0900-\u0dff\u0e00-\u0e7f\u3040-\u30ff\u4e00-\u9fff\uac00-\ud7af"
_LOWER = "a-z\u00df-\u00f6\u00f8-\u00ff\u0101-\u017f\u0430-\u045f\u0491\u03ac-\u03ce" + _UNCASED
_UPPER = "A-Z\u00c0-\u00d6\u00d8-\u00de\u0100-\u017e\u0400-\u042f\u0490\u0386-\u03ab"
_ALPHA = r"[^\W\d_]"


def _cls(chars: str) -> str:
    return "[" + "".join(re.escape(c) for c in chars) + "]"


_PREFIX = re.compile(
    r"(?:US\$|C\$|A\$|\.\.+|…+|''|\+(?![0-9])|" + _cls("§%=—–" + _PUNCT + _QUOTES + _CURRENCY) + f"|[{_ICONS}])"
)
_UNIT_SUFFIX = r"(?<=[0-9])(?:" + "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True)) + ")"
_SUFFIX_PARTS = [
            r"\.\.+|…+|''",
            "['\u2019][sS]",
            f"[{_ICONS}]",
            _cls(_PUNCT + _QUOTES + "—–"),
            r"(?<=[0-9])\+",
            r"(?<=°[FfCcKk])\.",
            r"(?<=[0-9])" + _cls(_CURRENCY),
]
_DOT_SUFFIXES = [
    r"(?<=[0-9" + _LOWER + r"%²\-+…" + re.escape(_PUNCT + _QUOTES) + r"])\.",
    r"(?<=[" + _UPPER + "][" + _UPPER + r"])\.",
]
_LETTER_DOT_SUFFIX = r"(?<=[" + _LOWER + _UPPER + r"])\."  # Persian: only after a letter ("است)." stays whole)
_INFIX_PARTS = [
    r"\.\.+|…+",
    f"[{_ICONS}]",
    r"(?<=[0-9])[+\-*^](?=[0-9-])",
    r"(?<=[" + _LOWER + "'\"])\\.(?=[" + _UPPER + "'\"])",
    rf"(?<={_ALPHA}),(?={_ALPHA})",
    rf"(?<=[^\W_])[:<>=/](?={_ALPHA})",
]
_HYPHEN_INFIX = rf"(?<=[^\W_])(?:---|--|——|-|–|—|~)(?={_ALPHA})"
# French, Italian and Catalan split after an elided article or pronoun: l'homme -> l' homme.
_ELISION_INFIX = rf"(?<={_ALPHA}['’])(?={_ALPHA})"
_URL = re.compile(
    r"(?i:(?:https?|ftp)://|www\.)\S+"
    r"|[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
    r"|(?:[\w-]+\.)+[a-z]{2,63}(?:[/:?#]\S*)?"
)
# English contractions split only after the words spaCy's English exceptions list for each
# ending, so elided verse forms stay whole (``banish'd``, ``show'd``, ``on't``) while
# ``they'd`` -> ``they`` ``'d`` and ``don't`` -> ``do`` ``n't``.
_CONTRACTION = re.compile(r"([^\W\d_]+)(n['’]t|['’](?:m|re|ve|ll|d))", re.IGNORECASE)
_WH = "who what when where why how there that this".split()
_CONTRACTION_STEMS = {
    "n't": set("do does did is are was were has have had could would should might must need ai ca wo sha dare".split()),
    "'m": {"i"},
    "'re": {"you", "we", "they", *_WH},
    "'ve": {"i", "you", "we", "they", "could", "would", "should", "might", "must", *_WH},
    "'ll": {"i", "you", "he", "she", "it", "we", "they", *_WH},
    "'d": {"i", "you", "he", "she", "it", "we", "they", *_WH},
}
_EMOTICONS = (
    ":) :-) :)) (: (-: ): )-: :( :-( ;) ;-) (; :* :-* :P :p :D :-D =) =( =[ =] =D [: :] 8) (8 "
    "<3 </3 :/ :-/ :| :-| ^_^ ^^ xD XD :o :O -_- :'( :') :3"
).split()
_SPECIALS: dict[str, tuple[str, ...]] = {
    w + ".": (w + ".",)
    for w in (
        "Mr Mrs Ms Dr St Mt Jr Sr Inc Ltd Co Corp Bros vs Prof Gen Gov Sen Rep Rev Lt Col Capt "
        "Sgt Jan Feb Mar Apr Jun Jul Aug Sep Sept Oct Nov Dec Ala Ariz Ark Calif Colo Conn Del "
        "Fla Ga Ill Ind Kan Ky La Md Mass Mich Minn Miss Mo Neb Nev Okla Ore Pa Tenn Va Wash "
        "Wis e.g i.e a.m p.m Ph.D".split()
    )
}
# spaCy's language-neutral exceptions: single letters with a dot, emoticons, a few symbols.
_BASE_SPECIALS: dict[str, tuple[str, ...]] = {c + ".": (c + ".",) for c in "abcdefghijklmnopqrstuvwxyzäöü"}
_BASE_SPECIALS.update({s: (s,) for s in ("''", "C++", *_EMOTICONS)})
_SPECIALS.update(_BASE_SPECIALS)
_SPECIALS["and/or"] = ("and/or",)
# Clitics standing alone stay whole ("'em", "'ll"), as in spaCy; "y'all" splits after the y.
_SPECIALS.update({q + c: (q + c,) for q in "'\u2019" for c in ("em", "ll", "re", "ve", "d", "m", "s", "S", "nt")})
_SPECIALS.update({"y'all": ("y'", "all"), "Y'all": ("Y'", "all")})
_SPECIALS.update({"cannot": ("can", "not"), "Cannot": ("Can", "not"), "gonna": ("gon", "na"), "gotta": ("got", "ta"), "wanna": ("wan", "na")})
_SPECIALS.update({"Im": ("I", "m"), "Id": ("I", "d"), "Ive": ("I", "ve")})
_SPECIALS.update(
    {w + "nt": (w, "nt") for w in "do does did is are was were has have had could would should must ai".split()}
)
_SPECIALS.update({"cant": ("ca", "nt"), "wont": ("wo", "nt")})


def _english_special(chunk: str) -> tuple[str, ...] | None:
    hit = _SPECIALS.get(chunk)
    if hit is None:
        m = _CONTRACTION.fullmatch(chunk)
        if m:
            stem, ending = m.group(1), m.group(2)
            if (stem.islower() or stem.istitle()) and stem.lower() in _CONTRACTION_STEMS[ending.lower().replace("\u2019", "'")]:
                hit = (stem, ending)
    return hit


def _base_special(chunk: str) -> tuple[str, ...] | None:
    return _BASE_SPECIALS.get(chunk)


# Romanian and Catalan write clitics joined by hyphens (ro "s-a", "într-un", "sack-uri";
# ca "Assegureu-vos") or apostrophes (ca "veure'l", "se'n"); spaCy makes each a token,
# the hyphen staying with a clitic before the word and starting one after it.
_CLITIC_CHUNK = re.compile(rf"{_ALPHA}+(?:-{_ALPHA}+)+|{_ALPHA}+['’](?:l|n|s|m|t|ls|ns)")
_RO_PROCLITICS = set("s i l le de într dintr printr prin și a p n m ne te v ce c mi ți îi ni vi li nu să".split())
_RO_ENCLITICS = set("uri urile urilor ul ului ului o se a i l le mi ți și ne vă lor".split())
_CA_ENCLITICS = set("lo la los les li ho hi ne se vos nos me te m t n s l ns ls en".split())
_CA_CONTRACTIONS = {w: (w[0], w[1:]) for w in ("del", "dels", "pel", "pels", "Del", "Dels", "Pel", "Pels", "al", "als")}


def _clitics(chunk: str, proclitics: set[str], enclitics: set[str]) -> tuple[str, ...] | None:
    if not _CLITIC_CHUNK.fullmatch(chunk):
        return None
    if "-" not in chunk:
        cut = max(chunk.rfind("'"), chunk.rfind("’"))
        return chunk[:cut], chunk[cut:]
    parts = chunk.split("-")
    out = [parts[0]]
    for part in parts[1:]:
        if out[-1].lower() in proclitics:
            out[-1] += "-"
            out.append(part)
        elif part.lower() in enclitics:
            out.append("-" + part)
        else:
            out[-1] += "-" + part  # an ordinary compound stays whole
    return tuple(out) if len(out) > 1 else None


# Indonesian reduplications stay whole in spaCy's id exceptions (masing-masing, anak-anak,
# bertahun-tahun, terus-menerus); other hyphenated words split. Here: both halves share a
# stretch of at least three letters (or are the same short word).
_HYPHEN_PAIR = re.compile(r"([a-zA-Z]+)-([a-z]+)")


def _id_special(chunk: str) -> tuple[str, ...] | None:
    hit = _BASE_SPECIALS.get(chunk)
    m = _HYPHEN_PAIR.fullmatch(chunk) if hit is None else None
    if m:
        a, b = m.group(1).lower(), m.group(2)
        if a == b or any(b[i:i + 3] in a for i in range(len(b) - 2)):
            hit = (chunk,)
    return hit


def _ro_special(chunk: str) -> tuple[str, ...] | None:
    return _BASE_SPECIALS.get(chunk) or _clitics(chunk, _RO_PROCLITICS, _RO_ENCLITICS)


def _ca_special(chunk: str) -> tuple[str, ...] | None:
    return _BASE_SPECIALS.get(chunk) or _CA_CONTRACTIONS.get(chunk) or _clitics(chunk, set(), _CA_ENCLITICS)


class WordRules:
    """One language's spaCy-style rules: its special cases (a function chunk -> tokens
    or None) and its infixes (whether hyphens between letters split, and elisions)."""

    def __init__(self, special, split_hyphens: bool = True, elision: bool = False, units: bool = True,
                 more_infixes: tuple[str, ...] = (), more_prefixes: str = "", dot_after_punct: bool = True):
        self.special = special
        suffixes = _SUFFIX_PARTS + (_DOT_SUFFIXES if dot_after_punct else [_LETTER_DOT_SUFFIX])
        suffixes += [_UNIT_SUFFIX] if units else []
        self.prefix = re.compile(f"{_cls(more_prefixes)}|{_PREFIX.pattern}") if more_prefixes else _PREFIX
        self.suffix = re.compile("(?:" + "|".join(suffixes) + r")\Z")
        parts = _INFIX_PARTS + ([_HYPHEN_INFIX] if split_hyphens else []) + ([_ELISION_INFIX] if elision else [])
        parts += list(more_infixes)
        self.infix = re.compile("|".join(parts))
        self.chunks = _ChunkTokens(self)


def _split_infixes(piece: str, infix: re.Pattern) -> list[str]:
    if _URL.fullmatch(piece):
        return [piece]
    out, start = [], 0
    for m in infix.finditer(piece):
        if m.start() > start:
            out.append(piece[start : m.start()])
        if m.end() > m.start():
            out.append(m.group())
        start = m.end()
    if start < len(piece):
        out.append(piece[start:])
    return out


def _tokenize_chunk(chunk: str, rules: WordRules) -> tuple[str, ...]:
    """Tokens of one whitespace-free chunk: prefixes, middle, suffixes."""
    _special = rules.special
    prefixes: list[str] = []
    suffixes: list[str] = []
    while chunk:
        if _special(chunk) is not None:
            break
        size = len(chunk)
        m = rules.prefix.match(chunk)
        if m and m.end() < size and _special(chunk[m.end():]) is not None:
            prefixes.append(m.group())
            chunk = chunk[m.end():]
            break
        s = rules.suffix.search(chunk, m.end() if m else 0)
        if s and s.start() > 0 and _special(chunk[: s.start()]) is not None:
            suffixes.append(s.group())
            chunk = chunk[: s.start()]
            break
        if m and s and m.end() <= s.start():
            prefixes.append(m.group())
            suffixes.append(s.group())
            chunk = chunk[m.end() : s.start()]
        elif m:
            prefixes.append(m.group())
            chunk = chunk[m.end():]
        elif s:
            suffixes.append(s.group())
            chunk = chunk[: s.start()]
        if len(chunk) == size:
            break
    middle: list[str] | tuple[str, ...] = []
    if chunk:
        middle = _special(chunk) or _split_infixes(chunk, rules.infix)
    return (*prefixes, *middle, *reversed(suffixes))


class _ChunkTokens(dict):
    """chunk -> its tokens, computed on first sight (word frequencies are Zipfian, so
    nearly every lookup is a hit and runs at C speed through ``map``)."""

    def __init__(self, rules: WordRules):
        super().__init__()
        self.rules = rules

    def __missing__(self, chunk: str) -> tuple[str, ...]:
        if len(self) >= 200_000:
            self.clear()
        if chunk.isalpha():  # letters only: no prefix, suffix or infix can apply
            toks = self[chunk] = self.rules.special(chunk) or (chunk,)
        else:
            toks = self[chunk] = _tokenize_chunk(chunk, self.rules)
        return toks


# Which languages split hyphenated words and units off numbers (5km, 40%) follows
# spaCy's blank(lang) tokenizers.
ENGLISH = WordRules(_english_special)
_GENERIC = WordRules(_base_special)
_RULES = {"en": ENGLISH, **{lang: WordRules(_base_special, elision=True) for lang in ("fr", "it")},
          "ca": WordRules(_ca_special, split_hyphens=False, elision=True, units=False),
          "ro": WordRules(_ro_special, split_hyphens=False, units=False),
          **{lang: WordRules(_base_special, split_hyphens=False) for lang in ("de", "pt", "sv")},
          "fa": WordRules(_base_special, dot_after_punct=False),
          "id": WordRules(_id_special, more_infixes=(r"(?<=[a-zA-Z])-(?=[0-9])",), more_prefixes="/"),
          **{lang: WordRules(_base_special, split_hyphens=False, units=False) for lang in ("es", "nl", "el")}}


def word_rules(lang: str) -> WordRules:
    """The rule set for ``lang`` (ISO 639-1); spaCy's language-neutral rules for others."""
    return _RULES.get(lang, _GENERIC)


@lru_cache(maxsize=1024)  # a batch: every rule step of a chain reuses the split
def split_words(text: str, lang: str = "en") -> tuple[str, ...]:
    """Words and punctuation tokens of ``text``, in order, whitespace dropped, split the
    way datatrove's ``split_into_words(text, lang)`` does: spaCy's rules re-implemented
    here for languages written with spaces, the same segmenter as datatrove for zh, ja,
    ko, th and vi (``curate[multilingual]``), IndicNLP's rule for hi. The last few
    results are cached, as filters in a chain split the same text."""
    if lang in SEGMENTED:
        return segment(text, lang)
    return tuple(chain.from_iterable(map(word_rules(lang).chunks.__getitem__, text.split())))


def is_symbol_word(word: str) -> bool:
    """True when every character of ``word`` is punctuation (Gopher's "symbol" tokens)."""
    return SYMBOL_WORD.fullmatch(word) is not None


class _WordKinds(dict):
    """token -> SYMBOL (only punctuation), LETTERS (has a letter) or OTHER (digits ...)."""

    def __missing__(self, word: str) -> int:
        if len(self) >= 200_000:
            self.clear()
        has_letter = any(c.isalpha() for c in word)  # str.isalpha, as datatrove; not \w (which has "½")
        kind = self[word] = SYMBOL if is_symbol_word(word) else LETTERS if has_letter else OTHER
        return kind


SYMBOL, LETTERS, OTHER = 0, 1, 2
WORD_KINDS = _WordKinds()


def _is_punct_token(token: str) -> bool:
    return all(unicodedata.category(c).startswith("P") for c in token)


def count_sentences(text: str, stop_at: int | None = None, lang: str = "en") -> int:
    """Number of sentences in ``text`` by the sentencizer rule: a sentence ends at a
    terminal-mark token (any script's: ``.`` ``。`` ``।`` ``؟`` ...) and the next sentence
    starts at the next token that is not punctuation. Words are split for ``lang``; Thai
    has no sentence mark, so a Thai sentence is a space-separated run of text. Stops
    counting at ``stop_at`` when given (the caller only needs to know whether a minimum
    is reached). Empty text has 0 sentences."""
    if lang == "th":
        n = len(text.split())
        return n if stop_at is None else min(n, stop_at)
    tokens = split_words(text, lang)
    if not tokens:
        return 0
    n, seen_end = 1, False
    for tok in tokens:
        if tok in TERMINAL_PUNCTUATION:
            seen_end = True
        elif seen_end and not _is_punct_token(tok):
            n += 1
            seen_end = False
            if stop_at is not None and n >= stop_at:
                return n
    return n
