"""IFD (train/ifd.py, the ``ifd`` step, ``curate score --ifd``) against a hand computation of both
losses with transformers' LlamaForCausalLM on real examples, one of them multi-turn."""
import json
import subprocess
from pathlib import Path

import pytest
import torch

from experiments.steps import build_step
from curate.record import Document
from train.hf import save_hf
from train.model import Llama, LlamaConfig
from train.sft import IGNORE, encode, to_messages
from train.tokenizer import Tokenizer

transformers = pytest.importorskip("transformers")
ROOT = Path(__file__).resolve().parents[1]
# Measured (300 steps, derangement seeds 0-4): shuffled > aligned in 0.670, 0.685, 0.620, 0.625, 0.630 of
# 200 pairs (mean 0.646); the test runs seeds 0-2 (mean 0.658) and asks for 0.6, each above 0.5.
THRESHOLD = 0.6


def _examples(shared):
    alpaca = json.loads((shared / "data/sft/alpaca_en_demo.json").read_text())
    kto = json.loads((shared / "data/sft/kto_en_demo.json").read_text())
    # the shortest conversation with three user/assistant turns
    multi = min((r for r in kto if len(r["messages"]) == 6), key=lambda r: sum(len(m["content"]) for m in r["messages"]))
    return [to_messages(alpaca[3]), {"messages": multi["messages"]}]


@pytest.fixture(scope="module")
def tiny(shared, tmp_path_factory):
    """A random tiny Llama saved in our format and as a Hugging Face folder, with the
    shared Llama-style SentencePiece tokenizer."""
    tok_path = shared / "models/sentencepiece-32k-llama-style.model"
    tok = Tokenizer.from_file(tok_path)
    torch.manual_seed(0)
    model = Llama(LlamaConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=tok.vocab_size,
                              multiple_of=16, max_seq_len=1024)).eval()
    root = tmp_path_factory.mktemp("ifd")
    model.save(root / "ours")
    save_hf(model, root / "hf")
    return model, tok, tok_path, root


def _hand(hf, tok, example):
    """Per turn (loss given the prompt, loss alone, answer tokens), computed by transformers'
    own shifted cross-entropy over `labels`, one sequence at a time."""
    enc = encode(example, tok)
    answer = [i for i, y in enumerate(enc.labels) if y != IGNORE]
    spans, start = [], answer[0]
    for a, b in zip(answer, answer[1:] + [None]):
        if b != a + 1:
            spans.append((start, a + 1))
            start = b
    out = []
    for a, b in spans:
        ids = torch.tensor([enc.ids[:b]])
        labels = torch.full_like(ids, -100)
        labels[0, a:b] = ids[0, a:b]
        alone = torch.tensor([[tok.bos_id] + enc.ids[a:b]])
        alone_labels = alone.clone()
        alone_labels[0, 0] = -100
        with torch.no_grad():
            given = hf(input_ids=ids, labels=labels).loss.item()
            by_itself = hf(input_ids=alone, labels=alone_labels).loss.item()
        out.append((given, by_itself, b - a))
    return out


def test_ifd_equals_hand_computation_single_and_multi_turn(shared, tiny, torch_one_thread):
    from train.ifd import ifd_scores

    model, tok, _, root = tiny
    hf = transformers.LlamaForCausalLM.from_pretrained(root / "hf", attn_implementation="eager").eval()
    examples = _examples(shared)
    got = ifd_scores(model, tok, examples, batch_size=3)
    for example, score in zip(examples, got):
        turns = _hand(hf, tok, example)
        assert len(score.turns) == len(turns) == (1 if example is examples[0] else 3)
        for t, (given, alone, n) in zip(score.turns, turns):
            assert t["tokens"] == n
            assert t["loss_given_prompt"] == pytest.approx(given, rel=1e-4)
            assert t["loss_alone"] == pytest.approx(alone, rel=1e-4)
            assert t["ifd"] == pytest.approx(given / alone, rel=2e-4)
        n_all = sum(n for _, _, n in turns)
        given_all = sum(g * n for g, _, n in turns) / n_all
        alone_all = sum(a * n for _, a, n in turns) / n_all
        assert score.loss_given_prompt == pytest.approx(given_all, rel=1e-4)
        assert score.loss_alone == pytest.approx(alone_all, rel=1e-4)
        assert score.ifd == pytest.approx(given_all / alone_all, rel=2e-4) and score.tokens == n_all
    # one at a time gives the same figures as batched
    single = [ifd_scores(model, tok, [ex], batch_size=1)[0] for ex in examples]
    assert [s.ifd for s in single] == pytest.approx([s.ifd for s in got], rel=1e-5)


