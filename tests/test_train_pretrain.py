"""A small model pretrained on real text learns more than word frequencies: its
held-out loss ends well below the unigram baseline measured on the same split."""
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from train.data import TokenShards, TokenWindows, tokenize_shards, unigram_loss
from train.run import pretrain
from train.tokenizer import train_bpe


@pytest.mark.slow
def test_pretrain_beats_unigram_on_real_text(shared, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread is faster, and far faster on a loaded machine
    try:
        data = shared / "data/pretrain"
        texts = [json.loads(line)["text"] for line in (data / "c4_demo.jsonl").read_text().splitlines()]
        texts += (data / "wiki_demo.txt").read_text().splitlines()
        pq.write_table(pa.table({"text": texts}), tmp_path / "docs.parquet")
        tok = train_bpe(texts[:300], 512, tmp_path / "bpe.model")  # C4 only; byte fallback covers the rest
        tokenize_shards([tmp_path / "docs.parquet"], tok, tmp_path / "shards")
        seq, batch = 64, 16
        shards = TokenShards(tmp_path / "shards")
        baseline = unigram_loss(shards, TokenWindows(shards, seq, batch, val_fraction=0.02))
        result = pretrain({
            "run_dir": str(tmp_path / "run"), "shards": str(tmp_path / "shards"), "seed": 0, "val_fraction": 0.02,
            "model": {"dim": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "multiple_of": 32,
                      "vocab_size": 512, "max_seq_len": seq},
            "train": {"steps": 200, "batch_size": batch, "seq_len": seq, "lr": 3e-3, "warmup_steps": 30,
                      "eval_every": 100, "eval_batches": 20, "log_every": 50, "ckpt_every": 0, "device": "cpu"},
        }, quiet=True)
    finally:
        torch.set_num_threads(threads)
    first, last = result.val_losses[0][1], result.final_val_loss
    print(f"unigram {baseline:.3f}  held-out after 100 steps {first:.3f}  after 200 {last:.3f}")
    assert result.steps == 200 and last < first
    assert last < baseline - 0.75, (baseline, result.val_losses)
