import pytest
import torch

from train.model import CONFIGS, Llama, get_config


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def small_cfg(**kw):
    base = dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=300, multiple_of=32, max_seq_len=128)
    return get_config(base | kw)


def model(cfg, seed=0):
    torch.manual_seed(seed)
    return Llama(cfg).eval()


# Totals published for Meta's Llama 2 checkpoints (the Hugging Face model cards / num_parameters()).
PUBLISHED = {"llama2-7b": 6_738_415_616, "llama2-13b": 13_015_864_320, "llama2-70b": 68_976_648_192}


def independent_count(dim, n_layers, n_heads, n_kv_heads, vocab, hidden):
    head = dim // n_heads
    per_layer = dim * n_heads * head * 2 + dim * n_kv_heads * head * 2 + 3 * dim * hidden + 2 * dim
    return 2 * vocab * dim + n_layers * per_layer + dim


@pytest.mark.parametrize("name,shape", [
    ("llama2-7b", (4096, 32, 32, 32, 32000, 11008)),
    ("llama2-13b", (5120, 40, 40, 40, 32000, 13824)),
    ("llama2-70b", (8192, 80, 64, 8, 32000, 28672)),
])
def test_llama2_parameter_counts(name, shape):
    cfg = get_config(name)
    assert (cfg.dim, cfg.n_layers, cfg.n_heads, cfg.kv_heads, cfg.vocab_size, cfg.hidden_dim) == shape
    assert cfg.num_params() == independent_count(*shape) == PUBLISHED[name]
    with torch.device("meta"):  # the real module's parameters, nothing allocated
        m = Llama(cfg)
    assert m.num_params() == cfg.num_params()
    assert m.num_params(exclude_embeddings=True) == cfg.num_params() - cfg.vocab_size * cfg.dim


@pytest.mark.parametrize("name,claimed", [("tiny", 1e6), ("small", 15e6), ("base", 110e6)])
def test_small_config_sizes(name, claimed):
    cfg = CONFIGS[name]
    assert cfg.vocab_size == 32000
    n = cfg.num_params()  # counts both embedding matrices
    assert abs(n - claimed) / claimed < 0.05
    with torch.device("meta"):
        assert Llama(cfg).num_params() == n


def test_get_config_forms_and_errors():
    assert get_config("tiny", dim=32).dim == 32
    assert get_config({"dim": 64, "n_layers": 1, "n_heads": 4}).hidden_dim == 256  # int(512/3)=170 -> 256
    assert get_config(CONFIGS["small"]) == CONFIGS["small"]
    with pytest.raises(ValueError, match="unknown model config"):
        get_config("llama9")
    with pytest.raises(ValueError, match="unknown model config keys"):
        get_config({"dim": 64, "heads": 4})
    with pytest.raises(ValueError, match="does not divide"):
        get_config("tiny", dim=48, n_heads=3, n_kv_heads=2)


def test_flops_per_token_formula():
    m = model(small_cfg())
    n = sum(p.numel() for name, p in m.named_parameters() if name != "tok_embeddings.weight")
    assert m.flops_per_token(256) == 6 * n + 12 * 2 * 64 * 256


