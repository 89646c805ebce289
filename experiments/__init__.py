"""Experiments over curated data: vendor comparison, data and architecture ablations,
rejection sampling and the model-backed scoring steps. Layer 4: imports curate, train and
annotations, never the CLI."""
