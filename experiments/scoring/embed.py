"""The ``embed`` step: each document's mean final hidden state under a Llama, as a unit vector.

Writes ``meta[key]`` (default ``embedding``, a list of floats) for closeness by cosine; the
``select`` step with ``model:`` builds this step and calls :meth:`Embed.embed` directly, so the
vectors need not be stored.

    - step: embed
      model: runs/sft/model       # our checkpoint or a Hugging Face Llama folder
      text_key: prompt_text
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from curate.basics.device import resolve_device
from curate.pipeline.params import number
from curate.pipeline.step import Step, register
from train.api import load_model, mean_hidden_states
from train.tokenizer import Tokenizer


@register("embed")
class Embed(Step):
    """Mean final hidden state of each document's text under a Llama (unit length) in meta.

    ``tokenizer`` defaults to the model folder; ``batch_size`` (16), ``max_tokens`` (256),
    ``device`` (cpu | cuda | auto), ``text_key`` (text), ``key`` (embedding)."""

    def __init__(self, model: str, tokenizer: str | None = None, batch_size: int = 16, max_tokens: int = 256,
                 device: str = "cpu", text_key: str = "text", key: str = "embedding"):
        super().__init__()
        if not (Path(model) / "config.json").is_file():
            raise ValueError(f"embed: {model} is not a model folder (no config.json)")
        number("embed.batch_size", batch_size, lo=1, integer=True)
        number("embed.max_tokens", max_tokens, lo=1, integer=True)
        self.model_path, self.tokenizer_path = model, tokenizer or model
        self.batch_size, self.max_tokens, self.device = batch_size, max_tokens, device
        self.text_key, self.key = text_key, key
        self.model = self.tokenizer = None

    def setup(self) -> None:
        if self.model is None:
            self.model = load_model(self.model_path).to(resolve_device(self.device)).eval()
            self.tokenizer = Tokenizer.from_file(self.tokenizer_path)

    def embed(self, texts: list[str]) -> np.ndarray:
        """float32 ``(len(texts), dim)`` unit vectors (:func:`train.api.mean_hidden_states`)."""
        self.setup()
        return mean_hidden_states(self.model, self.tokenizer, texts, self.batch_size, self.max_tokens)

    def process(self, docs):
        texts = [t if isinstance(t, str) else "" for t in (d.get(self.text_key) for d in docs)]
        for doc, vec in zip(docs, self.embed(texts)):
            doc.meta[self.key] = [round(float(x), 6) for x in vec]
        return docs, []
