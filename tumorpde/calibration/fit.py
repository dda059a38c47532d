"""Bounded least-squares fits, their uncertainty, and what a calibration writes.

:func:`calibrate` fits the named parameters of a problem to the data rows with
``t <= until`` (all rows without ``until``) by bounded nonlinear least squares (scipy's
trust-region-reflective ``least_squares``) with the exact Jacobian of the residuals
(tangent sensitivities of the discrete run).  It starts from the config's values and
from ``starts - 1`` Latin-hypercube points within the bounds and keeps the best optimum.
A forward run that fails during the search is an infeasible point (a large residual, so
the step is rejected), never a crash.

At the optimum, the Gauss-Newton (Laplace) covariance ``s^2 (J^T J)^-1`` gives standard
deviations and Wald 95 % intervals; ``s^2 = 1`` when the data give ``sigma``, otherwise
the noise variance is estimated as ``RSS / (n - k)`` (and counted as a parameter in the
information criteria).  AIC and BIC are those of the Gaussian likelihood.  Predictions of
every data row (fitted and forecast) carry 95 % confidence bands by the delta method.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tumorpde.calibration.objective import Objective
from tumorpde.calibration.operators import within_mesh
from tumorpde.errors import ConfigError, SolverError
from tumorpde.io.data import Data

__all__ = ["Fit", "FitParameter", "calibrate", "information_criteria", "covariance",
           "latin_hypercube"]

Z95 = 1.959963984540054
#: residual of every row at a point where the run failed (rejected by the trust region)
_INFEASIBLE = 1e8


@dataclass
class FitParameter:
    """One fitted parameter.

    Attributes:
        key: The key as given (``parameters.rho`` or ``rho``).
        name: The ``[parameters]`` entry.
        low: Lower bound (in ``unit``).
        high: Upper bound.
        unit: The unit of the bounds and the estimate: the one the parameter's value is
            written in ("" for a plain number).
        scale: Model units per ``unit`` (1 for a plain number).
    """

    key: str
    name: str
    low: float
    high: float
    unit: str = ""
    scale: float = 1.0


@dataclass
class Fit:
    """The outcome of :func:`calibrate` (what ``calibration.json`` holds)."""

    status: str
    parameters: list[FitParameter]
    estimate: np.ndarray
    objective: float
    n_data: int
    gradient: np.ndarray
    std: np.ndarray
    ci95: np.ndarray
    aic: float
    bic: float
    noise: dict[str, Any]
    evaluations: int
    seconds: dict[str, float]
    starts: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
    predictions: dict[str, np.ndarray] = field(default_factory=dict)
    fitted: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    #: field parameter -> its estimate at every node (global numbering, model units)
    fields: dict[str, np.ndarray] = field(default_factory=dict)
    #: field parameter -> alpha of its smoothness penalty
    regularisation: dict[str, float] = field(default_factory=dict)
    #: parameter key -> its profile likelihood (values, profile, ci95)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the posterior samples of ``--method mcmc`` (:class:`tumorpde.calibration.mcmc.Posterior`)
    posterior: Any = None
    #: Gauss-Newton covariance at the least-squares estimate
    covariance: np.ndarray | None = None
    #: the noise variance used in it (1 with sigma given)
    noise_variance: float = float("nan")

    def identified(self) -> list[bool]:
        """Per parameter: its 95 % interval is finite and lies inside its bounds."""
        return [bool(math.isfinite(lo) and math.isfinite(hi) and p.low <= lo and hi <= p.high)
                for p, (lo, hi) in zip(self.parameters, self.ci95, strict=True)]

    def to_json(self, **extra: Any) -> dict[str, Any]:
        """The ``calibration.json`` record."""
        def num(v: float) -> float | None:
            return float(v) if math.isfinite(v) else None

        params = {p.key: {"estimate": float(e), "std": num(s), "ci95": [num(lo), num(hi)],
                          "identified": ok, "bounds": [p.low, p.high], "parameter": p.name,
                          "unit": p.unit}
                  for p, e, s, (lo, hi), ok in zip(self.parameters, self.estimate, self.std,
                                                   self.ci95, self.identified(), strict=True)}
        for p in self.parameters:
            if p.name in self.fields:
                v = self.fields[p.name] / p.scale
                params[p.key].update(field=True, nodes=int(v.size), min=float(v.min()),
                                     max=float(v.max()),
                                     regularisation=self.regularisation.get(p.name, 0.0))
        return {"status": self.status, "message": self.message, "objective": num(self.objective),
                "n_data": self.n_data, "parameters": params,
                "gradient": {p.key: num(g) for p, g in zip(self.parameters, self.gradient,
                                                            strict=True)},
                "aic": num(self.aic), "bic": num(self.bic), "noise": self.noise,
                "evaluations": self.evaluations, "timings": self.seconds,
                "starts": self.starts, "profiles": self.profiles,
                **({"mcmc": self._mcmc_record()} if self.posterior is not None else {}), **extra}

    def _mcmc_record(self) -> dict[str, Any]:
        post = self.posterior
        return {"walkers": post.walkers, "steps": post.steps, "burn": post.burn,
                "samples": int(post.samples.shape[0]), "acceptance": post.acceptance,
                "autocorrelation_time": dict(zip([p.key for p in self.parameters],
                                                 post.autocorr, strict=True)),
                "resumed_from_step": post.resumed_from}


def latin_hypercube(n: int, low: np.ndarray, high: np.ndarray, seed: int = 0) -> np.ndarray:
    """``n`` Latin-hypercube points in the box ``[low, high]``."""
    if n <= 0:
        return np.zeros((0, len(low)))
    from scipy.stats import qmc

    u = qmc.LatinHypercube(d=len(low), seed=seed).random(n)
    return low + u * (high - low)


def covariance(jac: np.ndarray, rss: float, n: int, sigma_given: bool) -> tuple[np.ndarray, float]:
    """Gauss-Newton covariance ``s^2 (J^T J)^+`` and ``s^2`` (1 when sigma is given).

    The columns of ``J`` are scaled to unit norm first, ``(J^T J)^-1 = D (D J^T J D)^-1 D``:
    parameters of very different magnitudes (a rate of 0.2 and an uptake of 1e7) make
    ``J^T J`` ill-conditioned by their units alone, and a pseudo-inverse of it would drop
    the small-column directions (and report intervals far too narrow for them).
    """
    k = jac.shape[1]
    s2 = 1.0 if sigma_given else (rss / (n - k) if n > k else float("nan"))
    norms = np.linalg.norm(jac, axis=0)
    d = np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 0.0)
    jtj = (jac * d).T @ (jac * d)
    try:
        inv = np.linalg.inv(jtj) if np.linalg.cond(jtj) < 1e14 else np.linalg.pinv(jtj)
    except np.linalg.LinAlgError:  # pragma: no cover
        inv = np.linalg.pinv(jtj)
    return s2 * (d[:, None] * inv * d[None, :]), s2


def information_criteria(rss: float, n: int, k: int, sigma: np.ndarray | None) -> tuple[float, float]:
    """AIC and BIC of the Gaussian likelihood (``sigma`` None: noise estimated, k + 1)."""
    if n == 0:
        return float("nan"), float("nan")
    if sigma is None:
        k += 1
        m2logl = n * math.log(2 * math.pi * max(rss, 1e-300) / n) + n
    else:
        m2logl = rss + float(np.sum(np.log(2 * math.pi * sigma ** 2)))
    return 2 * k + m2logl, k * math.log(n) + m2logl


class _Residuals:
    """``r(p)`` and ``dr/dp`` for scipy, with failed runs as infeasible points."""

    def __init__(self, objective: Objective) -> None:
        self.obj = objective
        self.failures = 0

    def r(self, p: np.ndarray) -> np.ndarray:
        ev = self.obj.evaluate(p)
        if not ev.ok:
            self.failures += 1
            return np.full(self.obj.n_data, _INFEASIBLE)
        return ev.residuals

    def jac(self, p: np.ndarray) -> np.ndarray:
        ev = self.obj.evaluate(p)
        if not ev.ok:
            return np.zeros((self.obj.n_data, len(p)))
        return self.obj.jacobian(p)


#: half the 95 % quantile of chi-square with one degree of freedom
CHI2_95_HALF = 1.920729410347062


def profile_likelihoods(objective: Objective, best: np.ndarray, low: np.ndarray,
                        high: np.ndarray, std: np.ndarray, points: int, sigma_given: bool,
                        tol: float) -> dict[int, dict[str, Any]]:
    """Profile of each parameter: the others re-optimised with it fixed on a grid.

    The grid spans the estimate +- 3 standard deviations (or a fifth of the bounds where the
    deviation is unknown), clipped to the bounds.  The profile is ``J`` (sigma given) or
    ``n/2 log(RSS)`` (noise estimated); its 95 % interval is where it lies within 1.92 of
    the minimum (Simpson & Maclaren practice), by linear interpolation between grid points;
    an end that the grid does not reach is None (not identifiable within the grid).
    """
    n = objective.n_data
    k = best.size
    out: dict[int, dict[str, Any]] = {}

    def level(ev: Any) -> float:
        if not ev.ok:
            return float("inf")
        rss = float(ev.residuals @ ev.residuals)
        return 0.5 * rss if sigma_given else 0.5 * n * math.log(max(rss, 1e-300))

    base = level(objective.evaluate(best))
    for j in range(k):
        width = 3.0 * std[j] if math.isfinite(std[j]) and std[j] > 0 else (high[j] - low[j]) / 5
        grid = np.unique(np.clip(np.linspace(best[j] - width, best[j] + width, points),
                                 low[j], high[j]))
        free = [i for i in range(k) if i != j]
        vals = [level(objective.evaluate(_Fixed(objective, j, float(v)).optimum(
            best[free], low[free], high[free], tol))) for v in grid]
        prof = np.array(vals) - base
        out[j] = {"values": grid.tolist(),
                  "profile": [float(x) if math.isfinite(x) else None for x in prof],
                  "ci95": _crossings(grid, prof, best[j])}
    objective.evaluate(best)
    return out


class _Fixed:
    """The residuals with parameter ``j`` held at ``v`` (for a profile point)."""

    def __init__(self, objective: Objective, j: int, v: float) -> None:
        self.res, self.j, self.v = _Residuals(objective), j, v

    def full(self, x: np.ndarray) -> np.ndarray:
        return np.insert(x, self.j, self.v)

    def optimum(self, x0: np.ndarray, low: np.ndarray, high: np.ndarray, tol: float) -> np.ndarray:
        """The full parameter vector at the optimum of the others."""
        from scipy.optimize import least_squares

        if not x0.size:
            return self.full(x0)
        free = [i for i in range(x0.size + 1) if i != self.j]
        sol = least_squares(lambda x: self.res.r(self.full(x)), x0,
                            jac=lambda x: self.res.jac(self.full(x))[:, free],
                            bounds=(low, high), method="trf", x_scale="jac", ftol=tol,
                            xtol=tol, gtol=tol, max_nfev=100)
        return self.full(sol.x)


def _crossings(grid: np.ndarray, prof: np.ndarray, centre: float) -> list[float | None]:
    """Where the profile rises through CHI2_95_HALF on each side of ``centre``."""
    out: list[float | None] = []
    for side in (-1, 1):
        idx = [i for i in range(len(grid)) if (grid[i] - centre) * side >= 0]
        idx = sorted(idx, key=lambda i: abs(grid[i] - centre))
        hit = None
        for a, b in zip(idx[:-1], idx[1:], strict=False):
            pa, pb = prof[a], prof[b]
            if math.isfinite(pa) and math.isfinite(pb) and pa <= CHI2_95_HALF < pb:
                hit = float(grid[a] + (CHI2_95_HALF - pa) / (pb - pa) * (grid[b] - grid[a]))
                break
        out.append(hit)
    return out


def _least_squares(objective: Objective, x0: np.ndarray, low: np.ndarray, high: np.ndarray,
                   tol: float, max_evaluations: int = 200) -> tuple[np.ndarray, float, str]:
    from scipy.optimize import least_squares

    res = _Residuals(objective)
    r0 = res.r(x0)
    if not objective.evaluate(x0).ok:
        return x0, float("inf"), f"the run at the start failed ({objective.evaluate(x0).message})"
    del r0
    out = least_squares(res.r, x0, jac=res.jac, bounds=(low, high), method="trf",
                        x_scale="jac", ftol=tol, xtol=tol, gtol=tol, max_nfev=max_evaluations)
    ev = objective.evaluate(out.x)
    if not ev.ok:  # pragma: no cover - the optimiser ends at an accepted point
        return out.x, float("inf"), ev.message
    return out.x, ev.value, "converged" if out.status > 0 else out.message


def calibrate(problem: Any, data: Sequence[Data], parameters: Sequence[FitParameter], *,
              until: float | None = None, starts: int = 3, seed: int = 0,
              evaluate_only: bool = False, tol: float = 1e-10, max_evaluations: int = 200,
              regularisation: dict[str, float] | None = None, profile: int = 0,
              method: str = "lsq", mcmc: dict[str, Any] | None = None,
              world: Any = None) -> Fit:
    """Fit ``parameters`` of ``problem`` to the rows of ``data`` with ``t <= until``.

    Args:
        problem: The :class:`~tumorpde.problem.Problem` (reset and rerun; nothing recompiled).
        data: Data files (:func:`~tumorpde.io.data.read_data`).
        parameters: What to fit, with bounds (the config's value must lie inside them).
        until: Fit only rows with ``t <= until``; later rows are forecast.
        starts: Number of starts (the config's values, then Latin-hypercube points).
        seed: Seed of the Latin hypercube.
        evaluate_only: Evaluate objective, gradient and uncertainty at the config's values
            without optimising.
        tol: Tolerances of the least-squares solver.
        max_evaluations: Forward runs each least-squares start may take; a start that
            reaches it ends ``stopped`` at its best point.
        regularisation: Field parameter -> alpha of its smoothness penalty
            ``alpha/2 int |grad p|^2``.  With a field parameter among ``parameters`` the
            fit is a bounded quasi-Newton minimisation (L-BFGS-B) with the adjoint
            gradient, every node bounded alike, and no intervals.
        profile: Points of a profile likelihood per parameter (0: none; see
            :func:`profile_likelihoods`).
        method: ``"lsq"``, or ``"mcmc"``: after the least-squares fit, posterior samples
            (:mod:`tumorpde.calibration.mcmc`); estimates are posterior medians, intervals
            the 2.5 and 97.5 percentiles, bands posterior-predictive.
        mcmc: ``walkers``, ``steps``, ``burn``, ``checkpoint`` (path of chains.npz).
        world: The communicator of all ranks (``--method mcmc`` with several groups).

    Raises:
        ConfigError: Bounds that do not contain the config's value, no data to fit.
    """
    data = [within_mesh(problem, d) for d in data]  # image voxels: those inside the mesh
    if any(p.name in problem.spec.fields for p in parameters):
        return _calibrate_fields(problem, data, parameters, until=until,
                                 evaluate_only=evaluate_only, tol=tol,
                                 regularisation=regularisation)
    t_start = time.perf_counter()
    names = [p.name for p in parameters]
    low = np.array([p.low for p in parameters], dtype=float)
    high = np.array([p.high for p in parameters], dtype=float)
    scales = [p.scale for p in parameters]
    full = Objective(problem, data, names, scales=scales)  # checks every row
    x0 = full.start()
    _check_bounds(parameters, x0)
    fitted_mask, fit_data = _fitted_rows(problem, data, until)
    obj = Objective(problem, fit_data, names, times=full.times, scales=scales)
    sigma_given = any(("sigma" in d.columns) for d in fit_data)
    best_x, best_f, status, runs = _search(obj, x0, low, high, starts, seed, tol, evaluate_only,
                                           max_evaluations)
    k = len(names)
    nan = np.full(k, np.nan)
    fit = Fit(status, list(parameters), best_x, best_f, obj.n_data, nan, nan,
              np.column_stack([nan, nan]), float("nan"), float("nan"),
              {"model": "given" if sigma_given else "estimated"}, 0, {}, runs,
              runs[-1].get("message", "") if evaluate_only else "", {},
              np.concatenate(fitted_mask))
    if math.isfinite(best_f):
        _uncertainty(fit, obj, full, low, high, sigma_given, fit_data, profile, tol)
        if method == "mcmc":
            fit.posterior, fit.estimate, fit.std, fit.ci95, fit.predictions = _posterior(
                full, fit.fitted, low, high, best_x, fit.covariance, sigma_given, seed,
                mcmc or {}, world or problem.comm, fit.noise_variance)
            fit.status = "sampled"
    else:
        fit.message = fit.message or "; ".join(str(r["status"]) for r in runs)
    fit.evaluations = obj.evaluations + full.evaluations
    fit.seconds = _timings(t_start, obj, full)
    obj.destroy()
    full.destroy()
    if math.isfinite(best_f):
        problem.reset(dict(zip(names, fit.estimate * np.array(scales), strict=True)),
                      times=full.times)
    return fit


def _timings(t_start: float, *objectives: Objective) -> dict[str, float]:
    """Seconds in all since ``t_start``, and in forward, adjoint and tangent sweeps."""
    out = {"total": time.perf_counter() - t_start}
    for o in objectives:
        for key, v in o.seconds.items():
            out[key] = out.get(key, 0.0) + v
    return out


def _check_bounds(parameters: Sequence[FitParameter], x0: Sequence[float]) -> None:
    for p, v in zip(parameters, x0, strict=True):
        if not p.low <= v <= p.high:
            raise ConfigError(f"--fit {p.key}", f"the bounds [{p.low:g}, {p.high:g}] do not "
                                                f"contain the config's value {v:g}")


def _search(obj: Objective, x0: np.ndarray, low: np.ndarray, high: np.ndarray, starts: int,
            seed: int, tol: float, evaluate_only: bool, max_evaluations: int = 200
            ) -> tuple[np.ndarray, float, str, list[dict[str, Any]]]:
    """The best least-squares optimum over the starts (or the start alone, evaluated)."""
    runs: list[dict[str, Any]] = []
    if evaluate_only:
        ev = obj.evaluate(x0)
        status = "evaluated" if ev.ok else "failed"
        runs.append({"start": x0.tolist(), "estimate": x0.tolist(), "objective": ev.value
                     if ev.ok else None, "status": status, "message": ev.message})
        return x0, ev.value, status, runs
    best_x, best_f, status = x0, float("inf"), "failed"
    points = np.vstack([x0[None, :], latin_hypercube(starts - 1, low, high, seed)])
    for x in points:
        xs, f, msg = _least_squares(obj, x, low, high, tol, max_evaluations)
        runs.append({"start": x.tolist(), "estimate": xs.tolist(),
                     "objective": f if math.isfinite(f) else None, "status": msg})
        if math.isfinite(f) and f < best_f:
            best_x, best_f, status = xs, f, "converged" if msg == "converged" else "stopped"
    return best_x, best_f, status, runs


def _uncertainty(fit: Fit, obj: Objective, full: Objective, low: np.ndarray, high: np.ndarray,
                 sigma_given: bool, fit_data: Sequence[Data], profile: int, tol: float) -> None:
    """Gradient, covariance, intervals, information criteria, profiles and predictions."""
    x, n, k = fit.estimate, obj.n_data, fit.estimate.size
    rss = 2.0 * fit.objective
    fit.gradient = obj.gradient(x)
    cov, s2 = covariance(obj.jacobian(x), rss, n, sigma_given)
    fit.covariance, fit.noise_variance = cov, s2
    fit.std = np.sqrt(np.maximum(np.diag(cov), 0.0))
    fit.ci95 = np.column_stack([x - Z95 * fit.std, x + Z95 * fit.std])
    sig = np.concatenate([d.sigma for d in fit_data]) if sigma_given else None
    fit.aic, fit.bic = information_criteria(rss, n, k, sig)
    if not sigma_given:
        fit.noise["sigma"] = math.sqrt(s2) if math.isfinite(s2) else None
    if profile > 1:
        prof = profile_likelihoods(obj, x, low, high, fit.std, profile, sigma_given, tol)
        fit.profiles = {fit.parameters[j].key: v for j, v in prof.items()}
    fit.predictions = _predictions(full, x, cov)


def _fitted_rows(problem: Any, data: Sequence[Data], until: float | None
                 ) -> tuple[list[np.ndarray], list[Data]]:
    mask = [d.t <= until + problem.milestones.tol if until is not None
            else np.ones(len(d), dtype=bool) for d in data]
    fit_data = [d.select(m) for d, m in zip(data, mask, strict=True)]
    fit_data = [d for d in fit_data if len(d)]
    if not fit_data:
        raise ConfigError("--until", f"no data row has t <= {until:g}: nothing to fit")
    return mask, fit_data


def _calibrate_fields(problem: Any, data: Sequence[Data], parameters: Sequence[FitParameter], *,
                      until: float | None, evaluate_only: bool, tol: float,
                      regularisation: dict[str, float] | None) -> Fit:
    """A fit with field parameters: L-BFGS-B on the adjoint gradient (see :func:`calibrate`)."""
    from scipy.optimize import minimize

    t_start = time.perf_counter()
    fields = [p for p in parameters if p.name in problem.spec.fields]
    scalars = [p for p in parameters if p.name not in problem.spec.fields]
    alpha = {p.name: float((regularisation or {}).get(p.name, 0.0)) for p in fields}
    for p in fields:
        if p.scale != 1.0:
            raise ConfigError(f"--fit {p.key}", "a field parameter must be a plain number "
                                                "(in the model's units)")
    names, fnames = [p.name for p in scalars], [p.name for p in fields]
    scales = [p.scale for p in scalars]
    kw = {"scales": scales, "fields": fnames, "regularisation": alpha}
    full = Objective(problem, data, names, **kw)
    mask, fit_data = _fitted_rows(problem, data, until)
    obj = Objective(problem, fit_data, names, times=full.times, **kw)
    x0 = obj.start()
    N = obj.layout.size
    bounds = [(p.low, p.high) for p in scalars] + [(p.low, p.high) for p in fields for _ in range(N)]
    _check_bounds([*scalars, *fields],
                  [*x0[:len(scalars)], *[x0[len(scalars) + i * N] for i in range(len(fields))]])
    worst = [0.0]

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        ev = obj.evaluate(x)
        if not ev.ok:  # infeasible: a value above any seen, so the line search backs off
            return 10.0 * worst[0] + 1e10, np.zeros_like(x)
        worst[0] = max(worst[0], ev.value)
        return ev.value, obj.gradient(x)

    status, message, best = "evaluated", "", x0
    if not evaluate_only:
        res = minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                       options={"maxiter": 500, "ftol": tol, "gtol": tol * 1e-2})
        best = res.x
        status = "converged" if res.success else "stopped"
        message = str(res.message)
    ev = obj.evaluate(best)
    if not ev.ok:
        status, message = "failed", ev.message
    grad = obj.gradient(best) if ev.ok else np.full(best.size, np.nan)
    k = len(parameters)
    nan = np.full(k, np.nan)
    est = np.concatenate([best[:len(scalars)],
                          [best[len(scalars) + i * N: len(scalars) + (i + 1) * N].mean()
                           for i in range(len(fields))]])
    order = [*scalars, *fields]
    pos = {p.name: i for i, p in enumerate(order)}
    idx = [pos[p.name] for p in parameters]
    g_summary = np.concatenate([grad[:len(scalars)], [np.linalg.norm(
        grad[len(scalars) + i * N: len(scalars) + (i + 1) * N]) for i in range(len(fields))]])
    pred = {}
    if ev.ok:
        fev = full.evaluate(best)
        pred = {"model": fev.model} if fev.ok else {}
    seconds = _timings(t_start, obj, full)
    fit = Fit(status, list(parameters), est[idx], ev.value, obj.n_data, g_summary[idx], nan,
              np.column_stack([nan, nan]), float("nan"), float("nan"),
              {"model": "given" if any("sigma" in d.columns for d in fit_data) else "unit"},
              obj.evaluations + full.evaluations, seconds,
              [{"start": "config", "objective": ev.value if ev.ok else None, "status": message}],
              message, pred, np.concatenate(mask),
              {f: best[len(scalars) + i * N: len(scalars) + (i + 1) * N].copy()
               for i, f in enumerate(fnames)}, alpha)
    split = obj.split(best) if ev.ok else None
    obj.destroy()
    full.destroy()
    if split is not None:
        problem.reset(split, times=full.times)
    return fit


def _posterior(full: Objective, fitted: np.ndarray, low: np.ndarray, high: np.ndarray,
               best: np.ndarray, cov: np.ndarray, sigma_given: bool, seed: int,
               opts: dict[str, Any], world: Any, s2: float) -> tuple[Any, ...]:
    """Sample, then the posterior summaries and posterior-predictive bands."""
    from tumorpde.calibration.mcmc import sample

    k = best.size
    walkers = int(opts.get("walkers") or max(2 * k + 2, 8))
    steps = int(opts.get("steps") or 200)
    burn = int(opts["burn"]) if opts.get("burn") is not None else steps // 2
    post = sample(full, fitted, low, high, best, cov, sigma_given, walkers=walkers, steps=steps,
                  burn=burn, seed=seed, world=world, checkpoint=opts.get("checkpoint"))
    est = np.median(post.samples, axis=0)
    std = np.std(post.samples, axis=0)
    ci = np.percentile(post.samples, [2.5, 97.5], axis=0).T
    # posterior predictive: the model at each sample plus measurement noise
    rng = np.random.default_rng(seed + 1)
    ok = np.all(np.isfinite(post.predictions), axis=1)
    m = post.predictions[ok]
    noise_sd = full.sigma if sigma_given else np.full(full.n_data, math.sqrt(max(s2, 0.0)))
    draws = m + noise_sd[None, :] * rng.standard_normal(m.shape)
    pred = {"model": np.median(m, axis=0), "lo": np.percentile(draws, 2.5, axis=0),
            "hi": np.percentile(draws, 97.5, axis=0)}
    return post, est, std, ci, pred


def _predictions(full: Objective, x: np.ndarray, cov: np.ndarray) -> dict[str, np.ndarray]:
    """The model at ``x`` for every row, with delta-method 95 % bands."""
    ev = full.evaluate(x)
    if not ev.ok:  # pragma: no cover - the fitted point ran a moment ago
        return {}
    try:
        G = full.jacobian(x) * full.sigma[:, None]  # dm/dp
    except SolverError:  # pragma: no cover
        return {"model": ev.model}
    var = np.einsum("ij,jk,ik->i", G, cov, G)
    half = Z95 * np.sqrt(np.maximum(var, 0.0))
    return {"model": ev.model, "lo": ev.model - half, "hi": ev.model + half}


def write_predictions(path: Path, data: Sequence[Data], fit: Fit) -> Path:
    """``predictions.csv``: every data row with its columns, ``fitted``, ``model``, ``lo``, ``hi``."""
    columns: list[str] = []
    for d in data:
        columns += [c for c in d.columns if c not in columns]
    extra = ["file"] if len(data) > 1 else []
    bands = [c for c in ("model", "lo", "hi") if c in fit.predictions]
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(extra + columns + ["fitted"] + bands)
        i = 0
        for d in data:
            col = {c: j for j, c in enumerate(d.columns)}
            for row in d.text:
                vals = [row[col[c]] if c in col else "" for c in columns]
                w.writerow(([str(d.path)] if extra else []) + vals +
                           [int(fit.fitted[i])] + [repr(float(fit.predictions[b][i]))
                                                   for b in bands])
                i += 1
    tmp.replace(path)
    return path


def write_json(path: Path, record: dict[str, Any]) -> Path:
    """Write ``calibration.json`` atomically."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
    tmp.replace(path)
    return path
