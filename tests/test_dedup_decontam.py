"""Decontamination: planted evaluation passages in real documents, and a hand-worked Llama 2 example."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

from curate.dedup.decontam import contamination_split, decontaminate, load_eval_files
from curate.dedup.normalize import normalize_words
from experiments.steps import build_step
from curate.record import Document


@pytest.fixture(scope="module")
def corpus(shared):
    c4 = [json.loads(line)["text"] for line in (shared / "data" / "pretrain" / "c4_demo.jsonl").open()]
    alpaca = json.loads((shared / "data" / "sft" / "alpaca_en_demo.json").read_text())
    evals = [ex["output"] for ex in alpaca if 40 <= len(ex["output"].split()) <= 120][:40]
    return c4, evals


def insert(doc: str, passage: str, rng: random.Random) -> str:
    words = doc.split()
    at = rng.randrange(len(words) + 1)
    return " ".join(words[:at] + passage.split() + words[at:])


def plant(c4, evals, seed=0):
    """Docs with a whole eval passage, docs with short fragments, and untouched docs."""
    rng = random.Random(seed)
    docs, full, fragments = list(c4[:120]), {}, {}
    for k, i in enumerate(range(0, 20, 2)):  # 10 docs hold a whole passage
        docs[i] = insert(docs[i], evals[k], rng)
        full[i] = k
    for k, i in enumerate(range(1, 41, 4)):  # 10 docs hold a fragment of 10..12 words
        length = 10 + k % 3
        words = normalize_words(evals[20 + k]).split()  # tokens as the matcher sees them
        fragments[i] = (20 + k, length)
        docs[i] = insert(docs[i], " ".join(words[5:5 + length]), rng)
    return docs, full, fragments


def test_ngram_mode_finds_planted_passages_not_short_overlaps(corpus):
    c4, evals = corpus
    docs, full, fragments = plant(c4, evals)
    result = decontaminate(docs, evals, method="ngram", ngram=13)
    flagged = {i: s for i, s in enumerate(result.doc_samples) if s}
    assert flagged == {i: [k] for i, k in full.items()}  # fragments of <= 12 words are ignored
    assert np.flatnonzero(result.fractions).tolist() == sorted(full.values())


def test_llama2_mode_min_length_boundary(corpus):
    c4, evals = corpus
    docs, full, fragments = plant(c4, evals)
    result = decontaminate(docs, evals, method="llama2", min_len=10)
    flagged = {i for i, s in enumerate(result.doc_samples) if s}
    longer = {i for i, (_, length) in fragments.items() if length > 10}  # 11 and 12 words count, 10 does not
    assert flagged == set(full) | longer
    for i, k in full.items():
        assert result.fractions[k] == 1.0  # the whole passage is inside the doc
    for i, (k, length) in fragments.items():
        expected = length / len(normalize_words(evals[k]).split()) if length > 10 else 0.0
        assert result.fractions[k] == pytest.approx(expected)


def test_llama2_hand_worked_example():
    vocab = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
             "quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()
    words = [f"{a}{b}" for a in vocab[:5] for b in vocab[:6]]  # 30 distinct tokens
    sample = " ".join(words)
    filler = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do".split()

    def doc(tokens):
        return " ".join(filler + tokens + filler)

    def swap(ts, positions):
        return [f"zz{p}" if p in positions else t for p, t in enumerate(ts)]

    train = [
        doc(swap(words[:20], {12, 15})),  # 0: 20 tokens, 2 mismatches after the first 10 -> span 0..20
        doc(words[:10]),  # 1: only 10 tokens: not longer than min_len -> nothing
        doc(swap(words, {3})),  # 2: mismatch inside the first 10 -> span starts at 4: 4..30
        doc(swap(words, {11, 13, 15, 17, 19})),  # 3: 5th mismatch at 19 -> span 0..19 (ends on last match, 18)
        doc(swap(words[:14], {13})),  # 4: trailing mismatch at 13 -> span 0..13
    ]
    expected_spans = [(0, 20), None, (4, 30), (0, 19), (0, 13)]
    for text, span in zip(train, expected_spans):
        result = decontaminate([text], [sample], method="llama2", min_len=10, skip_budget=4)
        expected = 0.0 if span is None else (span[1] - span[0]) / 30
        assert result.fractions[0] == pytest.approx(expected)
    # All five documents together: union of spans 0..30 -> 100%.
    assert decontaminate(train, [sample], method="llama2").fractions[0] == 1.0
    # The paper's split on fractions worked out by hand: 20/30, 0, 26/30, 19/30, 13/30.
    split = contamination_split(np.array([20, 0, 26, 19, 13]) / 30)
    assert split == {"clean": 1, "not_clean": 4, "not_dirty": 4, "dirty": 1}


def test_decontaminate_step_drop_flag_and_report(corpus, tmp_path):
    c4, evals = corpus
    texts, full, _ = plant(c4, evals)
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text("".join(json.dumps({"id": f"q{k}", "answer": e}) + "\n" for k, e in enumerate(evals)))
    docs = [Document(f"d{i}", t) for i, t in enumerate(texts)]
    parts = [docs[:50], docs[50:]]
    for action in ("drop", "flag"):
        step = build_step({"step": "decontaminate", "eval_files": [str(eval_file)], "eval_key": "answer",
                           "method": "llama2", "action": action, "report": str(tmp_path / "report.jsonl")})
        work = tmp_path / action
        for i, part in enumerate(parts):
            step.index(part, i, work)
        stats = step.reduce(work, 2)
        kept, removed = [], []
        for i, part in enumerate(parts):
            k, r = step.apply(part, i, work)
            kept, removed = kept + k, removed + r
        assert stats["eval_samples"] == len(evals) and stats["split"]["dirty"] == len(full)
        if action == "drop":
            assert {x.doc.id for x in removed} >= {f"d{i}" for i in full}
            assert {x.extra["eval_samples"][0] for x in removed if x.doc.id in {f"d{i}" for i in full}} == \
                {f"q{k}" for k in full.values()}
        else:
            assert not removed and sum("contamination" in d.meta for d in kept) == stats["contaminated_documents"]
    report = [json.loads(line) for line in (tmp_path / "report.jsonl").open()]
    assert [r["id"] for r in report if r["contaminated"] == 1.0] == [f"q{k}" for k in sorted(full.values())]


def test_eval_file_formats(tmp_path):
    (tmp_path / "a.txt").write_text("first sample\n\nsecond sample\n")
    (tmp_path / "b.json").write_text(json.dumps([{"q": "x", "a": "y"}, "plain"]))
    ids, texts = load_eval_files([tmp_path / "a.txt", tmp_path / "b.json"])
    assert texts == ["first sample", "second sample", "x y", "plain"]
    assert ids == ["a.txt:1", "a.txt:3", "b.json:0", "b.json:1"]
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\nnot json\n')
    from curate.basics.errors import CurateError
    with pytest.raises(CurateError, match="bad.jsonl:2"):
        load_eval_files([tmp_path / "bad.jsonl"])
