"""Drugs and therapy regimens: ``[drugs.NAME]`` and ``[[therapy]]`` (no DOLFINx).

A *drug* is declared by the model (its pharmacokinetics, its default regimen and,
for radiotherapy, the surviving fraction of each species); a *therapy* is one
regimen of one drug in a scenario or on the command line::

    [[therapy]]
    drug = "anti_vegf"      # a drug declared in [drugs]
    start = 7               # first dose (model time units, or "1 week")
    every = 14              # optional: interval (default: the drug's)
    doses = 4               # optional: number of doses (default: the drug's)
    dose = 1.0              # optional: amount per dose (default: the drug's)
    cycle = 28              # optional: the doses form a cycle, repeated every 28 days
    cycles = 3              # optional: how many cycles (default: until time.end)
    region = "primary"      # optional, fraction drugs: the mesh region the dose reaches

Pharmacokinetics are one-compartment with first-order elimination, so the plasma
level is an exact, closed-form function of time:

    level(t) = sum over doses t_i <= t of  dose_i * exp(-k (t - t_i)),  k = ln 2 / half_life.

The level is a pure function of the time and the configuration (no state to
checkpoint).  Inside a time step (t0, t1] the fields see the *mean* level over the
step, computed exactly,

    mean(t0, t1) = 1/(t1 - t0) * sum_i dose_i/k * exp(-k (a_i - t_i)) * (1 - exp(-k (t1 - a_i))),
    a_i = max(t0, t_i),

so that the exposure (the area under the curve, which drives log-kill and receptor
occupancy) is exact for any step, even for drugs eliminated within hours while the
model steps in days.  Dose times are milestones that the time stepper always hits, so
no step straddles a dose.

``fraction`` drugs (radiotherapy) have no plasma level: at each dose time the
surviving fraction of each species listed in ``survival`` multiplies that species
(:mod:`tumorpde.time.coupling`), on the whole mesh or on the nodes of one region's cells
(``region``, of the therapy or the drug; the mesh resolves the name).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tumorpde.errors import ConfigError
from tumorpde.model import units as un
from tumorpde.model import validation as va
from tumorpde.model.objects import Drug, Therapy
from tumorpde.model.spec import Spec, parse_term, term_factor

__all__ = ["KINDS", "load_drugs", "load_therapies", "check_therapies", "DrugPlan", "TherapyPlan",
           "MAX_DOSES"]

KINDS = ("bolus", "fraction")
MAX_DOSES = 100_000


# ----------------------------------------------------------------------- TOML -> objects
def load_drugs(data: Any) -> dict[str, Drug]:
    """``[drugs]`` as :class:`~tumorpde.model.objects.Drug` objects (strict keys and types)."""
    out = {}
    for name, d in va.table(data, "drugs").items():
        key = f"drugs.{name}"
        d = va.fields(Drug, va.table(d, key), key)
        drug = Drug()
        if "kind" in d:
            drug.kind = va.string(d["kind"], f"{key}.kind", KINDS)
        for k in ("half_life", "every", "cycle"):
            if k in d:
                setattr(drug, k, _time_like(d[k], f"{key}.{k}"))
        if "cycles" in d:
            drug.cycles = va.number(d["cycles"], f"{key}.cycles", positive=True, integer=True)
        if "dose" in d:
            drug.dose = va.number(d["dose"], f"{key}.dose", nonneg=True)
        if "doses" in d:
            drug.doses = va.number(d["doses"], f"{key}.doses", positive=True, integer=True)
        if "survival" in d:
            surv = va.table(d["survival"], f"{key}.survival")
            for sp, v in surv.items():
                if isinstance(v, bool) or not isinstance(v, str | int | float):
                    raise ConfigError(f"{key}.survival.{sp}", "expected an expression string")
            drug.survival = {sp: str(v) for sp, v in surv.items()}
        for k in ("description", "source", "region"):
            if k in d:
                setattr(drug, k, va.string(d[k], f"{key}.{k}"))
        out[name] = drug
    return out


def load_therapies(data: Any) -> list[Therapy]:
    """``[[therapy]]`` as :class:`~tumorpde.model.objects.Therapy` objects (strict keys and types)."""
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise ConfigError("therapy", "expected an array of tables ([[therapy]])")
    out = []
    for i, t in enumerate(data):
        key = f"therapy[{i}]"
        t = va.fields(Therapy, va.table(t, key), key)
        if "drug" not in t:
            raise ConfigError(f"{key}.drug", "missing (the name of a drug in [drugs])")
        if "start" not in t:
            raise ConfigError(f"{key}.start", "missing (the time of the first dose)")
        th = Therapy(drug=va.string(t["drug"], f"{key}.drug"), start=_time_like(t["start"], f"{key}.start"))
        if "every" in t:
            th.every = _time_like(t["every"], f"{key}.every")
        if "doses" in t:
            th.doses = va.number(t["doses"], f"{key}.doses", positive=True, integer=True)
        if "dose" in t:
            th.dose = va.number(t["dose"], f"{key}.dose", nonneg=True)
        if "cycle" in t:
            th.cycle = _time_like(t["cycle"], f"{key}.cycle")
        if "cycles" in t:
            th.cycles = va.number(t["cycles"], f"{key}.cycles", positive=True, integer=True)
        if "region" in t:
            th.region = va.string(t["region"], f"{key}.region")
        out.append(th)
    return out


def _time_like(v: Any, key: str) -> float | str:
    if isinstance(v, str):
        return v
    return va.number(v, key)


# ------------------------------------------------------------------------------ checks
def _to_time(v: float | str, key: str, spec: Spec, positive: bool) -> float:
    """A time in model units from a number (model units) or a quantity string."""
    if isinstance(v, str):
        mag, unit = un.parse_quantity(v, key, spec.has_units)
        if unit is not None:
            if unit.dimensionality != un.registry().second.dimensionality:
                raise ConfigError(key, f"{v!r} is not a time")
            mag, _ = un.canonical(mag, unit, spec.length_unit, spec.time_unit)
        v = mag
    if not math.isfinite(v):
        raise ConfigError(key, f"value {v!r} is not finite")
    if positive and v <= 0:
        raise ConfigError(key, f"must be positive, got {v!r}")
    return float(v)


@dataclass
class DrugPlan:
    """Everything the solver needs about one drug.

    Attributes:
        name: Drug name (its symbol in expressions).
        kind: ``bolus`` or ``fraction``.
        elimination: First-order elimination rate ln 2 / half-life (model units; 0 for
            fractions).
        times: Dose times, sorted.
        amounts: Dose amounts, in the order of ``times``.
        regions: Target of each dose, in the order of ``times``: a mesh region name, or
            ``None`` for the whole mesh (``fraction`` drugs only).
        region_keys: Region name -> the config key that asked for it (for errors about
            regions the mesh does not have).
        survival: ``fraction`` drugs: species -> parsed surviving fraction
            (:class:`tumorpde.model.spec.TermSpec`).
    """

    name: str
    kind: str
    elimination: float
    times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    amounts: np.ndarray = field(default_factory=lambda: np.zeros(0))
    regions: list[str | None] = field(default_factory=list)
    region_keys: dict[str, str] = field(default_factory=dict)
    survival: dict[str, Any] = field(default_factory=dict)


class TherapyPlan:
    """The doses of every declared drug and their plasma levels as functions of time."""

    def __init__(self, drugs: dict[str, DrugPlan]) -> None:
        self.drugs = drugs

    @property
    def bolus(self) -> list[str]:
        """Names of the drugs with a plasma level."""
        return [n for n, d in self.drugs.items() if d.kind == "bolus"]

    @property
    def given(self) -> list[str]:
        """Names of the drugs with at least one dose."""
        return [n for n, d in self.drugs.items() if d.times.size]

    def level(self, name: str, t: float) -> float:
        """Plasma level of a ``bolus`` drug at time ``t`` (doses at ``t`` included)."""
        d = self.drugs[name]
        mask = d.times <= t
        if not mask.any():
            return 0.0
        return float(np.sum(d.amounts[mask] * np.exp(-d.elimination * (t - d.times[mask]))))

    def mean_level(self, name: str, t0: float, t1: float) -> float:
        """Exact mean plasma level of a ``bolus`` drug over ``(t0, t1)``."""
        if t1 <= t0:
            return self.level(name, t1)
        d = self.drugs[name]
        mask = d.times < t1
        if not mask.any():
            return 0.0
        ti, di = d.times[mask], d.amounts[mask]
        a = np.maximum(t0, ti)
        k = d.elimination
        if k > 0:
            auc = di * np.exp(-k * (a - ti)) * (-np.expm1(-k * (t1 - a))) / k
        else:
            auc = di * (t1 - a)
        return float(np.sum(auc) / (t1 - t0))

    def mean_levels(self, t0: float, t1: float) -> dict[str, float]:
        """Mean level of every ``bolus`` drug over ``(t0, t1)``."""
        return {n: self.mean_level(n, t0, t1) for n in self.bolus}

    def dose_times(self, start: float, end: float) -> list[float]:
        """Every dose time strictly inside ``(start, end)`` (milestones of the stepper)."""
        out: set[float] = set()
        for d in self.drugs.values():
            out.update(float(t) for t in d.times if start < t < end)
        return sorted(out)

    def fractions(self, t0: float, t1: float,
                  tol: float) -> list[tuple[str, float, str | None]]:
        """``fraction`` doses ``(drug, dose, region)`` with ``t0 < t <= t1`` (within ``tol``).

        In time order; ``region`` None is the whole mesh.  Doses of different drugs at the
        same time come in declaration order.
        """
        items = []
        for order, (n, d) in enumerate(self.drugs.items()):
            if d.kind != "fraction":
                continue
            regions = d.regions or [None] * d.times.size
            for k, (t, a) in enumerate(zip(d.times, d.amounts, strict=True)):
                if t0 + tol < t <= t1 + tol:
                    items.append((float(t), order, k, n, float(a), regions[k]))
        return [(n, a, r) for _, _, _, n, a, r in sorted(items, key=lambda i: i[:3])]

    def fractions_at(self, t: float, tol: float) -> list[tuple[str, float, str | None]]:
        """``fraction`` doses at time ``t`` (to within ``tol``)."""
        return self.fractions(t - 2 * tol, t, tol)


def _cycle_starts(th: Therapy, drug: Drug, key: str, start: float, doses: int, every: float,
                  spec: Spec) -> list[float]:
    """The start times of a therapy's cycles (``[start]`` for one course)."""
    raw = th.cycle if th.cycle is not None else drug.cycle
    ckey = f"{key}.cycle" if th.cycle is not None else f"drugs.{th.drug}.cycle"
    cycles = th.cycles if th.cycles is not None else drug.cycles
    if raw is None:
        if th.cycles is not None and th.cycles > 1:
            raise ConfigError(f"{key}.cycles", f"{th.cycles} cycles need a cycle length "
                                               f"(cycle, here or in drugs.{th.drug})")
        return [start]
    cycle = _to_time(raw, ckey, spec, True)
    if cycle <= (doses - 1) * every:
        raise ConfigError(ckey, f"a cycle of {cycle:g} is not longer than its {doses} doses "
                          f"{every:g} apart ({(doses - 1) * every:g})")
    if cycles is None:  # repeated until the end of the run
        end = spec.config.time.end
        cycles = int(math.floor((end - start) / cycle * (1 + 1e-12))) + 1 if end >= start else 1
    if cycles * doses > MAX_DOSES:
        raise ConfigError(f"{key}.cycles", f"more than {MAX_DOSES} doses in all")
    return [start + i * cycle for i in range(cycles)]


