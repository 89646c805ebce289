"""The one device resolver: which torch device a run uses when its config says ``auto``."""
from __future__ import annotations


def resolve_device(name: str | None = "auto") -> str:
    """``"cuda"`` when ``name`` is ``auto`` (or None) and a GPU is visible, else ``"cpu"``;
    any other name (``cpu``, ``cuda:1``, ``mps``) is returned as given."""
    if name not in (None, "auto"):
        return name
    import torch  # only when a device is asked for: basics import nothing heavy

    return "cuda" if torch.cuda.is_available() else "cpu"
