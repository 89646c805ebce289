"""Model files that curate downloads on request: ``curate models fetch lid``.

Files live in a cache folder, ``$CURATE_CACHE`` or ``~/.cache/curate``. Nothing is
downloaded implicitly: a step that needs a missing model fails with a message that
names the fetch command, and any config can point at its own model path instead.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from curate.basics.errors import CurateError

# name -> (file name, official URL, what it is)
MODELS = {
    "lid": ("lid.176.ftz", "https://dl.fbaipublicfiles.com/fasttext/supervised-models/lid.176.ftz",
            "fastText language identification, 176 languages (917 KB, CC BY-SA 3.0)"),
    "lid-bin": ("lid.176.bin", "https://dl.fbaipublicfiles.com/fasttext/supervised-models/lid.176.bin",
                "fastText language identification, 176 languages, full size (126 MB, CC BY-SA 3.0)"),
}


def cache_dir() -> Path:
    """``$CURATE_CACHE`` if set, else ``~/.cache/curate``."""
    return Path(os.environ.get("CURATE_CACHE") or Path.home() / ".cache" / "curate")


def model_path(name: str) -> Path:
    """Where model ``name`` is (or would be) cached."""
    if name not in MODELS:
        raise CurateError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return cache_dir() / MODELS[name][0]


def resolve(name: str, path: str | None) -> Path:
    """``path`` if given (must exist), else the cached copy of ``name`` (must be fetched)."""
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise CurateError(f"model file not found: {p}")
        return p
    p = model_path(name)
    if not p.is_file():
        raise CurateError(f"{name} model not found at {p}; run `curate models fetch {name}` or give its path")
    return p


def load_fasttext(path):
    """Load a fastText model quietly (the library prints a warning on load)."""
    import fasttext

    fasttext.FastText.eprint = lambda *a, **k: None
    return fasttext.load_model(str(path))


def fetch(name: str, url: str | None = None, timeout: float = 60.0) -> Path:
    """Download model ``name`` into the cache (atomically: a partial download never
    looks finished) and return its path. Raises CurateError when offline."""
    dest = model_path(name)
    if dest.is_file():
        return dest
    url = url or MODELS[name][1]
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            shutil.copyfileobj(resp, out)
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise CurateError(
            f"cannot download {url} ({reason}); are you offline? Copy the file to {dest} by hand "
            f"or give its path in the config"
        ) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest
