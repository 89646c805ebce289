"""Checking step and config parameters when the config is read, with one-line errors."""
from __future__ import annotations

import math
from typing import Any


def number(name: str, value: Any, lo: float | None = None, hi: float | None = None,
           integer: bool = False, optional: bool = False) -> Any:
    """``value`` when it is a finite number in ``[lo, hi]`` (an int when ``integer``),
    else ValueError naming ``name``. Strings, booleans, NaN and infinities are refused;
    ``None`` passes when ``optional`` (a rule turned off)."""
    if value is None and optional:
        return None
    kind = "an integer" if integer else "a number"
    ok_type = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok_type):
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        low = "-inf" if lo is None else lo
        high = "inf" if hi is None else hi
        raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")
    return value


def flag(name: str, value: Any) -> bool:
    """``value`` when it is a boolean, else ValueError naming ``name``."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def text(name: str, value: Any, optional: bool = False) -> Any:
    """``value`` when it is a non-empty string, else ValueError naming ``name``."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value
