"""Reading YAML configs safely, with one-line errors."""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from curate.basics.errors import CurateError

MAX_CONFIG_VALUES = 1_000_000  # values in a config once YAML aliases are expanded


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML file (``yaml.safe_load``). A missing file, bad YAML (with its
    line) or a top level that is not a mapping raise CurateError with one line."""
    path = Path(path)
    if not path.is_file():
        raise CurateError(f"config not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except RecursionError:
        raise CurateError(f"{path}: YAML nested too deeply") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise CurateError(f"invalid YAML in {path}{where}: {getattr(e, 'problem', None) or str(e).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CurateError(f"{path}: a config must be a mapping of keys to values")
    check_expanded_size(data, str(path))
    return data


def check_expanded_size(data: Any, where: str, limit: int = MAX_CONFIG_VALUES) -> int:
    """Number of values in ``data`` with every shared (aliased) part counted each time it
    appears, computed in time linear in the distinct parts. A YAML alias bomb expands to
    billions of values when serialised (``json.dumps``); refuse it with one line instead."""
    sizes: dict[int, int] = {}
    open_ids: set[int] = set()

    def size(x: Any) -> int:
        if not isinstance(x, (dict, list)):
            return 1
        key = id(x)
        if key in sizes:
            return sizes[key]
        if key in open_ids:
            raise CurateError(f"{where}: the config contains itself (a recursive YAML alias)")
        open_ids.add(key)
        parts = [*x.keys(), *x.values()] if isinstance(x, dict) else x
        n = 1 + sum(size(v) for v in parts)
        open_ids.discard(key)
        sizes[key] = n
        return n

    try:
        total = size(data)
    except RecursionError:
        raise CurateError(f"{where}: the config is nested too deeply") from None
    if total > limit:
        raise CurateError(f"{where}: the config expands to {total:,} values (YAML aliases?); the limit is {limit:,}")
    return total


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
