"""The vendor comparison end to end on real SFT data with a tiny model pretrained here.

Planted truths: a clean vendor, copies of the same examples with 30% of answer words replaced
by random words and with answers cut to 40% of their words, and two random halves of the clean
vendor (the noise floor). The comparison must rank clean first with intervals excluding zero,
and find no significant difference between the halves.
"""
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from experiments import stats
from experiments.compare import run as C
from experiments.compare.arms import Arm, Harness, Settings, select
from train.sft import to_messages

SETTINGS = dict(budget="examples", steps=30, train={"lr": 2e-3, "batch_size": 8, "seq_len": 128, "warmup_steps": 3})


@pytest.fixture(scope="session")
def tiny_base(shared, tmp_path_factory):
    """A ~0.2M-parameter Llama with a 1024-piece BPE, pretrained for 150 steps on the shared web,
    news and Wikipedia text (about a minute on 2 cores): (model, tokenizer, folder)."""
    from curate.demo import pretrain_base
    from train.model import Llama
    from train.tokenizer import Tokenizer

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    work = tmp_path_factory.mktemp("compare_base")
    pre = shared / "data" / "pretrain"
    texts = [json.loads(line)["text"] for line in open(pre / "c4_demo.jsonl")]
    texts += [t for name in ("wiki_demo.txt", "lee_background.cor") for t in open(pre / name).read().splitlines()
              if t.strip()]
    (work / "text").mkdir()
    pq.write_table(pa.table({"text": texts}), work / "text" / "pretrain.parquet")
    model = dict(dim=64, n_layers=2, n_heads=4, vocab_size=1024, multiple_of=32, max_seq_len=512)
    train = dict(steps=150, batch_size=16, seq_len=128, lr=3e-3, warmup_steps=10, eval_every=0, log_every=1000,
                 ckpt_every=0, eval_batches=2)
    base_dir = pretrain_base(work / "text", work / "pre", model=model, train=train)
    torch.set_num_threads(before)
    return Llama.load(base_dir), Tokenizer.from_file(base_dir / "tokenizer.model"), base_dir


@pytest.fixture(scope="session")
def alpaca(shared):
    return [to_messages(r) for r in json.loads((shared / "data" / "sft" / "alpaca_en_demo.json").read_text())]


@pytest.mark.slow
def test_clean_vendor_beats_degraded_copies_and_halves_tie(tiny_base, alpaca, tmp_path, torch_one_thread):
    base, tok, _ = tiny_base
    clean = alpaca[:160]
    vendors = {"clean": clean, "noisy30": C.replace_words(clean, 0.3, seed=1),
               "cut40": C.truncate_answers(clean, 0.4)}
    heldout, dropped = C.decontaminate(alpaca[-300:], vendors)
    heldout = C.sample(heldout, 100, seed=0)
    prices = {"clean": 1.0, "noisy30": 0.5, "cut40": 0.5}
    result = C.compare(vendors, base, tok, heldout, Settings(seeds=3, **SETTINGS), tmp_path / "run",
                       noise_floor="clean", prices=prices, n_boot=1000)
    loss = result["loss"]
    assert loss["ranking"][0] == "clean"
    for bad in ("noisy30", "cut40"):
        pair = loss["pairs"][f"clean|{bad}"]
        assert pair["verdict"] == stats.BETTER and pair["hi"] < 0, pair
        assert result["matched"][f"clean|{bad}"] == 1.0  # same prompts: a matched comparison
    halves = result["noise_floor"]["half_vs_half"]
    assert halves["verdict"] == stats.NO_DIFFERENCE and halves["lo"] < 0 < halves["hi"]
    # every vendor trained on the same number of examples, the halves on half as many
    used = {n: v["examples_used"] for n, v in result["vendors"].items()}
    usable = len(clean) - result["vendors"]["clean"]["skipped"]  # a prompt longer than seq_len has no answer
    assert usable >= 150 and used["clean"] == used["noisy30"] == used["cut40"] == usable
    assert used["clean (half 1)"] == used["clean (half 2)"] == usable // 2
    assert result["vendors"]["clean"]["cost"] == usable * 1.0

    from experiments.report import write_report

    html = write_report(result, tmp_path / "report").read_text()
    for section in ("ranking", "pairs", "win-rates", "sensitivity", "curves", "cost"):
        assert f'<section id="{section}">' in html
    assert json.loads((tmp_path / "report" / "compare.json").read_text())["loss"]["ranking"] == loss["ranking"]

    # resume: a second call finds every (vendor, seed) result and trains nothing
    runs = sorted((tmp_path / "run" / "runs").rglob("seed_*.json"))
    stamps = [p.stat().st_mtime_ns for p in runs]
    again = C.compare(vendors, base, tok, heldout, Settings(seeds=3, **SETTINGS), tmp_path / "run",
                      noise_floor="clean", prices=prices, n_boot=1000)
    assert [p.stat().st_mtime_ns for p in runs] == stamps and len(runs) == 15
    assert again["loss"]["arms"] == loss["arms"]
    # a crash that lost one (vendor, seed) result: only that run is redone, with the same outcome
    lost = tmp_path / "run" / "runs" / "cut40" / "seed_1.json"
    before = json.loads(lost.read_text())
    lost.unlink()
    C.compare(vendors, base, tok, heldout, Settings(seeds=3, **SETTINGS), tmp_path / "run",
              noise_floor="clean", prices=prices, n_boot=1000)
    assert [p.stat().st_mtime_ns for p in runs if p != lost] == [t for p, t in zip(runs, stamps) if p != lost]
    assert json.loads(lost.read_text())["heldout_loss"] == pytest.approx(before["heldout_loss"], abs=1e-4)


