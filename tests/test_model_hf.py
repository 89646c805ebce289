"""Checkpoint interchange against the reference implementations: transformers' LlamaForCausalLM,
and a from-scratch Llama forward with Meta's complex-number (interleaved) rotary embeddings."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from train.hf import half_to_interleaved, interleaved_to_half, load_hf, load_meta, save_hf
from train.model import Llama, get_config

transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.usefixtures("torch_one_thread")


# GQA (4 query heads share 2 kv heads) and a SwiGLU width the 8/3 rule would not give
CFG = dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=300, ffn_hidden_dim=96, max_seq_len=128)
TOKENS = torch.randint(0, 300, (2, 24), generator=torch.Generator().manual_seed(0))


def random_llama(seed=0):
    torch.manual_seed(seed)
    m = Llama(get_config(CFG)).eval()
    with torch.no_grad():  # norm weights away from 1 so a swapped or missing norm shows
        for name, p in m.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return m


def hf_logits(hf, tokens, **kw):
    with torch.no_grad():
        return hf(tokens, **kw).logits


def test_save_hf_loads_in_transformers_with_same_logits(tmp_path):
    ours = random_llama()
    save_hf(ours, tmp_path)
    hf = transformers.LlamaForCausalLM.from_pretrained(tmp_path).eval()
    assert hf.config.num_key_value_heads == 2 and hf.config.intermediate_size == 96
    with torch.no_grad():
        torch.testing.assert_close(ours(TOKENS), hf_logits(hf, TOKENS), atol=1e-4, rtol=0)
        positions = torch.tensor([[5] * 4 + list(range(20))] * 2) + torch.arange(2)[:, None] * 37
        torch.testing.assert_close(ours(TOKENS, positions=positions),
                                   hf_logits(hf, TOKENS, position_ids=positions), atol=1e-4, rtol=0)


def test_sharded_save_hf_loads_in_transformers(tmp_path):
    ours = random_llama(1)
    save_hf(ours, tmp_path, max_shard_bytes=40_000)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 3
    hf = transformers.LlamaForCausalLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(TOKENS), hf_logits(hf, TOKENS), atol=1e-4, rtol=0)


@pytest.mark.parametrize("shard", [None, "40KB"])
def test_from_hf_reads_save_pretrained(tmp_path, shard):
    torch.manual_seed(2)
    config = transformers.LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, vocab_size=300,
                                      rms_norm_eps=1e-5, max_position_embeddings=128, tie_word_embeddings=False)
    hf = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    kw = {"max_shard_size": shard} if shard else {}
    hf.save_pretrained(tmp_path, **kw)
    if shard:
        assert (tmp_path / "model.safetensors.index.json").exists()
    ours = load_hf(tmp_path).eval()
    assert ours.cfg.kv_heads == 2 and ours.cfg.hidden_dim == 96
    with torch.no_grad():
        torch.testing.assert_close(ours(TOKENS), hf_logits(hf, TOKENS), atol=1e-4, rtol=0)


def test_round_trip_through_hf_is_exact(tmp_path):
    ours = random_llama(3)
    save_hf(ours, tmp_path)
    back = load_hf(tmp_path)
    assert back.cfg == ours.cfg
    for (k, a), (_, b) in zip(ours.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), k


def test_from_hf_rejects_scaled_rope(tmp_path):
    save_hf(random_llama(), tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="rope"):
        load_hf(tmp_path)


# --- Meta's original format ---------------------------------------------------------------------
PARAMS = {"dim": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "vocab_size": -1, "multiple_of": 32,
          "ffn_dim_multiplier": 1.3, "norm_eps": 1e-5}
HIDDEN = 224  # Meta's rule by hand: int(2 * 256 / 3) = 170; int(1.3 * 170) = 221; rounded up to 32 -> 224


def meta_state(vocab=300, seed=4):
    g = torch.Generator().manual_seed(seed)
    d, hd, kv = 64, 16, 2

    def w(*shape, scale=0.1):
        return torch.randn(*shape, generator=g) * scale

    sd = {"tok_embeddings.weight": w(vocab, d, scale=1.0), "norm.weight": 1 + w(d), "output.weight": w(vocab, d)}
    for i in range(2):
        p = f"layers.{i}."
        sd |= {p + "attention.wq.weight": w(4 * hd, d), p + "attention.wk.weight": w(kv * hd, d),
               p + "attention.wv.weight": w(kv * hd, d), p + "attention.wo.weight": w(d, 4 * hd),
               p + "feed_forward.w1.weight": w(HIDDEN, d), p + "feed_forward.w2.weight": w(d, HIDDEN),
               p + "feed_forward.w3.weight": w(HIDDEN, d),
               p + "attention_norm.weight": 1 + w(d), p + "ffn_norm.weight": 1 + w(d)}
    return sd


def meta_reference_logits(sd, tokens):
    """Llama 2's forward as Meta's llama/model.py writes it: rotary pairs (2i, 2i+1) rotated as complex numbers."""
    B, T = tokens.shape
    H, KV, hd, eps = 4, 2, 16, 1e-5
    freqs = 1.0 / (10000.0 ** (torch.arange(0, hd, 2).float() / hd))
    freqs_cis = torch.polar(torch.ones(T, hd // 2), torch.outer(torch.arange(T).float(), freqs))

    def norm(x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

    def rope(x):
        xc = torch.view_as_complex(x.reshape(*x.shape[:-1], hd // 2, 2))
        return torch.view_as_real(xc * freqs_cis[None, :, None, :]).flatten(3)

    h = sd["tok_embeddings.weight"][tokens]
    causal = torch.full((T, T), float("-inf")).triu(1)
    for i in range(2):
        p = f"layers.{i}."
        x = norm(h, sd[p + "attention_norm.weight"])
        q = rope((x @ sd[p + "attention.wq.weight"].T).view(B, T, H, hd))
        k = rope((x @ sd[p + "attention.wk.weight"].T).view(B, T, KV, hd)).repeat_interleave(H // KV, dim=2)
        v = (x @ sd[p + "attention.wv.weight"].T).view(B, T, KV, hd).repeat_interleave(H // KV, dim=2)
        scores = torch.einsum("bthd,bshd->bhts", q, k) / math.sqrt(hd) + causal
        att = torch.einsum("bhts,bshd->bthd", scores.softmax(-1), v).reshape(B, T, H * hd)
        h = h + att @ sd[p + "attention.wo.weight"].T
        x = norm(h, sd[p + "ffn_norm.weight"])
        w1, w2, w3 = (sd[p + f"feed_forward.w{j}.weight"] for j in (1, 2, 3))
        h = h + (F.silu(x @ w1.T) * (x @ w3.T)) @ w2.T
    return norm(h, sd["norm.weight"]) @ sd["output.weight"].T


# how Meta's model-parallel layers split each weight across ranks
SPLIT_DIM = {"tok_embeddings": 1, "output": 0, "wq": 0, "wk": 0, "wv": 0, "w1": 0, "w3": 0, "wo": 1, "w2": 1}


@pytest.mark.parametrize("n_shards", [1, 2])
def test_from_meta_matches_reference_forward(tmp_path, n_shards):
    sd = meta_state()
    for rank in range(n_shards):
        shard = {"rope.freqs": torch.zeros(8)}  # real checkpoints carry it; it is not a weight
        for name, t in sd.items():
            dim = SPLIT_DIM.get(name.split(".")[-2])
            shard[name] = t.clone() if dim is None or n_shards == 1 else t.chunk(n_shards, dim)[rank].clone()
        torch.save(shard, tmp_path / f"consolidated.{rank:02d}.pth")
    (tmp_path / "params.json").write_text(json.dumps(PARAMS))
    ours = load_meta(tmp_path).eval()
    assert ours.cfg.hidden_dim == HIDDEN and ours.cfg.vocab_size == 300 and ours.cfg.kv_heads == 2
    with torch.no_grad():
        torch.testing.assert_close(ours(TOKENS), meta_reference_logits(sd, TOKENS), atol=1e-4, rtol=0)


def test_rotary_permutations_are_inverse():
    w = torch.randn(64, 8)
    assert torch.equal(half_to_interleaved(interleaved_to_half(w, 4), 4), w)
    # within a head of 16, interleaved row 2i+1 (imaginary part of pair i) lands at row 8+i
    assert torch.equal(interleaved_to_half(w, 4)[8 + 3], w[2 * 3 + 1])


def test_from_hf_unties_tied_embeddings(tmp_path):
    torch.manual_seed(5)
    config = transformers.LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=1, num_attention_heads=4,
                                      vocab_size=300, rms_norm_eps=1e-5, tie_word_embeddings=True)
    hf = transformers.LlamaForCausalLM(config).eval()
    hf.save_pretrained(tmp_path)
    ours = load_hf(tmp_path).eval()
    assert ours.output.weight.data_ptr() != ours.tok_embeddings.weight.data_ptr()  # a copy: they train apart
    with torch.no_grad():
        torch.testing.assert_close(ours(TOKENS), hf_logits(hf, TOKENS), atol=1e-4, rtol=0)


class NotAWeight:
    pass


def test_from_meta_refuses_arbitrary_pickles(tmp_path):
    torch.save({"tok_embeddings.weight": torch.zeros(3, 64), "x": NotAWeight()}, tmp_path / "consolidated.00.pth")
    (tmp_path / "params.json").write_text(json.dumps(PARAMS))
    with pytest.raises(Exception, match="[Ww]eights only load failed|Unsupported global"):
        load_meta(tmp_path)
