"""Words, sentences, stop words and per-language settings on real text in 26 languages
(../shared/data/multilingual), checked against the reference tokenizers where installed
(spaCy's blank(lang) rules, jieba, SudachiPy, kiwipiepy, PyThaiNLP, pyvi, IndicNLP)."""
from __future__ import annotations

import json
from collections import Counter
from functools import lru_cache

import numpy as np
import pytest

from curate.filters.gopher import GopherQuality, GopherRepetition, _dup_ngram_chars, _top_ngram_chars, NGramIds
from curate.filters.languages import language_settings, step_settings
from curate.filters.segmenters import SEGMENTED, available
from curate.filters.text import count_sentences, split_words
from experiments.steps import build_step
from curate.record import Document

LISTED = "en de fr es it pt nl ru pl tr ar hi zh ja ko th vi id".split()
ALL = LISTED + "ca cs el fa he ro sv uk".split()
# Share of spaCy's tokens curate also produces (multiset, first 25 documents of a language).
MIN_TOKEN_MATCH = 0.98


def docs_of(shared, lang: str, n: int = 40) -> list[dict]:
    lines = open(shared / "data" / "multilingual" / f"{lang}.jsonl", encoding="utf-8").read().splitlines()
    return [json.loads(x) for x in lines[:n]]


def need_segmenter(lang: str) -> None:
    if lang in SEGMENTED and not available(lang):
        pytest.skip(f"segmenter for {lang} not installed: pip install 'curate[multilingual]'")


def test_english_elided_forms_stay_whole_as_in_spacy():
    # Public-domain verse; expected tokens are spaCy 3.8 blank("en") output.
    assert list(split_words("Thou art banish'd, show'd and belov'd; on't, 'em, I'll, they'd, don't, 'tis o'er")) == [
        "Thou", "art", "banish'd", ",", "show'd", "and", "belov'd", ";", "on't", ",", "'em", ",", "I", "'ll", ",",
        "they", "'d", ",", "do", "n't", ",", "'", "tis", "o'er"]
    assert list(split_words("He'd banish’d them, 'em all; won't o'clock y'all")) == [
        "He", "'d", "banish’d", "them", ",", "'em", "all", ";", "wo", "n't", "o'clock", "y'", "all"]


@pytest.mark.parametrize("lang", [x for x in ALL if x not in ("zh", "ja", "ko", "th", "hi")])
def test_words_match_spacy_rules(shared, lang):
    need_segmenter(lang)
    nlp = spacy_blank(lang)
    total = same = 0
    for d in docs_of(shared, lang, 25):
        ref = Counter(t.text.strip() for t in nlp(d["text"]) if t.text.strip())
        total += sum(ref.values())
        same += sum((Counter(split_words(d["text"], lang)) & ref).values())
    assert same / total >= MIN_TOKEN_MATCH, f"{lang}: {same / total:.2%} of spaCy's tokens"


@lru_cache(maxsize=None)
def spacy_blank(lang: str, **config):
    spacy = pytest.importorskip("spacy", reason="spaCy is the reference tokenizer (pip install spacy)")
    if lang == "vi":
        pytest.importorskip("pyvi")
    return spacy.blank(lang, config={"nlp": {"tokenizer": dict(config)}} if config else {})


@lru_cache(maxsize=None)
def kiwi():
    from kiwipiepy import Kiwi

    return Kiwi(model_type="sbg")


def reference_tokens(lang: str, text: str) -> list[str]:
    """The segmenter datatrove uses, called through its own package (spaCy where datatrove goes through it)."""
    if lang == "zh":
        toks = [t.text for t in spacy_blank("zh", segmenter="jieba")(text)]
    elif lang == "ja":
        toks = [t.text for t in spacy_blank("ja")(text)]
    elif lang == "ko":
        toks = [text[t.start:t.end] for t in kiwi().tokenize(text)]
    elif lang == "th":
        from pythainlp.tokenize import word_tokenize

        toks = word_tokenize(text, keep_whitespace=False, engine="newmm-safe")
    else:  # hi
        indic = pytest.importorskip("indicnlp.tokenize.indic_tokenize", reason="indic-nlp-library not installed")
        toks = indic.trivial_tokenize(text, "hi")
    return [t.strip() for t in toks if t.strip()]


