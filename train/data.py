"""Packed token shards for pretraining, and a loader that streams windows from them.

``tokenize_shards`` turns curated Parquet shards (``text`` column, see
``curate.record.SCHEMA``) into flat token files: ``tokens_00000.bin`` ... each a
raw little-endian ``uint16`` or ``uint32`` array, documents laid end to end with
an EOS after each one (and a BOS before each one, as Llama 2 was trained).
``index.json`` says the dtype, the token count of every file and the tokenizer's
special ids; ``docs_00000.npy`` holds each document's start offset in its file.

``TokenWindows`` memory-maps the files and cuts them into fixed windows of
``seq_len + 1`` tokens (inputs and shifted targets); it never reads a file whole.
The order is a seeded permutation per epoch, and the position in it is a pair
of ints, so a run resumes exactly where it stopped.
"""
from __future__ import annotations

import inspect
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow.parquet as pq
import torch

from curate.basics.errors import CurateError

INDEX = "index.json"
DTYPES = {"uint16": np.uint16, "uint32": np.uint32}


def _encode_batch(tokenizer, texts: list[str], bos: bool, threads: int) -> list[list[int]]:
    batch = getattr(tokenizer, "encode_batch", None)
    if batch is None:
        return [tokenizer.encode(t, bos=bos, eos=True) for t in texts]
    if "num_threads" in inspect.signature(batch).parameters:
        return batch(texts, bos=bos, eos=True, num_threads=threads)
    return batch(texts, bos=bos, eos=True)


def tokenize_shards(
    parquet_paths: Iterable[str | Path],
    tokenizer,
    out_dir: str | Path,
    dtype: str | None = None,
    text_column: str = "text",
    bos: bool = True,
    shard_tokens: int = 1 << 28,
    batch_rows: int = 1024,
    threads: int | None = None,
) -> dict:
    """Tokenize the ``text_column`` of Parquet files into packed token shards.

    Each document becomes ``[BOS] tokens EOS`` (BOS when ``bos``). Files roll over
    after ``shard_tokens`` tokens (default 2**28, 512 MiB as uint16). ``dtype`` is
    ``"uint16"`` or ``"uint32"``; default: uint16 when the vocabulary fits.
    Rows whose text is null or empty are counted in the index under
    ``skipped`` (never silently dropped). ``threads``: tokenizer threads (default:
    all cores). The output directory is built under a temporary name and renamed
    when complete. Returns the index dict.
    """
    paths = [Path(p) for p in parquet_paths]
    if not paths:
        raise CurateError("tokenize_shards: no input Parquet files")
    vocab = int(tokenizer.vocab_size)
    dtype = dtype or ("uint16" if vocab <= 1 << 16 else "uint32")
    if dtype not in DTYPES:
        raise CurateError(f"tokenize_shards: dtype must be uint16 or uint32, not {dtype!r}")
    if vocab > np.iinfo(DTYPES[dtype]).max + 1:
        raise CurateError(f"tokenize_shards: vocabulary of {vocab} does not fit {dtype}")
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    files: list[dict] = []
    skipped = {"null": 0, "empty": 0}
    state = {"fh": None, "n": 0, "starts": []}

    def close_file():
        if state["fh"] is None:
            return
        state["fh"].close()
        i = len(files)
        np.save(tmp / f"docs_{i:05d}.npy", np.asarray(state["starts"], dtype=np.int64))
        files.append({"path": f"tokens_{i:05d}.bin", "docs": f"docs_{i:05d}.npy",
                      "tokens": state["n"], "num_docs": len(state["starts"])})
        state.update(fh=None, n=0, starts=[])

    for path in paths:
        if not path.is_file():
            raise CurateError(f"tokenize_shards: no such file {path}")
        pf = pq.ParquetFile(path)
        if text_column not in pf.schema_arrow.names:
            raise CurateError(f"tokenize_shards: {path} has no column {text_column!r}")
        for batch in pf.iter_batches(batch_size=batch_rows, columns=[text_column]):
            texts = batch.column(0).to_pylist()
            skipped["null"] += sum(t is None for t in texts)
            skipped["empty"] += sum(t == "" for t in texts)
            texts = [t for t in texts if t]
            for ids in _encode_batch(tokenizer, texts, bos, threads or os.cpu_count() or 1):
                if state["fh"] is None:
                    state["fh"] = open(tmp / f"tokens_{len(files):05d}.bin", "wb")
                state["starts"].append(state["n"])
                state["fh"].write(np.asarray(ids, dtype=DTYPES[dtype]).tobytes())
                state["n"] += len(ids)
                if state["n"] >= shard_tokens:
                    close_file()
    close_file()
    index = {
        "format": "curate-token-shards/1",
        "dtype": dtype,
        "vocab_size": vocab,
        "bos_id": int(tokenizer.bos_id) if bos else None,
        "eos_id": int(tokenizer.eos_id),
        "files": files,
        "total_tokens": sum(f["tokens"] for f in files),
        "num_docs": sum(f["num_docs"] for f in files),
        "skipped": skipped,
        "sources": [str(p) for p in paths],
    }
    (tmp / INDEX).write_text(json.dumps(index, indent=1))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return index


