"""Units: the model's unit system and checked conversion of quantities.

Quantities in a config are numbers (taken to be in model units) or strings such
as ``"0.01 mm^2/day"`` parsed by pint.  A model declares its length and time
units in ``[units]``; species are dimensionless densities unless they declare
``units``.  Each term's required units follow from these (see
:func:`required_units`).
"""

from __future__ import annotations

import functools
import math
from typing import Any

from tumorpde.errors import ConfigError

__all__ = ["registry", "parse_quantity", "parse_unit", "canonical", "required_units"]


@functools.cache
def registry() -> Any:
    """The application's pint registry (created on first use)."""
    import pint

    ureg = pint.UnitRegistry(autoconvert_offset_to_baseunit=False)
    return ureg


def parse_unit(text: Any, key: str, want: str | None = None) -> Any:
    """Parse a unit string (``"mm"``, ``"day"``, ``"ng/mL"``).

    Args:
        text: The unit.
        key: Config key for messages.
        want: If given, a pint dimensionality the unit must have (``"[length]"``).
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(key, f"expected a unit string such as 'mm', got {text!r}")
    ureg = registry()
    try:
        q = ureg.Quantity(1.0, text.strip())
    except Exception:
        raise ConfigError(key, f"unknown unit {text!r}") from None
    if want is not None and q.dimensionality != ureg.get_dimensionality(want):
        raise ConfigError(key, f"{text!r} is not a unit of {want}")
    return q.units


def parse_quantity(value: Any, key: str, have_units: bool) -> tuple[float, Any]:
    """Parse a parameter value.

    Args:
        value: A number (model units, unchecked) or a string ``"<number> <unit>"``.
        key: Config key for messages.
        have_units: Whether the model declares ``[units]``; unit strings need it.

    Returns:
        (magnitude, pint unit or ``None`` for a plain number).
    """
    if isinstance(value, bool):
        raise ConfigError(key, f"expected a number or a quantity string, got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(float(value)):
            raise ConfigError(key, f"value {value!r} is not finite")
        return float(value), None
    if not isinstance(value, str):
        raise ConfigError(key, f"expected a number or a quantity string like '0.01 mm^2/day', "
                               f"got {type(value).__name__}")
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(number):
            raise ConfigError(key, f"value {value!r} is not finite")
        return number, None
    if not have_units:
        raise ConfigError(key, f"{value!r} has units but the config has no [units] table")
    ureg = registry()
    try:
        q = ureg.Quantity(text)
    except Exception:
        raise ConfigError(key, f"cannot read {value!r} as a number with units") from None
    if not isinstance(q, ureg.Quantity) or not isinstance(q.magnitude, int | float):
        raise ConfigError(key, f"cannot read {value!r} as a number with units")
    mag = float(q.magnitude)
    if not math.isfinite(mag):
        raise ConfigError(key, f"value {value!r} is not finite")
    if q.units == ureg.dimensionless:
        return mag, ureg.dimensionless
    return mag, q.units


def canonical(magnitude: float, unit: Any, length: Any, time: Any) -> tuple[float, Any]:
    """Convert a quantity made of length and time only into the model's units.

    ``"0.918 1/hour"`` becomes ``(22.03, 1/day)`` in a model timed in days, so that
    every such parameter enters expressions already in model units, whatever
    expression it appears in.  Quantities with other dimensions (mass, substance,
    pressure, ...) keep their own units and are converted where they meet others.

    Args:
        magnitude: Value in ``unit``.
        unit: pint unit, or ``None`` for a plain number (returned unchanged).
        length: Model length unit (``None`` without ``[units]``).
        time: Model time unit.
    """
    if unit is None or length is None:
        return magnitude, unit
    dims = dict(unit.dimensionality)
    if not set(dims) <= {"[length]", "[time]"}:
        return magnitude, unit
    target = length ** dims.get("[length]", 0) * time ** dims.get("[time]", 0)
    if not dims:
        target = registry().dimensionless
    return float(registry().Quantity(magnitude, unit).to(target).magnitude), target


def required_units(kind: str, length: Any, time: Any, species: Any,
                   other: Any = None) -> Any:
    """Units a term must have.

    Args:
        kind: ``diffusion``, ``reaction``, ``initial``, ``value``, ``sensitivity``,
            ``robin`` (transfer coefficient) or ``flux`` (boundary flux).
        length: Model length unit.
        time: Model time unit.
        species: Units of the species the term belongs to.
        other: Units of the signal species (taxis only).
    """
    if kind == "diffusion":
        return length ** 2 / time
    if kind == "reaction":
        return species / time
    if kind in ("initial", "value"):
        return species
    if kind == "sensitivity":
        return species * length ** 2 / (time * other)
    if kind == "robin":
        return length / time
    if kind == "flux":
        return species * length / time
    raise ValueError(kind)  # pragma: no cover
