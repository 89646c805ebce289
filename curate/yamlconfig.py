"""Reading YAML configs safely, with one-line errors."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from curate.errors import CurateError


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
