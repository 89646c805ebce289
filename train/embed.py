"""Text embeddings from a Llama: the mean of the final (normed) hidden states over a text's tokens.

Used to measure how close two prompts are (cosine of their mean hidden states), as Deita does
with a model's embeddings, when a word-overlap measure is too literal.
"""
from __future__ import annotations

import numpy as np
import torch

from train.ifd import padded_batches


@torch.no_grad()
def mean_hidden_states(model, tokenizer, texts: list[str], batch_size: int = 16, max_tokens: int = 512) -> np.ndarray:
    """float32 array ``(len(texts), dim)``: each text's final hidden states (after the last
    RMSNorm) averaged over its tokens (BOS first, at most ``max_tokens``), scaled to unit length
    so that a dot product is a cosine. An empty text gets its BOS token's state. Texts are
    sorted by length and right-padded in batches of ``batch_size`` on the model's device."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    ids = [x[:max_tokens] for x in tokenizer.encode_batch(list(texts), bos=True)]
    start_id = tokenizer.bos_id if tokenizer.bos_id is not None and tokenizer.bos_id >= 0 else tokenizer.eos_id
    ids = [x if x else [start_id] for x in ids]
    out = np.zeros((len(ids), model.cfg.dim), np.float32)
    for batch, tokens in padded_batches(ids, tokenizer.pad_id, batch_size):
        T = tokens.shape[1]
        lengths = torch.tensor([len(ids[i]) for i in batch])
        hidden = model(tokens.to(device), return_hidden=True).float().cpu()
        mask = (torch.arange(T)[None, :] < lengths[:, None]).float()
        mean = (hidden * mask[..., None]).sum(1) / lengths[:, None]
        out[batch] = torch.nn.functional.normalize(mean, dim=-1).numpy()
    model.train(was_training)
    return out
