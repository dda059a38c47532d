"""A checked model: parsed terms, parameter values and units (no DOLFINx).

:func:`tumorpde.model.config.check` turns a :class:`~tumorpde.model.objects.Config` into a
:class:`Spec`; the discretisation (:mod:`tumorpde.fem.discretisation`) and the global
quantities (:mod:`tumorpde.model.compartments`, :mod:`tumorpde.model.pharmacology`) read their
terms from it.  :func:`symbol_dims` and :func:`term_factor` check the units of
expressions against the spec's symbols.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tumorpde.errors import ConfigError
from tumorpde.model import expressions as ex
from tumorpde.model import units as un
from tumorpde.model.objects import Config

__all__ = ["TermSpec", "SpeciesSpec", "ObservableSpec", "Spec", "parse_term", "symbol_dims",
           "term_factor", "check_units"]


@dataclass
class TermSpec:
    """A parsed coefficient: one expression, or one per region (``default`` allowed)."""

    key: str
    expr: ex.Expr | None = None
    regions: dict[str, ex.Expr] = field(default_factory=dict)

    @property
    def exprs(self) -> list[ex.Expr]:
        """All expressions of this coefficient."""
        return [self.expr] if self.expr is not None else list(self.regions.values())


@dataclass
class SpeciesSpec:
    """Parsed terms of one species."""

    name: str
    index: int
    diffusion: TermSpec | None
    reaction: TermSpec
    initial: TermSpec
    taxis: list[tuple[str, TermSpec]]
    boundary: dict[str, dict[str, TermSpec]]
    unit: Any
    #: ``(file, time)`` when the initial condition comes from field samples in a data file
    initial_data: tuple[str, float] | None = None
    #: ``(file, scale)`` when the initial condition is a NIfTI image
    initial_image: tuple[str, float] | None = None


@dataclass
class ObservableSpec:
    """A parsed observable."""

    kind: str
    expr: TermSpec
    per: TermSpec | None
    cumulative: bool
    #: ``radius`` only: the level, and whether the region is at or above it (else below)
    level: float | None = None
    above: bool = True


@dataclass
class Spec:
    """A checked model: parsed expressions, parameter values, units."""

    config: Config
    names: list[str]
    species: dict[str, SpeciesSpec]
    parameters: dict[str, tuple[float, Any]]
    length_unit: Any
    time_unit: Any
    observables: dict[str, ObservableSpec]
    regions_used: dict[str, str]
    boundaries_used: set[str]
    definitions: dict[str, TermSpec] = field(default_factory=dict)
    dims: dict[str, ex.Dim] | None = field(default=None, repr=False)
    #: scalar compartments (tumorpde.model.compartments.ScalarSpec), in declaration order
    scalars: dict[str, Any] = field(default_factory=dict)
    #: doses of every drug (tumorpde.model.pharmacology.TherapyPlan)
    plan: Any = None
    #: indices of the species held at zero (``knockout``), in the order listed there
    held: tuple[int, ...] = ()
    #: parameters that are fields (``field = true``): finite-element functions, not constants
    fields: tuple[str, ...] = ()

    @property
    def has_units(self) -> bool:
        """Whether units are checked."""
        return self.length_unit is not None


def parse_term(value: Any, key: str, allowed: set[str]) -> TermSpec:
    """Parse a coefficient (one expression, or a per-region table) at ``key``."""
    if isinstance(value, dict):
        return TermSpec(key, regions={r: ex.parse(v, f"{key}.{r}", allowed)
                                      for r, v in value.items()})
    return TermSpec(key, expr=ex.parse(value, key, allowed))


def symbol_dims(spec: Spec) -> dict[str, ex.Dim]:
    """Units of every symbol that may appear in expressions (computed once per spec)."""
    if spec.dims is not None:
        return spec.dims
    ureg = un.registry() if spec.has_units else None
    one = ureg.dimensionless if ureg is not None else None
    dims: dict[str, ex.Dim] = {c: ex.Dim(spec.length_unit, True) for c in ex.COORDINATES}
    dims[ex.TIME] = ex.Dim(spec.time_unit, True)
    dims.update({c: ex.Dim(one, True) for c in ex.CONSTANTS})
    for n, s in spec.species.items():
        # dimensionless-by-default densities behave like plain numbers; declared units are exact
        explicit = spec.config.species[n].units is not None
        dims[n] = ex.Dim(s.unit, explicit)
    for p, (_, u) in spec.parameters.items():
        dims[p] = ex.Dim(u, True) if u is not None else ex.Dim.flexible(None)
    for name, sc in spec.config.scalars.items():
        unit = un.parse_unit(sc.units, f"scalars.{name}.units") if sc.units is not None else one
        dims[name] = ex.Dim(unit, sc.units is not None)
    for name in spec.config.drugs:  # plasma levels and fraction doses: plain numbers
        dims[name] = ex.Dim(one, False)
    syms = {k: (None, d) for k, d in dims.items()}
    for name, term in spec.definitions.items():
        _, d = ex.lower(term.expr, syms, term.key, ureg, build=False)
        syms[name] = (None, d)
        dims[name] = d
    spec.dims = dims
    return dims


def term_factor(spec: Spec, term: TermSpec, required: Any) -> list[float]:
    """Check a term's units against ``required``; return the conversion factor per expression."""
    if not spec.has_units:
        return [1.0] * len(term.exprs)
    ureg = un.registry()
    syms = {k: (None, d) for k, d in symbol_dims(spec).items()}
    out = []
    keys = [term.key] if term.expr is not None else [f"{term.key}.{r}" for r in term.regions]
    for e, key in zip(term.exprs, keys, strict=True):
        _, d = ex.lower(e, syms, key, ureg, build=False)
        if d.unit is not None and d.unit.dimensionality == required.dimensionality:
            out.append(float((1.0 * d.unit).to(required).magnitude))
        elif d.unit is None or d.unit.dimensionality == ureg.dimensionless.dimensionality:
            out.append(1.0)  # plain numbers and dimensionless densities: model units
        else:
            raise ConfigError(key, f"has units of {d.unit:~} but must be in units of "
                                   f"{required.dimensionality} (e.g. {required:~})")
    return out


def check_units(spec: Spec) -> None:
    """Check every term's units (no-op without ``[units]``)."""
    if not spec.has_units:
        return
    L, T = spec.length_unit, spec.time_unit
    for s in spec.species.values():
        if s.diffusion is not None:
            term_factor(spec, s.diffusion, un.required_units("diffusion", L, T, s.unit))
        term_factor(spec, s.reaction, un.required_units("reaction", L, T, s.unit))
        term_factor(spec, s.initial, un.required_units("initial", L, T, s.unit))
        for toward, sens in s.taxis:
            term_factor(spec, sens, un.required_units("sensitivity", L, T, s.unit,
                                                      spec.species[toward].unit))
        for bc in s.boundary.values():
            for k, term in bc.items():
                kind = {"value": "value", "flux": "flux", "transfer": "robin"}[k]
                term_factor(spec, term, un.required_units(kind, L, T, s.unit))
