"""Global quantities of a run: drug levels, scalar compartments and radiotherapy fractions.

:class:`Couplings` joins the pure model objects (:class:`~tumorpde.model.pharmacology.TherapyPlan`,
:class:`~tumorpde.model.compartments.ScalarSystem`) to a
:class:`~tumorpde.fem.discretisation.Discretisation`, whose ``constants`` hold one
``fem.Constant`` per drug and per scalar.  The time loop calls, per step:

* :meth:`Couplings.begin_step` before the field solve: sets every drug to its exact
  mean plasma level over the step and advances the scalars (implicit in themselves,
  with the observables of the start of the step), so that the fields see the scalars
  at the end of the step; returns False when the scalar solve fails (the step is then
  retried with a shorter step, like a failed field solve);
* :meth:`Couplings.accept` once the step is accepted: commits the scalars;
* :meth:`Couplings.apply_fractions` after the row of the accepted step is recorded:
  applies the radiotherapy fractions due at the new time, an instantaneous
  multiplication of species by their surviving fractions; returns True when the state
  jumped, so that the multistep history restarts (and a second row records the state
  after the jump);
* :meth:`Couplings.row` when a row of ``observables.csv`` is written: the scalars,
  the ``value`` observables, and a copy of the instantaneous observables that drive
  the next scalar step.

The therapy plan is a pure function of the time and the config; the only state is the
scalars' (:meth:`Couplings.state` goes into checkpoints; :meth:`Couplings.resume`
restores it and recomputes, from the restored fields, the observables that drive the
scalars).  Fractions at the start time are applied by :meth:`Couplings.start`, which a
resumed run does not call again.
"""

from __future__ import annotations

from typing import Any

from tumorpde.compat import import_dolfinx
from tumorpde.model import expressions as ex
from tumorpde.model import units as un
from tumorpde.model.compartments import ScalarSystem, global_symbols

__all__ = ["Couplings"]


