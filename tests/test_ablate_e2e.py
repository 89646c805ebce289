"""End-to-end ablations on the bundled data with a small BPE tokenizer trained here (1000 pieces,
so a CPU trains the tiny models in seconds): `curate ablate arch` and `curate ablate data`."""
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from curate.cli.ablate import ablate_group

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples/data"
TINY = {"dim": 48, "n_layers": 2, "n_heads": 4, "multiple_of": 16, "max_seq_len": 128}


def _docs():
    """(text, collection) for the bundled C4 web pages, Lee news stories and Wikipedia articles
    (the articles cut into ~80-word passages)."""
    web = [json.loads(line)["text"] for line in open(DATA / "c4_demo.jsonl", encoding="utf-8")]
    news = [line for line in open(DATA / "lee_background.cor", encoding="utf-8") if line.strip()]
    wiki = []
    for article in open(DATA / "wiki_demo.txt", encoding="utf-8"):
        words = article.split()
        wiki += [" ".join(words[i: i + 80]) for i in range(0, len(words) - 40, 80)][:10]
    return [(t, "web") for t in web] + [(t, "news") for t in news] + [(t, "encyclopedia") for t in wiki]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from train.tokenizer import train_bpe

    path = tmp_path_factory.mktemp("tok") / "tok.model"
    train_bpe((t for t, _ in _docs()), 1000, path, num_threads=1)
    return path