@pytest.mark.slow
def test_conditioning_check_flags_a_model_that_ignores_the_prompt(tiny_base, alpaca, tmp_path, torch_one_thread):
    from train.model import Llama

    base, tok, base_dir = tiny_base
    harness = Harness([Arm("a", alpaca[:50])], base, tok, alpaca[-120:], Settings(seeds=1, **SETTINGS), tmp_path)
    blind = Llama.load(base_dir)
    for layer in blind.layers:  # no attention output: each position sees only its own token
        torch.nn.init.zeros_(layer.attention.wo.weight)
    losses = harness.base_losses(blind)
    gain = stats.conditioning_gain(losses["right"], losses["mismatched"])
    assert gain["ignores_prompt"] and abs(gain["gain"]) < 1e-5
    # a model fine-tuned on these very prompt/answer pairs does read the prompt
    from train.run import sft

    tuned, _ = sft(model=base, tokenizer=tok, examples=harness.heldout, seed=0,
                   hyperparams={"steps": 60, "batch_size": 8, "seq_len": 128, "lr": 3e-3, "warmup_steps": 3})
    losses = harness.base_losses(tuned)
    gain = stats.conditioning_gain(losses["right"], losses["mismatched"])
    assert not gain["ignores_prompt"] and gain["gain"] > 0, gain


def test_budget_in_answer_tokens_and_matched_selection(shared, alpaca):
    from train.tokenizer import Tokenizer

    tok = Tokenizer.from_file(shared / "models" / "sentencepiece-32k-llama-style.model")
    clean = alpaca[:120]
    short = C.truncate_answers(clean, 0.4)
    other = alpaca[200:320]
    harness = Harness([Arm("clean", clean), Arm("short", short), Arm("other", other)], _NoModel(), tok,
                      alpaca[-5:], Settings(seeds=2, budget="tokens", steps=1), "/nonexistent")
    budget = harness.plan["budgets"]["main"]
    assert budget == harness.sizes["short"].sum()  # the smallest pool sets the budget
    for seed in range(2):
        picked = {n: harness.plan["_subsets"][n][seed] for n in ("clean", "short", "other")}
        for name, idx in picked.items():
            used = harness.sizes[name][idx].sum()
            assert budget - harness.sizes[name].max() < used <= budget  # a prefix: stops at the first misfit
        # the clean vendor's subsample is a subset of the same prompts the short vendor used
        keys = lambda n: {harness.keys[n][i] for i in picked[n]}  # noqa: E731
        assert keys("clean") <= keys("short")
    assert harness.plan["_subsets"]["clean"][0] != harness.plan["_subsets"]["clean"][1]


def test_a_run_dir_with_another_plan_is_refused(shared, alpaca, tmp_path):
    from curate.basics.errors import CurateError
    from train.tokenizer import Tokenizer

    tok = Tokenizer.from_file(shared / "models" / "sentencepiece-32k-llama-style.model")
    arms = [Arm("a", alpaca[:30]), Arm("b", alpaca[30:60])]
    Harness(arms, _NoModel(), tok, alpaca[-5:], Settings(seeds=2, steps=3), tmp_path).check_run_dir()
    Harness(arms, _NoModel(), tok, alpaca[-5:], Settings(seeds=2, steps=3), tmp_path).check_run_dir()  # same plan
    with pytest.raises(CurateError, match="different plan"):
        Harness(arms, _NoModel(), tok, alpaca[-5:], Settings(seeds=3, steps=3), tmp_path).check_run_dir()


