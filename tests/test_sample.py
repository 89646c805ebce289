"""Rejection sampling: best-of-K selection, pooling across rounds, reselection from saved
candidates, and `curate sample` on a Hugging Face checkpoint beside one of ours."""
import json
import math

import pytest
import torch
import yaml
from click.testing import CliRunner

from curate.cli.reward import sample_cmd
from experiments.sample import (best_of_k_curves, expected_max, generate_candidates, load_policy, read_candidates,
                                select, select_from_files)
from train.model import Llama, get_config
from train.reward import RewardModel, score
from train.tokenizer import Tokenizer

transformers = pytest.importorskip("transformers")

TINY = dict(dim=16, n_layers=2, n_heads=2, n_kv_heads=1, multiple_of=16, max_seq_len=256)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def setup(shared, tmp_path_factory):
    """A tokenizer, a Hugging Face tiny Llama, one of ours, a random reward model, 6 real prompts."""
    root = tmp_path_factory.mktemp("sample")
    sp = shared / "models" / "sentencepiece-32k-llama-style.model"
    tok = Tokenizer.from_file(sp)
    hf_cfg = transformers.LlamaConfig(vocab_size=tok.vocab_size, hidden_size=16, intermediate_size=32,
                                      num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                      max_position_embeddings=256, tie_word_embeddings=False)
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(hf_cfg).eval()
    hf.save_pretrained(root / "hf")
    torch.manual_seed(1)
    Llama(get_config(TINY, vocab_size=tok.vocab_size)).save(root / "ours")
    torch.manual_seed(2)
    rm = RewardModel(Llama(get_config(TINY, vocab_size=tok.vocab_size)), {"max_len": 128})
    rm.save(root / "rm", tokenizer_path=sp)
    alpaca = json.loads((shared / "data" / "sft" / "alpaca_en_demo.json").read_text())[:4]
    with open(root / "prompts.jsonl", "w") as f:
        for a in alpaca:
            f.write(json.dumps(a) + "\n")
    return {"root": root, "tok": tok, "sp": sp, "hf": hf}


def run(cfg: dict, path, *args):
    path.write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(sample_cmd, [str(path), *args])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return res.output


def config(s, out, **kw):
    root = s["root"]
    return {"out_dir": str(out), "prompts": str(root / "prompts.jsonl"), "reward_model": str(root / "rm"),
            "policies": [{"name": "hf", "path": str(root / "hf"), "tokenizer": str(s["sp"])},
                         {"name": "ours", "path": str(root / "ours"), "tokenizer": str(s["sp"])}],
            "k": 4, "top_p": 1.0, "max_new_tokens": 8, "batch_size": 16, "device": "cpu", **kw}


@pytest.fixture(scope="module")
def round1(setup, tmp_path_factory):
    out = tmp_path_factory.mktemp("round1")
    log = run(config(setup, out), out / "cfg.yaml")
    return out, log


def test_hf_checkpoint_loads_and_greedy_matches_transformers(setup):
    policy = load_policy(setup["root"] / "hf")
    prompt = [{"role": "user", "content": "Name three colours."}]
    rows = generate_candidates(policy, setup["tok"], [prompt], 1, temperature=0.0, max_new_tokens=8)
    from experiments.sample import encode_prompt

    ids = torch.tensor([encode_prompt(prompt, setup["tok"], "llama2", 200)])
    with torch.no_grad():
        ref = setup["hf"].generate(ids, max_new_tokens=8, do_sample=False, eos_token_id=None, pad_token_id=0)
    assert rows[0]["answer"] == setup["tok"].decode(ref[0, ids.shape[1]:].tolist())


def test_sample_writes_candidates_selection_and_report_per_model(setup, round1):
    out, log = round1
    cands = read_candidates(out / "candidates.jsonl")
    assert len(cands) == 4 * 4 * 2  # prompts x K x policies
    assert {c["model"] for c in cands} == {"hf", "ours"}
    report = json.loads((out / "report.json").read_text())
    assert set(report["curves"]) == {"hf", "ours"}
    for c in report["curves"].values():
        assert c["k"] == [1, 2, 4] and c["gain"][0] == pytest.approx(0.0, abs=1e-9)
        assert all(b >= a - 1e-9 for a, b in zip(c["max"], c["max"][1:]))  # best-of-K never falls with K
    assert (out / "reward_vs_k.png").stat().st_size > 1000
    assert "best-of-4 gain" in log


def test_best_of_k_keeps_the_highest_scoring_candidate(setup, round1):
    out, _ = round1
    cands = read_candidates(out / "candidates.jsonl")
    kept = [json.loads(line) for line in (out / "selected.jsonl").read_text().splitlines()]
    assert len(kept) == 4
    rm = RewardModel.load(setup["root"] / "rm")
    tok = Tokenizer.from_file(setup["root"] / "rm")
    for row in kept:
        pid = row["provenance"]["prompt_id"]
        best = max(c["reward"] for c in cands if c["prompt_id"] == pid)
        assert row["provenance"]["reward"] == best
        # independently: the kept answer, scored alone (no batch, no padding), has that reward
        alone = score(rm, tok, [row["messages"][:-1]], [row["messages"][-1]["content"]])[0]
        assert alone == pytest.approx(best, abs=1e-4)
        assert row["kind"] == "sft" and row["messages"][-1]["role"] == "assistant"


