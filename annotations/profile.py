"""Profile each vendor: counts, lengths, diversity, duplicates, overlap, languages,
check failures, and the worst examples per check. The result is a JSON-ready dict
(see :func:`profile_vendors`) that :mod:`annotations.report` renders as HTML.

Definitions (the numbers in the report mean exactly this):

* read = kept + removed + rejected. Rejected: could not be parsed (parse checks).
  Removed: failed an ``error`` check. Kept: the rest (warnings included).
* prompt length: words (whitespace-split) or tokens of the last user turn; answer
  length: of each answer (every assistant turn; chosen and rejected both count).
* distinct-n: distinct word n-grams / all word n-grams over a vendor's answers
  (lowercased ``\\w+`` words); type/token ratio is distinct-1 by another name, over
  the same words. Both fall as a vendor sends more text, so compare like sizes.
* exact duplicate rate: share of records whose normalized prompt repeats an earlier
  one of the same vendor. Overlap ``M[a][b]``: share of vendor a's records whose prompt
  has a near-duplicate (estimated Jaccard >= threshold of word 3-gram sets, curate.dedup MinHash) in vendor b;
  the diagonal counts partners within the vendor (its near-duplicate rate).
* failure rate of a check: records (or rejects, for parse checks) failing it / read.
* language: fastText lid.176 on the first answer; ``und`` when less sure than 0.5.
* scores (``scorers``, e.g. a reward model): each record's taught answer (the last
  assistant turn, or ``chosen``) given its prompt; for preference pairs also
  ``rejected``, and the agreement: share of pairs where chosen scores higher.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np

from annotations import overlap
from annotations.checks import CHECKS, Checker
from annotations.records import prompt_text, render
from annotations.vendors import VendorData
from curate.scoring.models import load_fasttext
from curate.scoring.quality import hq_probability, normalize
from train.api import ifd_scores, load_model
from train.reward import RewardModel, score
from train.tokenizer import Tokenizer

LENGTH_EDGES = [0] + [2**k for k in range(16)]  # log2 bins, in words or tokens
SCORE_BINS = 20
# (prompt message lists, answers) -> one score per answer; NaN where it cannot score
Scorer = Callable[[list[list[dict]], list[str]], list[float]]
WORDS = re.compile(r"\w+")


def _stats(values: list[int]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    a = np.asarray(values)
    return {"n": len(a), "mean": round(float(a.mean()), 2), "p10": float(np.percentile(a, 10)),
            "p50": float(np.median(a)), "p90": float(np.percentile(a, 90)), "max": int(a.max()),
            "histogram": np.histogram(np.clip(a, 0, LENGTH_EDGES[-1] - 1), bins=LENGTH_EDGES)[0].tolist()}


def _distinct(words: list[str], n: int) -> float:
    total = len(words) - n + 1
    return round(len(set(zip(*(words[i:] for i in range(n))))) / total, 4) if total > 0 else 0.0


def profile_vendors(datas: list[VendorData], lid_model: str | Path | None = None,
                    tokenizer: str | Path | None = None, threshold: float = 0.8, num_perm: int = 128,
                    seed: int = 1, max_turn_chars: int = 16_000, samples: int = 3,
                    scorers: dict[str, Scorer] | None = None) -> dict[str, Any]:
    """Profile vendors already read with :func:`annotations.vendors.read_vendor`.

    Args:
        lid_model: fastText lid.176 path; without it ``language_mismatch`` and the language
            mix are not measured (the report says so).
        tokenizer: SentencePiece ``.model`` path for token lengths; without it, words only.
        threshold, num_perm, seed: near-duplicate settings (Jaccard, MinHash permutations).
        samples: worst examples kept per check and vendor (default 3).
        scorers: name -> :data:`Scorer` (e.g. :func:`reward_model_scorer`); their score
            distributions per vendor go to ``result["scores"]``.
    """
    checker = Checker(lid_model=lid_model, max_turn_chars=max_turn_chars)
    sp = None
    if tokenizer is not None:
        import sentencepiece

        sp = sentencepiece.SentencePieceProcessor(model_file=str(tokenizer))
    names = [d.vendor.name for d in datas]
    result: dict[str, Any] = {
        "settings": {"threshold": threshold, "num_perm": num_perm, "seed": seed, "max_turn_chars": max_turn_chars,
                     "lid_model": str(lid_model) if lid_model else None,
                     "tokenizer": str(tokenizer) if tokenizer else None},
        "checks": {c.name: {"severity": c.severity, "stage": c.stage, "description": c.description}
                   for c in CHECKS.values()},
        "skipped_checks": checker.skipped,
        "vendors": {},
    }
    for data in datas:
        result["vendors"][data.vendor.name] = _profile_one(data, checker, sp, samples)

    prompts = [prompt_text(r) for d in datas for r in d.records]
    groups = [d.vendor.name for d in datas for _ in d.records]
    sigs = overlap.signatures(prompts, num_perm, seed)
    matrix = overlap.overlap_matrix(sigs, groups, names, threshold)
    result["overlap"] = {"vendors": names, "matrix": np.round(matrix, 4).tolist()}
    for k, name in enumerate(names):
        result["vendors"][name]["near_duplicate_rate"] = round(float(matrix[k, k]), 4)
    result["scores"] = {name: _score_vendors(datas, scorer) for name, scorer in (scorers or {}).items()}
    return result


def _score_vendors(datas: list[VendorData], scorer: Scorer) -> dict[str, Any]:
    per_vendor, agreement = {}, {}
    for data in datas:
        records = data.records
        taught = [r.chosen if r.kind == "preference" else (r.answers() or [""])[-1] for r in records]
        per_vendor[data.vendor.name] = np.asarray(scorer([r.prompt_messages() for r in records], taught), float)
        pairs = [r for r in records if r.kind == "preference"]
        if pairs:
            rejected = np.asarray(scorer([r.prompt for r in pairs], [r.rejected for r in pairs]), float)
            chosen = per_vendor[data.vendor.name][[i for i, r in enumerate(records) if r.kind == "preference"]]
            ok = ~(np.isnan(chosen) | np.isnan(rejected))
            agreement[data.vendor.name] = round(float((chosen[ok] > rejected[ok]).mean()), 4) if ok.any() else None
    values = np.concatenate(list(per_vendor.values()) or [np.zeros(0)])
    values = values[~np.isnan(values)]
    lo, hi = (float(values.min()), float(values.max())) if len(values) else (0.0, 1.0)
    edges = np.linspace(lo, hi if hi > lo else lo + 1, SCORE_BINS + 1)
    out: dict[str, Any] = {"edges": np.round(edges, 6).tolist(), "vendors": {}, "preference_agreement": agreement}
    for name, v in per_vendor.items():
        v = v[~np.isnan(v)]
        out["vendors"][name] = {"n": len(v), "unscored": int(len(per_vendor[name]) - len(v))}
        if len(v):
            out["vendors"][name].update({
                "mean": round(float(v.mean()), 4), "p10": round(float(np.percentile(v, 10)), 4),
                "p50": round(float(np.median(v)), 4), "p90": round(float(np.percentile(v, 90)), 4),
                "histogram": np.histogram(v, bins=edges)[0].tolist()})
    return out


def reward_model_scorer(path: str | Path) -> Scorer:
    """A :data:`Scorer` from a reward-model directory written by ``train.reward``
    (its weights and tokenizer); scores with the model's own template and max_len."""
    model = RewardModel.load(path).eval()
    tokenizer = Tokenizer.from_file(path)
    return lambda prompts, answers: score(model, tokenizer, prompts, answers)