def check_therapies(spec: Spec, field_syms: set[str]) -> TherapyPlan:
    """Check ``[drugs]`` and ``[[therapy]]`` of a config and build its :class:`TherapyPlan`.

    Args:
        spec: The :class:`~tumorpde.model.spec.Spec` being checked.
        field_syms: Symbols allowed in field expressions (survival fractions).

    Raises:
        ConfigError: naming the offending key.
    """
    cfg = spec.config
    plans: dict[str, DrugPlan] = {}
    for name, drug in cfg.drugs.items():
        key = f"drugs.{name}"
        if drug.kind == "bolus":
            if drug.half_life is None:
                raise ConfigError(f"{key}.half_life", "missing (a bolus drug needs its "
                                                      "elimination half-life)")
            if drug.survival:
                raise ConfigError(f"{key}.survival", "only 'fraction' drugs have survival "
                                                     "fractions (set kind = 'fraction')")
            if drug.region not in (None, "all"):
                raise _bolus_region(name, f"{key}.region")
            k = math.log(2.0) / _to_time(drug.half_life, f"{key}.half_life", spec, True)
            plan = DrugPlan(name, "bolus", k)
        else:
            if drug.half_life is not None:
                raise ConfigError(f"{key}.half_life", "a 'fraction' drug acts instantaneously "
                                                      "and has no half-life")
            if not drug.survival:
                raise ConfigError(f"{key}.survival", "missing (species -> surviving fraction)")
            plan = DrugPlan(name, "fraction", 0.0)
            for sp, text in drug.survival.items():
                if sp not in cfg.species:
                    raise ConfigError(f"{key}.survival.{sp}", f"unknown species {sp!r}")
                term = parse_term(text, f"{key}.survival.{sp}", field_syms)
                if spec.has_units:
                    term_factor(spec, term, un.registry().dimensionless)
                plan.survival[sp] = term
        if drug.every is not None:
            _to_time(drug.every, f"{key}.every", spec, True)
        elif drug.doses > 1:
            raise ConfigError(f"{key}.every", f"missing: {drug.doses} default doses need an "
                                              "interval")
        if drug.cycle is not None:
            _to_time(drug.cycle, f"{key}.cycle", spec, True)
        elif drug.cycles is not None:
            raise ConfigError(f"{key}.cycles", "needs a cycle length (drugs.NAME.cycle)")
        plans[name] = plan
    times: dict[str, list[float]] = {n: [] for n in plans}
    amounts: dict[str, list[float]] = {n: [] for n in plans}
    regions: dict[str, list[str | None]] = {n: [] for n in plans}
    total = 0
    for i, th in enumerate(cfg.therapy):
        key = f"therapy[{i}]"
        if th.drug not in cfg.drugs:
            known = ", ".join(cfg.drugs) or "none declared"
            raise ConfigError(f"{key}.drug", f"unknown drug {th.drug!r} (drugs: {known})")
        drug = cfg.drugs[th.drug]
        start = _to_time(th.start, f"{key}.start", spec, False)
        doses = th.doses if th.doses is not None else drug.doses
        dose = th.dose if th.dose is not None else drug.dose
        every_raw = th.every if th.every is not None else drug.every
        every_key = f"{key}.every" if th.every is not None else f"drugs.{th.drug}.every"
        every = _to_time(every_raw, every_key, spec, True) if every_raw is not None else None
        if doses > 1 and every is None:
            raise ConfigError(f"{key}.every", f"missing: {doses} doses need an interval")
        region = _region(th, drug, key, plans[th.drug])
        starts = _cycle_starts(th, drug, key, start, doses, every or 0.0, spec)
        total += doses * len(starts)
        if total > MAX_DOSES:
            raise ConfigError(f"{key}.doses", f"more than {MAX_DOSES} doses in all")
        for c in starts:
            for j in range(doses):
                times[th.drug].append(c + j * (every or 0.0))
                amounts[th.drug].append(dose)
                regions[th.drug].append(region)
    for n, plan in plans.items():
        order = np.argsort(np.asarray(times[n], dtype=float), kind="stable")
        plan.times = np.asarray(times[n], dtype=float)[order]
        plan.amounts = np.asarray(amounts[n], dtype=float)[order]
        plan.regions = [regions[n][k] for k in order]
    return TherapyPlan(plans)


def _region(th: Therapy, drug: Drug, key: str, plan: DrugPlan) -> str | None:
    """The mesh region a therapy's doses reach (None: the whole mesh)."""
    own = th.region is not None
    region = th.region if own else drug.region
    rkey = f"{key}.region" if own else f"drugs.{th.drug}.region"
    if region is None or region == "all":
        return None
    if drug.kind == "bolus":
        raise _bolus_region(th.drug, rkey)
    if not region:
        raise ConfigError(rkey, "expected the name of a mesh region (or 'all')")
    plan.region_keys.setdefault(region, rkey)
    return region


def _bolus_region(drug: str, key: str) -> ConfigError:
    return ConfigError(key, f"{drug!r} is a bolus drug: its plasma level reaches the whole "
                            "mesh; a region is for 'fraction' drugs (radiotherapy)")
