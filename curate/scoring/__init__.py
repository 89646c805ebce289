"""Scores written to ``meta`` that need no language model: fastText quality
(``quality``, ``quality_filter``), and score-based, diversity-aware selection (``select``; with
a model, its closeness loads one). Importing this package registers the steps; models load in
each step's ``setup``. The model-backed scores (``perplexity``, ``reward``, ``ifd``) live in
``experiments/scoring``."""
from curate.scoring import quality, select  # noqa: F401
