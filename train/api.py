"""The public API of ``train`` for the layers above (experiments, annotations, the CLI).

Everything an experiment needs from the trainer: fine-tune or pretrain a model, load one,
generate, score with a reward model, and measure held-out losses, without tokenising by
hand. Token ids in and out are plain lists of ints; losses are nats per token.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from train.embed import mean_hidden_states
from train.generate import generate
from train.ifd import IFD, ifd_scores
from train.reward import RewardModel, score, train_reward_model
from train.run import load_model, lora_config, pretrain
from train.run import sft as finetune
from train.sft import IGNORE, Encoded, answer_loss, encode, encode_all, load_examples, pack, resolve_template, segments

__all__ = ["IFD", "RewardModel", "answer_ids", "answer_losses", "answer_tokens", "doc_losses", "finetune", "generate",
           "ifd_scores", "load_examples", "load_model", "lora_config", "mean_hidden_states", "packed_rows", "pretrain", "prompt_ids",
           "resolve_template", "score", "train_reward_model"]


def prompt_ids(example: dict, tokenizer, template: str = "llama2") -> list[int]:
    """Token ids of a conversation's prompt (every turn but the last answer, in ``template``):
    what a model continues with an answer. Raises ValueError for a malformed conversation."""
    parts = segments(example, template)[:-1]
    return [t for text, _, bos, eos in parts for t in tokenizer.encode(text, bos=bos, eos=eos)]


def answer_ids(example: dict, tokenizer, template: str = "llama2") -> list[int]:
    """Token ids of a conversation's last answer (with the EOS the template puts after it)."""
    text, _, bos, eos = segments(example, template)[-1]
    return tokenizer.encode(text, bos=bos, eos=eos)


def answer_tokens(example, tokenizer, template: str = "llama2", max_len: int | None = None) -> int:
    """Answer tokens of a conversation that fit in ``max_len`` tokens (0: malformed, or none fit)."""
    try:
        return encode(example, tokenizer, template, max_len).num_loss_tokens
    except (ValueError, TypeError, AttributeError):
        return 0


def packed_rows(examples: list, tokenizer, template: str = "llama2", max_len: int = 257) -> int:
    """Rows of ``max_len - 1`` tokens the examples fill when packed for fine-tuning."""
    encoded, _ = encode_all(examples, tokenizer, template, max_len)
    return len(pack(encoded, max_len - 1))


def answer_losses(model, tokenizer, examples: list, template: str = "llama2", max_len: int | None = None,
                  batch_size: int = 16) -> list[float]:
    """Mean answer-token loss (nats/token) of each example given its prompt, in order; NaN where
    an example is malformed or has no answer token within ``max_len``. An example is a
    conversation (``{"messages": [...]}``) or a ``(prompt_ids, answer_ids)`` pair: an answer
    scored under any prompt (the conditioning check, instruction-following difficulty)."""
    items = [Encoded(list(ex[0]) + list(ex[1]), [IGNORE] * len(ex[0]) + list(ex[1])) if isinstance(ex, tuple)
             else ex for ex in examples]
    return answer_loss(model, tokenizer, items, template, batch_size=batch_size, max_len=max_len)


@torch.no_grad()
def doc_losses(model, docs: list, batch_size: int = 16, pad_id: int = 0) -> list[float]:
    """Mean next-token loss (nats/token) of each token sequence in ``docs`` (lists or arrays of
    ids, each scored whole: cut them to the context first), in order; NaN for one under 2 tokens.
    Sequences are batched in order, right-padded (padding carries no loss)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out: list[float] = []
    for i in range(0, len(docs), batch_size):
        chunk = [np.asarray(d, dtype=np.int64) for d in docs[i: i + batch_size]]
        width = max(1, max(len(d) for d in chunk) - 1)
        inputs = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        targets = torch.full((len(chunk), width), IGNORE, dtype=torch.long)
        for r, d in enumerate(chunk):
            if len(d) >= 2:
                t = torch.from_numpy(d)
                inputs[r, : len(d) - 1], targets[r, : len(d) - 1] = t[:-1], t[1:]
        logits = model(inputs.to(device)).float()
        targets = targets.to(device)
        nll = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE, reduction="none")
        count = (targets != IGNORE).sum(1)
        mean = (nll.sum(1) / count.clamp(min=1)).tolist()
        out += [x if n else float("nan") for x, n in zip(mean, count.tolist())]
    model.train(was_training)
    return out
