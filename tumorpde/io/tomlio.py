"""Writing configs as TOML (``tomllib`` only reads): the inverse of ``tomllib.loads``.

Used for manufactured-solution configs and by tests that build configs as
dictionaries.  Tables become ``[sections]`` (``[species.NAME]``, ``[mesh]`` with
``[mesh.regions]``/``[mesh.boundaries]``), deeper tables are written inline.
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = ["dumps"]


def _toml_key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else _toml_str(k)


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _toml_value(v: Any, nonfinite: bool = False) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            if not nonfinite:
                raise ValueError(f"cannot write {v!r} to TOML")
            return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
        return repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x, nonfinite) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x, nonfinite)}"
                                for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dumps(data: dict[str, Any], header: str = "", nonfinite: bool = False) -> str:
    """A config dictionary as TOML text: one section per table, inner tables inline.

    Args:
        data: The config (as read by ``tomllib``).
        header: Comment lines put at the top.
        nonfinite: Write ``nan``/``inf`` (valid TOML) instead of refusing them.
    """
    lines = [f"# {h}".rstrip() for h in header.splitlines()]
    if lines:
        lines.append("")
    for k, v in data.items():
        if not isinstance(v, dict):
            lines.append(f"{_toml_key(k)} = {_toml_value(v, nonfinite)}")

    def section(path: list[str], table: dict[str, Any], nested: tuple[str, ...] = ()) -> None:
        lines.append("")
        lines.append("[" + ".".join(_toml_key(p) for p in path) + "]")
        for k, v in table.items():
            if k not in nested or not isinstance(v, dict):
                lines.append(f"{_toml_key(k)} = {_toml_value(v, nonfinite)}")
        for k in nested:
            if isinstance(table.get(k), dict) and table[k]:
                section(path + [k], table[k])

    for k, v in data.items():
        if not isinstance(v, dict):
            continue
        if k == "species" and all(isinstance(s, dict) for s in v.values()):
            for name, s in v.items():
                section(["species", name], s)
        elif k == "mesh":
            section(["mesh"], v, ("regions", "boundaries"))
        else:
            section([k], v)
    return "\n".join(lines).lstrip("\n") + "\n"
