"""Language ID, the fastText quality classifier, quality_filter, perplexity and model fetching."""
import json
import math
from itertools import product

import numpy as np
import pytest

from curate.basics.errors import CurateError
from experiments.steps import build_step
from curate.record import Document
from curate.scoring.quality import QualityFilter, roc_auc, train_classifier

# (language, file, start of a sentence in it): real sentences from the SFT/preference data,
# languages identified by a human reader.
REAL_SENTENCES = [
    ("es", "sft/dpo_en_demo.json", "El Tribunal Superior (Irlanda)"),
    ("de", "sft/dpo_en_demo.json", "Abschließend möchte ich"),
    ("fi", "sft/dpo_en_demo.json", "Nyt tulevan valittavan"),
    ("ro", "sft/dpo_en_demo.json", "Abdulah Hasanagic este"),
    ("pl", "sft/kto_en_demo.json", "Na tej stronie wyrazy"),
    ("cs", "sft/kto_en_demo.json", "c) údaje ke spisům"),
    ("fr", "sft/kto_en_demo.json", "Il sera ensuite approuvé"),
]


def _strings(x):
    if isinstance(x, str):
        yield x
    elif isinstance(x, dict):
        for v in x.values():
            yield from _strings(v)
    elif isinstance(x, list):
        for v in x:
            yield from _strings(v)


def _sentence(path, prefix):
    for s in _strings(json.loads(path.read_text())):
        i = s.find(prefix)
        if i >= 0:
            return s[i:].split("\n")[0]
    raise AssertionError(f"{prefix!r} not in {path}")


def _c4(shared, n=None):
    lines = (shared / "data/pretrain/c4_demo.jsonl").read_text().splitlines()[:n]
    return [json.loads(line)["text"] for line in lines]


def test_language_id_on_real_text_in_several_languages(shared):
    lid = str(shared / "models/lid.176.ftz")
    docs = [Document(lang, _sentence(shared / "data" / f, p)) for lang, f, p in REAL_SENTENCES]
    docs += [Document("en", t) for t in _c4(shared, 5)]
    step = build_step({"step": "language", "model_path": lid, "min_score": 0.0})
    step.setup()
    kept, removed = step.process(docs)
    assert not removed
    assert [d.meta["lang"] for d in kept] == [d.id for d in docs]
    assert all(0.5 < d.meta["lang_score"] <= 1.0 for d in kept)
    # filtering: keep English only, and a score threshold
    only_en = build_step({"step": "language", "model_path": lid, "languages": ["en"]})
    kept, removed = only_en.process([Document(d.id, d.text) for d in docs])
    assert {d.id for d in kept} == {"en"} and len(removed) == len(REAL_SENTENCES)
    assert removed[0].reason == "lang es not in en"
    strict = build_step({"step": "language", "model_path": lid, "min_score": 0.99})
    _, removed = strict.process([Document("x", "ok")])
    assert removed[0].reason.startswith("lang_score ")


def test_language_model_missing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CURATE_CACHE", str(tmp_path))
    step = build_step({"step": "language"})  # building is cheap; the model loads in setup
    with pytest.raises(CurateError, match="curate models fetch lid"):
        step.setup()


def test_models_fetch_offline_error(tmp_path, monkeypatch):
    from curate.scoring.models import fetch

    monkeypatch.setenv("CURATE_CACHE", str(tmp_path))
    with pytest.raises(CurateError, match="offline"):
        fetch("lid", url="http://127.0.0.1:9/lid.176.ftz", timeout=5)  # nothing listens on port 9
    assert list(tmp_path.iterdir()) == []  # no partial file left behind


def test_roc_auc_matches_pairwise_count():
    rng = np.random.default_rng(0)
    scores = np.round(rng.random(60), 1)  # rounding makes ties
    labels = rng.random(60) < 0.4
    pos, neg = scores[labels], scores[~labels]
    pairwise = sum((p > n) + 0.5 * (p == n) for p, n in product(pos, neg)) / (len(pos) * len(neg))
    assert roc_auc(scores, labels) == pytest.approx(pairwise)


