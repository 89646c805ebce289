"""Deduplication: exact, MinHash near-duplicates, and benchmark decontamination.

Importing this package registers the pipeline steps ``exact_dedup``,
``minhash_dedup`` and ``decontaminate``.
"""
from curate.dedup.decontam import contamination_split, decontaminate, load_eval_files
from curate.dedup.minhash import jaccard, minhash_signatures, optimal_bands
from curate.dedup.steps import Decontaminate, ExactDedup, MinHashDedup

__all__ = ["Decontaminate", "ExactDedup", "MinHashDedup", "contamination_split", "decontaminate", "jaccard",
           "load_eval_files", "minhash_signatures", "optimal_bands"]
