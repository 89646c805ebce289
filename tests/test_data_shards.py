"""Packed token shards: round trip on real text, EOS between documents, memory mapping,
and a loader whose order is seeded, resumable and split across ranks."""
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.basics.errors import CurateError
from train.data import TokenShards, TokenWindows, tokenize_shards
from train.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def real(shared, tmp_path_factory):
    tok = Tokenizer.from_file(shared / "models/sentencepiece-32k-llama-style.model")
    lines = (shared / "data/pretrain/c4_demo.jsonl").read_text().splitlines()[:60]
    texts = [json.loads(line)["text"] for line in lines]
    tmp = tmp_path_factory.mktemp("shards")
    # two input shards; a null and an empty row that must be counted, not silently lost
    pq.write_table(pa.table({"text": texts[:30] + [None]}), tmp / "a.parquet")
    pq.write_table(pa.table({"text": [""] + texts[30:]}), tmp / "b.parquet")
    return tok, texts, tmp


def test_round_trip_equals_tokenizer_with_eos_between_docs(real):
    tok, texts, tmp = real
    # small shard_tokens forces several output files
    index = tokenize_shards([tmp / "a.parquet", tmp / "b.parquet"], tok, tmp / "out", shard_tokens=5000)
    assert index["dtype"] == "uint16" and index["num_docs"] == len(texts)
    assert index["skipped"] == {"null": 1, "empty": 1}
    assert len(index["files"]) > 1
    shards = TokenShards(tmp / "out")
    assert all(isinstance(f, np.memmap) for f in shards.files)
    docs = [d for i in range(len(shards.files)) for d in shards.documents(i)]
    assert len(docs) == len(texts)
    for text, doc in zip(texts, docs):
        expected = tok.encode(text, bos=True, eos=True)
        assert doc.tolist() == expected
        assert doc[-1] == tok.eos_id and doc[0] == tok.bos_id
    # the raw bytes are the concatenation: EOS directly followed by the next BOS
    flat = np.concatenate([np.fromfile(tmp / "out" / f["path"], dtype=np.uint16) for f in index["files"]])
    ref = sum((tok.encode(t, bos=True, eos=True) for t in texts), [])
    assert flat.tolist() == ref
    assert index["total_tokens"] == len(ref)
    assert tok.decode(docs[3].tolist()) == texts[3]


def test_uint32_and_errors(real, tmp_path):
    tok, texts, tmp = real
    index = tokenize_shards([tmp / "a.parquet"], tok, tmp_path / "u32", dtype="uint32")
    shards = TokenShards(tmp_path / "u32")
    assert shards.files[0].dtype == np.uint32
    assert shards.documents(0)[0].tolist() == tok.encode(texts[0], bos=True, eos=True)
    assert index["num_docs"] == 30
    with pytest.raises(CurateError, match="no column"):
        tokenize_shards([tmp / "a.parquet"], tok, tmp_path / "x", text_column="body")
    with pytest.raises(CurateError, match="not a token shard"):
        TokenShards(tmp_path)


def test_loader_order_resume_and_ranks(real):
    tok, texts, tmp = real
    shards = TokenShards(tmp / "out")
    seq = 64
    a = TokenWindows(shards, seq, batch_size=4, seed=1, val_fraction=0.1)
    x, y = a.next_batch()
    assert x.shape == (4, seq) and (x[:, 1:] == y[:, :-1]).all()  # targets are inputs shifted by one
    # every window is a contiguous slice of one file
    f, o = a.train[a._order[0]]
    assert x[0].tolist() == shards.files[f][o:o + seq].tolist()
    # held-out windows never appear in training
    assert not set(map(tuple, a.val.tolist())) & set(map(tuple, a.train.tolist()))
    first = [a.next_batch()[0] for _ in range(a.batches_per_epoch + 3)]  # crosses an epoch
    assert a.position.epoch == 1

    # resume from a saved position gives the same batches
    b = TokenWindows(shards, seq, batch_size=4, seed=1, val_fraction=0.1)
    b.next_batch()
    for _ in range(5):
        b.next_batch()
    c = TokenWindows(shards, seq, batch_size=4, seed=1, val_fraction=0.1)
    c.load_state_dict(json.loads(json.dumps(b.state_dict())))
    for i in range(6, a.batches_per_epoch + 3):
        assert (c.next_batch()[0] == first[i - 1]).all()
    assert (b.next_batch()[0] == first[5]).all()

    # two ranks with batch 2 together see what one rank with batch 4 sees
    r0 = TokenWindows(shards, seq, batch_size=2, seed=1, val_fraction=0.1, rank=0, world_size=2)
    r1 = TokenWindows(shards, seq, batch_size=2, seed=1, val_fraction=0.1, rank=1, world_size=2)
    one = TokenWindows(shards, seq, batch_size=4, seed=1, val_fraction=0.1)
    for _ in range(3):
        assert (np.concatenate([r0.next_batch()[0], r1.next_batch()[0]]) == one.next_batch()[0].numpy()).all()
    # another seed, another order
    other = TokenWindows(shards, seq, batch_size=4, seed=2, val_fraction=0.1)
    assert not (other.next_batch()[0] == TokenWindows(shards, seq, 4, seed=1, val_fraction=0.1).next_batch()[0]).all()
