"""Pipeline steps: the unit of work a config names.

Three shapes, from simple to global:

* :class:`Filter` -- ``reason(doc)`` returns ``None`` to keep, or a string saying why not.
* :class:`Step` -- ``process(docs)`` returns ``(kept, removed)``; for steps that
  rewrite text or add scores to ``meta`` (mappers) or that need a whole batch.
* :class:`GlobalStep` -- needs every shard at once (dedup). The runner calls
  ``index`` on each shard in parallel, ``reduce`` once, then ``apply`` on each
  shard in parallel. State passes through files under ``workdir`` only, so each
  phase is resumable and can run on another process or machine.

Register a step with ``@register("name")`` so that a YAML config can say
``- step: name`` followed by its keyword parameters.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

from curate.record import Document, Removed

REGISTRY: dict[str, type["Step"]] = {}


def register(name: str):
    def wrap(cls):
        if name in REGISTRY:
            raise ValueError(f"step {name!r} registered twice")
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return wrap


class Step:
    """Base class. Subclasses take their parameters as keyword arguments in
    ``__init__`` (validated there: raise ``ValueError`` with a one-line message)."""

    name: ClassVar[str] = "step"

    def __init__(self) -> None:
        # Extra per-step counters (e.g. PII redactions); summed over shards into stats.json.
        self.counters: Counter[str] = Counter()

    def setup(self) -> None:
        """Load models or files. Called once per worker process before the first batch."""

    def process(self, docs: list[Document]) -> tuple[list[Document], list[Removed]]:
        raise NotImplementedError


class Filter(Step):
    def reason(self, doc: Document) -> str | None:
        raise NotImplementedError

    def process(self, docs):
        kept, removed = [], []
        for doc in docs:
            why = self.reason(doc)
            if why is None:
                kept.append(doc)
            else:
                removed.append(Removed(doc, self.name, why))
        return kept, removed


class GlobalStep(Step):
    """A step that sees all shards: dedup and the like."""

    def process(self, docs):  # a global step is never run per batch
        raise TypeError(f"{self.name} is a global step; the runner calls index/reduce/apply")

    def index(self, docs: list[Document], shard: int, workdir: Path) -> None:
        """Compute per-shard state (hashes, signatures) and spill it under ``workdir``."""
        raise NotImplementedError

    def reduce(self, workdir: Path, n_shards: int) -> dict[str, Any]:
        """Combine all shards' state into per-shard decisions under ``workdir``;
        return figures for stats.json (e.g. a cluster-size histogram). A subclass may
        add an ``executor`` keyword: the runner then passes the run's Executor, over
        which the step can spread its reduce (dedup clustering on Ray does)."""
        raise NotImplementedError

    def apply(self, docs: list[Document], shard: int, workdir: Path) -> tuple[list[Document], list[Removed]]:
        """Split one shard into kept and removed using the decisions ``reduce`` wrote.
        ``docs`` arrive in the same order as they were given to ``index``."""
        raise NotImplementedError


# Steps that live above the curate core register when their module is imported; the core
# never imports them, so a config naming one from plain curate.pipeline gets this hint.
UPPER_STEPS = {"annotation_checks": "annotations.steps", "perplexity": "experiments.scoring",
               "reward": "experiments.scoring", "ifd": "experiments.scoring", "embed": "experiments.scoring"}


def build_step(spec: dict[str, Any]) -> Step:
    """Make a step from a config entry ``{"step": name, **params}``. Only registered steps are
    known: ``curate.steps`` registers the core ones, ``experiments.steps`` every step."""
    spec = dict(spec)
    name = spec.pop("step", None)
    if name is None:
        raise ValueError(f"step entry {spec!r} has no 'step' key")
    if name not in REGISTRY:
        where = f" (it is defined in {UPPER_STEPS[name]}: import that module, or experiments.steps for all)" \
            if name in UPPER_STEPS else ""
        raise ValueError(f"unknown step {name!r}{where}; known steps: {', '.join(sorted(REGISTRY))}")
    try:
        return REGISTRY[name](**spec)
    except TypeError as e:
        raise ValueError(f"step {name!r}: {e}") from None