def test_ifd_step_under_a_hugging_face_folder_writes_meta_and_flags(shared, tiny, torch_one_thread):
    from train.ifd import ifd_scores

    model, tok, tok_path, root = tiny
    examples = _examples(shared)
    want = ifd_scores(model, tok, examples)
    flag_at = (want[0].ifd + want[1].ifd) / 2  # one above, one below
    step = build_step({"step": "ifd", "model": str(root / "hf"), "tokenizer": str(tok_path), "flag_at": flag_at})
    docs = [Document("a", "x", meta=examples[0]), Document("b", "x", meta=examples[1]),
            Document("c", "not a conversation", meta={"flags": {"too_short": "1 word"}})]
    kept, removed = step.process(docs)
    assert len(kept) == 3 and not removed
    for doc, w in zip(kept, want):
        assert doc.meta["ifd"] == pytest.approx(w.ifd, abs=1e-5)
        assert doc.meta["ifd_loss_given_prompt"] == pytest.approx(w.loss_given_prompt, abs=1e-5)
        assert doc.meta["ifd_loss_alone"] == pytest.approx(w.loss_alone, abs=1e-5)
        assert len(doc.meta["ifd_turns"]) == len(w.turns)
        assert ("prompt_does_not_help" in doc.meta.get("flags", {})) == (w.ifd >= flag_at)
    assert "ifd" not in kept[2].meta and kept[2].meta["flags"] == {"too_short": "1 word"}
    assert step.counters["ifd_unscored"] == 1 and step.counters["flagged_prompt_does_not_help"] == 1


def test_ifd_truncation_scores_the_answer_tokens_left(shared, tiny, torch_one_thread):
    from train.ifd import ifd_rows, ifd_scores

    model, tok, _, _ = tiny
    example = _examples(shared)[1]
    ids, spans, alone = ifd_rows(example, tok)
    cut = spans[1][0] + 3  # three tokens of the second answer survive
    short = ifd_scores(model, tok, [example], max_len=cut)[0]
    assert [t["tokens"] for t in short.turns] == [spans[0][1] - spans[0][0], 3]
    assert ifd_scores(model, tok, [example], max_len=spans[0][0])[0] is None  # no answer token left
    assert ifd_scores(model, tok, [{"messages": [{"role": "user", "content": "hi"}]}])[0] is None


def test_curate_score_ifd_cli(shared, tiny, tmp_path, curate_exe):
    _, _, tok_path, root = tiny
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": f"e{i}", "text": "x", **ex}) + "\n" for i, ex in enumerate(_examples(shared))))
    run = subprocess.run([curate_exe, "score", str(src), "--out", str(tmp_path / "out"), "--ifd", str(root / "ours"),
                          "--tokenizer", str(tok_path), "--workers", "1", "--quiet"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    import pandas as pd

    metas = [json.loads(m) for m in pd.read_parquet(tmp_path / "out/data")["meta"]]
    assert len(metas) == 2 and all(isinstance(m["ifd"], float) for m in metas)
    bad = subprocess.run([curate_exe, "score", str(src), "--out", str(tmp_path / "o2"), "--ifd", str(tmp_path)],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "not a model folder" in bad.stderr


@pytest.mark.slow
def test_shuffled_answers_have_higher_ifd_than_aligned_ones(tmp_path, torch_one_thread):
    """A small model fine-tuned on 799 of the bundled Alpaca examples scores the other 200, and the
    same 200 answers with their prompts shuffled (three seeded derangements). Each answer's IFD under
    a wrong prompt should exceed its IFD under its own prompt. The threshold comes from the measured
    shares (README, "Choosing SFT data"): a from-scratch model this small barely reads its prompt."""
    import numpy as np

    from train.ifd import ifd_scores
    from train.run import sft
    from train.tokenizer import train_bpe

    records = json.loads((ROOT / "examples/compare/alpaca_en_demo.json").read_text())
    examples = [to_messages(r) for r in records]
    train, held = examples[:799], examples[799:]
    tok = train_bpe([m["content"] for e in train for m in e["messages"]], 2000, tmp_path / "tok.model", num_threads=1)
    torch.manual_seed(0)
    model = Llama(LlamaConfig(dim=128, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=tok.vocab_size,
                              multiple_of=32, max_seq_len=512))
    model, _ = sft(model=model, tokenizer=tok, examples=train, seed=0,
                   hyperparams={"steps": 300, "batch_size": 8, "seq_len": 256, "lr": 2e-3, "warmup_steps": 20,
                                "eval_every": 0, "log_every": 1000, "device": "cpu", "dtype": "fp32"})
    aligned = [s.ifd for s in ifd_scores(model, tok, held, max_len=256)]
    shares = []
    for seed in range(3):
        perm = np.random.default_rng(seed).permutation(len(held))
        perm = np.where(perm == np.arange(len(held)), (perm + 1) % len(held), perm)  # no answer keeps its prompt
        shuffled = [{"messages": [held[perm[i]]["messages"][0], held[i]["messages"][1]]} for i in range(len(held))]
        wrong = [s.ifd for s in ifd_scores(model, tok, shuffled, max_len=256)]
        shares.append(float(np.mean(np.array(wrong) > np.array(aligned))))
    print(f"aligned median IFD {np.median(aligned):.3f}; shuffled > aligned: {np.round(shares, 3)}, mean {np.mean(shares):.3f}")
    assert len(aligned) == 200 and np.mean(shares) >= THRESHOLD and min(shares) > 0.5, shares
