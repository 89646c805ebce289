"""Per-document perplexity under a language model trained with ``train/`` (no KenLM).

Perplexity is ``exp(mean negative log-likelihood per predicted token)``: the text is
encoded with BOS first, cut to ``max_tokens``, and every token after BOS is predicted
from the ones before it. Low perplexity means text like the model's training data
(CCNet, Wenzek et al. 2020, used a Wikipedia model the same way).

    - step: perplexity
      model: runs/wiki-lm/checkpoints/step_00002000   # config.json + model.safetensors
      tokenizer: runs/wiki-lm/tokenizer.model         # default: the model folder
      batch_size: 8
      max_tokens: 512
"""
from __future__ import annotations

import math
from pathlib import Path

from curate.basics.device import resolve_device
from curate.pipeline.step import Step, register
from train.model import Llama
from train.tokenizer import Tokenizer


@register("perplexity")
class Perplexity(Step):
    """Write ``meta[key]`` (default ``perplexity``): the document's per-token perplexity
    under the model, over at most ``max_tokens`` tokens. Documents with nothing to predict
    (empty text) get ``None`` and count in ``counters["perplexity_unscored"]``. Removes
    nothing; follow with ``keep_if`` or ``quality_filter`` (key: perplexity) to filter."""

    def __init__(self, model: str, tokenizer: str | None = None, batch_size: int = 8, max_tokens: int = 512,
                 device: str = "cpu", key: str = "perplexity", text_key: str = "text"):
        super().__init__()
        if not (Path(model) / "config.json").is_file() or not (Path(model) / "model.safetensors").is_file():
            raise ValueError(f"perplexity: {model} is not a model folder (needs config.json and model.safetensors)")
        if batch_size < 1 or max_tokens < 2:
            raise ValueError("perplexity: batch_size must be >= 1 and max_tokens >= 2")
        self.model_path, self.tokenizer_path = model, tokenizer or model
        self.batch_size, self.max_tokens, self.device = batch_size, max_tokens, device
        self.key, self.text_key = key, text_key
        self.model = self.tokenizer = None

    def setup(self):
        import torch

        device = resolve_device(self.device)
        self.model = Llama.load(self.model_path, device=device, dtype=torch.float32).eval()
        self.tokenizer = Tokenizer.from_file(self.tokenizer_path)

    def score(self, texts: list[str]) -> list[float | None]:
        """Perplexity of each text (None when it has fewer than 2 tokens with BOS)."""
        import torch
        import torch.nn.functional as F

        if self.model is None:
            self.setup()
        ids = [x[: self.max_tokens] for x in self.tokenizer.encode_batch(texts, bos=True)]
        out: list[float | None] = [None] * len(texts)
        # Sort by length so each batch pads little; right padding never changes earlier logits.
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        device = self.model.output.weight.device
        for start in range(0, len(order), self.batch_size):
            batch = [i for i in order[start:start + self.batch_size] if len(ids[i]) >= 2]
            if not batch:
                continue
            T = max(len(ids[i]) for i in batch)
            tokens = torch.full((len(batch), T), self.tokenizer.pad_id, dtype=torch.long)
            for row, i in enumerate(batch):
                tokens[row, : len(ids[i])] = torch.tensor(ids[i])
            lengths = torch.tensor([len(ids[i]) for i in batch])
            with torch.inference_mode():
                logits = self.model(tokens.to(device)).float().cpu()
            nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")
            mask = torch.arange(T - 1)[None, :] < (lengths - 1)[:, None]
            mean_nll = (nll * mask).sum(1) / mask.sum(1)
            for row, i in enumerate(batch):
                out[i] = math.exp(float(mean_nll[row]))
        return out

    def process(self, docs):
        values = self.score([str(d.get(self.text_key) or "") for d in docs])
        for doc, v in zip(docs, values):
            doc.meta[self.key] = None if v is None else round(v, 4)
            if v is None:
                self.counters["perplexity_unscored"] += 1
        return docs, []
