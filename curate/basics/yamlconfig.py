"""Reading YAML configs safely, with one-line errors."""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from curate.basics.errors import CurateError


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML file (``yaml.safe_load``). A missing file, bad YAML (with its
    line) or a top level that is not a mapping raise CurateError with one line."""
    path = Path(path)
    if not path.is_file():
        raise CurateError(f"config not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise CurateError(f"invalid YAML in {path}{where}: {getattr(e, 'problem', None) or str(e).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CurateError(f"{path}: a config must be a mapping of keys to values")
    return data


def check_keys(raw: Any, cls, required: tuple[str, ...], what: str) -> None:
    """One-line CurateErrors for a config mapping meant for dataclass ``cls``: not a
    mapping, a key ``cls`` has no field for, or a missing ``required`` key."""
    if not isinstance(raw, dict):
        raise CurateError(f"{what}: expected a mapping")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise CurateError(f"{what}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(names))})")
    missing = [k for k in required if not raw.get(k)]
    if missing:
        raise CurateError(f"{what}: missing required key {missing[0]!r}")
