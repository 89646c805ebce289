"""Every step of the curate core, registered: importing this module imports the filters,
dedup and fastText scoring steps. The steps of higher layers (annotation checks, model-backed
scores) register in ``experiments.steps``."""
from __future__ import annotations

import curate.dedup  # noqa: F401  (registers exact_dedup, minhash_dedup, decontaminate)
import curate.filters  # noqa: F401  (registers the quality filters, language ID, PII, keep_if)
import curate.scoring  # noqa: F401  (registers quality, quality_filter, select)
from curate.pipeline.step import REGISTRY, build_step

__all__ = ["REGISTRY", "build_step"]