@pytest.mark.parametrize("lang", ["zh", "ja", "ko", "th", "hi"])
def test_words_match_the_segmenter(shared, lang):
    need_segmenter(lang)
    docs = docs_of(shared, lang, 15)
    same = sum(list(split_words(d["text"], lang)) == reference_tokens(lang, d["text"]) for d in docs)
    assert same == len(docs)


@pytest.mark.parametrize("lang,text,expected", [
    ("zh", "州168号公路，即塞拉高速公路，向东通往克洛维斯和亨廷顿湖。这是主要的南北向高速公路！它在哪里？在弗雷斯诺。", 4),
    ("ja", "日本が輸入するコルクの3分の2はポルトガル産である。おもな品目は衣類です！本当ですか？そうです。", 4),
    ("hi", "इस घटना पर चर्चा की गई थी। तुर्क अनाज को रोकना चाहते थे। रूस को रोक दिया गया था।", 3),
    ("ar", "أصبح بايتون مانينغ أول ظهير رباعي. هل هو الأكبر سناً؟ نعم هو كذلك.", 3),
    ("th", "ฝ่ายหลังดูแลการเลือกตั้ง ซึ่งราชิดาสนับสนุนนิโคลาส์ ในข้อความ", 3),
])
def test_sentences_end_at_each_scripts_marks(lang, text, expected):
    need_segmenter(lang)
    assert count_sentences(text, lang=lang) == expected  # hand-counted


@pytest.mark.parametrize("lang", [x for x in ALL if x != "en"])
def test_stop_words_counted_with_the_languages_list(shared, lang):
    """Stop-word hits per document equal a count made on the reference tokens."""
    need_segmenter(lang)
    stop = set(step_settings("gopher_quality", lang)["stop_words"])
    assert stop and stop != {"the", "be", "to", "of", "and", "that", "have", "with"}
    docs = docs_of(shared, lang, 10)
    hits = [len(stop.intersection(split_words(d["text"], lang))) for d in docs]
    assert sum(h >= 2 for h in hits) >= 0.8 * len(docs)  # real prose has stop words
    if lang in ("zh", "ja", "ko", "th", "hi"):
        ref = [len(stop.intersection(reference_tokens(lang, d["text"]))) for d in docs]
    else:
        nlp = spacy_blank(lang)
        ref = [len(stop.intersection(t.text for t in nlp(d["text"]))) for d in docs]
    assert sum(a == b for a, b in zip(hits, ref)) >= 0.9 * len(docs)


@pytest.mark.parametrize("lang", ALL)
def test_planted_repeated_lines_removed_for_that_reason(shared, lang):
    """A real document is kept; the same document with one of its sentences pasted as
    ten more lines (boilerplate) is removed by gopher_repetition for duplicate lines."""
    need_segmenter(lang)
    step = GopherRepetition()
    real = next(d["text"] for d in docs_of(shared, lang, 60)
                if step.reason(Document("r", d["text"], meta={"lang": lang})) is None)
    line = max(real.split("\n"), key=len)[:80]
    planted = real + ("\n" + line) * 10
    why = step.reason(Document("p", planted, meta={"lang": lang}))
    assert why is not None and why.startswith(("dup_line_frac", "dup_line_char_frac")), why


def test_routing_by_meta_lang_uses_that_languages_settings(shared):
    de = next(d["text"] for d in docs_of(shared, "de") if len(d["text"].split()) > 80)
    f = GopherQuality()
    assert f.reason(Document("a", de, meta={"lang": "de"})) is None
    assert f.reason(Document("b", de)).startswith("stop_words")  # no meta.lang: English stop words
    # an override per language wins over the settings file
    strict = GopherQuality(languages={"de": {"min_stop_words": 10_000}})
    assert strict.reason(Document("c", de, meta={"lang": "de"})).startswith("stop_words")
    # a language without settings falls back, and is counted
    assert f.reason(Document("d", de, meta={"lang": "xx"})) is None  # fallback has no stop-word rule
    assert f.counters["lang_fallback_xx"] == 1
    with pytest.raises(ValueError, match="languages.de"):
        build_step({"step": "gopher_quality", "languages": {"de": 3}})


