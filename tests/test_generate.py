import pytest
import torch

from train.generate import generate, sample_next
from train.hf import save_hf
from train.model import Llama, get_config

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = get_config(dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=300, multiple_of=32, max_seq_len=128))
    m = Llama(cfg).eval()
    with torch.no_grad():  # sharper logits than the init's, so samples depend on the context
        m.output.weight.mul_(20)
    return m


PROMPTS = [[1, 5, 6, 7, 8, 9, 10], [1, 42], [1, 3, 4, 200, 201, 202, 17, 18, 19, 250, 251]]


def test_kv_cache_gives_the_same_tokens_as_recomputation(model):
    greedy = generate(model, PROMPTS, 24, temperature=0)
    assert greedy == generate(model, PROMPTS, 24, temperature=0, use_cache=False)
    sampled = generate(model, PROMPTS, 24, temperature=0.9, top_p=0.95, seed=5)
    assert sampled == generate(model, PROMPTS, 24, temperature=0.9, top_p=0.95, seed=5, use_cache=False)
    assert all(len(x) == 24 for x in greedy + sampled)
    assert sampled != greedy


def test_left_padded_batch_equals_each_prompt_alone(model):
    batched = generate(model, PROMPTS, 16, temperature=0)
    assert batched == [generate(model, [p], 16, temperature=0)[0] for p in PROMPTS]


def test_greedy_matches_transformers_generate(model, tmp_path):
    transformers = pytest.importorskip("transformers")
    save_hf(model, tmp_path)
    hf = transformers.LlamaForCausalLM.from_pretrained(tmp_path).eval()
    ours = generate(model, PROMPTS, 16, temperature=0, eos_id=2)
    for prompt, got in zip(PROMPTS, ours):
        out = hf.generate(torch.tensor([prompt]), max_new_tokens=16, do_sample=False, eos_token_id=2, pad_token_id=0)
        assert out[0, len(prompt):].tolist() == got


def test_seed_makes_sampling_reproducible(model):
    a = generate(model, PROMPTS, 12, temperature=1.0, seed=1)
    assert a == generate(model, PROMPTS, 12, temperature=1.0, seed=1)
    assert a != generate(model, PROMPTS, 12, temperature=1.0, seed=2)


def test_tiny_top_p_is_greedy(model):
    # the nucleus of mass 1e-6 is the single most likely token
    assert generate(model, PROMPTS, 12, temperature=1.0, top_p=1e-6, seed=3) == generate(model, PROMPTS, 12, temperature=0)


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([0.1, 0.6, 0.3])
    logits = probs.log().expand(6000, 3)
    draws = sample_next(logits, temperature=1.0, top_p=0.7, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(draws, minlength=3).float() / len(draws)
    assert counts[0] == 0  # 0.6 alone is below 0.7, 0.6 + 0.3 reaches it: token 0 is cut
    assert abs(counts[2].item() - 1 / 3) < 0.03  # 0.3 / 0.9 after renormalising
    temp = sample_next(probs.log().expand(6000, 3), temperature=2.0, generator=torch.Generator().manual_seed(0))
    expected = torch.softmax(probs.log() / 2.0, -1)
    assert torch.allclose(torch.bincount(temp, minlength=3).float() / 6000, expected, atol=0.03)


def test_eos_stops_its_row_only(model):
    free = generate(model, PROMPTS, 10, temperature=0)
    eos = free[0][2]  # make row 0's third token the end of sequence
    out = generate(model, PROMPTS, 10, temperature=0, eos_id=eos)
    assert out[0] == free[0][:3]
    for got, full in zip(out[1:], free[1:]):
        assert got == (full[:full.index(eos) + 1] if eos in full else full)


def test_bad_requests_raise(model):
    with pytest.raises(ValueError, match="at least one token"):
        generate(model, [[1], []], 4)
    with pytest.raises(ValueError, match="context"):
        generate(model, [[1] * 100], 50)
    with pytest.raises(ValueError, match="top_p"):
        generate(model, [[1]], 4, top_p=0)
    assert generate(model, [[1]], 0) == [[]]
