"""Strict checks of plain data read from TOML (no DOLFINx).

The loaders of :mod:`tumorpde.model.config`, :mod:`tumorpde.model.compartments` and
:mod:`tumorpde.model.pharmacology` map TOML tables one-to-one onto the objects of
:mod:`tumorpde.model.objects` with these helpers: each takes a value and the dotted key it
came from, returns the value (normalised: integers stay integers only where asked
for) and raises :class:`~tumorpde.errors.ConfigError` naming the key otherwise.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from tumorpde.errors import ConfigError

__all__ = ["type_name", "table", "fields", "number", "boolean", "string", "number_list",
           "scalar_or_expr", "coefficient"]


def type_name(v: Any) -> str:
    """The TOML name of the type of ``v`` (for messages)."""
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "table"}.get(type(v), type(v).__name__)


def table(data: Any, key: str) -> dict[str, Any]:
    """``data`` if it is a table."""
    if not isinstance(data, dict):
        raise ConfigError(key, f"expected a table, got {type_name(data)}")
    return data


def fields(cls: type, data: dict[str, Any], key: str) -> dict[str, Any]:
    """``data`` if all its keys are fields of the dataclass ``cls``."""
    names = {f.name for f in dataclasses.fields(cls)}
    for k in data:
        if k not in names:
            where = f"{key}.{k}" if key else k
            raise ConfigError(where, f"unknown key (allowed: {', '.join(sorted(names))})")
    return data


def number(v: Any, key: str, *, positive: bool = False, nonneg: bool = False,
           integer: bool = False) -> Any:
    """A finite number (a float, or an int with ``integer``), optionally positive or non-negative."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ConfigError(key, f"expected a number, got {type_name(v)} {v!r}")
    if integer and not isinstance(v, int):
        raise ConfigError(key, f"expected an integer, got {v!r}")
    if not math.isfinite(v):
        raise ConfigError(key, f"value {v!r} is not finite")
    if positive and v <= 0:
        raise ConfigError(key, f"must be positive, got {v!r}")
    if nonneg and v < 0:
        raise ConfigError(key, f"must not be negative, got {v!r}")
    return int(v) if integer else float(v)


def boolean(v: Any, key: str) -> bool:
    """``true`` or ``false``."""
    if not isinstance(v, bool):
        raise ConfigError(key, f"expected true or false, got {type_name(v)} {v!r}")
    return v


def string(v: Any, key: str, choices: tuple[str, ...] | None = None) -> str:
    """A string, optionally one of ``choices``."""
    if not isinstance(v, str):
        raise ConfigError(key, f"expected a string, got {type_name(v)} {v!r}")
    if choices is not None and v not in choices:
        raise ConfigError(key, f"{v!r} is not one of {', '.join(choices)}")
    return v


def number_list(v: Any, key: str, n: tuple[int, ...], **kw: Any) -> list[Any]:
    """An array of ``n`` numbers (one of the lengths in ``n``), each checked by :func:`number`."""
    if not isinstance(v, list):
        raise ConfigError(key, f"expected an array of numbers, got {type_name(v)}")
    if len(v) not in n:
        raise ConfigError(key, f"expected {' or '.join(map(str, n))} entries, got {len(v)}")
    return [number(x, f"{key}[{i}]", **kw) for i, x in enumerate(v)]


def scalar_or_expr(v: Any, key: str) -> float | str:
    """A number or an expression string (parsed later)."""
    if isinstance(v, bool) or not isinstance(v, int | float | str):
        raise ConfigError(key, f"expected a number or an expression string, got {type_name(v)}")
    if isinstance(v, int | float):
        return number(v, key)
    return v


def coefficient(v: Any, key: str) -> Any:
    """A coefficient: :func:`scalar_or_expr`, or a per-region table of them."""
    if isinstance(v, dict):
        if not v:
            raise ConfigError(key, "empty per-region table")
        return {str(k): scalar_or_expr(x, f"{key}.{k}") for k, x in v.items()}
    return scalar_or_expr(v, key)
