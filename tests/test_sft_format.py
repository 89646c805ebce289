"""SFT data: the Llama 2 chat template against a hand-written string, loss on answer
tokens only (checked by hand), packing that keeps examples apart, answer_loss, and
in-process sft() on real instruction data."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from train.model import Llama, get_config
from train.run import sft
from train.sft import (IGNORE, Encoded, answer_loss, collate, encode, encode_all, load_examples, pack,
                       render)
from train.tokenizer import Tokenizer
from train.trainer import lm_loss_sum

CHAT = {"messages": [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "4."},
    {"role": "user", "content": "And 3+3?"},
    {"role": "assistant", "content": "6."},
]}


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def tok(shared):
    return Tokenizer.from_file(shared / "models/sentencepiece-32k-llama-style.model")


@pytest.fixture(scope="module")
def small_tok_path(shared, tmp_path_factory):
    """A 512-piece BPE trained on the real instruction data: keeps the training tests cheap."""
    from train.tokenizer import train_bpe

    texts = [m["content"] for ex in load_examples(shared / "data/sft/alpaca_en_demo.json") for m in ex["messages"]]
    path = tmp_path_factory.mktemp("tok") / "bpe.model"
    train_bpe(texts, 512, path)
    return path


@pytest.fixture(scope="module")
def small_tok(small_tok_path):
    return Tokenizer.from_file(small_tok_path)


def tiny(seed=0, vocab_size=32000):
    torch.manual_seed(seed)
    return Llama(get_config("tiny", vocab_size=vocab_size))


def test_llama2_template_matches_hand_written_string():
    expected = ("<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nWhat is 2+2? [/INST] 4. </s>"
                "<s>[INST] And 3+3? [/INST] 6. </s>")
    assert render(CHAT, "llama2") == expected
    plain = ("<s>You are terse.\n\n### User:\nWhat is 2+2?\n\n### Assistant:\n4.</s>"
             "### User:\nAnd 3+3?\n\n### Assistant:\n6.</s>")
    assert render(CHAT, "plain") == plain
    for bad in ({"messages": [{"role": "user", "content": "hi"}]},
                {"messages": [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]},
                {"messages": [{"role": "bot", "content": "x"}]}):
        with pytest.raises(ValueError):
            render(bad)


def test_labels_and_loss_count_answer_tokens_only(tok):
    enc = encode(CHAT, tok, "llama2")
    # by hand: the ids are the four segments encoded one after another
    p1 = tok.encode("[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nWhat is 2+2? [/INST]", bos=True)
    a1 = tok.encode("4.", bos=False, eos=True)
    p2 = tok.encode("[INST] And 3+3? [/INST]", bos=True)
    a2 = tok.encode("6.", bos=False, eos=True)
    assert enc.ids == p1 + a1 + p2 + a2
    assert enc.labels == [IGNORE] * len(p1) + a1 + [IGNORE] * len(p2) + a2
    assert a1[-1] == tok.eos_id and a2[-1] == tok.eos_id

    model = tiny()
    batch = collate(pack([enc], 512))
    loss, n = lm_loss_sum(model, batch)
    assert n == len(a1) + len(a2)
    # hand computation: log-probability of each answer token given everything before it
    logp = F.log_softmax(model(torch.tensor([enc.ids[:-1]])).float(), -1)[0]
    answer_positions = [j for j in range(1, len(enc.ids)) if enc.labels[j] != IGNORE]
    manual = -sum(logp[j - 1, enc.ids[j]] for j in answer_positions)
    assert answer_positions[0] == len(p1)
    torch.testing.assert_close(loss, manual, rtol=1e-5, atol=1e-4)


def test_packing_keeps_examples_apart(tok):
    a = encode(CHAT, tok)
    b = encode({"messages": [{"role": "user", "content": "Name a colour."},
                             {"role": "assistant", "content": "Blue, like the sea."}]}, tok)
    rows = pack([a, b], 512)
    assert len(rows) == 1
    row = rows[0]
    n = len(a.ids) - 1
    assert row.positions[:n] == list(range(n)) and row.positions[n:] == list(range(len(b.ids) - 1))
    assert row.doc_ids == [0] * n + [1] * (len(b.ids) - 1)
    model = tiny()
    batch = collate(rows)
    out = model(batch["inputs"], positions=batch["positions"], doc_ids=batch["doc_ids"])
    alone = model(torch.tensor([b.ids[:-1]]))
    torch.testing.assert_close(out[0, n:], alone[0], atol=1e-5, rtol=1e-5)
    # changing the first packed example does not move the second's logits
    changed = batch["inputs"].clone()
    changed[0, 1:n] = 7
    out2 = model(changed, positions=batch["positions"], doc_ids=batch["doc_ids"])
    torch.testing.assert_close(out2[0, n:], out[0, n:], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(out2[0, :n], out[0, :n])
    # no packing: one example per row, padding carries no loss
    rows = pack([a, b], 512, pack=False)
    padded = collate(rows)
    assert len(rows) == 2 and (padded["targets"][1, len(b.ids) - 1:] == IGNORE).all()


def test_answer_loss_and_bad_examples(tok):
    model = tiny()
    short = {"messages": [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi!"}]}
    got = answer_loss(model, tok, [CHAT, {"messages": []}, short], batch_size=8)
    assert math.isnan(got[1])
    for ex, value in ((CHAT, got[0]), (short, got[2])):
        enc = encode(ex, tok)
        loss, n = lm_loss_sum(model, collate(pack([enc], 512)))
        assert value == pytest.approx((loss / n).item(), rel=1e-5)
    encoded, skipped = encode_all([CHAT, {"messages": "nope"}, short, None], tok)
    assert len(encoded) == 2 and [i for i, _ in skipped] == [1, 3]


def test_load_formats_and_sft_in_process(shared, small_tok):
    tok = small_tok
    alpaca = load_examples(shared / "data/sft/alpaca_en_demo.json")
    typed = load_examples(shared / "data/sft/v1_sft_demo.jsonl")
    assert alpaca[0]["messages"][0]["role"] == "user" and alpaca[0]["messages"][1]["role"] == "assistant"
    assert typed[0]["messages"][0]["content"] == "hi"
    encoded, skipped = encode_all(alpaca[:48], tok, "llama2", max_len=129)
    assert not skipped
    model = tiny(vocab_size=tok.vocab_size)
    before = answer_loss(model, tok, encoded[:8])
    hp = {"steps": 30, "batch_size": 4, "seq_len": 128, "lr": 3e-3, "warmup_steps": 3,
          "eval_every": 0, "log_every": 100}
    trained, result = sft(model=model, tokenizer=tok, examples=encoded, hyperparams=hp, seed=0)
    assert trained is not model and len(result.losses) == 30
    assert sum(result.losses[-5:]) < sum(result.losses[:5])
    after = answer_loss(trained, tok, encoded[:8])
    assert sum(after) < sum(before)
    # same seed, same curve; another seed, another data order
    _, again = sft(model=model, tokenizer=tok, examples=encoded, hyperparams=hp, seed=0)
    assert again.losses == result.losses
    _, other = sft(model=model, tokenizer=tok, examples=encoded, hyperparams=hp, seed=1)
    assert other.losses != result.losses
    assert isinstance(encoded[0], Encoded)


def test_sft_cli_from_config_with_resume(shared, small_tok_path, tmp_path):
    import yaml
    from click.testing import CliRunner

    from curate.cli import cli

    tiny(vocab_size=512).save(tmp_path / "base")
    data = tmp_path / "chat.jsonl"
    records = [{"instruction": f"Repeat the word {w}.", "input": "", "output": f"{w} {w} {w}"}
               for w in "apple river stone cloud tiger lamp horse piano candle rocket".split()] * 4
    data.write_text("\n".join(json.dumps(r) for r in records) + "\nnot json\n")
    cfg = {"run_dir": str(tmp_path / "run"), "init_from": str(tmp_path / "base"), "tokenizer": str(small_tok_path),
           "data": str(data), "val_fraction": 0.1, "template": "plain", "seed": 0,
           "train": {"steps": 12, "batch_size": 4, "seq_len": 64, "lr": 3e-3, "warmup_steps": 2,
                     "eval_every": 6, "log_every": 6, "device": "cpu"}}
    (tmp_path / "sft.yaml").write_text(yaml.safe_dump(cfg))
    r = CliRunner().invoke(cli, ["train", "sft", str(tmp_path / "sft.yaml")])
    assert r.exit_code == 0, r.output
    assert "1 examples skipped" in r.output  # the line that is not JSON, reported
    state = json.loads((tmp_path / "run/checkpoints/step_00000012/state.json").read_text())
    assert len(state["losses"]) == 12 and [s for s, _ in state["val_losses"]] == [6, 12]
    assert state["val_losses"][1][1] < state["val_losses"][0][1]
    # a finished run resumes to itself; a stopped one continues exactly
    _, part = sft({**cfg, "run_dir": str(tmp_path / "part")}, stop_after=5)
    _, rest = sft({**cfg, "run_dir": str(tmp_path / "part")})
    assert rest.losses == state["losses"]
