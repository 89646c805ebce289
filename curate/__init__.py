"""curate: data-quality curation for LLM training data."""
__version__ = "0.1.0"
