"""The misfit of a problem against data, with its gradient and residual Jacobian.

``J(p) = 1/2 sum_i r_i^2`` with ``r_i = (m_i(p) - value_i) / sigma_i``, where ``m_i`` is
the model's value of data row ``i`` (:mod:`tumorpde.calibration.operators`) after a run
with the parameter values ``p``.  The run lands exactly on every data time (they are
milestones of the stepper), so no interpolation in time enters the misfit.  The gradient
(adjoint) and the Jacobian ``dr/dp`` (tangent) are those of this discrete objective
(:mod:`tumorpde.calibration.sensitivity`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mpi4py import MPI

import numpy as np

from tumorpde.calibration.operators import operator_for
from tumorpde.calibration.sensitivity import Recorder, Sensitivity, unsupported
from tumorpde.errors import ConfigError, SolverError
from tumorpde.io.data import Data

__all__ = ["Objective", "Evaluation", "FieldLayout"]


class FieldLayout:
    """Nodal values of a field parameter as one global vector (the same on every rank).

    The optimiser sees a field as the vector of its values at every node in the global
    numbering of the species' space; each rank takes its owned and ghost nodes from it.
    """

    def __init__(self, V: Any) -> None:
        imap = V.dofmap.index_map
        self.comm = V.mesh.comm
        self.nown = imap.size_local
        local = np.arange(imap.size_local + imap.num_ghosts, dtype=np.int32)
        self.glob = np.asarray(imap.local_to_global(local), dtype=np.int64)
        self.size = int(imap.size_global)

    def scatter(self, values: np.ndarray) -> np.ndarray:
        """The local array (owned, then ghosts) of a global vector."""
        return np.asarray(values, dtype=float)[self.glob]

    def gather(self, local: np.ndarray) -> np.ndarray:
        """The global vector of a consistent local array."""
        out = np.zeros(self.size)
        out[self.glob[: self.nown]] = local[: self.nown]
        self.comm.Allreduce(MPI.IN_PLACE, out, op=MPI.SUM)
        return out


@dataclass
class Evaluation:
    """One forward run at parameter values ``p``.

    Attributes:
        p: The parameter values.
        ok: Whether the run completed (a failed run is an infeasible point).
        model: The model's value of every data row (concatenated over the files; NaN
            where the run failed).
        residuals: ``(model - value) / sigma``.
        message: Why the run failed.
    """

    p: np.ndarray
    ok: bool
    model: np.ndarray
    residuals: np.ndarray
    message: str = ""
    states: list[Any] = field(default_factory=list, repr=False)
    #: data time -> index of its recorded state
    steps: dict[float, int] = field(default_factory=dict, repr=False)
    #: the smoothness penalty of the field parameters
    penalty: float = 0.0

    @property
    def value(self) -> float:
        """``1/2 sum r_i^2`` plus the fields' penalty (infinite for a failed run)."""
        return 0.5 * float(self.residuals @ self.residuals) + self.penalty if self.ok \
            else float("inf")


