"""Reward model: the margin ranking loss by hand, reading the last real token, save/load,
`curate train rm`, the `reward` pipeline step, and accuracy on real preference pairs."""
import json
import math

import pytest
import torch
import yaml
from click.testing import CliRunner

import experiments.scoring.reward  # noqa: F401  (registers the `reward` step)
from annotations.formats import read_file
from annotations.records import SFTConversation, to_document
from curate.cli.reward import rm_cmd
from experiments.steps import build_step
from train.model import Llama, get_config
from train.reward import (MARGINS, RewardModel, accuracy, collate_pairs, encode_pairs, margin_for, pair_loss_sum,
                          ranking_loss, score, split_pairs, train_reward_model)
from train.tokenizer import Tokenizer, train_bpe

TINY = dict(dim=16, n_layers=1, n_heads=2, n_kv_heads=1, multiple_of=16, max_seq_len=128)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def data(shared):
    pairs, rejects = read_file(shared / "data" / "sft" / "dpo_en_demo.json")
    assert len(pairs) == 300 and not rejects
    return {"pairs": pairs, "sp": shared / "models" / "sentencepiece-32k-llama-style.model",
            "path": shared / "data" / "sft" / "dpo_en_demo.json"}


@pytest.fixture(scope="module")
def tok(data):
    return Tokenizer.from_file(data["sp"])


def nll(x):  # -log sigmoid(x), written out
    return math.log(1 + math.exp(-x))


def test_margin_tables_and_loss_equal_hand_computed():
    ratings = ["better", "Slightly better", "significantly better", None, "unsure"]
    rc, rr = [2.0, 0.5, 1.0, 0.0, 0.3], [1.0, 1.0, 1.0, 0.0, 0.1]
    small = [margin_for(r, None, "small") for r in ratings]
    assert small == [2 / 3, 1 / 3, 1.0, 0.0, 0.0]
    assert [margin_for(r, None, "large") for r in ratings] == [2.0, 1.0, 3.0, 0.0, 0.0]
    assert margin_for("better", 0.25, "large") == 0.25  # a numeric margin is passed through
    assert margin_for("negligibly better", None, "large") == 0.0 == MARGINS["none"]["better"]
    hand = [nll(1 / 3), nll(-5 / 6), nll(-1.0), nll(0.0), nll(0.2)]
    got = ranking_loss(torch.tensor(rc), torch.tensor(rr), torch.tensor(small), "none")
    assert got.tolist() == pytest.approx(hand, abs=1e-6)
    assert ranking_loss(torch.tensor(rc), torch.tensor(rr), torch.tensor(small)).item() == pytest.approx(sum(hand) / 5, abs=1e-6)
    with pytest.raises(ValueError):
        margin_for("better", None, "huge")


def test_training_batch_loss_uses_each_pairs_rewards_and_margin(data, tok):
    torch.manual_seed(0)
    rm = RewardModel(Llama(get_config(TINY, vocab_size=tok.vocab_size))).eval()
    pairs = [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected, "rating": r}
             for p, r in zip(data["pairs"][:3], ["better", "significantly better", None])]
    enc, skipped = encode_pairs(pairs, tok, max_len=64, margin="large")
    assert not skipped and [e.margin for e in enc] == [2.0, 3.0, 0.0]
    with torch.no_grad():
        loss, n = pair_loss_sum(rm, collate_pairs(enc, tok.pad_id))
        alone = [rm(torch.tensor([ids]), torch.tensor([len(ids)])).item() for e in enc for ids in (e.chosen, e.rejected)]
    hand = sum(nll(alone[2 * i] - alone[2 * i + 1] - m) for i, m in enumerate([2.0, 3.0, 0.0]))
    assert int(n) == 3 and loss.item() == pytest.approx(hand, abs=1e-4)


def test_reward_is_read_at_the_last_real_token(tok):
    torch.manual_seed(0)
    rm = RewardModel(Llama(get_config(TINY, vocab_size=tok.vocab_size))).eval()
    prompts = [[{"role": "user", "content": "Say hi."}], "What is 2+2?"]
    answers = ["Hi there, nice to meet you!", "4"]
    batched = score(rm, tok, prompts, answers, max_len=64)
    alone = [score(rm, tok, [p], [a], max_len=64)[0] for p, a in zip(prompts, answers)]
    assert batched == pytest.approx(alone, abs=1e-5)
    bad = score(rm, tok, [[{"role": "assistant", "content": "x"}]], ["y"])  # malformed: NaN, no crash
    assert math.isnan(bad[0])


def test_save_load_keeps_scores_and_tokenizer(tok, data, tmp_path):
    torch.manual_seed(0)
    rm = RewardModel(Llama(get_config(TINY, vocab_size=tok.vocab_size)), {"max_len": 64})
    rm.save(tmp_path / "rm", tokenizer_path=data["sp"])
    back = RewardModel.load(tmp_path / "rm")
    tok2 = Tokenizer.from_file(tmp_path / "rm")
    args = ([p.prompt for p in data["pairs"][:4]], [p.chosen for p in data["pairs"][:4]])
    assert score(back, tok2, *args) == score(rm, tok, *args)
    assert back.info["max_len"] == 64


