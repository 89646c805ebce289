"""Supervised fine-tuning data: chat templates, loss masks and packing.

An example is ``{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}``
(or the bare list): an optional system message, then user/assistant turns
alternating, ending with an assistant answer. A template renders it as segments
``(text, trains, bos, eos)``; prompt segments get label -100 so that only
answer tokens (and the EOS after each answer) carry loss.

Templates:

* ``llama2`` -- Meta's chat format:
  ``<s>[INST] <<SYS>>\\n{system}\\n<</SYS>>\\n\\n{user} [/INST] {answer} </s><s>[INST] {user} [/INST] ...``
* ``plain`` -- ``<s>{system}\\n\\n### User:\\n{user}\\n\\n### Assistant:\\n{answer}</s>`` and so on per turn.

Packed rows carry ``doc_ids`` (which example each token belongs to) and
``positions`` that restart at 0 for each example; the model turns ``doc_ids``
into a block-diagonal causal mask, so packed examples never see each other.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from curate.basics.chat import BadRecord, conversation_messages
from curate.basics.errors import CurateError

IGNORE = -100
TEMPLATES = ("llama2", "plain")


@dataclass
class Encoded:
    """One tokenized example. ``ids`` are the tokens; ``labels`` the same ids on
    answer tokens and -100 on prompt tokens (not yet shifted)."""

    ids: list[int]
    labels: list[int]

    @property
    def num_loss_tokens(self) -> int:
        return sum(label != IGNORE for label in self.labels[1:])


def _messages(example) -> list[dict]:
    msgs = example.get("messages") if isinstance(example, dict) else example
    if not isinstance(msgs, list) or not msgs:
        raise ValueError("no messages")
    for m in msgs:
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise ValueError("a message without string content")
        if m.get("role") not in ("system", "user", "assistant"):
            raise ValueError(f"unknown role {m.get('role')!r}")
    system = msgs[0]["content"] if msgs[0]["role"] == "system" else None
    turns = msgs[1:] if system is not None else msgs
    if not turns or len(turns) % 2:
        raise ValueError("turns must be user/assistant pairs ending with an answer")
    for i, m in enumerate(turns):
        want = "user" if i % 2 == 0 else "assistant"
        if m["role"] != want:
            raise ValueError(f"turn {i} is {m['role']!r}, expected {want!r}")
    return [{"system": system}] + turns


def segments(example, template: str = "llama2") -> list[tuple[str, bool, bool, bool]]:
    """The example as ``(text, trains, bos, eos)`` segments under ``template``.
    Raises ValueError (one line) for a malformed example."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown chat template {template!r} (choose from {', '.join(TEMPLATES)})")
    head, *turns = _messages(example)
    system = head["system"]
    out = []
    for i in range(0, len(turns), 2):
        user, answer = turns[i]["content"].strip(), turns[i + 1]["content"].strip()
        if template == "llama2":
            if i == 0 and system is not None:
                user = f"<<SYS>>\n{system.strip()}\n<</SYS>>\n\n{user}"
            out.append((f"[INST] {user} [/INST]", False, True, False))
            out.append((answer, True, False, True))
        else:
            prefix = f"{system.strip()}\n\n" if i == 0 and system is not None else ""
            out.append((f"{prefix}### User:\n{user}\n\n### Assistant:\n", False, i == 0, False))
            out.append((answer, True, False, True))
    return out


def render(example, template: str = "llama2") -> str:
    """The example as one string with ``<s>``/``</s>`` written out (for reading and tests).
    Llama 2 writes a space between ``[/INST]``, the answer and ``</s>``: SentencePiece
    adds that space itself as the answer's leading word boundary."""
    parts = []
    for text, trains, bos, eos in segments(example, template):
        sep = " " if template == "llama2" and trains else ""
        parts.append(("<s>" if bos else "") + sep + text + (sep + "</s>" if eos else ""))
    return "".join(parts)


