"""Packed SFT attention: with either kernel (FlexAttention block mask, dense SDPA mask), the logits of
every example in a packed row equal the example run alone, packed examples never see each other, and
flex and dense agree on logits (and, on a GPU, gradients: FlexAttention has no CPU backward)."""
import warnings

import pytest
import torch

from train.model import Llama, document_block_mask, get_config
from train.sft import Encoded, collate, pack

pytestmark = pytest.mark.usefixtures("torch_one_thread")

CFG = dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=300, ffn_hidden_dim=96, max_seq_len=256)
LENGTHS = (23, 9, 40)  # three examples, one row of 80 with padding after them


def examples():
    g = torch.Generator().manual_seed(0)
    return [Encoded(torch.randint(3, 300, (n,), generator=g).tolist(), [1] * n) for n in LENGTHS]


def model(kernel):
    torch.manual_seed(0)
    m = Llama(get_config(CFG)).eval()
    m.packed_attention = kernel
    return m


@pytest.fixture(autouse=True)
def quiet_eager_flex():
    with warnings.catch_warnings():  # eager flex on CPU warns that it is slow; exactness is what we test
        warnings.simplefilter("ignore")
        yield


@pytest.mark.parametrize("kernel", ["flex", "dense"])
def test_packed_row_equals_each_example_alone(kernel):
    encoded = examples()
    rows = pack(encoded, 80)
    assert len(rows) == 1
    batch = collate(rows, length=80)
    m = model(kernel)
    with torch.no_grad():
        out = m(batch["inputs"], positions=batch["positions"], doc_ids=batch["doc_ids"])
        start = 0
        for enc in encoded:
            n = len(enc.ids) - 1
            alone = m(torch.tensor([enc.ids[:-1]]))
            torch.testing.assert_close(out[0, start:start + n], alone[0], atol=1e-5, rtol=0)
            start += n
        # changing the first example moves none of the others' logits
        changed = batch["inputs"].clone()
        changed[0, 1:LENGTHS[0] - 1] = 7
        out2 = m(changed, positions=batch["positions"], doc_ids=batch["doc_ids"])
    first = LENGTHS[0] - 1
    assert torch.equal(out2[0, first:start], out[0, first:start])
    assert not torch.allclose(out2[0, :first], out[0, :first])


def test_flex_and_dense_agree_on_logits():
    batch = collate(pack(examples(), 40), length=48)  # two rows: [23+9], [40]
    assert batch["inputs"].shape[0] == 2
    with torch.no_grad():
        flex, dense = (model(k)(batch["inputs"], positions=batch["positions"], doc_ids=batch["doc_ids"])
                       for k in ("flex", "dense"))
    torch.testing.assert_close(flex, dense, atol=1e-5, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="FlexAttention has no backward on CPU")
def test_flex_and_dense_agree_on_gradients_on_gpu():
    batch = {k: v.cuda() for k, v in collate(pack(examples(), 40), length=48).items()}
    grads = {}
    for kernel in ("flex", "dense"):
        m = model(kernel).cuda()
        m(batch["inputs"], positions=batch["positions"], doc_ids=batch["doc_ids"]).pow(2).mean().backward()
        grads[kernel] = m.layers[0].attention.wq.weight.grad
    torch.testing.assert_close(grads["flex"], grads["dense"], atol=1e-5, rtol=1e-3)


def test_block_mask_skips_blocks_across_documents():
    # two 256-token documents: with 128-token blocks, the two cross-document blocks are never computed
    doc_ids = torch.cat([torch.zeros(256), torch.ones(256)]).long()[None]
    mask = document_block_mask(doc_ids)
    dense_blocks = mask.to_dense()[0, 0]  # [4, 4] blocks: 1 where any pair is visible
    want = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]])
    assert torch.equal(dense_blocks.int(), want.int())


def test_auto_uses_dense_on_cpu_and_rejects_unknown_kernel():
    m = model("auto")
    assert not m.uses_flex(torch.device("cpu")) and m.uses_flex(torch.device("cuda"))
    m.packed_attention = "fast"
    with pytest.raises(ValueError, match="packed_attention"):
        m.uses_flex(torch.device("cpu"))
