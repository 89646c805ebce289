"""The ``ifd`` step: instruction-following difficulty of SFT conversations (:mod:`train.ifd`).

For each conversation it writes to ``meta``:

* ``ifd_loss_given_prompt``: mean answer-token loss (nats) given the prompt;
* ``ifd_loss_alone``: mean loss of the same answer tokens after only BOS;
* ``ifd``: their ratio; ``ifd_turns``: the IFD of each assistant turn (a multi-turn
  conversation's ``ifd`` is the ratio of token-weighted means over all turns);

and, when ``ifd >= flag_at`` (default 1), ``meta["flags"]["prompt_does_not_help"]``: the prompt
does not make the answer any likelier, the mark of an answer that does not fit its prompt.
Removes nothing; follow with ``select`` or ``keep_if`` to choose examples.

    - step: ifd
      model: runs/sft/model       # our checkpoint or a Hugging Face Llama folder
      tokenizer: runs/tok/tokenizer.model   # default: the model folder
      template: llama2            # or plain: the chat template the model was tuned with
      batch_size: 16
      max_tokens: 1024
      device: auto                # auto | cpu | cuda

Conversations are read from ``meta`` (``messages``, Alpaca ``instruction``/``output`` or
ShareGPT ``conversations``); documents that are not a conversation ending in an answer are kept
unscored and counted in ``counters["ifd_unscored"]``.
"""
from __future__ import annotations

from pathlib import Path

import torch

from curate.basics.device import resolve_device
from curate.pipeline.params import number
from curate.pipeline.step import Step, register
from train.api import ifd_scores, load_model
from train.sft import TEMPLATES, to_messages
from train.tokenizer import Tokenizer

FLAG = "prompt_does_not_help"


@register("ifd")
class IFDScore(Step):
    """Instruction-following difficulty of SFT conversations under a Llama (meta.ifd and its losses).

    Parameters as in the module docstring; ``flag_at`` (default 1.0) sets where
    ``prompt_does_not_help`` is flagged, ``dtype`` float32 (default) or bfloat16."""

    def __init__(self, model: str, tokenizer: str | None = None, template: str = "llama2", batch_size: int = 16,
                 max_tokens: int = 1024, device: str = "cpu", flag_at: float = 1.0, dtype: str = "float32"):
        super().__init__()
        if not (Path(model) / "config.json").is_file():
            raise ValueError(f"ifd: {model} is not a model folder (no config.json)")
        if template not in TEMPLATES:
            raise ValueError(f"ifd: unknown template {template!r} (choose from {', '.join(TEMPLATES)})")
        number("ifd.batch_size", batch_size, lo=1, integer=True)
        number("ifd.max_tokens", max_tokens, lo=2, integer=True)
        number("ifd.flag_at", flag_at, lo=0)
        if dtype not in ("float32", "bfloat16"):
            raise ValueError("ifd: dtype must be float32 or bfloat16")
        self.model_path, self.tokenizer_path = model, tokenizer or model
        self.template, self.batch_size, self.max_tokens = template, batch_size, max_tokens
        self.device, self.flag_at, self.dtype = device, flag_at, dtype
        self.model = self.tokenizer = None

    def setup(self) -> None:
        device = resolve_device(self.device)
        self.model = load_model(self.model_path).to(device=device, dtype=getattr(torch, self.dtype)).eval()
        self.tokenizer = Tokenizer.from_file(self.tokenizer_path)

    def process(self, docs):
        if self.model is None:
            self.setup()
        scores = ifd_scores(self.model, self.tokenizer, [to_messages(d.meta) for d in docs], self.template,
                            self.batch_size, self.max_tokens)
        for doc, s in zip(docs, scores):
            if s is None:
                self.counters["ifd_unscored"] += 1
                continue
            doc.meta.update({"ifd_loss_given_prompt": round(s.loss_given_prompt, 5),
                             "ifd_loss_alone": round(s.loss_alone, 5), "ifd": round(s.ifd, 5),
                             "ifd_turns": [round(t["ifd"], 5) for t in s.turns]})
            if s.ifd >= self.flag_at:
                flags = doc.meta.get("flags") if isinstance(doc.meta.get("flags"), dict) else {}
                doc.meta["flags"] = {**flags, FLAG: f"ifd {s.ifd:.3f} >= {self.flag_at:g}"}
                self.counters[f"flagged_{FLAG}"] += 1
        return docs, []