def encode(example, tokenizer, template: str = "llama2", max_len: int | None = None) -> Encoded:
    """Tokenize one example; prompt tokens get label -100. Truncates to ``max_len`` tokens."""
    ids, labels = [], []
    for text, trains, bos, eos in segments(example, template):
        tok = tokenizer.encode(text, bos=bos, eos=eos)
        ids += tok
        labels += tok if trains else [IGNORE] * len(tok)
    if max_len is not None:
        ids, labels = ids[:max_len], labels[:max_len]
    return Encoded(ids, labels)


def encode_all(examples, tokenizer, template: str = "llama2", max_len: int | None = None
               ) -> tuple[list[Encoded], list[tuple[int, str]]]:
    """Encode many examples. Returns ``(encoded, skipped)`` where ``skipped`` lists
    ``(index, reason)`` for malformed examples and ones with no answer token left
    after truncation to ``max_len``: reported, never silently dropped."""
    encoded, skipped = [], []
    for i, ex in enumerate(examples):
        if isinstance(ex, Encoded):
            enc = ex if max_len is None else Encoded(ex.ids[:max_len], ex.labels[:max_len])
        else:
            try:
                enc = encode(ex, tokenizer, template, max_len)
            except ValueError as e:
                skipped.append((i, str(e)))
                continue
        if enc.num_loss_tokens == 0:
            skipped.append((i, "no answer tokens within max_len"))
            continue
        encoded.append(enc)
    return encoded, skipped


@dataclass
class Row:
    """One packed training row, already shifted: ``inputs[t]`` predicts ``targets[t]``."""

    inputs: list[int]
    targets: list[int]
    positions: list[int]
    doc_ids: list[int]


def pack(encoded: list[Encoded], seq_len: int, pack: bool = True) -> list[Row]:
    """Pack examples, in the given order, into rows of at most ``seq_len`` tokens.

    Each example contributes ``ids[:-1]`` as inputs and ``labels[1:]`` as targets, so
    no token is asked to predict the next example. Greedy: an example goes into
    the current row if it fits, else starts a new one. ``pack=False`` gives one
    example per row. Examples longer than ``seq_len + 1`` are cut to fit.
    """
    rows: list[Row] = []
    cur = Row([], [], [], [])
    for enc in encoded:
        x, y = enc.ids[:-1][:seq_len], enc.labels[1:][:seq_len]
        if cur.inputs and (not pack or len(cur.inputs) + len(x) > seq_len):
            rows.append(cur)
            cur = Row([], [], [], [])
        doc = cur.doc_ids[-1] + 1 if cur.doc_ids else 0
        cur.inputs += x
        cur.targets += y
        cur.positions += range(len(x))
        cur.doc_ids += [doc] * len(x)
    if cur.inputs:
        rows.append(cur)
    return rows


def collate(rows: list[Row], pad_id: int = 0, length: int | None = None) -> dict[str, torch.Tensor]:
    """Stack rows into tensors ``[B, T]`` padded to the longest row (or ``length``).
    Padding has target -100 and its own doc id (-1), so it neither trains nor is seen."""
    T = length or max(len(r.inputs) for r in rows)
    pad_id = pad_id if pad_id is not None and pad_id >= 0 else 0  # SentencePiece Llama has pad -1
    out = {k: np.full((len(rows), T), fill, dtype=np.int64) for k, fill in
           (("inputs", pad_id), ("targets", IGNORE), ("positions", 0), ("doc_ids", -1))}
    for i, r in enumerate(rows):
        n = len(r.inputs)
        out["inputs"][i, :n] = r.inputs
        out["targets"][i, :n] = r.targets
        out["positions"][i, :n] = r.positions
        out["doc_ids"][i, :n] = r.doc_ids
    return {k: torch.from_numpy(v) for k, v in out.items()}


