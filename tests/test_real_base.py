"""Real bases: export-hf writes the tokenizer under its canonical name with a chat template, so that
`curate generate OUT` and transformers' AutoTokenizer both load the export (ids and rendered chats
checked against ours); a sharded Hugging Face folder loads as a base in the dtype asked for."""
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from curate.cli import cli
from train.hf import save_hf
from train.model import Llama, get_config
from train.run import load_model
from train.sft import CHAT_TEMPLATES, render, template_of
from train.tokenizer import Tokenizer

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("torch_one_thread")

ROOT = Path(__file__).resolve().parents[1]
CHAT = {"messages": [{"role": "system", "content": "You are terse."},
                     {"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4."},
                     {"role": "user", "content": "And 3+3?"}, {"role": "assistant", "content": "6."}]}


@pytest.fixture(scope="module")
def exported(tmp_path_factory, demo_sft):
    """A tiny checkpoint exported with a tokenizer whose file name is not canonical."""
    examples, tok, tok_path = demo_sft
    root = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    Llama(get_config("tiny", vocab_size=tok.vocab_size)).save(root / "ckpt")
    r = CliRunner().invoke(cli, ["train", "export-hf", str(root / "ckpt"), str(root / "hf"),
                                 "--tokenizer", str(tok_path)])
    assert r.exit_code == 0, r.output
    return root, tok, examples


def test_export_writes_canonical_tokenizer_that_generate_loads(exported):
    root, tok, _ = exported
    out = root / "hf"
    assert (out / "tokenizer.model").is_file() and not (out / "tok.model").exists()  # was tok.model
    mine = Tokenizer.from_file(out)
    assert template_of(mine.chat_template) == "llama2"
    r = CliRunner().invoke(cli, ["generate", str(out), "--prompt", "Give three tips", "--max-new-tokens", "4"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("Give three tips")


def test_autotokenizer_loads_export_with_same_ids_and_chat(exported):
    root, tok, examples = exported
    hf = transformers.AutoTokenizer.from_pretrained(root / "hf")
    for ex in examples[:20]:
        text = ex["messages"][-1]["content"]
        assert hf(text).input_ids == tok.encode(text), text
    assert hf.apply_chat_template(CHAT["messages"], tokenize=False) == render(CHAT, "llama2")


def test_plain_chat_template_renders_like_ours():
    from jinja2 import Template

    out = Template(CHAT_TEMPLATES["plain"]).render(messages=CHAT["messages"], bos_token="<s>", eos_token="</s>")
    assert out == render(CHAT, "plain")


def test_export_hf_missing_tokenizer_is_one_line_error(exported, tmp_path):
    root, _, _ = exported
    r = CliRunner().invoke(cli, ["train", "export-hf", str(root / "ckpt"), str(tmp_path / "x"),
                                 "--tokenizer", str(tmp_path / "nope.model")])
    assert r.exit_code != 0 and "no such file" in r.output


def test_sharded_hf_folder_loads_as_base_in_bf16(tmp_path):
    torch.manual_seed(0)
    model = Llama(get_config("tiny", vocab_size=300)).to(torch.bfloat16)
    save_hf(model, tmp_path, max_shard_bytes=8_000)
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 2
    base = load_model(tmp_path, dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in base.parameters())
    for (name, a), b in zip(model.state_dict().items(), base.state_dict().values()):
        assert torch.equal(a, b), name
    assert load_model(tmp_path).output.weight.dtype == torch.float32  # default: float32 for training


def test_vendors_compare_takes_a_hugging_face_folder_as_base(exported, tmp_path):
    """No tokenizer key: the folder's tokenizer and chat template are used; LoRA arms in 2 workers."""
    import json

    import yaml

    root, _, _ = exported
    vendors = ROOT / "examples/vendors"
    (tmp_path / "vendors.yaml").write_text(yaml.safe_dump({"vendors": [
        {"name": "acme", "files": [{"path": str(vendors / "acme_alpaca.json")}]},
        {"name": "bolt", "files": [{"path": str(vendors / "bolt_chat.jsonl")}]}]}))
    (tmp_path / "compare.yaml").write_text(yaml.safe_dump({
        "vendors": "vendors.yaml", "base": str(root / "hf"), "heldout": str(ROOT / "examples/compare/alpaca_en_demo.json"),
        "heldout_size": 8, "seeds": 1, "steps": 2, "noise_floor": None, "n_boot": 100,
        "method": "lora", "lora": {"rank": 2, "targets": ["q", "v"]},
        "train": {"batch_size": 2, "seq_len": 96, "warmup_steps": 1}}))
    r = CliRunner().invoke(cli, ["vendors", "compare", str(tmp_path / "compare.yaml"), "--out", str(tmp_path / "out"),
                                 "--quiet", "--workers", "2"])
    assert r.exit_code == 0, r.output
    assert "prompt-following" in r.output
    result = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert result["manifest"]["config"]["template"] == "llama2"  # from the folder's chat template
    assert result["plan"]["settings"]["method"] == "lora"
    assert set(result["prompt_following"]["arms"]) == {"acme", "bolt"}