def _passages(texts, n_words=100):
    out = []
    for t in texts:
        w = t.split()
        out += [" ".join(w[i:i + n_words]) for i in range(0, len(w) - n_words // 2, n_words)]
    return out


def test_classifier_trains_on_real_data_well_above_chance(shared, tmp_path):
    # DCLM's setup in miniature: curated text (Wikipedia articles) against web text (C4).
    wiki = [line for line in (shared / "data/pretrain/wiki_demo.txt").read_text().splitlines() if line.strip()]
    pos = _passages(wiki)[:400]
    neg = _passages(_c4(shared))[:400]
    model = tmp_path / "quality.bin"
    figures = train_classifier(pos, neg, model, seed=0, bucket=100_000)
    assert figures["test"] == 160 and figures["train"] == 640
    assert figures["accuracy"] > 0.85 and figures["auc"] > 0.9  # chance is 0.5
    assert json.loads((tmp_path / "quality.bin.json").read_text())["auc"] == figures["auc"]
    # the same seed gives the same model
    again = train_classifier(pos, neg, tmp_path / "again.bin", seed=0, bucket=100_000)
    assert again["accuracy"] == figures["accuracy"] and again["auc"] == figures["auc"]

    step = build_step({"step": "quality", "model_path": str(model)})
    step.setup()
    docs = [Document(f"w{i}", t) for i, t in enumerate(pos[:20])] + [Document(f"c{i}", t) for i, t in enumerate(neg[:20])]
    kept, removed = step.process(docs)
    assert not removed and all(0.0 <= d.meta["quality"] <= 1.0 for d in kept)
    wiki_mean = np.mean([d.meta["quality"] for d in kept[:20]])
    c4_mean = np.mean([d.meta["quality"] for d in kept[20:]])
    assert wiki_mean > c4_mean + 0.3


def test_quality_filter_threshold_and_top_fraction(tmp_path):
    shards = [[Document("a", "", meta={"quality": 0.1}), Document("b", "", meta={"quality": 0.9})],
              [Document("c", "", meta={"quality": 0.5}), Document("d", "", meta={"quality": 0.9}),
               Document("e", "")]]
    top = QualityFilter(top_fraction=0.4)  # 0.4 * 5 documents = 2: b and d (0.9 each)
    for i, docs in enumerate(shards):
        top.index(docs, i, tmp_path)
    assert top.reduce(tmp_path, 2) == {"documents": 5, "kept": 2, "cutoff": 0.9}
    kept0, removed0 = top.apply(shards[0], 0, tmp_path)
    kept1, removed1 = top.apply(shards[1], 1, tmp_path)
    assert [d.id for d in kept0 + kept1] == ["b", "d"]
    assert [r.reason for r in removed0 + removed1] == ["quality 0.1 below top 0.4", "quality 0.5 below top 0.4",
                                                       "quality missing"]
    thr = QualityFilter(threshold=0.5)
    kept, removed = thr.apply(shards[1], 1, tmp_path)
    assert [d.id for d in kept] == ["c", "d"] and removed[0].reason == "quality missing"
    with pytest.raises(ValueError):
        QualityFilter()


def test_perplexity_equals_exp_mean_nll(shared, tmp_path):
    import sentencepiece as spm
    import torch
    import torch.nn.functional as F

    from train.model import Llama, LlamaConfig

    torch.manual_seed(0)
    model = Llama(LlamaConfig(dim=32, n_layers=2, n_heads=4, vocab_size=32000, multiple_of=16, max_seq_len=128))
    model.save(tmp_path / "lm")
    sp_path = shared / "models/sentencepiece-32k-llama-style.model"
    texts = ["The cat sat on the mat.", _c4(shared, 1)[0][:400], "", "Short."]
    step = build_step({"step": "perplexity", "model": str(tmp_path / "lm"), "tokenizer": str(sp_path),
                       "batch_size": 2, "max_tokens": 64})
    step.setup()
    docs, _ = step.process([Document(str(i), t) for i, t in enumerate(texts)])

    # Independent: one text at a time, no padding, SentencePiece directly.
    sp = spm.SentencePieceProcessor(model_file=str(sp_path))
    for d, text in zip(docs, texts):
        ids = ([sp.bos_id()] + sp.encode(text))[:64]
        if len(ids) < 2:
            assert d.meta["perplexity"] is None
            continue
        with torch.no_grad():
            logits = model(torch.tensor([ids]))[0]
        nll = F.cross_entropy(logits[:-1], torch.tensor(ids[1:]))
        assert d.meta["perplexity"] == pytest.approx(math.exp(float(nll)), rel=1e-4)
    # an untrained model is close to uniform over 32000 tokens
    assert 10_000 < docs[0].meta["perplexity"] < 60_000
    assert step.counters["perplexity_unscored"] == 1


def test_perplexity_rejects_a_folder_without_a_model(tmp_path):
    with pytest.raises(ValueError, match="not a model folder"):
        build_step({"step": "perplexity", "model": str(tmp_path)})
