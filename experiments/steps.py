"""Every pipeline step of every layer, registered: the curate core's (``curate.steps``), the
annotation checks (``annotations.steps``) and the model-backed scores (``experiments.scoring``).
The CLI and the demo import this before building a pipeline."""
from __future__ import annotations

import annotations.steps  # noqa: F401  (registers annotation_checks)
import curate.steps  # noqa: F401
import experiments.scoring  # noqa: F401  (registers perplexity, reward, ifd, embed)
from curate.pipeline.step import REGISTRY, build_step

__all__ = ["REGISTRY", "build_step", "load_all_steps"]


def load_all_steps() -> dict:
    """The registry with every step in it (name -> step class); importing this module filled it."""
    return REGISTRY