def _run(args):
    res = CliRunner().invoke(ablate_group, [str(a) for a in args] + ["--quiet"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return res.output


@pytest.mark.slow
def test_shuffled_answers_come_out_worse_than_clean(tokenizer, tmp_path, torch_one_thread):
    # Real texts; each prompt asks where its first 12 words come from and the answer names the collection.
    # Shuffling the answers between prompts breaks exactly that link, the planted truth.
    src = tmp_path / "where.jsonl"
    with open(src, "w", encoding="utf-8") as f:
        for text, label in _docs():
            prompt = "Where does this text come from?\n" + " ".join(text.split()[:12])
            answer = label
            f.write(json.dumps({"messages": [{"role": "user", "content": prompt},
                                             {"role": "assistant", "content": answer}]}) + "\n")
    cfg = {"kind": "sft", "source": str(src), "tokenizer": str(tokenizer), "model": TINY, "heldout_size": 120,
           "seeds": 3, "mode": "steps", "steps": 150, "n_boot": 1000, "eval_points": 2,
           "arms": [{"name": "clean"}, {"name": "shuffled", "degrade": {"shuffle_answers": True}}],
           "train": {"lr": 1e-2, "batch_size": 8, "seq_len": 96, "warmup_steps": 4, "eval_batches": 2}}
    path = tmp_path / "ablate.yaml"
    path.write_text(json.dumps(cfg))
    output = _run(["data", path, "--out", tmp_path / "out"])
    res = json.loads((tmp_path / "out/ablate.json").read_text())
    eff = res["arms"]["shuffled"]["effect"]
    assert eff["lo"] > 0 and eff["verdict"] == "worse", eff  # higher held-out loss, interval above zero
    assert res["arms"]["clean"]["effect"] is None and res["baseline"] == "clean"
    held = res["heldout"]  # decontaminated against the arms; items whose answer cannot fit seq_len are counted
    assert res["loss"]["seeds"] == 3 and res["loss"]["prompts"] == held["items"] >= 100
    assert held["items"] + held["dropped_contaminated"] + held["dropped_unscorable"] == 120
    assert re.search(r"shuffled: .* worse", output)
    assert res["arms"]["clean"]["curve"][-1][0] == res["arms"]["clean"]["trained_tokens"][0]  # x: seed 0 tokens
    assert res["arms"]["clean"]["usable"] > 700
    for f in ("ablate.html", "loss_curve.png", "effects.png"):
        assert (tmp_path / "out" / f).is_file()


@pytest.mark.slow
def test_arch_ablation_end_to_end(tokenizer, tmp_path, torch_one_thread):
    cfg = {"model": {**TINY, "dim": 32}, "kv_heads": [4, 2, 1], "text": [str(DATA / "lee_background.cor")],
           "tokenizer": str(tokenizer), "seeds": 2, "val_fraction": 0.05, "n_boot": 300,
           "train": {"steps": 30, "batch_size": 4, "seq_len": 64, "lr": 1e-2, "warmup_steps": 3,
                     "eval_every": 15, "eval_batches": 2, "log_every": 15, "device": "cpu"},
           "inference": {"batch_sizes": [1, 4], "contexts": [16], "new_tokens": 4, "memory_gib": 0.5, "device": "cpu"}}
    path = tmp_path / "arch.yaml"
    path.write_text(json.dumps(cfg))
    _run(["arch", path, "--out", tmp_path / "out"])
    out = json.loads((tmp_path / "out/arch.json").read_text())
    names = list(out["variants"])
    assert names == ["MHA (4 kv heads)", "GQA (2 kv heads)", "MQA (1 kv head)"]
    loss = out["loss"]
    assert loss["seeds"] == 2 and loss["prompts"] >= 8
    for n in names:
        a = loss["arms"][n]
        assert a["lo"] <= a["mean"] <= a["hi"] < np.log(1000)  # learned something: below a uniform guess
        v = out["variants"][n]
        assert v["trained_tokens"] == 30 * 4 * 64 and [t for t, _ in v["val_curve"]] == [15 * 256, 30 * 256]
        assert abs(v["params_vs_baseline"]) < 0.01
        assert all(s["cache_bytes"] == v["inference"]["kv_bytes_per_token"] * s["batch"] * 20 for s in v["inference"]["speed"])
    assert [out["variants"][n]["kv_bytes_per_token_bf16"] for n in names] == [2 * 2 * h * 8 * 2 for h in (4, 2, 1)]
    for f in ("arch.html", "loss_curve.png", "effects.png", "decode_speed.png"):
        assert (tmp_path / "out" / f).is_file()
    _run(["arch", path, "--out", tmp_path / "out"])  # a rerun resumes: same numbers, nothing retrained
    assert json.loads((tmp_path / "out/arch.json").read_text())["loss"] == loss


@pytest.mark.slow
def test_data_arms_see_exactly_their_token_budget(tokenizer, tmp_path, torch_one_thread):
    src = tmp_path / "docs.jsonl"
    with open(src, "w", encoding="utf-8") as f:
        for i, (text, _) in enumerate(_docs()):
            f.write(json.dumps({"text": text, "score": len(set(text.split())) / max(1, len(text.split()))}) + "\n")
    arms = [{"name": "all"}, {"name": "top25", "top": {"fraction": 0.25, "by": "score"}},
            {"name": "random25", "random": {"like": "top25"}}]
    base = {"kind": "pretrain", "source": str(src), "tokenizer": str(tokenizer), "model": TINY, "heldout_size": 20,
            "seeds": 2, "n_boot": 200, "arms": arms, "eval_points": 1,
            "train": {"lr": 3e-3, "batch_size": 4, "seq_len": 32, "warmup_steps": 1, "eval_batches": 1}}
    # tokens mode: every arm, every seed trains on exactly `budget` tokens, each once
    budget = 5 * 4 * 32
    path = tmp_path / "tokens.yaml"
    path.write_text(json.dumps({**base, "mode": "tokens", "budget": budget}))
    _run(["data", path, "--out", tmp_path / "tokens"])
    for name in ("all", "top25", "random25"):
        for seed in range(2):
            run = json.loads((tmp_path / f"tokens/runs/{name}/seed_{seed}.json").read_text())
            assert run["trained_tokens"] == run["tokens_seen"] == run["distinct_tokens"] == budget
            assert run["budget_tokens"] == budget and run["steps"] == 5
    # steps mode: the same steps (and so tokens) for all; the small arms repeat their data, the large one does not
    path = tmp_path / "steps.yaml"
    path.write_text(json.dumps({**base, "mode": "steps", "steps": 12, "seeds": 1}))
    _run(["data", path, "--out", tmp_path / "steps"])
    runs = {n: json.loads((tmp_path / f"steps/runs/{n}/seed_0.json").read_text()) for n in ("all", "top25")}
    assert {r["trained_tokens"] for r in runs.values()} == {12 * 4 * 32}
    res = json.loads((tmp_path / "steps/ablate.json").read_text())
    assert res["arms"]["top25"]["tokens"] < res["arms"]["all"]["tokens"] / 3
    assert res["arms"]["random25"]["tokens"] <= res["arms"]["top25"]["tokens"]

    # sft, tokens mode (the vendor harness): each seed's subsample holds at most the budget in answer
    # tokens, and misses it by less than one example
    convs = tmp_path / "convs.jsonl"
    with open(convs, "w", encoding="utf-8") as f:
        for text, label in _docs()[:200]:
            words = text.split()
            f.write(json.dumps({"messages": [{"role": "user", "content": " ".join(words[:8])},
                                             {"role": "assistant", "content": " ".join(words[8:8 + len(words) % 17 + 3])}]}) + "\n")
    path = tmp_path / "sft.yaml"
    path.write_text(json.dumps({**base, "kind": "sft", "source": str(convs), "mode": "tokens", "budget": 600, "steps": 2,
                                "train": {**base["train"], "seq_len": 96}, "arms": [{"name": "all"}, {"name": "half", "random": {"fraction": 0.5}}]}))
    _run(["data", path, "--out", tmp_path / "sft"])
    res = json.loads((tmp_path / "sft/ablate.json").read_text())
    from train.sft import encode, load_examples
    from train.tokenizer import Tokenizer

    tok = Tokenizer.from_file(tokenizer)
    largest = max(encode(ex, tok, "llama2", 97).num_loss_tokens for ex in load_examples(convs))
    for name in ("all", "half"):
        assert all(600 - largest < n <= 600 for n in res["arms"][name]["answer_tokens"]), res["arms"][name]
