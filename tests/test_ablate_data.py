"""Data-recipe ablations: recipes, token budgets, config errors (no training here)."""
import json
from pathlib import Path

import numpy as np
import pytest

from curate.basics.errors import CurateError
from experiments.ablate.data import build_arms, config_from_dict
from experiments.ablate.pretrain import ArmStream

ROOT = Path(__file__).resolve().parents[1]


def _web(n=None):
    docs = [json.loads(line) for line in open(ROOT / "examples/data/c4_demo.jsonl", encoding="utf-8")]
    return docs[:n]


def _words(items):
    return np.array([len(it["text"].split()) for it in items])


def _cfg(arms, **kw):
    return config_from_dict({"source": "x.jsonl", "tokenizer": "t.model", "kind": "pretrain", "arms": arms, **kw})


def test_recipes_select_what_they_say(tmp_path):
    docs = [{**d, "score": float(i % 37)} for i, d in enumerate(_web())]  # a planted score
    arms, info = build_arms(_cfg([{"name": "all"}, {"name": "top10", "top": {"fraction": 0.1, "by": "score"}},
                                  {"name": "random10", "random": {"like": "top10"}}, {"name": "few", "size": 25}]).arms,
                            docs, _cfg([{"name": "all"}]), _words, tmp_path)
    assert arms["all"] == docs
    top = arms["top10"]
    assert len(top) == 30 and min(d["score"] for d in top) >= sorted(d["score"] for d in docs)[-30]
    target = info["random10"]["token_target"]
    assert target == _words(top).sum() and info["random10"]["tokens"] <= target
    assert info["random10"]["tokens"] > target - _words(docs).max()  # filled up to one document short
    assert {d["text"] for d in arms["random10"]} <= {d["text"] for d in docs} and arms["random10"] != top
    assert len(arms["few"]) == 25 and info["few"]["pool"] == 300


def test_top_counts_unscored_items_and_pipeline_dedup(tmp_path):
    docs = _web(40)
    docs = docs + [dict(d) for d in docs[:10]]  # ten planted exact copies
    for i, d in enumerate(docs):
        d["score"] = None if i == 3 else float(i)
    specs = [{"name": "top", "top": {"fraction": 0.5, "by": "score"}}]
    pipe = tmp_path / "dedup.yaml"
    pipe.write_text("steps:\n  - step: exact_dedup\n")
    specs.append({"name": "dedup", "pipeline": str(pipe)})
    arms, info = build_arms(specs, docs, _cfg([{"name": "top"}]), _words, tmp_path)
    assert info["top"]["unscored"] == 1 and len(arms["top"]) == round(49 * 0.5)
    assert len(arms["dedup"]) == 40 and info["dedup"]["after_pipeline"] == 40
    assert len({d["text"] for d in arms["dedup"]}) == 40


def test_degrade_shuffles_answers_between_prompts(tmp_path):
    convs = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]} for i in range(20)]
    cfg = config_from_dict({"source": "x", "tokenizer": "t", "arms": [{"name": "s", "degrade": {"shuffle_answers": True}}]})
    arms, _ = build_arms(cfg.arms, convs, cfg, lambda items: np.ones(len(items), int), tmp_path)
    pairs = [(c["messages"][0]["content"], c["messages"][1]["content"]) for c in arms["s"]]
    assert sorted(a for _, a in pairs) == sorted(f"a{i}" for i in range(20))
    assert all(q[1:] != a[1:] for q, a in pairs)  # every answer moved


def test_arm_stream_hands_out_exactly_its_budget():
    docs = [np.arange(n) for n in (50, 70, 33, 90, 41)]
    s = ArmStream(docs, seq_len=15, batch_size=2, seed=3, limit=8)  # 8 windows of 16 tokens
    assert s.windows.shape == (8, 16)
    for _ in range(4):
        inputs, targets = s.next_batch()
        assert inputs.shape == (2, 15) and (targets[:, :-1] == inputs[:, 1:]).all()
    assert s.tokens_seen == 8 * 15 and len(s.windows_seen) == 8  # one pass, every window once
    s.next_batch()  # a fifth batch starts a second epoch: repeats, no new data
    assert len(s.windows_seen) == 8 and s.epoch == 1
    with pytest.raises(CurateError, match="fewer than the 100"):
        ArmStream(docs, 15, 2, 0, limit=100)


@pytest.mark.parametrize("raw,msg", [({"mode": "steps"}, "needs `steps`"), ({"kind": "rl"}, "kind"),
                                     ({"baseline": "nope"}, "baseline"), ({"arms": [{"name": "a", "topp": 1}]}, "unknown key 'topp'"),
                                     ({"arms": [{"name": "a"}, {"name": "a"}]}, "distinct"), ({"budgets": 1}, "unknown key")])
def test_config_errors_are_one_line(raw, msg):
    with pytest.raises(CurateError, match=msg):
        config_from_dict({"source": "s", "tokenizer": "t", "arms": [{"name": "a"}], **raw})


def test_top_by_ifd_recipe_keeps_the_hardest_fitting_quarter(tmp_path, torch_one_thread):
    """`pipeline: ifd.yaml` + `top: {by: ifd}` (the sft_scores.yaml recipe) keeps the quarter with the
    highest IFD among those below 1, IFD computed straight from train.ifd; `random: {like}` matches
    its answer tokens."""
    import torch

    from train.ifd import ifd_scores
    from train.model import Llama, LlamaConfig
    from train.sft import encode, to_messages
    from train.tokenizer import train_bpe

    records = json.loads((ROOT / "examples/compare/alpaca_en_demo.json").read_text())[:80]
    convs = [to_messages(r) for r in records]
    tok = train_bpe([m["content"] for c in convs for m in c["messages"]], 400, tmp_path / "tok.model", num_threads=1)
    torch.manual_seed(0)
    model = Llama(LlamaConfig(dim=32, n_layers=1, n_heads=2, vocab_size=tok.vocab_size, multiple_of=16, max_seq_len=256))
    model.save(tmp_path / "m")
    pipe = tmp_path / "ifd.yaml"
    pipe.write_text(f"steps:\n  - step: ifd\n    model: {tmp_path / 'm'}\n    tokenizer: {tmp_path / 'tok.model'}\n"
                    f"    max_tokens: 256\n  - step: keep_if\n    expr: 'ifd < 1'\n")
    specs = [{"name": "top", "pipeline": str(pipe), "top": {"fraction": 0.25, "by": "ifd"}},
             {"name": "random", "random": {"like": "top"}}]
    cfg = config_from_dict({"source": "x", "tokenizer": "t", "arms": specs})
    sizes = lambda items: np.array([encode(it, tok, max_len=257).num_loss_tokens for it in items])  # noqa: E731
    arms, info = build_arms(cfg.arms, convs, cfg, sizes, tmp_path)
    ifd = np.array([s.ifd for s in ifd_scores(model, tok, convs, max_len=256)])
    fitting = np.flatnonzero(ifd < 1)
    want = sorted(fitting[np.argsort(-ifd[fitting], kind="stable")][: round(len(fitting) * 0.25)])
    assert info["top"]["after_pipeline"] == len(fitting) and 0 < len(fitting) < 80  # some answers do not fit
    assert [c["messages"] for c in arms["top"]] == [convs[i]["messages"] for i in want]
    assert info["random"]["tokens"] <= info["random"]["token_target"] == sizes(arms["top"]).sum()