def test_select_takes_a_seeded_prefix_and_disjoint_halves():
    keys = [f"prompt {i}" for i in range(40)]
    ones = np.ones(40)
    a, b = select(keys, ones, 10, seed=3), select(keys, ones, 10, seed=3)
    assert a == b and len(a) == 10
    h1, h2 = select(keys, ones, 99, seed=3, part=(0, 2)), select(keys, ones, 99, seed=3, part=(1, 2))
    assert len(h1) == len(h2) == 20 and not set(h1) & set(h2)


def test_decontamination_drops_heldout_prompts_a_vendor_has(alpaca):
    heldout = alpaca[500:520]
    vendor = alpaca[:100] + [heldout[3], {"messages": [{"role": "user", "content": heldout[7]["messages"][0]["content"]
                                                        + " Please answer briefly."},
                                                       {"role": "assistant", "content": "ok"}]}]
    kept, dropped = C.decontaminate(heldout, {"v": vendor})
    assert dropped >= 2
    assert heldout[3] not in kept and heldout[7] not in kept


def test_degraded_copies():
    ex = [{"messages": [{"role": "user", "content": f"q{i}"},
                        {"role": "assistant", "content": " ".join(f"w{i}_{k}" for k in range(100))}]} for i in range(5)]
    cut = C.truncate_answers(ex, 0.4)
    assert all(len(e["messages"][-1]["content"].split()) == 40 for e in cut)
    noisy = C.replace_words(ex, 0.3, seed=0)
    changed = np.mean([a != b for e, n in zip(ex, noisy)
                       for a, b in zip(e["messages"][-1]["content"].split(), n["messages"][-1]["content"].split())])
    assert 0.2 < changed < 0.35  # 30% drawn, a few replaced by themselves
    shuffled = C.shuffle_answers(ex, seed=0)
    assert all(s["messages"][0] == e["messages"][0] and s["messages"][1] != e["messages"][1]
               for s, e in zip(shuffled, ex))
    assert sorted(s["messages"][1]["content"] for s in shuffled) == sorted(e["messages"][1]["content"] for e in ex)


class _NoModel:
    """Planning never runs the model; the plan hashes its (empty) state."""

    def state_dict(self):
        return {}


@pytest.mark.slow
def test_cli_runs_a_config_with_a_reward_model(tiny_base, alpaca, shared, tmp_path, torch_one_thread):
    """`curate vendors compare CONFIG` end to end: vendor files, profile, a reward model trained on
    preference data that is no vendor's, reward scores and win rates, report, manifest."""
    import yaml
    from click.testing import CliRunner

    from curate.cli.compare import compare_cmd
    _, _, base_dir = tiny_base
    alpaca_raw = [{"instruction": ex["messages"][0]["content"], "input": "", "output": ex["messages"][1]["content"]}
                  for ex in alpaca[:40]]
    (tmp_path / "good.json").write_text(json.dumps(alpaca_raw))
    bad = C.replace_words(alpaca[:40], 0.5, seed=2)
    (tmp_path / "bad.jsonl").write_text("\n".join(json.dumps(ex) for ex in bad) + "\n")
    (tmp_path / "heldout.json").write_text(json.dumps(alpaca[-60:]))
    (tmp_path / "vendors.yaml").write_text(yaml.safe_dump({"vendors": [
        {"name": "good <b>", "price_per_example": 1.0, "files": ["good.json"]},
        {"name": "bad", "files": ["bad.jsonl"]}]}))
    (tmp_path / "compare.yaml").write_text(yaml.safe_dump({
        "vendors": "vendors.yaml", "base": str(base_dir), "tokenizer": str(base_dir / "tokenizer.model"),
        "heldout": "heldout.json", "heldout_size": 20, "seeds": 2, "steps": 6,
        "reward_data": str(shared / "data" / "sft" / "dpo_en_demo.json"), "reward_train": {"batch_size": 16},
        "max_new_tokens": 8, "noise_floor": None, "train": {"seq_len": 128, "batch_size": 4}}))
    res = CliRunner().invoke(compare_cmd, [str(tmp_path / "compare.yaml"), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "1. " in res.output and "wrote" in res.output
    result = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert set(result["reward"]["arms"]) == {"good <b>", "bad"}
    assert result["reward_model"]["pairs"] >= 250 and 0 <= result["reward_model"]["accuracy"]["accuracy"] <= 1
    w = np.array(result["win_rate_reward"]["matrix"])
    assert np.allclose(w + w.T, 1.0)  # a wins exactly when b loses, ties split
    assert result["heldout"]["size"] == 20 and result["manifest"]["config_hash"]
    assert str(tmp_path / "good.json") in result["manifest"]["files"]
    html = (tmp_path / "out" / "compare.html").read_text()
    assert "good &lt;b&gt;" in html and "good <b>" not in html