def test_settings_file_covers_the_listed_languages():
    settings = language_settings()
    for lang in LISTED:
        assert settings[lang]["stop_words"], lang
    assert step_settings("gopher_quality", "de")["min_alpha_words_ratio"] == 0.774  # FineWeb-2 deu_Latn
    assert step_settings("fineweb_quality", "zh") == {"line_punct_thr": 0.106, "new_line_ratio": 0.178}
    assert step_settings("gopher_quality", "tlh") == {"min_stop_words": None}  # the fallback


def plain_dup_ngram_chars(words, n):
    """datatrove's loop over n-grams, written plainly (tuples rather than joined strings)."""
    seen, total, idx = set(), 0, 0
    while idx < len(words) - n + 1:
        gram = tuple(words[idx:idx + n])
        if gram in seen:
            total += sum(map(len, gram))
            idx += n
        else:
            seen.add(gram)
            idx += 1
    return total


def test_vectorised_ngrams_equal_the_plain_loop(shared):
    rng = np.random.default_rng(0)
    words = list(split_words(" ".join(d["text"] for d in docs_of(shared, "en", 30))))
    for _ in range(20):  # plant repeats of random spans
        i, j = sorted(rng.integers(0, len(words), 2))
        words[j:j] = words[i:i + int(rng.integers(3, 30))]
    words = tuple(words)
    cum = np.concatenate([[0], np.cumsum([len(w) for w in words])])
    grams = NGramIds(words)
    for n in range(5, 11):
        assert _dup_ngram_chars(grams[n], n, cum) == plain_dup_ngram_chars(words, n)
    for n in (2, 3, 4):
        joined = [" ".join(words[i:i + n]) for i in range(len(words) - n + 1)]
        gram, count = Counter(joined).most_common(1)[0]
        assert _top_ngram_chars(grams[n], n, cum) == len(gram) * count


def test_stats_and_inspect_break_removals_down_by_language(shared, tmp_path):
    from click.testing import CliRunner

    from curate.cli import cli
    from curate.pipeline.runner import run_pipeline

    rows = []
    for lang in ("de", "fr", "es"):
        real = docs_of(shared, lang, 1)[0]
        rows.append({"id": f"{lang}-real", "text": real["text"], "lang": lang})
        line = max(real["text"].split("\n"), key=len)[:80]
        rows.append({"id": f"{lang}-planted", "text": real["text"] + ("\n" + line) * 10, "lang": lang})
    rows.append({"id": "fi-planted", "text": "Tämä on rivi joka toistuu.\n" * 12, "lang": "fi"})
    src = tmp_path / "mixed.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    stats = run_pipeline({"inputs": [str(src)], "steps": [{"step": "gopher_repetition"}],
                          "output": {"dir": str(tmp_path / "out")}}, workers=1, quiet=True)
    step = stats["steps"][0]
    assert step["removed_by_lang"] == {"de": 1, "fr": 1, "es": 1, "fi": 1}
    assert step["counters"] == {"lang_fallback_fi": 1}  # Finnish has no settings
    res = CliRunner().invoke(cli, ["inspect", str(tmp_path / "out"), "-n", "1"])
    assert res.exit_code == 0 and "(de 1, es 1, fi 1, fr 1)" in res.output


def test_missing_segmenter_gives_a_one_line_hint(monkeypatch):
    from curate.basics.errors import CurateError
    from curate.filters import segmenters

    monkeypatch.setitem(__import__("sys").modules, "jieba", None)  # import jieba now fails
    segmenters._segmenter.cache_clear()
    try:
        with pytest.raises(CurateError, match=r"needs jieba: pip install 'curate\[multilingual\]'"):
            segmenters.segment("我们在北京大学学习。", "zh")
    finally:
        segmenters._segmenter.cache_clear()
