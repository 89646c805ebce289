"""Memory estimates against hand counts for Llama-2-7B shapes, the one-line error when a run cannot fit,
and `curate train sft` with method: lora (estimate printed, PEFT adapter written, too-big runs refused)."""
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from curate.cli import cli
from curate.basics.errors import CurateError
from train.hf import load_hf, save_hf
from train.memory import check_fits, estimate_memory, largest_batch, lora_param_count
from train.model import Llama, get_config

pytestmark = pytest.mark.usefixtures("torch_one_thread")
ROOT = Path(__file__).resolve().parents[1]
SEVEN_B = get_config("llama2-7b")
N_7B = 6_738_415_616  # Meta's published Llama-2-7B parameter count


def test_7b_counts_by_hand():
    assert SEVEN_B.num_params() == N_7B
    # rank 8 on q,k,v,o: 32 layers x 4 projections x 8 x (4096 + 4096)
    assert lora_param_count(SEVEN_B, 8, ("q", "k", "v", "o")) == 32 * 4 * 8 * 8192
    est = estimate_memory(SEVEN_B, "lora", batch_size=1, seq_len=4096)
    adapters = 32 * 4 * 8 * 8192
    assert est.weights == 2 * N_7B + 4 * adapters and est.optimizer == 8 * adapters
    per_token_layer = 6 * 4096 + 2 * 4096 + 4 * 11008  # elements saved per token per layer
    assert est.activations == 4096 * 32 * per_token_layer * 2
    assert est.logits == 4096 * 32000 * 10
    full = estimate_memory(SEVEN_B, "full", batch_size=1, seq_len=4096)
    assert full.weights + full.gradients + full.optimizer == 16 * N_7B


def test_time_estimate_by_hand():
    from train.memory import estimate_seconds

    per_token = 4 * (N_7B - 32000 * 4096) + 12 * 32 * 4096 * 1024  # 4N without the input table, + attention
    assert estimate_seconds(SEVEN_B, "lora", 10**6, 1024, 1e15, mfu=0.5) == pytest.approx(10**6 * per_token / 5e14)


def test_7b_lora_fits_80gb_but_full_does_not():
    budget = 80 * 10**9
    b = largest_batch(SEVEN_B, "lora", 4096, budget)
    assert b >= 1
    check_fits(estimate_memory(SEVEN_B, "lora", b, 4096), budget, SEVEN_B)
    with pytest.raises(CurateError) as e:
        check_fits(estimate_memory(SEVEN_B, "lora", b + 1, 4096), budget, SEVEN_B)
    assert f"batch_size {b}" in str(e.value)
    with pytest.raises(CurateError) as e:
        check_fits(estimate_memory(SEVEN_B, "full", 1, 4096), budget, SEVEN_B)
    msg = str(e.value)
    assert "method: lora" in msg and "fsdp" in msg and "\n" not in msg and "needs ~" in msg


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory, demo_sft):
    from train.tokenizer import export_hf_tokenizer

    _, tok, tok_path = demo_sft
    root = tmp_path_factory.mktemp("sftbase")
    torch.manual_seed(0)
    save_hf(Llama(get_config("tiny", vocab_size=tok.vocab_size)), root / "base")
    export_hf_tokenizer(tok_path, root / "base")  # a Hugging Face folder, tokenizer inside
    return root


def write_cfg(root, name, **over):
    cfg = {"run_dir": str(root / name), "init_from": str(root / "base"),
           "data": str(ROOT / "examples/compare/alpaca_en_demo.json"), "method": "lora",
           "lora": {"rank": 4, "targets": ["q", "v", "down"]},
           "train": {"steps": 3, "batch_size": 2, "seq_len": 128, "log_every": 1, "eval_every": 0}}
    for k, v in over.items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) else v
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_sft_cli_lora_prints_estimate_and_writes_adapter(base_dir):
    r = CliRunner().invoke(cli, ["train", "sft", str(write_cfg(base_dir, "lora"))])
    assert r.exit_code == 0, r.output
    assert "memory estimate (lora, batch 2 x seq 128)" in r.output
    adapter = base_dir / "lora/adapter"
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    from train.lora import load_adapter

    model = load_adapter(load_hf(base_dir / "base"), adapter)
    assert sum(1 for n, _ in model.named_parameters() if "lora_A" in n) == 2 * 3


def test_sft_cli_refuses_what_cannot_fit_and_bad_method(base_dir):
    r = CliRunner().invoke(cli, ["train", "sft", str(write_cfg(base_dir, "huge", train={"batch_size": 10**6}))])
    assert r.exit_code == 2 and "will not fit" in r.output and "batch_size" in r.output
    estimate, error = r.output.strip().splitlines()  # the estimate, then a one-line error
    assert estimate.startswith("memory estimate") and "will not fit" in error
    r = CliRunner().invoke(cli, ["train", "sft", str(write_cfg(base_dir, "bad", method="qlora"))])
    assert r.exit_code == 2 and "choose full or lora" in r.output
