"""Architecture ablations: equal-parameter variants, KV-cache bytes, GQA against MHA, the CLI."""
from dataclasses import replace

import pytest
import torch

from experiments.ablate.arch import (decode_speed, equal_param_variant, inference_report, kv_bytes_per_token, max_batch,
                                     memory_per_sequence, mha_from_gqa, variants)
from train.model import CONFIGS, Llama, LlamaConfig

SMALL = LlamaConfig(dim=64, n_layers=2, n_heads=8, vocab_size=300, multiple_of=16, max_seq_len=128)


def _held(cfg):
    with torch.device("meta"):
        return Llama(cfg).num_params(exclude_embeddings=True)


@pytest.mark.parametrize("base,kv", [(SMALL, [8, 4, 2, 1]), (CONFIGS["llama2-7b"], [32, 8, 1]),
                                     (replace(CONFIGS["llama2-70b"], n_kv_heads=None), [64, 8, 1])])
def test_variants_hold_the_parameters_they_claim(base, kv):
    specs = variants(base, kv)
    mha = next(iter(specs.values()))
    assert mha.kv_heads == base.n_heads and mha.hidden_dim == base.hidden_dim
    for name, cfg in specs.items():
        actual = _held(cfg)  # counted from the allocated (meta) tensors, not from the formula
        assert actual == cfg.num_params(exclude_embeddings=True)
        assert abs(actual / _held(mha) - 1) < 0.01, name
    # the GQA/MQA variants really are narrower in attention and wider in the FFN
    assert [c.kv_heads for c in specs.values()] == kv
    assert all(c.hidden_dim > mha.hidden_dim for c in list(specs.values())[1:])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kv_bytes_per_token_equal_the_allocated_cache(dtype, torch_one_thread):
    for cfg in variants(SMALL, [8, 2, 1]).values():
        model = Llama(cfg).to(dtype)
        batch, ctx, new = 3, 20, 5
        r = decode_speed(model, batch, ctx, new)
        assert r["cache_bytes"] == kv_bytes_per_token(cfg, dtype) * batch * (ctx + new)
        assert kv_bytes_per_token(cfg, dtype) == model.kv_cache_bytes_per_token(dtype)
    rep = inference_report(cfg, [1, 2], [8], 4, memory_gib=0.01, device="cpu")
    for s in rep["speed"]:
        assert s["cache_bytes"] == rep["kv_bytes_per_token"] * s["batch"] * (s["context"] + 4)
    assert rep["kv_bytes_per_token"] == 2 * 2 * 1 * 8 * 4  # K+V, 2 layers, 1 kv head, head_dim 8, fp32


def test_max_batch_from_the_memory_budget():
    cfg = CONFIGS["llama2-7b"]
    per_seq = memory_per_sequence(cfg, 1024, 64)
    weights = cfg.num_params() * 2
    budget = weights + 10.5 * per_seq
    assert max_batch(cfg, budget, 1024, 64) == 10
    assert max_batch(cfg, weights / 2, 1024, 64) == 0
    # at a long context, fewer KV heads fit a larger batch
    mqa = equal_param_variant(cfg, 1)
    assert max_batch(mqa, 40 * 2 ** 30, 4000, 64) > max_batch(cfg, 40 * 2 ** 30, 4000, 64)


def test_gqa_with_all_heads_is_mha(torch_one_thread):
    torch.manual_seed(0)
    mha = Llama(SMALL)
    gqa = Llama.from_state_dict(replace(SMALL, n_kv_heads=SMALL.n_heads), mha.state_dict())
    tokens = torch.randint(0, SMALL.vocab_size, (2, 17))
    assert torch.equal(mha(tokens), gqa(tokens))


@pytest.mark.parametrize("kv", [4, 2, 1])
def test_grouped_query_equals_mha_with_shared_kv_weights(kv, torch_one_thread):
    torch.manual_seed(kv)
    gqa = Llama(replace(SMALL, n_kv_heads=kv))
    mha = mha_from_gqa(gqa)
    assert mha.cfg.kv_heads == SMALL.n_heads
    tokens = torch.randint(0, SMALL.vocab_size, (2, 17))
    torch.testing.assert_close(gqa(tokens), mha(tokens), rtol=1e-5, atol=1e-5)
    # and through the KV cache, token by token
    caches = [m.new_cache(2, 17) for m in (gqa, mha)]
    for t in range(17):
        a, b = (m(tokens[:, t:t + 1], cache=c) for m, c in zip((gqa, mha), caches))
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # a wrong grouping (kv head h % kv instead of h // group) does not match: the test can fail
    if kv > 1:
        wrong = {k: v.clone() for k, v in gqa.state_dict().items()}
        for k, w in gqa.state_dict().items():
            if k.endswith(("wk.weight", "wv.weight")):
                wrong[k] = w.view(kv, -1, SMALL.dim).repeat(SMALL.n_heads // kv, 1, 1).reshape(-1, SMALL.dim)
        bad = Llama.from_state_dict(replace(SMALL, n_kv_heads=None), wrong)
        assert not torch.allclose(gqa(tokens), bad(tokens), atol=1e-4)
