"""Instruction-following difficulty (IFD, Li et al. 2023, "From Quantity to Quality", Cherry_LLM).

For an answer A to a prompt Q, under a language model:

* ``loss_given_prompt`` = mean negative log-likelihood (nats/token) of A's tokens after Q;
* ``loss_alone`` = the same tokens after only BOS;
* ``ifd = loss_given_prompt / loss_alone``.

The answer tokens (and the EOS after them) are the same ids in both, so the ratio measures only
how much the prompt helps: near 0 when the prompt makes the answer easy, about 1 or above when
the prompt does not help at all (an answer that does not fit its prompt). Cherry_LLM uses this
ratio of mean losses; Superfiltering's perplexity ratio is ``exp(loss_given_prompt - loss_alone)``,
which orders examples differently but crosses 1 at the same point.

Multi-turn conversations get a score per assistant turn: turn t's answer given every turn before
it (the whole conversation so far, under the chat template), against the answer alone. The
conversation's aggregate is the ratio of token-weighted mean losses over all answer tokens:
``sum_t nll_given_t / sum_t nll_alone_t`` (each sum over that turn's tokens), i.e. the IFD of the
loss SFT trains on; a single-turn example's aggregate is its one turn.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from train.sft import segments


@dataclass
class IFD:
    """IFD of one example. Losses in nats per answer token. ``turns`` has one entry per scored
    assistant turn: ``{"loss_given_prompt", "loss_alone", "ifd", "tokens"}``."""

    loss_given_prompt: float
    loss_alone: float
    ifd: float
    tokens: int
    turns: list[dict] = field(default_factory=list)


def padded_batches(rows: list[list[int]], pad_id: int, batch_size: int, max_padding: float = 0.1):
    """Yield ``(indices, tokens)``: the rows sorted by length, at most ``batch_size`` at a time, as
    a right-padded LongTensor ``[B, T]`` (T = the longest row of the batch). A batch also ends
    before padding would exceed ``max_padding`` (default 10%) of its tokens: padding is wasted
    compute, which batching repays on a GPU but not on a CPU. Right padding never changes
    earlier positions of a causal model."""
    pad = pad_id if pad_id is not None and pad_id >= 0 else 0  # SentencePiece Llama has pad -1
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    start = 0
    while start < len(order):
        end, real = start + 1, len(rows[order[start]])
        while end < len(order) and end - start < batch_size:
            longest = len(rows[order[end]])
            if (end - start + 1) * longest > (1 + max_padding) * (real + longest):
                break
            real += longest
            end += 1
        batch = order[start:end]
        tokens = torch.full((len(batch), len(rows[batch[-1]])), pad, dtype=torch.long)
        for r, i in enumerate(batch):
            tokens[r, :len(rows[i])] = torch.as_tensor(rows[i])
        yield batch, tokens
        start = end


@torch.no_grad()
def token_nll(model, rows: list[list[int]], pad_id: int = 0, batch_size: int = 16,
              starts: list[int] | None = None) -> list[np.ndarray]:
    """Negative log-likelihood (nats, float64) of tokens ``row[k]`` for ``k >= starts[i]``
    (default 1, i.e. every token after the first) of each row of ids under ``model``, each
    given the tokens before it: an array of ``len(row) - start`` values per row. Batched by
    :func:`padded_batches` on the model's device; the output projection and the softmax (in
    float32) run only at the positions asked for, not on prompts or padding."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    starts = [1] * len(rows) if starts is None else [max(1, s) for s in starts]
    out: list[np.ndarray] = [np.zeros(0)] * len(rows)
    scored = [i for i in range(len(rows)) if len(rows[i]) > starts[i]]
    for batch, tokens in padded_batches([rows[i] for i in scored], pad_id, batch_size):
        tokens = tokens.to(device)
        hidden = model(tokens[:, :-1], return_hidden=True)
        pos = torch.arange(tokens.shape[1] - 1, device=device)[None, :]
        lo = torch.tensor([starts[scored[k]] - 1 for k in batch], device=device)[:, None]
        hi = torch.tensor([len(rows[scored[k]]) - 1 for k in batch], device=device)[:, None]
        want = (pos >= lo) & (pos < hi)
        logits = model.output(hidden[want]).float()
        nll = F.cross_entropy(logits, tokens[:, 1:][want], reduction="none").double().cpu().numpy()
        sizes = want.sum(1).tolist()
        for k, part in zip(batch, np.split(nll, np.cumsum(sizes)[:-1])):
            out[scored[k]] = part
    model.train(was_training)
    return out


