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

import numpy as np

from tumorpde.calibration.operators import operator_for
from tumorpde.calibration.sensitivity import Recorder, Sensitivity, unsupported
from tumorpde.errors import ConfigError, SolverError
from tumorpde.io.data import Data

__all__ = ["Objective", "Evaluation"]


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

    @property
    def value(self) -> float:
        """``1/2 sum r_i^2`` (infinite for a failed run)."""
        return 0.5 * float(self.residuals @ self.residuals) if self.ok else float("inf")


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

    Raises:
        ConfigError: Data that do not fit the model (names, coordinates, times, points
            outside the mesh) or a model without derivatives.
    """

    def __init__(self, problem: Any, data: Sequence[Data], parameters: Sequence[str],
                 times: Sequence[float] = (), scales: Sequence[float] | None = None) -> None:
        why = unsupported(problem, parameters)
        if why:
            raise ConfigError("calibration", why)
        self.problem = problem
        self.names = list(parameters)
        self.scales = np.ones(len(self.names)) if scales is None else \
            np.asarray(scales, dtype=float)
        self.data = list(data)
        self.operators = [operator_for(problem, d) for d in self.data]
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
            self._sens = Sensitivity(self.problem, self.names)
        return self._sens

    def start(self) -> np.ndarray:
        """The parameter values of the config (divided by ``scales``)."""
        return np.array([self.problem.spec.parameters[n][0] for n in self.names],
                        dtype=float) / self.scales

    # ------------------------------------------------------------------ forward
    def evaluate(self, p: Sequence[float]) -> Evaluation:
        """Run the model at ``p`` and compare it with the data (cached for the last ``p``)."""
        p = np.asarray(p, dtype=float)
        if self._last is not None and np.array_equal(self._last.p, p):
            return self._last
        t0 = time.perf_counter()
        pb = self.problem
        pb.reset(dict(zip(self.names, p * self.scales, strict=True)), times=self.times)
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
        model = np.empty(self.n_data)
        final = pb.disc.u.x.array.copy()
        for k, op in enumerate(self.operators):
            for t, rows in zip(op.times, op.rows.groups, strict=True):
                s = rec.states[self._index(rec, t)]
                pb.disc.u.x.array[:] = s.u
                model[self.offsets[k] + rows] = op.evaluate(rows, s.u)
        pb.disc.u.x.array[:] = final
        ev = Evaluation(p.copy(), True, model, (model - self.value) / self.sigma,
                        states=rec.states)
        self._last = ev
        self.seconds["forward"] += time.perf_counter() - t0
        return ev

    def _index(self, rec: Recorder, t: float) -> int:
        tol = self.problem.milestones.tol
        for i, s in enumerate(rec.states):
            if abs(s.t - t) <= tol:
                return i
        raise RuntimeError(f"no recorded state at the data time {t}")  # pragma: no cover

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
        dJ: dict[int, np.ndarray] = {}
        final = disc.u.x.array.copy()
        w = ev.residuals / self.sigma
        rec = Recorder(states=ev.states)
        for k, op in enumerate(self.operators):
            for t, rows in zip(op.times, op.rows.groups, strict=True):
                n = self._index(rec, t)
                disc.u.x.array[:] = ev.states[n].u
                local = op.transpose(rows, w[self.offsets[k] + rows], sens.size)
                dJ[n] = dJ.get(n, 0.0) + sens.reverse_add(local)
        g = sens.gradient(ev.states, dJ) * self.scales
        disc.u.x.array[:] = final
        self.seconds["adjoint"] += time.perf_counter() - t0
        return g

    def jacobian(self, p: Sequence[float]) -> np.ndarray:
        """``dr_i / dp_j`` (rows x parameters) by the tangent (forward sensitivities)."""
        ev = self.evaluate(p)
        if not ev.ok:
            raise SolverError(f"no Jacobian: the run failed ({ev.message})")
        t0 = time.perf_counter()
        sens, disc = self.sensitivity, self.problem.disc
        rec = Recorder(states=ev.states)
        steps = {t: self._index(rec, t) for t in self.times}
        du = sens.tangent(ev.states, sorted(set(steps.values())))
        final = disc.u.x.array.copy()
        out = np.zeros((self.n_data, len(self.names)))
        for k, op in enumerate(self.operators):
            for t, rows in zip(op.times, op.rows.groups, strict=True):
                n = steps[t]
                disc.u.x.array[:] = ev.states[n].u
                for j in range(len(self.names)):
                    out[self.offsets[k] + rows, j] = op.tangent(rows, du[n][j])
        disc.u.x.array[:] = final
        self.seconds["tangent"] += time.perf_counter() - t0
        return out / self.sigma[:, None] * self.scales[None, :]

    def destroy(self) -> None:
        """Free the PETSc objects of the derivatives."""
        if self._sens is not None:
            self._sens.destroy()
            self._sens = None