class TokenShards:
    """Read-only view of a token shard directory: ``index``, and ``files``, one
    ``np.memmap`` per file (nothing read until sliced)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / INDEX).is_file():
            raise CurateError(f"{self.path}: not a token shard directory (no {INDEX})")
        self.index = json.loads((self.path / INDEX).read_text())
        self.dtype = DTYPES[self.index["dtype"]]
        self.files = [
            np.memmap(self.path / f["path"], dtype=self.dtype, mode="r", shape=(f["tokens"],))
            if f["tokens"] else np.zeros(0, self.dtype)
            for f in self.index["files"]
        ]

    def documents(self, file: int) -> list[np.ndarray]:
        """The documents of one file as memory-mapped slices (BOS ... EOS each)."""
        starts = np.load(self.path / self.index["files"][file]["docs"], allow_pickle=False)
        ends = np.append(starts[1:], len(self.files[file]))
        return [self.files[file][s:e] for s, e in zip(starts, ends)]


@dataclass
class DataPosition:
    """Where a loader is: ``epoch`` and the index of the next global batch in it."""

    epoch: int = 0
    batch: int = 0


class TokenWindows:
    """Fixed windows of ``seq_len + 1`` tokens from token shards, batched.

    Each file is cut into non-overlapping windows (a tail shorter than a window is
    unused). The last ``val_fraction`` of every file's windows is held out for
    evaluation (contiguous, so at most one document per file straddles the
    split). Training windows are visited in a fresh ``seed + epoch`` permutation
    per epoch. With ``world_size`` ranks, the global batch of
    ``batch_size * world_size`` windows is the same as one process with that
    batch size would see, and rank ``r`` takes its ``r``-th slice.
    """

    def __init__(self, shards: TokenShards | str | Path, seq_len: int, batch_size: int,
                 seed: int = 0, val_fraction: float = 0.01, rank: int = 0, world_size: int = 1):
        self.shards = shards if isinstance(shards, TokenShards) else TokenShards(shards)
        self.seq_len, self.batch_size, self.seed = seq_len, batch_size, seed
        self.rank, self.world_size = rank, world_size
        train, val = [], []
        for f, mm in enumerate(self.shards.files):
            n = len(mm) // (seq_len + 1)
            n_val = int(round(n * val_fraction))
            if val_fraction > 0 and n >= 2:
                n_val = max(n_val, 1)
            offsets = np.arange(n, dtype=np.int64) * (seq_len + 1)
            train.append(np.stack([np.full(n - n_val, f), offsets[: n - n_val]], 1))
            val.append(np.stack([np.full(n_val, f), offsets[n - n_val:]], 1))
        self.train = np.concatenate(train) if train else np.zeros((0, 2), np.int64)
        self.val = np.concatenate(val) if val else np.zeros((0, 2), np.int64)
        self.global_batch = batch_size * world_size
        self.batches_per_epoch = len(self.train) // self.global_batch
        if self.batches_per_epoch == 0:
            raise CurateError(
                f"{self.shards.path}: {len(self.train)} training windows of {seq_len + 1} tokens, "
                f"fewer than one global batch of {self.global_batch}")
        self.position = DataPosition()
        self._order_epoch, self._order = -1, None

    def tokens(self, rows: np.ndarray) -> np.ndarray:
        """The windows ``rows`` ((file, offset) pairs) as int64 ``[len(rows), seq_len + 1]`` token ids."""
        return np.stack([self.shards.files[f][o: o + self.seq_len + 1] for f, o in rows]).astype(np.int64)

    def val_tokens(self) -> np.ndarray:
        """Every held-out window, int64 ``[n_val, seq_len + 1]``."""
        return self.tokens(self.val) if len(self.val) else np.zeros((0, self.seq_len + 1), np.int64)

    def _windows(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        w = torch.from_numpy(self.tokens(rows))
        return w[:, :-1], w[:, 1:]

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's next ``(inputs, targets)``, int64 ``[batch_size, seq_len]``."""
        pos = self.position
        if pos.batch >= self.batches_per_epoch:
            pos.epoch, pos.batch = pos.epoch + 1, 0
        if self._order_epoch != pos.epoch:
            self._order = np.random.default_rng([self.seed, pos.epoch]).permutation(len(self.train))
            self._order_epoch = pos.epoch
        start = pos.batch * self.global_batch + self.rank * self.batch_size
        pos.batch += 1
        return self._windows(self.train[self._order[start: start + self.batch_size]])

    def val_batches(self, max_batches: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Held-out windows in file order, this rank's share, ``batch_size`` at a time."""
        rows = self.val[self.rank:: self.world_size]
        n = len(rows) // self.batch_size
        for i in range(n if max_batches is None else min(n, max_batches)):
            yield self._windows(rows[i * self.batch_size: (i + 1) * self.batch_size])

    def state_dict(self) -> dict:
        return {"epoch": self.position.epoch, "batch": self.position.batch, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.position = DataPosition(int(state["epoch"]), int(state["batch"]))


def unigram_loss(shards: TokenShards, windows: TokenWindows) -> float:
    """Held-out cross-entropy (nats/token) of the training windows' unigram
    distribution (add-one smoothed): the loss a model that ignores context gets."""
    vocab = shards.index["vocab_size"]
    counts = np.ones(vocab, dtype=np.float64)
    for f, o in windows.train:
        counts += np.bincount(shards.files[f][o + 1: o + windows.seq_len + 1], minlength=vocab)
    logp = np.log(counts / counts.sum())
    targets = np.concatenate([shards.files[f][o + 1: o + windows.seq_len + 1] for f, o in windows.val])
    return float(-logp[targets.astype(np.int64)].mean())
