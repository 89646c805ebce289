"""Scores written to ``meta``: fastText quality (``quality``, ``quality_filter``),
language-model perplexity (``perplexity``) and reward-model scores (``reward``), and
score-based, diversity-aware selection (``select``).
Importing this package registers the steps; models load in each step's ``setup``."""
from curate.scoring import perplexity, quality, reward, select  # noqa: F401
