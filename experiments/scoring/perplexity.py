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
from train.api import doc_losses
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
        if self.model is None:
            self.setup()
        ids = [x[: self.max_tokens] for x in self.tokenizer.encode_batch(texts, bos=True)]
        out: list[float | None] = [None] * len(texts)
        # Sort by length so each batch pads little; right padding never changes earlier logits.
        order = sorted((i for i in range(len(ids)) if len(ids[i]) >= 2), key=lambda i: len(ids[i]))
        losses = doc_losses(self.model, [ids[i] for i in order], self.batch_size, self.tokenizer.pad_id)
        for i, loss in zip(order, losses):
            out[i] = math.exp(loss)
        return out

    def process(self, docs):
        values = self.score([str(d.get(self.text_key) or "") for d in docs])
        for doc, v in zip(docs, values):
            doc.meta[self.key] = None if v is None else round(v, 4)
            if v is None:
                self.counters["perplexity_unscored"] += 1
        return docs, []