def ifd_rows(example, tokenizer, template: str = "llama2", max_len: int | None = None, last_turn_only: bool = False
             ) -> tuple[list[int], list[tuple[int, int]], list[list[int]]]:
    """The token rows IFD needs for one conversation: ``(conversation, spans, alone)``.

    ``conversation``: the whole example under ``template`` (cut to ``max_len`` tokens);
    ``spans``: per assistant turn left after the cut, ``(start, end)`` indices of its answer
    tokens (with their EOS) in ``conversation``; ``alone``: per such turn, BOS followed by
    the same answer tokens. ``last_turn_only``: only the last assistant turn (none when the cut
    comes before it). Raises ValueError (one line) for a malformed example."""
    start_id = tokenizer.bos_id if tokenizer.bos_id is not None and tokenizer.bos_id >= 0 else tokenizer.eos_id
    ids: list[int] = []
    spans = []
    for text, trains, bos, eos in segments(example, template):
        tok = tokenizer.encode(text, bos=bos, eos=eos)
        if trains:
            spans.append((len(ids), len(ids) + len(tok)))
        ids += tok
    if max_len is not None:
        ids = ids[:max_len]
    if last_turn_only:
        spans = spans[-1:]
    spans = [(a, min(b, len(ids))) for a, b in spans if a < len(ids) and a > 0]
    alone = [[start_id] + ids[a:b] for a, b in spans]
    return ids, spans, alone


def ifd_scores(model, tokenizer, examples, template: str = "llama2", batch_size: int = 16,
               max_len: int | None = 1024, last_turn_only: bool = False) -> list[IFD | None]:
    """IFD of each example (a ``{"messages": [...]}`` conversation or the bare list), in order;
    ``None`` for a malformed example or one with no answer token within ``max_len`` tokens
    (default 1024). ``last_turn_only``: score only the last answer (given everything before it;
    ``None`` when the cut comes before it). All conversations and answer-alone rows of the call are
    batched together ``batch_size`` rows at a time, on the model's device."""
    prepared, rows = [], []
    for ex in examples:
        try:
            ids, spans, alone = ifd_rows(ex, tokenizer, template, max_len, last_turn_only)
        except ValueError:
            prepared.append(None)
            continue
        if not spans:
            prepared.append(None)
            continue
        prepared.append((len(rows), spans))
        rows += [ids] + alone
    starts = []
    for item in prepared:
        if item is not None:
            starts += [item[1][0][0]] + [1] * len(item[1])
    nll = token_nll(model, rows, tokenizer.pad_id, batch_size, starts)
    out: list[IFD | None] = []
    for item in prepared:
        if item is None:
            out.append(None)
            continue
        first, spans = item
        # the conversation's row is scored from its first answer token on (index spans[0][0])
        given = [nll[first][a - spans[0][0]:b - spans[0][0]] for a, b in spans]
        alone = [nll[first + 1 + k] for k in range(len(spans))]
        turns = [{"loss_given_prompt": float(g.mean()), "loss_alone": float(s.mean()),
                  "ifd": _ratio(g.sum(), s.sum()), "tokens": len(g)} for g, s in zip(given, alone)]
        g_sum, s_sum, n = sum(g.sum() for g in given), sum(s.sum() for s in alone), sum(len(g) for g in given)
        out.append(IFD(float(g_sum / n), float(s_sum / n), _ratio(g_sum, s_sum), n, turns))
    return out


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else float("inf")
