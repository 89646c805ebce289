"""Atomic writes and file hashes: the one home of both. A file appears under its final
name only when complete (written to a temporary name beside it, then renamed)."""
from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

TMP_PREFIX = ".tmp-"


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{TMP_PREFIX}{os.getpid()}-{path.name}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: str | Path, obj: Any, indent: int | None = 2, default: Callable | None = None,
               newline: bool = True) -> None:
    """Write ``obj`` as JSON (UTF-8, ``indent`` spaces) atomically; ``default`` as in json.dumps."""
    with atomic_path(path) as tmp:
        text = json.dumps(obj, indent=indent, ensure_ascii=False, default=default)
        tmp.write_text(text + ("\n" if newline else ""), encoding="utf-8")


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, in hex (read in 4 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def json_sha256(obj: Any, chars: int = 16) -> str:
    """sha256 (first ``chars`` hex digits) of the canonical JSON of ``obj``: a plan's fingerprint."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:chars]