@pytest.fixture(scope="module")
def trained_rm(data, tmp_path_factory):
    """`curate train rm` on 48 real pairs with planted ratings (a small, fast run)."""
    root = tmp_path_factory.mktemp("rm")
    ratings = ["significantly better", "better", "slightly better", "unsure"]
    rows = json.loads(data["path"].read_text())[:48]
    for i, row in enumerate(rows):
        row["rating"] = ratings[i % 4]
    (root / "pairs.json").write_text(json.dumps(rows))
    cfg = {"run_dir": str(root / "run"), "tokenizer": str(data["sp"]), "data": str(root / "pairs.json"),
           "model": TINY, "max_len": 64, "margin": "small", "val_fraction": 0.25,
           "train": {"batch_size": 8, "lr": 1e-3, "device": "cpu"}}
    (root / "rm.yaml").write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(rm_cmd, [str(root / "rm.yaml")])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return root, res.output


def test_train_rm_command_defaults_and_report(trained_rm):
    root, output = trained_rm
    report = json.loads((root / "run" / "report.json").read_text())
    assert report["n_train"] == 36 and report["n_val"] == 12
    assert report["steps"] == math.ceil(36 / 8)  # one epoch by default
    assert report["config"]["warmup_ratio"] == 0.03 and report["config"]["train"]["min_lr_ratio"] == 0.1
    by = report["accuracy"]["by_rating"]
    assert sum(v["n"] for v in by.values()) == 12 and set(by) <= {"significantly better", "better",
                                                                  "slightly better", "negligibly better / unsure"}
    lrs = [json.loads(x)["lr"] for x in (root / "run" / "metrics.jsonl").read_text().splitlines() if '"lr"' in x]
    assert lrs[-1] == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 3 / 4))))  # cosine to 10%
    assert "held-out accuracy" in output
    # by-rating accuracy agrees with scoring each pair by hand
    rm = RewardModel.load(root / "run" / "model")
    tok = Tokenizer.from_file(root / "run" / "model")
    rows = json.loads((root / "pairs.json").read_text())
    pairs, _ = read_file(root / "pairs.json")
    _, val = split_pairs(pairs, 0.25, 0)
    c = score(rm, tok, [p.prompt for p in val], [p.chosen for p in val])
    r = score(rm, tok, [p.prompt for p in val], [p.rejected for p in val])
    assert report["accuracy"]["accuracy"] == pytest.approx(sum(a > b for a, b in zip(c, r)) / len(val))
    assert rows  # the file the run read


def test_reward_step_scores_and_filters_sft_examples(trained_rm, data):
    root, _ = trained_rm
    convs = [SFTConversation(messages=p.prompt + [{"role": "assistant", "content": p.chosen}], vendor="v",
                             source="s", line=i) for i, p in enumerate(data["pairs"][:6])]
    docs = [to_document(c) for c in convs]
    docs.append(to_document(SFTConversation(messages=[{"role": "user", "content": "no answer"}], line=99)))
    rm = RewardModel.load(root / "run" / "model")
    tok = Tokenizer.from_file(root / "run" / "model")
    want = score(rm, tok, [c.messages[:-1] for c in convs], [c.messages[-1]["content"] for c in convs])
    threshold = sorted(want)[3]
    step = build_step({"step": "reward", "model": str(root / "run" / "model"), "min_reward": threshold})
    kept, removed = step.process(docs)
    assert [d.meta["reward"] for d in docs[:6]] == pytest.approx(want, abs=1e-5)
    assert len(removed) == 3 and all(r.doc.meta["reward"] < threshold for r in removed)
    assert len(kept) == 4 and step.counters["reward_unscored"] == 1  # the unanswered one is kept, counted


def test_reward_model_beats_chance_on_held_out_real_pairs(data, tmp_path):
    """300 real pairs split in half: a 1000-piece BPE fitted to the training half, a 1-layer
    model, the paper's one epoch. Held-out accuracy (150 pairs) must beat 0.5 with a one-sided
    exact binomial p < 0.05 (measured: 0.60, 0.60, 0.61 for seeds 0, 1, 2)."""
    train, val = split_pairs(data["pairs"], 0.5, 0)
    texts = [m["content"] for p in train for m in p.prompt] + [p.chosen for p in train] + [p.rejected for p in train]
    tok = train_bpe(texts, 1000, tmp_path / "bpe.model")
    cfg = dict(TINY, vocab_size=tok.vocab_size, max_seq_len=128)
    rm, result = train_reward_model(train, tok, cfg, val, max_len=128, epochs=1,
                                    hyperparams={"lr": 3e-3, "batch_size": 8}, seed=0)
    acc, n = result.accuracy["accuracy"], result.accuracy["n"]
    right = round(acc * n)
    p_value = sum(math.comb(n, k) for k in range(right, n + 1)) / 2 ** n
    assert n == 150 and result.accuracy["by_rating"]["unrated"]["n"] == 150 and result.steps == math.ceil(150 / 8)
    assert p_value < 0.05, f"held-out accuracy {acc:.3f} ({right}/{n}), p = {p_value:.3f}"
