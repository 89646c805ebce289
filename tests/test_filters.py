"""Heuristic filters on hand-made documents, each rule on both sides of its threshold with
the measured value worked out by hand (in the comments), plus the tokenizer against spaCy's
output and PII redaction of planted strings."""
import json

import pytest

from curate.filters.c4 import C4BadWords, C4Quality
from curate.filters.fineweb import FineWebQuality
from curate.filters.gopher import GopherQuality, GopherRepetition, _dup_ngram_chars, _top_ngram_chars
from curate.filters.keep_if import KeepIf
from curate.filters.pii import Pii
from curate.filters.simple import CharRatio, Length
from curate.filters.text import count_sentences, split_words
from experiments.steps import build_step
from curate.record import Document

# "the house with green doors": 5 words, 3+5+4+5+5 = 22 letters, stop words {the, with}.
BASE = "the house with green doors"


def doc(text, **meta):
    return Document("d", text, "test", meta)


def words(n):
    """The first n words of BASE repeated."""
    return " ".join((BASE.split() * (n // 5 + 1))[:n])


# --- tokenizer --------------------------------------------------------------------------------

def test_split_words_matches_spacy_on_hand_picked_cases():
    # Expected lists are spaCy 3 ``spacy.blank("en")`` output (datatrove's English tokenizer).
    assert list(split_words("Hello, world! Don't U.S. e.g. J. Smith well-known 3.5% $5 http://x.com/a?b=1 ... end.")) == [
        "Hello", ",", "world", "!", "Do", "n't", "U.S.", "e.g.", "J.", "Smith", "well", "-", "known", "3.5", "%",
        "$", "5", "http://x.com/a?b=1", "...", "end", "."]
    assert list(split_words("St. etc. USA. 1990s. 5km 10:30 a:b and/or 2019-2020 John's I'm cannot #tag ;) !!!")) == [
        "St.", "etc", ".", "USA", ".", "1990s", ".", "5", "km", "10:30", "a", ":", "b", "and/or", "2019", "-", "2020",
        "John", "'s", "I", "'m", "can", "not", "#", "tag", ";)", "!", "!", "!"]


def test_count_sentences_follows_the_sentencizer_rule():
    # spaCy's sentencizer splits this into 5 spans; "Mr." is one token, so no break after it.
    assert count_sentences('Hello there. Mr. Smith went. "Yes!" he said. Ok') == 5
    assert count_sentences("One. Two. Three.") == 3
    assert count_sentences("no terminal mark at all") == 1
    assert count_sentences("") == 0
    assert count_sentences("One. Two. Three. Four.", stop_at=2) == 2
    assert count_sentences("J. Smith and e.g. this") == 1  # abbreviations end nothing


# --- Gopher quality ---------------------------------------------------------------------------

def test_gopher_quality_word_count_bounds():
    f = GopherQuality()
    assert f.reason(doc(words(49))) == "words 49 < 50"
    assert f.reason(doc(words(50))) is None
    assert GopherQuality(max_doc_words=60).reason(doc(words(61))) == "words 61 > 60"
    assert GopherQuality(max_doc_words=60).reason(doc(words(60))) is None
    # Punctuation tokens are not words: 49 words + 5 full stops is still 49.
    assert f.reason(doc(words(49) + " . . . . .")) == "words 49 < 50"


def test_gopher_quality_average_word_length():
    f = GopherQuality()
    # the an of with: (3+2+2+4)/4 = 2.75 < 3
    assert f.reason(doc(" ".join(["the", "an", "of", "with"] * 13))) == "avg_word_length 2.75 < 3"
    # the and cat dog: 12/4 = 3.0, not below 3
    assert f.reason(doc(" ".join(["the", "and", "cat", "dog"] * 13))) is None
    # 3+4+15+21 = 43/4 = 10.75 > 10;  3+4+15+16 = 38/4 = 9.5 passes
    assert f.reason(doc(" ".join(["the", "with", "extraordinarily", "incomprehensibilities"] * 13))) == "avg_word_length 10.75 > 10"
    assert f.reason(doc(" ".join(["the", "with", "extraordinarily", "incomprehensible"] * 13))) is None


def test_gopher_quality_hash_and_ellipsis_ratios():
    f = GopherQuality()
    # 50 words + 6 "#" tokens: 6/56 = 0.1071 > 0.1;  5/55 = 0.0909 passes
    assert f.reason(doc(words(50) + " #" * 6)) == "hash_ratio 0.1071 > 0.1"
    assert f.reason(doc(words(50) + " #" * 5)) is None
    # "..." tokens inside the line (the line ends in a word): 6/56 and 5/55 again
    assert f.reason(doc("... " * 6 + words(50))) == "ellipsis_ratio 0.1071 > 0.1"
    assert f.reason(doc("... " * 5 + words(50))) is None


def test_gopher_quality_bullet_and_ellipsis_lines():
    f = GopherQuality()
    line = BASE
    # 10 of 10 lines start with "-": 1.0 > 0.9;  9 of 10 = 0.9 passes
    assert f.reason(doc("\n".join(["- " + line] * 10))) == "bullet_lines 1 > 0.9"
    assert f.reason(doc("\n".join(["- " + line] * 9 + [line]))) is None
    # 4 of 10 lines end with "...": 0.4 > 0.3;  3 of 10 = 0.3 passes
    # ("..." is 4 of 54 tokens, under the 0.1 ellipsis ratio)
    assert f.reason(doc("\n".join([line + " ..."] * 4 + [line] * 6))) == "ellipsis_lines 0.4 > 0.3"
    assert f.reason(doc("\n".join([line + " ..."] * 3 + [line] * 7))) is None


def test_gopher_quality_alpha_words_and_stop_words():
    f = GopherQuality()
    # 50 words with letters + 13 numbers: 50/63 = 0.7937 < 0.8;  50/62 = 0.8065 passes
    assert f.reason(doc(words(50) + " 123" * 13)) == "alpha_words 0.7937 < 0.8"
    assert f.reason(doc(words(50) + " 123" * 12)) is None
    no_stop = " ".join(["house", "green", "doors", "open", "wide"] * 10)
    assert f.reason(doc(no_stop)) == "stop_words 0 < 2"
    assert f.reason(doc("the " + no_stop)) == "stop_words 1 < 2"
    assert f.reason(doc("the with " + no_stop)) is None


# --- Gopher repetition ------------------------------------------------------------------------

def test_gopher_repetition_paragraphs_and_lines():
    f = GopherRepetition()
    a, b, c = "first paragraph here.", "second one, a bit longer than that.", "third."
    # paragraphs [a, b, a]: 1 of 3 repeats = 0.3333 > 0.3
    assert f.reason(doc(f"{a}\n\n{b}\n\n{a}")) == "dup_para_frac 0.3333 > 0.3"
    # paragraphs [a, b, c, a]: 1/4 = 0.25, but the repeat is 21 of 21+35+6+21+6 = 89 characters = 0.236 > 0.2
    text = f"{a}\n\n{b}\n\n{c}\n\n{a}"
    assert len(text) == 89
    assert f.reason(doc(text)) == "dup_para_char_frac 0.236 > 0.2"
    # lines [a, b, c, a] with single newlines: 1/4 lines, 21 of 86 characters = 0.2442 > 0.2
    text = f"{a}\n{b}\n{c}\n{a}"
    assert f.reason(doc(text)) == "dup_line_char_frac 0.2442 > 0.2"
    assert GopherRepetition(dup_line_char_frac=0.3, top_n_grams=[], dup_n_grams=[]).reason(doc(text)) is None


def test_gopher_repetition_top_ngram():
    only_top2 = dict(dup_line_frac=None, dup_para_frac=None, dup_line_char_frac=None, dup_para_char_frac=None,
                     top_n_grams=[(2, 0.2)], dup_n_grams=[])
    f = GopherRepetition(**only_top2)
    # "aa bb" occurs 3 times: 5 chars * 3 = 15 of 23 characters = 0.6522 > 0.2
    assert f.reason(doc("aa bb aa bb aa bb cc dd")) == "top_2_gram_char_frac 0.6522 > 0.2"
    # all 2-grams once: the first one, "alpha beta" (10 chars), of 56 characters = 0.1786
    text = "alpha beta gamma delta epsilon zeta eta theta iota kappa"
    assert len(text) == 56 and f.reason(doc(text)) is None
    # ... but at a threshold of 0.15 that is too much
    assert GopherRepetition(**{**only_top2, "top_n_grams": [(2, 0.15)]}).reason(doc(text)) == \
        "top_2_gram_char_frac 0.1786 > 0.15"
    # ties go to the 2-gram seen first: "x y" and "y x" both twice in "x y x y" -> "x y", 3 chars * 2
    assert _top_ngram_chars(("x", "y", "x", "y"), 2) == 6


def test_gopher_repetition_duplicate_ngrams():
    only_dup5 = dict(dup_line_frac=None, dup_para_frac=None, dup_line_char_frac=None, dup_para_char_frac=None,
                     top_n_grams=[], dup_n_grams=[(5, 0.15)])
    f = GopherRepetition(**only_dup5)
    # "one two three four five" repeats once: 3+3+5+4+4 = 19 chars of 51 = 0.3725
    text = "one two three four five one two three four five six"
    assert len(text) == 51
    assert f.reason(doc(text)) == "dup_5_gram_char_frac 0.3725 > 0.15"
    assert GopherRepetition(**{**only_dup5, "dup_n_grams": [(5, 0.4)]}).reason(doc(text)) is None
    # Overlapping repeats are skipped past: "a a a a a a" 2-grams at 0..4, repeats counted
    # at 1 (jump to 3) and 3 (jump to 5): 2 + 2 = 4 characters.
    w = ("a",) * 6
    assert _dup_ngram_chars(w, 2, list(range(7))) == 4


def test_gopher_repetition_default_passes_real_prose():
    text = ("The committee met on Tuesday to discuss the budget. Several members raised concerns about "
            "rising costs, and the chair promised a revised plan within two weeks.")
    assert GopherRepetition().reason(doc(text)) is None
    assert GopherRepetition().reason(doc("")) == "empty"


# --- C4 ---------------------------------------------------------------------------------------

FIVE = "One sentence here. Two sentences here. Three sentences here. Four sentences here. Five sentences here."


def test_c4_quality_line_rules_and_cleaned_text():
    step = C4Quality()
    text = "\n".join([
        "Menu Home About",                                # no terminal punctuation: dropped
        "Too short.",                                     # 2 words: dropped
        "Please enable Javascript to view this page.",   # javascript: dropped
        "Read our privacy policy before you sign up.",   # policy: dropped
        "A line with a citation[1] stays here.",         # kept, citation removed
        FIVE,
    ])
    cleaned, why = step.clean(text)
    assert why == ""
    assert cleaned == "A line with a citation stays here.\n" + FIVE
    assert step.counters == {"lines_removed_no_terminal_punct": 1, "lines_removed_too_few_words": 1,
                             "lines_removed_javascript": 1, "lines_removed_policy": 1, "lines_kept": 2}


def test_c4_quality_document_rules():
    step = C4Quality()
    # 4 sentences left after cleaning: 4 < 5; with a fifth it passes
    four = "One sentence here. Two sentences here. Three sentences here. Four sentences here."
    assert step.clean(four + "\nno punctuation") == (None, "sentences 4 < 5")
    assert step.clean(FIVE)[0] == FIVE
    assert step.clean(FIVE + "\nLorem ipsum dolor sit amet.") == (None, "lorem_ipsum")
    assert step.clean(FIVE + "\nThe code is {x} here.") == (None, "curly_bracket")
    # a curly bracket on a line that is dropped anyway does not matter
    assert step.clean(FIVE + "\nfunction() {")[1] == ""
    # a 1001-character word drops its line
    assert step.clean(FIVE + "\n" + "x" * 1001 + " is long.")[0] == FIVE
    kept, removed = step.process([doc(FIVE + "\nmenu"), doc(four)])
    assert [d.text for d in kept] == [FIVE] and removed[0].reason == "sentences 4 < 5"


def test_c4_badwords_whole_words_only(tmp_path):
    f = C4BadWords()
    f.setup()
    assert f.reason(doc("This class is about bass guitars.")) is None  # "ass" only inside words
    assert f.reason(doc("What an ass!")) == "badword 'ass'"
    wl = tmp_path / "words.txt"
    wl.write_text("# comment\nspinach\n")
    g = C4BadWords(words_path=str(wl))
    g.setup()
    assert g.reason(doc("I like Spinach.")) == "badword 'spinach'" and g.reason(doc("What an ass!")) is None
    keep_half = C4BadWords(words_path=str(wl), keep_fraction=0.5, seed=3)
    keep_half.setup()
    kept = sum(keep_half.reason(doc("spinach")) is None for _ in range(1000))
    assert 430 < kept < 570 and keep_half.counters["kept_with_badwords"] == kept


# --- FineWeb ----------------------------------------------------------------------------------

LONG = "this line is comfortably longer than thirty characters"


def test_fineweb_line_punctuation_and_short_lines():
    f = FineWebQuality()
    # 1 of 10 lines ends in a terminal mark: 0.1 < 0.12;  2 of 10 = 0.2 passes
    lines = [f"{LONG} number {i}" for i in range(10)]
    assert f.reason(doc("\n".join([lines[0] + "."] + lines[1:]))) == "line_punct_ratio 0.1 < 0.12"
    assert f.reason(doc("\n".join([lines[0] + ".", lines[1] + "!"] + lines[2:]))) is None
    # 3 of 4 lines have <= 30 characters: 0.75 > 0.67;  2 of 3 = 0.6667 passes
    short = ["Short one.", "Short two.", "Short three."]
    assert f.reason(doc("\n".join(short + [LONG + " is here too and ends well."]))) == "short_line_ratio 0.75 > 0.67"
    assert f.reason(doc("\n".join(short[:2] + [LONG + " is here too and ends well."]))) is None


def test_fineweb_duplicate_chars_and_list_ratio():
    f = FineWebQuality()
    a = "A sentence that ends with a full stop and is long."  # 50 characters
    b = "Another different sentence, also long enough here."  # 50 characters
    # a repeated: 50 duplicate chars of 150 non-newline chars = 0.3333 > 0.01
    assert f.reason(doc(f"{a}\n{b}\n{a}")) == "char_dup_ratio 0.3333 > 0.01"
    # list ratio: words are tokens, punctuation included. 3 newlines / (3 + 2 + 2 + 2) tokens = 0.3333 > 0.3
    text = "\n".join(["Alpha bravo.", "Hotel.", "India.", "Juliet."])
    assert FineWebQuality(short_line_thr=1.0).reason(doc(text)) == "list_ratio 0.3333 > 0.3"
    # 2 newlines / (5 + 2 + 2) tokens = 0.2222 passes
    assert FineWebQuality(short_line_thr=1.0).reason(doc("\n".join(["Alpha bravo charlie delta.", "Hotel.", "India."]))) is None
    assert f.reason(doc("\n \n")) == "empty"


# --- simple rules, keep_if ---------------------------------------------------------------------

def test_length_and_char_ratio():
    assert Length(min_words=3).reason(doc("two words")) == "words 2 < 3"
    assert Length(min_words=3, max_words=3).reason(doc("three words here")) is None
    assert Length(max_chars=5).reason(doc("123456")) == "chars 6 > 5"
    # "ab12" is 2 digits of 4 = 0.5
    assert CharRatio(max_digit_ratio=0.4).reason(doc("ab12")) == "digit_ratio 0.5 > 0.4"
    assert CharRatio(max_digit_ratio=0.5).reason(doc("ab12")) is None
    # "ABcd" 2 upper of 4;  "ab, !" 2 punctuation of 5 = 0.4
    assert CharRatio(max_uppercase_ratio=0.25).reason(doc("ABcd")) == "uppercase_ratio 0.5 > 0.25"
    assert CharRatio(min_alpha_ratio=0.5).reason(doc("ab, !")) == "alpha_ratio 0.4 < 0.5"
    with pytest.raises(ValueError, match="unknown parameter"):
        CharRatio(max_vowel_ratio=0.3)


def test_keep_if_evaluates_safely():
    k = KeepIf('quality > 0.5 and lang == "en"')
    assert k.reason(doc("x", quality=0.7, lang="en")) is None
    assert k.reason(doc("x", quality=0.3, lang="en")) == 'keep_if false: quality > 0.5 and lang == "en"'
    assert k.reason(doc("x")) is not None  # missing fields compare false
    assert KeepIf("lang in ['en', 'fr'] and not quality < 0.2").reason(doc("x", lang="fr", quality=0.5)) is None
    assert KeepIf("0.2 < scores.q <= 0.9").reason(doc("x", scores={"q": 0.9})) is None
    assert KeepIf("quality > 0.5").reason(doc("x", quality=None)) is not None  # wrong type: false, no crash
    for bad in ['__import__("os").system("true")', "quality + 1 > 2", "meta[0] > 1", "(lambda: 1)()", "a.__class__"]:
        with pytest.raises(ValueError, match="keep_if"):
            KeepIf(bad)


# --- PII ---------------------------------------------------------------------------------------

def test_pii_redacts_planted_strings_and_nothing_else(shared):
    texts = [json.loads(line)["text"] for line in open(shared / "data/pretrain/c4_demo.jsonl")][:40]
    step = build_step({"step": "pii", "phone_replacement": "[PHONE]"})
    clean = [t for t in texts if step.redact(t)[0] == t][:5]  # documents with no PII of their own
    assert len(clean) == 5
    planted = [("jane.doe+news@example.co.uk", "<EMAIL>"), ("192.168.10.254", "<IP>"),
               ("2001:db8::8a2e:370:7334", "<IP>"), ("(415) 555-0132", "[PHONE]"), ("+44 20 7946 0958", "[PHONE]")]
    docs, expected = [], []
    for t, (value, placeholder) in zip(clean, planted):
        cut = t.index(" ", len(t) // 2)
        docs.append(doc(f"{t[:cut]} contact {value} today{t[cut:]}"))
        expected.append(f"{t[:cut]} contact {placeholder} today{t[cut:]}")
    kept, removed = step.process(docs)
    assert not removed and [d.text for d in kept] == expected
    assert step.counters == {"pii_docs": 5, "pii_email": 1, "pii_ip": 2, "pii_phone": 2}


def test_pii_leaves_lookalikes_alone():
    text = ("Version 1.2.3.4.5, year 1999-2004, ISBN 978-3-16-148410-0, score 999.1.1.1, time 10:30:45, "
            "C++ std::vector, a note :: here, 5.5 million.")
    assert Pii().redact(text)[0] == text
