"""Deduplication: exact, MinHash near-duplicates, and benchmark decontamination.

Importing this package registers the pipeline steps ``exact_dedup``,
``minhash_dedup`` and ``decontaminate``.
"""
from curate.dedup.minhash import jaccard, minhash_signatures, optimal_bands
from curate.dedup.steps import ExactDedup, MinHashDedup

__all__ = ["ExactDedup", "MinHashDedup", "jaccard", "minhash_signatures", "optimal_bands"]
