"""Scores written to ``meta`` that need no language model: fastText quality
(``quality``, ``quality_filter``). Importing this package registers the steps; models load
in each step's ``setup``. The model-backed scores (``perplexity``, ``reward``) live in
``experiments/scoring``."""
from curate.scoring import quality  # noqa: F401
