"""The ``select`` step against a brute-force reference on real prompts (../shared SFT data)."""
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from curate.dedup.minhash import minhash_signatures
from curate.dedup.normalize import normalize_words
from experiments.steps import build_step
from curate.record import Document


def _prompts(shared, n_each=250):
    alpaca = json.loads((shared / "data/sft/alpaca_en_demo.json").read_text())[:n_each]
    texts = [r["instruction"] for r in alpaca]
    lines = (shared / "data/sft/v1_sft_demo.jsonl").read_text().splitlines()[:n_each]
    texts += [json.loads(line)["messages"][0]["content"][0]["value"] for line in lines]
    return texts


def _docs(texts, seed=0):
    # Scores on a coarse grid, so ties happen and tie-breaking is exercised.
    scores = np.round(np.random.default_rng(seed).uniform(0, 1, len(texts)), 1)
    return [Document(f"p{i}", t, meta={"s": float(s), "q": float(i % 3)}) for i, (t, s) in enumerate(zip(texts, scores))]


def _run(step, docs, tmp_path, n_shards=3):
    tmp_path.mkdir(parents=True, exist_ok=True)
    shards = np.array_split(np.arange(len(docs)), n_shards)
    for s, idx in enumerate(shards):
        step.index([docs[i] for i in idx], s, tmp_path)
    figures = step.reduce(tmp_path, n_shards)
    kept, removed = [], []
    for s, idx in enumerate(shards):
        k, r = step.apply([docs[i] for i in idx], s, tmp_path)
        kept += k
        removed += r
    return figures, kept, removed


def _reference(scores, sim, radius, n_keep):
    """Brute force: visit by (-score, index); keep when no kept one is closer than radius."""
    kept = []
    for i in sorted(range(len(scores)), key=lambda i: (-scores[i], i)):
        if scores[i] != float("-inf") and len(kept) < n_keep and all(sim[i, j] <= radius for j in kept):
            kept.append(i)
    return sorted(kept)


def _components(sim, radius):
    n, label = len(sim), list(range(len(sim)))
    def find(x):
        while label[x] != x:
            x = label[x]
        return x
    for i, j in zip(*np.nonzero(np.triu(sim > radius, 1))):
        label[find(i)] = find(j)
    groups = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def test_select_minhash_radius_matches_brute_force(shared, tmp_path):
    texts = _prompts(shared)
    docs = _docs(texts)
    radius = 0.5
    step = build_step({"step": "select", "key": "s", "top_fraction": 1.0, "radius": radius})
    figures, kept, removed = _run(step, docs, tmp_path)
    sig = minhash_signatures([normalize_words(t) for t in texts], 128, 3, 1, normalized=True)
    sim = (sig[:, None, :] == sig[None, :, :]).mean(-1)  # every pair, no LSH
    scores = [d.meta["s"] for d in docs]
    index = {d.id: i for i, d in enumerate(docs)}
    got = sorted(index[d.id] for d in kept)
    assert got == _reference(scores, sim, radius, len(docs))
    assert len(removed) >= 100  # the templated self-introduction prompts are close to each other
    # never two kept examples closer than the radius
    sub = sim[np.ix_(got, got)]
    assert (sub[~np.eye(len(got), dtype=bool)] <= radius).all()
    # the highest-scoring example (first on ties) of each close group is kept
    groups = _components(sim, radius)
    assert len(groups) >= 5
    for g in groups:
        assert min(g, key=lambda i: (-scores[i], i)) in got
    # every skipped example names a kept, at-least-as-good example it is too close to
    for r in removed:
        i, j = index[r.doc.id], index[r.extra["close_to"]]
        assert j in got and scores[j] >= scores[i]
        assert r.extra["closeness"] == pytest.approx(sim[i, j], abs=1e-4) and sim[i, j] > radius
        assert r.extra["score"] == scores[i] and r.reason.startswith(f"too close to p{j}:")
    assert figures["kept"] == len(kept) and figures["skipped_too_close"] == len(removed)