def ifd_model_scorer(path: str | Path, tokenizer: str | Path | None = None, template: str = "llama2",
                     batch_size: int = 16, max_len: int = 1024) -> Scorer:
    """A :data:`Scorer` giving the instruction-following difficulty (:mod:`train.ifd`) of each
    taught answer given its prompt (earlier turns included) under a Llama: our checkpoint or a
    Hugging Face folder, with its own tokenizer or ``tokenizer``; answers are cut where the
    conversation reaches ``max_len`` tokens, NaN when the cut comes before the answer."""
    model = load_model(path).eval()
    tok = Tokenizer.from_file(tokenizer or path)

    def score(prompts, answers):
        convs = [{"messages": list(p) + [{"role": "assistant", "content": a}]} for p, a in zip(prompts, answers)]
        return [s.ifd if s else float("nan")
                for s in ifd_scores(model, tok, convs, template, batch_size, max_len, last_turn_only=True)]

    return score


def quality_model_scorer(path: str | Path) -> Scorer:
    """A :data:`Scorer` from a fastText quality classifier (``curate classifier train``):
    P(high quality) of each answer's text, 0 to 1; the prompt is not used."""
    model = load_fasttext(path)
    return lambda prompts, answers: hq_probability(model, [normalize(a) for a in answers])