class Couplings:
    """Drug levels, scalar compartments and fractions bound to one discretisation."""

    def __init__(self, disc: Any) -> None:
        import_dolfinx()
        from dolfinx import fem

        self.disc = disc
        spec = disc.spec
        self.spec = spec
        self.plan = spec.plan
        self.scalars = ScalarSystem(spec) if spec.scalars else None
        self.ureg = un.registry() if spec.has_units else None
        self.dims = global_symbols(spec, False)
        self.value_observables = {n: ob for n, ob in spec.observables.items()
                                  if ob.kind == "value"}
        self._observed: dict[str, float] = {}
        self.fractions_given = 0
        # surviving fractions, compiled only for fraction drugs that are given
        self._survival: dict[str, list[tuple[int, Any]]] = {}
        self._work = fem.Function(disc.V0)
        self._nodes: dict[str, Any] = {}  # region -> its nodes (fractions aimed at a region)
        one = self.ureg.dimensionless if self.ureg is not None else None
        pts = disc.V0.element.interpolation_points
        for name, drug in (self.plan.drugs.items() if self.plan is not None else []):
            if drug.kind != "fraction" or not drug.times.size:
                continue
            items = []
            for species, term in drug.survival.items():
                if spec.species[species].index in disc.held_components:
                    continue
                expr = disc.lower(term, one, disc.u)
                items.append((spec.species[species].index, disc.compile_expression(expr, pts)))
            self._survival[name] = items
            for region in dict.fromkeys(drug.regions):  # the same order on every rank
                if region is not None and region not in self._nodes:  # (collective)
                    self._nodes[region] = disc.region_nodes(region, drug.region_keys[region])

    # ------------------------------------------------------------------ schedule
    def milestones(self, start: float, end: float) -> list[float]:
        """Dose times inside ``(start, end)``: the stepper lands on each."""
        return self.plan.dose_times(start, end) if self.plan is not None else []

    def columns(self) -> list[str]:
        """Columns of ``observables.csv`` for the scalars (after the species totals)."""
        return list(self.scalars.names) if self.scalars is not None else []

    # ------------------------------------------------------------------ stepping
    def _env(self, t: float, levels: dict[str, float]) -> dict[str, float]:
        consts = self.disc.constants
        env = {p: float(consts[p].value) for p in self.spec.parameters
               if p not in self.spec.fields}
        env.update({d: 0.0 for d in self.spec.config.drugs})
        env.update(levels)
        env["t"] = t
        return env

    def begin_step(self, t0: float, t1: float, coeffs: tuple[float, float, float]) -> bool:
        """Drug levels and scalars for the step ``(t0, t1]`` (before the field solve)."""
        consts = self.disc.constants
        levels = self.plan.mean_levels(t0, t1) if self.plan is not None else {}
        for name, v in levels.items():
            consts[name].value = v
        if self.scalars is None:
            return True
        env = self._env(t1, levels)
        env.update(self._observed)
        ok = self.scalars.solve(coeffs, env)
        if ok:
            for name, v in zip(self.scalars.names, self.scalars.trial, strict=True):
                consts[name].value = v
        return ok

    def accept(self) -> None:
        """Commit an accepted step (the scalars at its end become the current values)."""
        if self.scalars is not None:
            self.scalars.accept()

    def apply_fractions(self, t0: float, t1: float, tol: float) -> bool:
        """Apply the fractions due in ``(t0, t1]`` (after the step to ``t1`` is accepted).

        Returns:
            Whether the state jumped (the multistep history must restart).
        """
        due = self.plan.fractions(t0, t1, tol) if self.plan is not None else []
        if due:
            self._apply(due)
        return bool(due)

    def start(self, t: float, tol: float) -> bool:
        """Apply the fractions due at the start time of a (fresh) run."""
        due = self.plan.fractions_at(t, tol) if self.plan is not None else []
        if due:
            self._apply(due)
        return bool(due)

    def _apply(self, due: list[tuple[str, float, str | None]]) -> None:
        """Multiply species by their surviving fractions, one fraction after another.

        Outside a fraction's region the factor is 1.
        """
        disc = self.disc
        n = disc.n
        for name, dose, region in due:
            const = disc.constants[name]
            const.value = dose
            factors = []
            for k, expr in self._survival.get(name, []):
                self._work.interpolate(expr)
                fac = self._work.x.array.copy()
                if region is not None:
                    fac[~self._nodes[region]] = 1.0
                factors.append((k, fac))
            const.value = 0.0
            arr = disc.u.x.array
            for k, fac in factors:
                if n > 1:
                    arr[k::n] *= fac
                else:
                    arr[:] *= fac
            disc.u.x.scatter_forward()
            self.fractions_given += 1
        disc.u_n.x.array[:] = disc.u.x.array
        disc.u_nm1.x.array[:] = disc.u.x.array
        if self.scalars is not None:
            self.scalars.reset_history()

    # ------------------------------------------------------------------ output
    def row(self, t: float, observed: dict[str, float]) -> dict[str, float]:
        """Scalars and ``value`` observables at time ``t``.

        Args:
            t: The time of the row.
            observed: The instantaneous field observables at ``t`` (kept to drive the
                next scalar step).
        """
        self._observed = dict(observed)
        out = self.scalars.as_dict() if self.scalars is not None else {}
        if self.value_observables:
            levels = {}
            if self.plan is not None:
                levels = {d: self.plan.level(d, t) for d in self.plan.bolus}
            env = self._env(t, levels)
            env.update(out)
            syms = {k: (v, self.dims[k]) for k, v in env.items() if k in self.dims}
            syms.update(ex.constant_symbols(self.dims))
            for name, ob in self.value_observables.items():
                out[name], _ = ex.lower_number(ob.expr.expr, syms, ob.expr.key, self.ureg)
        return out

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        """The state of the global quantities (the scalars; drug levels are functions of t)."""
        return {"scalars": self.scalars.state() if self.scalars is not None else None,
                "fractions_given": self.fractions_given}

    def restore(self, state: dict[str, Any]) -> None:
        """Set the state saved by :meth:`state` (see also :meth:`resume`)."""
        if self.scalars is not None and state.get("scalars") is not None:
            self.scalars.restore(state["scalars"])
            for name, v in zip(self.scalars.names, self.scalars.values, strict=True):
                self.disc.constants[name].value = v
        self.fractions_given = int(state.get("fractions_given", 0))

    def resume(self, state: dict[str, Any], t: float, dt_prev: float | None) -> None:
        """Continue a restarted run at time ``t`` from :meth:`state`.

        Restores the scalars, sets the drug levels of the step that ended at ``t`` and
        recomputes the observables that drive the next scalar step, so that the run goes on
        exactly as if it had not stopped.
        """
        self.restore(state)
        if self.plan is not None:
            t0 = t - dt_prev if dt_prev else t
            for name, v in self.plan.mean_levels(t0, t).items():
                self.disc.constants[name].value = v
        self.row(t, self.disc.observables())

    def summary(self) -> dict[str, Any]:
        """Counters for ``run.json``."""
        out: dict[str, Any] = {}
        if self.plan is not None and self.plan.given:
            out["doses"] = {n: int(self.plan.drugs[n].times.size) for n in self.plan.given}
            out["fractions_applied"] = self.fractions_given
        if self.scalars is not None:
            out["scalar_newton_iterations"] = self.scalars.iterations
        return out