class SFTBatches:
    """Batches of packed rows. Every epoch shuffles the examples with
    ``seed + epoch``, packs them and serves ``batch_size`` rows per batch;
    ``rank``/``world_size`` split each global batch like :class:`train.data.TokenWindows`."""

    def __init__(self, encoded: list[Encoded], seq_len: int, batch_size: int, seed: int = 0,
                 pack: bool = True, pad_id: int = 0, rank: int = 0, world_size: int = 1):
        if not encoded:
            raise ValueError("no usable SFT examples")
        self.encoded, self.seq_len, self.batch_size, self.seed = encoded, seq_len, batch_size, seed
        self.pack, self.pad_id, self.rank, self.world_size = pack, pad_id, rank, world_size
        self.epoch, self.batch = 0, 0
        self._rows_epoch, self._rows = -1, []

    def _rows_for(self, epoch: int) -> list[Row]:
        if self._rows_epoch != epoch:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self.encoded))
            self._rows = pack([self.encoded[i] for i in order], self.seq_len, self.pack)
            self._rows_epoch = epoch
        return self._rows

    @property
    def batches_per_epoch(self) -> int:
        return max(1, len(self._rows_for(self.epoch)) // (self.batch_size * self.world_size))

    def next_batch(self) -> dict[str, torch.Tensor]:
        if self.batch >= self.batches_per_epoch:
            self.epoch, self.batch = self.epoch + 1, 0
        rows = self._rows_for(self.epoch)
        g = self.batch_size * self.world_size
        start = self.batch * g + self.rank * self.batch_size
        picked = [rows[i % len(rows)] for i in range(start, start + self.batch_size)]
        self.batch += 1
        return collate(picked, self.pad_id)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])


@torch.no_grad()
def answer_loss(model, tokenizer, examples, template: str = "llama2", batch_size: int = 16,
                max_len: int | None = None) -> list[float]:
    """Mean negative log-likelihood (nats/token) of each example's answer tokens
    (and the EOS after each answer) given its prompt, one float per example in
    order; NaN for an example that is malformed or has no answer token."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: list[float] = []
    for b in range(0, len(examples), batch_size):
        items = []
        for ex in examples[b: b + batch_size]:
            try:
                enc = ex if isinstance(ex, Encoded) else encode(ex, tokenizer, template, max_len)
            except ValueError:
                enc = None
            items.append(enc if enc is not None and enc.num_loss_tokens else None)
        good = [e for e in items if e is not None]
        losses = iter([])
        if good:
            batch = collate(pack(good, max(len(e.ids) for e in good), pack=False), tokenizer.pad_id)
            batch = {k: v.to(device) for k, v in batch.items()}
            logits = model(batch["inputs"], positions=batch["positions"]).float()
            nll = F.cross_entropy(logits.transpose(1, 2), batch["targets"], ignore_index=IGNORE,
                                  reduction="none")
            mask = batch["targets"] != IGNORE
            losses = iter((nll.sum(1) / mask.sum(1)).tolist())
        out += [float("nan") if e is None else next(losses) for e in items]
    model.train(was_training)
    return out


def to_messages(record):
    """A conversation record in any format :mod:`curate.basics.chat` reads (OpenAI, ShareGPT,
    Alpaca, prompt/response) as ``{"messages": [...]}`` with string contents. A record that
    is malformed or in no such format is returned unchanged, so that encoding reports it as
    skipped rather than dropping it."""
    try:
        return {"messages": conversation_messages(record)}
    except BadRecord:
        return record


def load_examples(path) -> list:
    """Conversations from ``.jsonl``, ``.json`` (a list) or curated ``.parquet`` shards
    (``meta["messages"]``), converted with :func:`to_messages`. A line that is not
    valid JSON becomes ``None`` (reported as skipped when encoded)."""

    path = Path(path)
    if not path.is_file():
        raise CurateError(f"no such SFT data file: {path}")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        metas = pq.read_table(path, columns=["meta"]).column("meta").to_pylist()
        records = [json.loads(m) if m else {} for m in metas]
    elif path.suffix == ".json":
        records = json.loads(path.read_text())
        if not isinstance(records, list):
            raise CurateError(f"{path}: expected a JSON list of examples")
    else:
        records = []
        for line in path.read_text().splitlines():
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    records.append(None)
    return [to_messages(r) for r in records]