def test_selected_rows_read_back_as_canonical_sft_records(round1):
    """selected.jsonl goes through `curate run` readers (then filters, dedup) and train.sft."""
    from annotations.records import SFTConversation, from_document
    from curate.io.readers import read_shard
    from curate.io.sources import InputSpec, plan_shards
    from train.sft import load_examples

    out, _ = round1
    docs = [d for shard in plan_shards([InputSpec(str(out / "selected.jsonl"))])
            for batch, rejects in read_shard(shard) if not rejects for d in batch]
    records = [from_document(d) for d in docs]
    assert len(records) == 4 and all(isinstance(r, SFTConversation) for r in records)
    assert {r.annotator for r in records} <= {"hf", "ours"} and all(d.meta["provenance"]["k"] == 4 for d in docs)
    assert [e["messages"] for e in load_examples(out / "selected.jsonl")] == [r.messages for r in records]


def test_rerun_selection_from_saved_candidates_is_identical(setup, round1, tmp_path, monkeypatch):
    out, _ = round1
    before = (out / "selected.jsonl").read_bytes()
    import experiments.sample

    monkeypatch.setattr(experiments.sample, "generate_candidates", lambda *a, **k: pytest.fail("generated again"))
    run(config(setup, out), tmp_path / "cfg.yaml", "--select-only")
    assert (out / "selected.jsonl").read_bytes() == before
    # and the plain function gives the same records apart from the run's extra provenance
    rows = select_from_files(out / "candidates.jsonl", tmp_path / "again.jsonl")
    assert [r["messages"] for r in rows] == [json.loads(x)["messages"] for x in before.decode().splitlines()]


def test_pooling_rounds_never_lowers_a_prompts_kept_score(setup, round1, tmp_path):
    out1, _ = round1
    first = {json.loads(x)["provenance"]["prompt_id"]: json.loads(x)["provenance"]["reward"]
             for x in (out1 / "selected.jsonl").read_text().splitlines()}
    out2 = tmp_path / "round2"
    run(config(setup, out2, round=2, seed=7, pool=[str(out1 / "candidates.jsonl")]), tmp_path / "cfg.yaml")
    second = [json.loads(x)["provenance"] for x in (out2 / "selected.jsonl").read_text().splitlines()]
    assert {p["prompt_id"] for p in second} == set(first)
    for p in second:
        assert p["reward"] >= first[p["prompt_id"]] - 1e-5
    new = read_candidates(out2 / "candidates.jsonl")
    assert {c["round"] for c in new} == {2}
    # the kept one is the best over both rounds
    both = read_candidates(out1 / "candidates.jsonl") + new
    for p in second:
        assert p["reward"] == pytest.approx(max(c["reward"] for c in both if c["prompt_id"] == p["prompt_id"]), abs=1e-5)


def test_select_planted_scores_top_n_and_nan():
    rows = [{"prompt_id": "a", "round": 1, "model": "m", "sample": i, "answer": t, "reward": r, "prompt": []}
            for i, (t, r) in enumerate([("x", 0.1), ("y", 0.9), ("y", 0.9), ("z", 0.5), ("w", float("nan"))])]
    kept = select(rows, keep=2)
    assert [(k["answer"], k["rank"]) for k in kept] == [("y", 0), ("z", 1)]  # duplicate text kept once
    assert select(rows[4:], keep=1) == []  # an unscored candidate is never kept
    # pooling property on planted data: adding candidates never lowers the best
    more = [{**rows[0], "sample": 9, "round": 2, "reward": -5.0}]
    assert select(rows + more)[0]["reward"] == select(rows)[0]["reward"]


def test_expected_max_matches_enumeration():
    import itertools

    values = torch.randn(7, generator=torch.Generator().manual_seed(0)).double().numpy()
    for k in (1, 3, 7):
        brute = sum(max(c) for c in itertools.combinations(values, k)) / math.comb(7, k)
        assert expected_max(values, k) == pytest.approx(brute, rel=1e-9)
    rows = [{"model": "m", "prompt_id": "p", "sample": i, "reward": float(v)} for i, v in enumerate(values)]
    curve = best_of_k_curves(rows, [1, 2, 4])["m"]
    assert curve["max"][0] == pytest.approx(values.mean()) and curve["median"][1] == pytest.approx(values[:2].mean())


def test_bad_configs_are_one_line_errors(tmp_path):
    from curate.basics.errors import CurateError
    from experiments.sample import load_sample_config, policy_specs

    base = {"out_dir": str(tmp_path), "prompts": "p.jsonl", "reward_model": "rm", "policy": "m"}
    with pytest.raises(CurateError, match="unknown key 'kk'"):
        load_sample_config({**base, "kk": 8})
    with pytest.raises(CurateError, match="keep"):
        load_sample_config({**base, "k": 2, "keep": 3})
    with pytest.raises(CurateError, match="policy"):
        policy_specs(load_sample_config({**base, "policy": None}))
    with pytest.raises(CurateError, match="names must differ"):
        policy_specs(load_sample_config({**base, "policy": None, "policies": ["a/m", "b/m"]}))
