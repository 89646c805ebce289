"""Model-backed scoring steps: ``ifd`` (instruction-following difficulty).
Importing this package registers the steps; models load in each step's ``setup``."""
from experiments.scoring import ifd  # noqa: F401