def test_gqa_equals_mha_with_repeated_kv_weights():
    gqa = model(small_cfg(n_kv_heads=2))
    state = gqa.state_dict()
    mha_state = {}
    for k, w in state.items():
        if k.endswith(("wk.weight", "wv.weight")):  # kv head g serves query heads 2g and 2g+1
            w = w.view(2, 16, 64).repeat_interleave(2, dim=0).reshape(64, 64)
        mha_state[k] = w
    mha = Llama(small_cfg(n_kv_heads=None)).eval()
    mha.load_state_dict(mha_state)
    tokens = torch.randint(0, 300, (2, 20), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(gqa(tokens), mha(tokens), atol=1e-5, rtol=0)
    explicit = Llama(small_cfg(n_kv_heads=4)).eval()  # n_kv_heads == n_heads is plain MHA
    explicit.load_state_dict(mha_state)
    torch.testing.assert_close(explicit(tokens), mha(tokens), atol=0, rtol=0)


def test_packed_examples_do_not_see_each_other():
    m = model(small_cfg())
    g = torch.Generator().manual_seed(2)
    a, b = torch.randint(0, 300, (1, 9), generator=g), torch.randint(0, 300, (1, 15), generator=g)
    packed = torch.cat([a, b], 1)
    doc_ids = torch.tensor([[0] * 9 + [1] * 15])
    positions = torch.cat([torch.arange(9), torch.arange(15)])[None]
    out = m(packed, positions=positions, doc_ids=doc_ids)
    # each example's logits are what it gets alone (so positions restarted and nothing leaked)
    torch.testing.assert_close(out[:, :9], m(a), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[:, 9:], m(b), atol=1e-5, rtol=0)
    # changing the first example leaves the second untouched
    other = torch.cat([(a + 7) % 300, b], 1)
    changed = m(other, positions=positions, doc_ids=doc_ids)
    assert not torch.allclose(changed[:, :9], out[:, :9])
    torch.testing.assert_close(changed[:, 9:], out[:, 9:], atol=1e-6, rtol=0)
    # and without the mask, the second example does see the first
    assert not torch.allclose(m(other, positions=positions)[:, 9:], out[:, 9:], atol=1e-3)


def test_cached_chunks_match_full_forward():
    m = model(small_cfg())
    tokens = torch.randint(0, 300, (3, 30), generator=torch.Generator().manual_seed(3))
    full = m(tokens)
    cache = m.new_cache(3, 40)
    parts = [m(tokens[:, a:b], cache=cache) for a, b in [(0, 11), (11, 12), (12, 30)]]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=0)
    assert cache.pos == 30


def test_kv_cache_bytes_per_token_matches_allocation():
    m = model(small_cfg())
    for dtype in (torch.bfloat16, torch.float32):
        cache = m.new_cache(batch_size=3, max_len=50, dtype=dtype)
        per_token = m.kv_cache_bytes_per_token(dtype)
        assert cache.nbytes() == cache.k.nbytes + cache.v.nbytes == per_token * 3 * 50
        assert per_token == 2 * 2 * 2 * 16 * dtype.itemsize  # k,v x layers x kv heads x head_dim
    with torch.device("meta"):
        assert Llama(get_config("llama2-7b")).kv_cache_bytes_per_token() == 512 * 1024  # 0.5 MiB, the known 7B figure


def test_return_hidden_feeds_output_head():
    m = model(small_cfg())
    tokens = torch.randint(0, 300, (2, 12))
    hidden = m(tokens, return_hidden=True)
    assert hidden.shape == (2, 12, 64)
    torch.testing.assert_close(m.output(hidden), m(tokens))


def test_rmsnorm_statistics_in_float32_under_bf16():
    m = model(small_cfg()).bfloat16()
    x = torch.randn(2, 5, 64) * 30
    ref = x / torch.sqrt((x.double() ** 2).mean(-1, keepdim=True) + 1e-5).float()
    out = m.norm(x.bfloat16())
    torch.testing.assert_close(out.float(), ref.bfloat16().float(), atol=0.02, rtol=0.01)
    assert out.dtype == torch.bfloat16


def test_save_load_roundtrip(tmp_path):
    m = model(small_cfg(ffn_hidden_dim=100))
    m.save(tmp_path / "ck")
    loaded = Llama.load(tmp_path / "ck")
    assert loaded.cfg == m.cfg
    tokens = torch.randint(0, 300, (1, 10))
    torch.testing.assert_close(loaded(tokens), m(tokens), atol=0, rtol=0)
    bf16 = Llama.load(tmp_path / "ck", dtype=torch.bfloat16)
    assert bf16.output.weight.dtype == torch.bfloat16
