"""Model-backed scoring steps: ``perplexity`` (a train/ checkpoint), ``reward`` (a reward
model), ``ifd`` (instruction-following difficulty) and ``embed`` (mean hidden states, for
``select``). Importing this package registers them."""
from experiments.scoring import embed, ifd, perplexity, reward  # noqa: F401