def test_select_top_n_weighted_sum_and_missing_scores(shared, tmp_path):
    texts = _prompts(shared, 60)
    docs = _docs(texts, seed=1)
    docs[5].meta.pop("q")
    step = build_step({"step": "select", "weights": {"s": 1.0, "q": 0.25}, "top_n": 30, "radius": 0.5})
    figures, kept, removed = _run(step, docs, tmp_path)
    sig = minhash_signatures([normalize_words(t) for t in texts], 128, 3, 1, normalized=True)
    sim = (sig[:, None, :] == sig[None, :, :]).mean(-1)
    scores = [d.meta["s"] + 0.25 * d.meta["q"] if "q" in d.meta else float("-inf") for d in docs]
    assert sorted(int(d.id[1:]) for d in kept) == _reference(scores, sim, 0.5, 30)
    reasons = {r.doc.id: r.reason for r in removed}
    assert reasons["p5"] == "1*s + 0.25*q missing" and figures["missing_score"] == 1
    assert sum(x.startswith("1*s + 0.25*q ") and "not in the top 30" in x for x in reasons.values()) >= 1
    # without a radius: exactly the top 30 by score, ties by input order
    plain = build_step({"step": "select", "weights": {"s": 1.0, "q": 0.25}, "top_n": 30})
    _, kept, _ = _run(plain, docs, tmp_path / "plain")
    assert [d.id for d in kept] == [f"p{i}" for i in sorted(sorted(range(len(docs)), key=lambda i: (-scores[i], i))[:30])]


def test_select_cosine_with_a_model_never_keeps_close_pairs(shared, tmp_path, torch_one_thread):
    import torch

    from train.model import Llama, LlamaConfig
    from train.tokenizer import Tokenizer

    tok_path = shared / "models/sentencepiece-32k-llama-style.model"
    tok = Tokenizer.from_file(tok_path)
    torch.manual_seed(0)
    model = Llama(LlamaConfig(dim=32, n_layers=2, n_heads=2, n_kv_heads=1, vocab_size=tok.vocab_size,
                              multiple_of=16, max_seq_len=256))
    model.save(tmp_path / "m")
    texts = _prompts(shared, 40)
    docs = _docs(texts, seed=2)
    radius = 0.9
    step = build_step({"step": "select", "key": "s", "top_fraction": 1.0, "radius": radius,
                       "model": str(tmp_path / "m"), "tokenizer": str(tok_path), "batch_size": 7})
    _, kept, removed = _run(step, docs, tmp_path / "work")
    with torch.no_grad():  # one text at a time: no padding, no batching
        emb = []
        for t in texts:
            h = model(torch.tensor([tok.encode(t, bos=True)[:256]]), return_hidden=True)[0].mean(0)
            emb.append((h / h.norm()).numpy())
    emb = np.stack(emb)
    sim = emb @ emb.T
    got = sorted(int(d.id[1:]) for d in kept)
    assert removed and got == _reference([d.meta["s"] for d in docs], sim, radius, len(docs))


def test_select_in_a_pipeline_writes_removed_with_close_to(shared, tmp_path):
    from curate.pipeline.runner import run_pipeline

    texts = _prompts(shared, 40)
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": d.id, "text": d.text, **d.meta}) + "\n" for d in _docs(texts)))
    stats = run_pipeline({"inputs": [str(src)], "steps": [{"step": "select", "key": "s", "top_n": 60, "radius": 0.5}],
                          "output": {"dir": str(tmp_path / "out")}}, workers=1)
    removed = pq.read_table(tmp_path / "out/removed").to_pylist()
    assert stats["read"] == 80 and stats["written"] + len(removed) == 80
    close = [json.loads(r["extra"]) for r in removed if r["reason"].startswith("too close")]
    assert close and all(c["close_to"].startswith("p") and c["closeness"] > 0.5 for c in close)


@pytest.mark.parametrize("bad,msg", [({"top_n": 3}, "exactly one of key or weights"),
                                      ({"key": "s"}, "exactly one of top_n or top_fraction"),
                                      ({"key": "s", "top_n": 3, "radius": 1.5}, "radius must be in"),
                                      ({"key": "s", "top_fraction": 0}, "top_fraction in"),
                                      ({"key": "s", "top_n": 3, "model": "/nonexistent"}, "not a model folder")])
def test_select_config_errors(bad, msg):
    with pytest.raises(ValueError, match=msg):
        build_step({"step": "select", **bad})
