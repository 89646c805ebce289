"""Model-backed scoring steps: ``perplexity`` (a train/ checkpoint) and ``reward`` (a reward
model). Importing this package registers them."""
from experiments.scoring import perplexity, reward  # noqa: F401
