"""Scalar compartments: well-mixed global unknowns coupled to the fields (no DOLFINx).

``[scalars.NAME]`` declares one global unknown obeying an ODE,

    d(NAME)/dt = reaction(scalars, parameters, drugs, t, observables of the fields),

for example circulating tumour cells fed by the integral of intravasation over the
tissue.  Each scalar is a symbol (a constant in space) in every field expression, so
the coupling runs both ways: fields -> scalars through *integrals* (instantaneous
``[observables]``), scalars -> fields through the scalar's *value*.

Time stepping (see docs/numerics.md): each step first advances the scalars with the
fields' scheme (backward Euler or BDF2, same coefficients), implicitly in the scalars
themselves (a small Newton solve, so fast clearance is stable at any step), with the
observables taken at the start of the step; the fields then take the step with the
scalars at its end.  The coupling through the observables is thus lagged by one step
(first order in time), which is what keeps the scalars out of the field Jacobian.
Terms proportional to a scalar (its clearance, its arrest in a tissue) should be
written with the scalar itself, ``-rate*area*ctc``, so that they are implicit.

:class:`ScalarSystem` holds the values in arrays with :meth:`~ScalarSystem.state` and
:meth:`~ScalarSystem.restore` for checkpoints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from tumorpde.errors import ConfigError
from tumorpde.model import expressions as ex
from tumorpde.model import units as un
from tumorpde.model import validation as va
from tumorpde.model.objects import Scalar
from tumorpde.model.spec import Spec, symbol_dims

__all__ = ["load_scalars", "check_scalars", "ScalarSpec", "ScalarSystem", "observable_dims",
           "global_symbols"]

_MESH_DIM = {"interval": 1, "rectangle": 2, "disk": 2, "box": 3, "sphere": 3}


def load_scalars(data: Any) -> dict[str, Scalar]:
    """``[scalars]`` as :class:`~tumorpde.model.objects.Scalar` objects (strict keys and types)."""
    out = {}
    for name, d in va.table(data, "scalars").items():
        key = f"scalars.{name}"
        d = va.fields(Scalar, va.table(d, key), key)
        sc = Scalar()
        for k in ("reaction", "initial"):
            if k in d:
                setattr(sc, k, va.scalar_or_expr(d[k], f"{key}.{k}"))
        for k in ("units", "description"):
            if k in d:
                setattr(sc, k, va.string(d[k], f"{key}.{k}"))
        out[name] = sc
    return out


@dataclass
class ScalarSpec:
    """A checked scalar compartment.

    Attributes:
        name: Its name (symbol and ``observables.csv`` column).
        reaction: Parsed right-hand side.
        initial: Initial value (model units).
        unit: pint unit (``None`` without ``[units]``).
        factor: Conversion of the right-hand side to the scalar's units per model time.
    """

    name: str
    reaction: ex.Expr
    initial: float
    unit: Any
    factor: float = 1.0


def observable_dims(spec: Spec) -> dict[str, ex.Dim]:
    """Units of the instantaneous observables (integrals carry length^dim of the mesh)."""
    dims = symbol_dims(spec)
    syms = {k: (None, d) for k, d in dims.items()}
    ureg = un.registry() if spec.has_units else None
    gdim = _MESH_DIM.get(spec.config.mesh.shape)
    out = {}
    for name, ob in spec.observables.items():
        if ob.cumulative or ob.kind == "value":
            continue
        _, d = ex.lower(ob.expr.expr, syms, ob.expr.key, ureg, build=False)
        if ob.kind == "radius":  # a position on the mesh
            d = ex.Dim(spec.length_unit if ureg is not None else None, False)
        elif ob.kind == "integral" and ureg is not None:
            if ob.per is not None:
                _, dp = ex.lower(ob.per.expr, syms, ob.per.key, ureg, build=False)
                unit = d.unit / dp.unit if d.unit is not None and dp.unit is not None else None
            elif gdim is None or d.unit is None:
                unit = None
            else:
                unit = d.unit * spec.length_unit ** gdim
            d = ex.Dim(unit, False)
        out[name] = d
    return out


def global_symbols(spec: Spec, observables: bool) -> dict[str, ex.Dim]:
    """Units of the symbols of global expressions.

    These are the scalars, parameters, drugs and ``t``, and the instantaneous
    observables when ``observables`` is true.
    """
    dims = symbol_dims(spec)
    cfg = spec.config
    names = set(spec.parameters) | set(cfg.scalars) | set(cfg.drugs) | {ex.TIME, *ex.CONSTANTS}
    out = {k: d for k, d in dims.items() if k in names}
    if observables:
        out.update(observable_dims(spec))
    return out


def _check_global(expr: ex.Expr, key: str, spec: Spec, observables: bool) -> None:
    used = ex.symbols_of(expr)
    if used & set(ex.COORDINATES):
        raise ConfigError(key, "is an expression of global quantities: coordinates x, y, z "
                               "cannot be used (integrate over the mesh with an observable)")
    if observables:
        for name in used & set(spec.observables):
            ob = spec.observables[name]
            if ob.cumulative or ob.kind in ("value", "radius"):
                what = "cumulative" if ob.cumulative else f"a {ob.kind}"
                raise ConfigError(key, f"observable {name!r} is "
                                       f"{what}: only "
                                       "instantaneous integrals, maxima and minima can drive a "
                                       "scalar")


def check_scalars(spec: Spec) -> dict[str, ScalarSpec]:
    """Check ``[scalars]``: names, expressions (global symbols only) and units.

    Raises:
        ConfigError: naming the offending key.
    """
    cfg = spec.config
    if not cfg.scalars:
        return {}
    ureg = un.registry() if spec.has_units else None
    allowed = set(spec.parameters) | set(cfg.scalars) | set(cfg.drugs) | set(spec.observables)
    out = {}
    for name, sc in cfg.scalars.items():
        key = f"scalars.{name}"
        if sc.units is not None and ureg is None:
            raise ConfigError(f"{key}.units", "scalar units need a [units] table")
        unit = un.parse_unit(sc.units, f"{key}.units") if sc.units is not None else \
            (ureg.dimensionless if ureg is not None else None)
        reaction = ex.parse(sc.reaction, f"{key}.reaction", allowed)
        _check_global(reaction, f"{key}.reaction", spec, True)
        initial = ex.parse(sc.initial, f"{key}.initial", set(spec.parameters))
        _check_global(initial, f"{key}.initial", spec, False)
        out[name] = ScalarSpec(name, reaction, 0.0, unit)
    # units: initial in the scalar's units, reaction in its units per model time
    syms_obs = global_symbols(spec, True)
    syms = {k: (None, d) for k, d in syms_obs.items()}
    values = {k: (v, syms_obs[k]) for k, (v, _) in spec.parameters.items()}
    values.update(ex.constant_symbols(syms_obs))
    for name, s in out.items():
        key = f"scalars.{name}"
        initial = ex.parse(cfg.scalars[name].initial, f"{key}.initial", set(spec.parameters))
        v, d = ex.lower_number(initial, values, f"{key}.initial", ureg)
        s.initial = v * _factor(d, s.unit, f"{key}.initial", ureg)
        if not math.isfinite(s.initial):
            raise ConfigError(f"{key}.initial", f"is not finite ({s.initial})")
        if ureg is not None:
            _, d = ex.lower(s.reaction, syms, f"{key}.reaction", ureg, build=False)
            s.factor = _factor(d, s.unit / spec.time_unit, f"{key}.reaction", ureg)
    return out


def _factor(d: ex.Dim, required: Any, key: str, ureg: Any) -> float:
    """Conversion factor of a value with units ``d`` into ``required`` (1 for plain numbers)."""
    if ureg is None or required is None:
        return 1.0
    if d.unit is not None and d.unit.dimensionality == required.dimensionality:
        return float((1.0 * d.unit).to(required).magnitude)
    if d.unit is None or d.unit.dimensionality == ureg.dimensionless.dimensionality:
        return 1.0
    raise ConfigError(key, f"has units of {d.unit:~} but must be in units of "
                           f"{required.dimensionality} (e.g. {required:~})")


class ScalarSystem:
    """The scalar compartments of a run: values, one implicit step, checkpoint state.

    ``values`` holds the scalars at the last accepted time, ``previous`` one step
    earlier (BDF2), ``trial`` the result of the step being attempted.
    """

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.names = list(spec.scalars)
        self.items = [spec.scalars[n] for n in self.names]
        self.ureg = un.registry() if spec.has_units else None
        self.dims = global_symbols(spec, True)
        self.values = np.array([s.initial for s in self.items], dtype=float)
        self.previous = self.values.copy()
        self.trial = self.values.copy()
        self.iterations = 0

    def __len__(self) -> int:
        return len(self.names)

    def rhs(self, s: np.ndarray, env: dict[str, float]) -> np.ndarray:
        """Right-hand sides at scalar values ``s`` (model units)."""
        syms = {k: (float(v), self.dims[k]) for k, v in env.items() if k in self.dims}
        syms.update(ex.constant_symbols(self.dims))
        for n, v in zip(self.names, s, strict=True):
            syms[n] = (float(v), self.dims[n])
        out = np.empty(len(s))
        for i, item in enumerate(self.items):
            v, _ = ex.lower_number(item.reaction, syms, f"scalars.{item.name}.reaction", self.ureg)
            out[i] = v * item.factor
        return out

    def solve(self, coeffs: tuple[float, float, float], env: dict[str, float],
              max_it: int = 30) -> bool:
        """One implicit step ``c0 s + c1 s_n + c2 s_nm1 = rhs(s)``; the result is ``trial``.

        Args:
            coeffs: (c0, c1, c2) of the time derivative (as for the fields).
            env: Values of the other symbols: parameters, drug levels, observables, ``t``.
            max_it: Newton iterations before giving up.

        Returns:
            Whether Newton converged to a finite solution.
        """
        c0, c1, c2 = coeffs
        known = c1 * self.values + c2 * self.previous
        s = self.values.copy()
        m = len(s)
        for _ in range(max_it):
            r = self.rhs(s, env)
            f = c0 * s + known - r
            jac = np.eye(m) * c0  # finite-difference Jacobian of the residual
            for j in range(m):
                h = 1e-7 * max(abs(s[j]), abs(self.values[j]), 1e-30)
                sp = s.copy()
                sp[j] += h
                jac[:, j] -= (self.rhs(sp, env) - r) / h
            try:
                step = np.linalg.solve(jac, -f)
            except np.linalg.LinAlgError:
                return False
            s = s + step
            self.iterations += 1
            if not np.all(np.isfinite(s)):
                return False
            if np.all(np.abs(step) <= 1e-11 * np.maximum(np.abs(s), np.abs(self.values)) + 1e-300):
                self.trial = s
                return True
        return False

    def accept(self) -> None:
        """Make the trial values the values at the new time."""
        self.previous = self.values
        self.values = self.trial.copy()

    def reset_history(self) -> None:
        """Forget the step before (after a jump of the state)."""
        self.previous = self.values.copy()

    def as_dict(self) -> dict[str, float]:
        """Current values by name."""
        return {n: float(v) for n, v in zip(self.names, self.values, strict=True)}

    def state(self) -> dict[str, list[float]]:
        """Everything needed to continue from here (for checkpoints)."""
        return {"names": list(self.names), "values": self.values.tolist(),
                "previous": self.previous.tolist()}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state` of a run of the same config."""
        if list(state.get("names", [])) != self.names:
            raise ConfigError("scalars", f"the checkpoint has scalars {state.get('names')}, "
                                         f"the config {self.names}")
        self.values = np.asarray(state["values"], dtype=float)
        self.previous = np.asarray(state["previous"], dtype=float)
        self.trial = self.values.copy()