class Objective:
    """Misfit of ``problem`` against ``data`` as a function of the named parameters.

    Args:
        problem: A :class:`~tumorpde.problem.Problem` (reset and rerun at each evaluation:
            nothing is recompiled).
        data: The data files (:func:`~tumorpde.io.data.read_data`).
        parameters: Names of ``[parameters]`` entries (the order of ``p``).
        times: More times for the run to land on (besides the data's), so that two
            objectives on the same problem step alike.
        scales: ``p`` is in units whose value times ``scales`` is in the model's units
            (the units a parameter is written in, e.g. ``"0.02 1/hour"`` in a model timed
            in days: scale 24); default 1.
        fields: Field parameters (``field = true``) fitted node by node: ``p`` continues
            with the global vector of each one's nodal values (:class:`FieldLayout`, model
            units).
        regularisation: Field name -> ``alpha`` of the smoothness penalty
            ``alpha/2 int |grad p|^2 dx`` added to the misfit (default 0).

    Raises:
        ConfigError: Data that do not fit the model (names, coordinates, times, points
            outside the mesh) or a model without derivatives.
    """

    def __init__(self, problem: Any, data: Sequence[Data], parameters: Sequence[str],
                 times: Sequence[float] = (), scales: Sequence[float] | None = None,
                 fields: Sequence[str] = (),
                 regularisation: dict[str, float] | None = None) -> None:
        why = unsupported(problem, [*parameters, *fields])
        if why:
            raise ConfigError("calibration", why)
        self.problem = problem
        self.names = list(parameters)
        self.fields = list(fields)
        self.layout = FieldLayout(problem.disc.V0)
        self.alpha = {f: float((regularisation or {}).get(f, 0.0)) for f in self.fields}
        self._penalty_forms = self._penalties()
        self.scales = np.ones(len(self.names)) if scales is None else \
            np.asarray(scales, dtype=float)
        self.data = list(data)
        self.operators = [operator_for(problem, d) for d in self.data]
        self._check_field_observables()
        self.times = sorted({t for op in self.operators for t in op.times} | set(times))
        self.value = np.concatenate([d.value for d in self.data]) if self.data else np.zeros(0)
        self.sigma = np.concatenate([d.sigma for d in self.data]) if self.data else np.zeros(0)
        self.offsets = np.cumsum([0] + [len(d) for d in self.data])
        self.evaluations = 0
        self.seconds = {"forward": 0.0, "adjoint": 0.0, "tangent": 0.0}
        self._sens: Sensitivity | None = None
        self._last: Evaluation | None = None

    @property
    def n_data(self) -> int:
        """The number of data rows."""
        return int(self.value.size)

    @property
    def sensitivity(self) -> Sensitivity:
        """The adjoint/tangent machinery (built on first use)."""
        if self._sens is None:
            self._sens = Sensitivity(self.problem, self.names, self.fields)
        return self._sens

    def start(self) -> np.ndarray:
        """The parameter values of the config.

        Scalars are divided by ``scales``; a field has its value at every node.
        """
        scalars = np.array([self.problem.spec.parameters[n][0] for n in self.names],
                           dtype=float) / self.scales
        fields = [np.full(self.layout.size, self.problem.spec.parameters[f][0])
                  for f in self.fields]
        return np.concatenate([scalars, *fields])

    def _penalties(self) -> dict[str, tuple[Any, Any]]:
        """Per field: the forms of ``alpha/2 int |grad p|^2`` and of its gradient."""
        from tumorpde.compat import import_dolfinx

        import_dolfinx()
        import ufl
        from dolfinx import fem

        disc = self.problem.disc
        out = {}
        for f in self.fields:
            if f not in disc.parameter_fields:
                raise ConfigError(f"parameters.{f}", "is not a field parameter (field = true)")
            pf = disc.parameter_fields[f]
            a = fem.Constant(disc.domain.mesh, self.alpha[f])
            dx = ufl.dx(domain=disc.domain.mesh)
            out[f] = (fem.form(disc.weighted(0.5 * a * ufl.inner(ufl.grad(pf), ufl.grad(pf)))
                               * dx),
                      fem.form(disc.weighted(a * ufl.inner(ufl.grad(pf),
                                                           ufl.grad(ufl.TestFunction(disc.V0))))
                               * dx))
        return out

    def split(self, p: np.ndarray) -> dict[str, Any]:
        """``p`` as reset() takes it: scalars in model units, fields as local arrays."""
        k = len(self.names)
        if p.size != k + len(self.fields) * self.layout.size:
            raise ConfigError("calibration", f"expected {k} parameter values and "
                              f"{self.layout.size} per field, got {p.size} values")
        out: dict[str, Any] = dict(zip(self.names, p[:k] * self.scales, strict=True))
        for i, f in enumerate(self.fields):
            out[f] = self.layout.scatter(p[k + i * self.layout.size: k + (i + 1) * self.layout.size])
        return out

    def _penalty(self) -> float:
        from dolfinx import fem

        return sum(self.problem.comm.allreduce(fem.assemble_scalar(form), op=MPI.SUM)
                   for f, (form, _) in self._penalty_forms.items() if self.alpha[f])

    # ------------------------------------------------------------------ forward
    def evaluate(self, p: Sequence[float]) -> Evaluation:
        """Run the model at ``p`` and compare it with the data (cached for the last ``p``)."""
        p = np.asarray(p, dtype=float)
        if self._last is not None and np.array_equal(self._last.p, p):
            return self._last
        t0 = time.perf_counter()
        pb = self.problem
        pb.reset(self.split(p), times=self.times)
        rec = Recorder()
        self.evaluations += 1
        try:
            pb.solve(trackers=[rec])
        except SolverError as exc:
            nan = np.full(self.n_data, np.nan)
            ev = Evaluation(p.copy(), False, nan, nan, str(exc))
            self._last = ev
            self.seconds["forward"] += time.perf_counter() - t0
            return ev
        ev = Evaluation(p.copy(), True, np.empty(self.n_data), np.empty(self.n_data),
                        states=rec.states, steps=self._steps(rec.states),
                        penalty=self._penalty())
        for op, idx, rows, n in self._at_data(ev):
            ev.model[idx] = op.evaluate(rows, ev.states[n].u)
        ev.residuals[:] = (ev.model - self.value) / self.sigma
        self._last = ev
        self.seconds["forward"] += time.perf_counter() - t0
        return ev

    def _steps(self, states: list[Any]) -> dict[float, int]:
        """Data time -> index of the recorded state at that time (every one is a milestone)."""
        tol = self.problem.milestones.tol
        out = {}
        for t in self.times:
            found = [i for i, s in enumerate(states) if abs(s.t - t) <= tol]
            if not found:  # pragma: no cover - data times are milestones
                raise RuntimeError(f"no recorded state at the data time {t}")
            out[t] = found[0]
        return out

    def _at_data(self, ev: Evaluation) -> Any:
        """``(operator, row indices, its rows, step)`` of every data time.

        Meanwhile ``disc.u`` holds the state of that step; the final state is put back after.
        """
        disc = self.problem.disc
        final = disc.u.x.array.copy()
        try:
            for k, op in enumerate(self.operators):
                for t, rows in zip(op.times, op.rows.groups, strict=True):
                    n = ev.steps[t]
                    disc.u.x.array[:] = ev.states[n].u
                    yield op, self.offsets[k] + rows, rows, n
        finally:
            disc.u.x.array[:] = final

    def __call__(self, p: Sequence[float]) -> float:
        """``1/2 sum r_i^2`` at ``p`` (infinite where the run fails)."""
        return self.evaluate(p).value

    # ------------------------------------------------------------------ derivatives
    def gradient(self, p: Sequence[float]) -> np.ndarray:
        """dJ/dp by the discrete adjoint (one backward sweep after the forward run)."""
        ev = self.evaluate(p)
        if not ev.ok:
            raise SolverError(f"no gradient: the run failed ({ev.message})")
        t0 = time.perf_counter()
        sens, disc = self.sensitivity, self.problem.disc
        self._fields_at(ev.p)
        dJ: dict[int, np.ndarray] = {}
        w = ev.residuals / self.sigma
        for op, idx, rows, n in self._at_data(ev):
            dJ[n] = dJ.get(n, 0.0) + sens.reverse_add(op.transpose(rows, w[idx], sens.size))
        g = sens.gradient(ev.states, dJ)
        if self.names:  # parameters in the observables themselves
            for op, idx, rows, _ in self._at_data(ev):
                g += w[idx] @ op.parameter_derivative(rows, self.names)
        g = g * self.scales
        parts = [g]
        for f in self.fields:
            gf = sens.field_gradient[f]
            if self.alpha[f]:
                gf = gf + sens.assemble_on(self._penalty_forms[f][1], disc.V0)
            parts.append(self.layout.gather(gf))
        g = np.concatenate(parts)
        self.seconds["adjoint"] += time.perf_counter() - t0
        return g

    def jacobian(self, p: Sequence[float]) -> np.ndarray:
        """``dr_i / dp_j`` (rows x scalar parameters) by the tangent (forward sensitivities)."""
        if self.fields:
            raise ConfigError("calibration", "the residual Jacobian is for scalar parameters "
                                             "(fields: use the gradient)")
        ev = self.evaluate(p)
        if not ev.ok:
            raise SolverError(f"no Jacobian: the run failed ({ev.message})")
        t0 = time.perf_counter()
        sens = self.sensitivity
        self._fields_at(ev.p)
        du = sens.tangent(ev.states, sorted(set(ev.steps.values())))
        out = np.zeros((self.n_data, len(self.names)))
        for op, idx, rows, n in self._at_data(ev):
            for j in range(len(self.names)):
                out[idx, j] = op.tangent(rows, du[n][j])
            out[idx] += op.parameter_derivative(rows, self.names)
        self.seconds["tangent"] += time.perf_counter() - t0
        return out / self.sigma[:, None] * self.scales[None, :]

    def _check_field_observables(self) -> None:
        """Refuse data on an observable that uses a fitted field parameter itself."""
        from tumorpde.model import expressions as ex

        spec = self.problem.spec
        for d in self.data:
            if d.kind == "field":
                continue
            for name in sorted(set(d.name)):
                ob = spec.observables.get(name)
                if ob is None:
                    continue
                used = ex.symbols_of(ob.expr.expr) | \
                    (ex.symbols_of(ob.per.expr) if ob.per is not None else set())
                hit = sorted(used & set(self.fields))
                if hit:
                    raise ConfigError(d.label, f"observable {name!r} uses the fitted field "
                                      f"parameter {hit[0]!r} itself; fit data on an "
                                      "observable without it")

    def _fields_at(self, p: np.ndarray) -> None:
        """Set the field parameters as in the run at ``p``.

        Another objective on the same problem may have run since; scalar parameters come
        back with each recorded step.
        """
        parts = self.split(np.asarray(p, dtype=float))
        for f in self.fields:
            self.problem.disc.parameter_fields[f].x.array[:] = parts[f]

    def destroy(self) -> None:
        """Free the PETSc objects of the derivatives."""
        if self._sens is not None:
            self._sens.destroy()
            self._sens = None
