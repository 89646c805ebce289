"""LoRA: a fresh adapter changes nothing, merge/unmerge are exact, PEFT loads our saved adapters onto
the same base exported with save_hf (logits checked against transformers + peft), and LoRA training
lowers the loss on real instruction data while the base weights stay put."""
import json

import pytest
import torch

from train.hf import save_hf
from train.lora import (LoRAConfig, LoRALinear, apply_lora, load_adapter, lora_modules, merge,
                        merged_copy, save_adapter, trainable_parameters, unmerge)
from train.model import Llama, get_config

pytestmark = pytest.mark.usefixtures("torch_one_thread")

CFG = dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=300, ffn_hidden_dim=96, max_seq_len=128)
TOKENS = torch.randint(0, 300, (2, 24), generator=torch.Generator().manual_seed(0))
ALL = ("q", "k", "v", "o", "gate", "up", "down")


def base(seed=0):
    torch.manual_seed(seed)
    return Llama(get_config(CFG)).eval()


def with_random_adapters(model, cfg, seed=1):
    """Adapters with B away from zero, so the update is visible."""
    apply_lora(model, cfg, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, _, mod in lora_modules(model):
            mod.lora_B.copy_(torch.randn(mod.lora_B.shape, generator=g) * 0.05)
    return model


def test_fresh_adapter_gives_base_logits_exactly_and_freezes_base():
    model = base()
    with torch.no_grad():
        want = model(TOKENS)
    apply_lora(model, LoRAConfig(rank=4, targets=ALL))
    assert sum(isinstance(m, LoRALinear) for m in model.modules()) == 7 * 2
    with torch.no_grad():
        assert torch.equal(model(TOKENS), want)
    # only A and B train: 2 layers x (r*(in+out)) per projection
    kv = 2 * 16
    per_layer = 4 * ((64 + 64) * 2 + (64 + kv) * 2 + (64 + 96) * 3)
    assert trainable_parameters(model) == 2 * per_layer
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names and all("lora_" in n for n in names)


def test_merged_equals_unmerged_and_unmerge_restores_weights():
    model = with_random_adapters(base(), LoRAConfig(rank=4, alpha=8, targets=ALL))
    w0 = model.layers[0].attention.wq.weight.detach().clone()
    with torch.no_grad():
        unmerged = model(TOKENS)
        merge(model)
        merged = model(TOKENS)
        plain = merged_copy(model)(TOKENS)
        unmerge(model)
        again = model(TOKENS)
    assert not torch.allclose(unmerged, base()(TOKENS), atol=1e-3)  # the adapters do something
    torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=0)
    torch.testing.assert_close(plain, unmerged, atol=1e-5, rtol=0)
    torch.testing.assert_close(again, unmerged, atol=1e-5, rtol=0)
    torch.testing.assert_close(model.layers[0].attention.wq.weight, w0, atol=1e-6, rtol=0)


def test_peft_loads_our_adapter_onto_the_exported_base(tmp_path):
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    plain = base()
    save_hf(plain, tmp_path / "base")
    model = with_random_adapters(base(), LoRAConfig(rank=4, alpha=12, targets=("q", "v", "gate", "down")))
    save_adapter(model, tmp_path / "adapter", base_name=str(tmp_path / "base"))
    cfg = json.loads((tmp_path / "adapter/adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] == 4 and set(cfg["target_modules"]) == {
        "q_proj", "v_proj", "gate_proj", "down_proj"}
    hf = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "base")
    peft_model = peft.PeftModel.from_pretrained(hf, tmp_path / "adapter").eval()
    with torch.no_grad():
        ours, theirs = model(TOKENS), peft_model(TOKENS).logits
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)
    # and back: our loader reads the PEFT folder into an equal model
    again = load_adapter(base(), tmp_path / "adapter").eval()
    with torch.no_grad():
        torch.testing.assert_close(again(TOKENS), ours, atol=1e-6, rtol=0)


def test_bad_targets_are_one_line_errors():
    with pytest.raises(ValueError, match="choose from"):
        LoRAConfig(targets=("qq",))
    with pytest.raises(ValueError, match="rank"):
        LoRAConfig(rank=0)


def test_lora_loss_falls_on_real_sft_data(demo_sft):
    from train.run import sft

    examples, tok, _ = demo_sft
    torch.manual_seed(0)
    model = Llama(get_config("tiny", vocab_size=tok.vocab_size, dim=64, n_heads=4, n_kv_heads=2))
    # LoRA cannot teach a random model (its frozen output layer and final norm bound the logits near
    # uniform), so first a brief full fine-tune on other examples makes a "base"
    warm = dict(steps=30, batch_size=8, seq_len=256, lr=3e-3, warmup_steps=5, eval_every=0, log_every=30)
    model, _ = sft(model=model, tokenizer=tok, examples=examples[8:], hyperparams=warm, seed=1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    hp = dict(steps=40, batch_size=4, seq_len=256, lr=1e-2, warmup_steps=5, eval_every=0, log_every=40)
    trained, result = sft(model=model, tokenizer=tok, examples=examples[:8], hyperparams=hp, seed=0,
                          method="lora", lora=dict(rank=8, alpha=16, targets=ALL))
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    assert last < first - 0.1, (first, last)
    assert trained is not model and trainable_parameters(trained) == 2 * 8 * (2 * 128 + 2 * 96 + 3 * (64 + 176))
    shared = {id(p) for p in trained.parameters()} & {id(p) for p in model.parameters()}
    assert len(shared) == len(before)  # the LoRA copy holds the base's tensors, not copies
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), n  # and the base never moves