def _profile_one(data: VendorData, checker: Checker, sp, samples: int) -> dict[str, Any]:
    records, rejects = data.records, data.rejects
    failures = [checker.run(r) for r in records]
    removed = sum(any(CHECKS[n].severity == "error" for n in f) for f in failures)
    read = data.read

    prompts = [prompt_text(r) for r in records]
    answers = [a for r in records for a in r.answers()]
    answer_words = [w for a in answers for w in WORDS.findall(a.lower())]
    norm = [overlap.normalize(p) for p in prompts]

    counts = Counter(n for f in failures for n in f) + Counter(j.check for j in rejects)
    price = data.vendor.price_per_example
    kept = len(records) - removed
    out: dict[str, Any] = {
        "files": data.files,
        "counts": {"read": read, "kept": kept, "removed": removed, "rejected": len(rejects),
                   "kinds": dict(Counter(r.kind for r in records)),
                   "annotators": len({r.annotator for r in records if r.annotator is not None})},
        "price_per_example": price,
        "cost": None if price is None else round(price * read, 2),
        "cost_per_kept": None if price is None or not kept else round(price * read / kept, 4),
        "turns": _stats([len(r.prompt) + 1 if r.kind == "preference" else len(r.messages) for r in records]),
        "lengths": {"prompt_words": _stats([len(p.split()) for p in prompts]),
                    "answer_words": _stats([len(a.split()) for a in answers])},
        "diversity": {"distinct_1": _distinct(answer_words, 1), "distinct_2": _distinct(answer_words, 2),
                      "type_token_ratio": _distinct(answer_words, 1), "words": len(answer_words)},
        "exact_duplicate_rate": round(1 - len(set(norm)) / len(norm), 4) if norm else 0.0,
        "languages": _languages(checker, records),
        "check_failures": {name: {"count": counts[name], "rate": round(counts[name] / read, 4) if read else 0.0}
                           for name in CHECKS if name not in checker.skipped},
        "worst": _worst(records, failures, rejects, samples),
    }
    if sp is not None:
        out["lengths"]["prompt_tokens"] = _stats([len(t) for t in sp.encode(prompts)])
        out["lengths"]["answer_tokens"] = _stats([len(t) for t in sp.encode(answers)])
    return out


def _languages(checker: Checker, records) -> dict[str, float] | None:
    if checker.lid is None or not records:
        return None
    langs = Counter()
    for r in records:
        answer = (r.answers() or [""])[0]
        lang, prob = checker.language(answer) if answer.strip() else ("und", 0.0)
        langs[lang if prob >= 0.5 else "und"] += 1
    return {lang: round(n / len(records), 4) for lang, n in langs.most_common()}


def _worst(records, failures, rejects, samples: int) -> dict[str, list[dict[str, Any]]]:
    """Per check, the records failing it that fail the most checks overall (ties: file order)."""
    order = sorted(range(len(records)), key=lambda i: -len(failures[i]))
    worst: dict[str, list[dict[str, Any]]] = {}
    for i in order:
        for name, detail in failures[i].items():
            picked = worst.setdefault(name, [])
            if len(picked) < samples:
                r = records[i]
                picked.append({"source": r.source, "line": r.line, "detail": detail,
                               "failed": sorted(failures[i]), "excerpt": render(r)[:1200]})
    for j in rejects:
        picked = worst.setdefault(j.check, [])
        if len(picked) < samples:
            picked.append({"source": j.source, "line": j.line, "detail": j.reason, "failed": [j.check],
                           "excerpt": j.raw})
    return worst
