"""Time integration: BDF coefficients, milestones and step-size control.

Backward Euler and variable-step BDF2 write the time derivative as
``c0 u^{n+1} + c1 u^n + c2 u^{n-1}``; with ``w = dt_n / dt_{n-1}``

    BDF2: c0 = (1 + 2w) / ((1 + w) dt),  c1 = -(1 + w) / dt,  c2 = w^2 / ((1 + w) dt).

BDF2 starts with one backward-Euler step.  Growth of the step is capped at 2
(BDF2 is zero-stable for w < 1 + sqrt 2).

The adaptive controller estimates the local error from the difference between
the solution and an explicit predictor extrapolated from the history (Milne's
device): ``err ~ C |u - u_pred|`` with C = dt/(2 dt + dt_prev) for backward
Euler and C = 2/11 for BDF2, measured in the weighted RMS norm with ``atol`` and
``rtol``; the step is accepted when err <= 1 and the next one is
``dt * clip(0.9 err^(-1/(p+1)), 0.2, 2)``.  A failed nonlinear solve halves the step.
Output and checkpoint times and therapy dose times are milestones that every schedule
hits exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["bdf_coefficients", "Milestones", "Controller"]


def bdf_coefficients(scheme: str, dt: float, dt_prev: float | None) -> tuple[float, float, float]:
    """(c0, c1, c2) of the time derivative for this step."""
    if scheme == "backward-euler" or dt_prev is None:
        return 1.0 / dt, -1.0 / dt, 0.0
    w = dt / dt_prev
    return (1.0 + 2.0 * w) / ((1.0 + w) * dt), -(1.0 + w) / dt, w * w / ((1.0 + w) * dt)


def order(scheme: str) -> int:
    """Order of accuracy of a scheme."""
    return 1 if scheme == "backward-euler" else 2


@dataclass
class Milestones:
    """Sorted times that steps must land on exactly (outputs, checkpoints, end)."""

    times: list[float]
    tol: float

    @classmethod
    def build(cls, start: float, end: float, intervals: list[float | None],
              times: Sequence[float] = ()) -> Milestones:
        """Milestones at multiples of each interval from ``start``, at ``end``, and at ``times``.

        ``times`` (therapy doses) count when they lie inside (start, end).
        """
        span = end - start
        ts = {end} | {float(t) for t in times if start + 1e-9 * span < t < end - 1e-9 * span}
        for every in intervals:
            if every:
                k = 1
                while True:
                    t = start + k * every
                    if t >= end - 1e-9 * span:
                        break
                    ts.add(t)
                    k += 1
        return cls(sorted(ts), 1e-9 * span)

    def next_after(self, t: float) -> float:
        """The first milestone after ``t``."""
        for m in self.times:
            if m > t + self.tol:
                return m
        return self.times[-1]

    def hit(self, t: float, every: float | None, start: float) -> bool:
        """Whether ``t`` is on the grid ``start + k*every`` (or is the end)."""
        if abs(t - self.times[-1]) <= self.tol:
            return True
        if not every:
            return False
        k = round((t - start) / every)
        return k >= 1 and abs(start + k * every - t) <= self.tol


@dataclass
class Controller:
    """Step-size selection, fixed or error-controlled."""

    scheme: str
    dt: float
    adaptive: bool
    dt_min: float
    dt_max: float
    rtol: float
    atol: float
    rejected: int = 0
    failures: int = 0
    dt_fixed: float = 0.0

    def __post_init__(self) -> None:
        self.dt_fixed = self.dt

    def propose(self, t: float, milestone: float, dt_prev: float | None = None) -> float:
        """The next step from ``t``, shortened (or slightly stretched) to land on ``milestone``.

        After a short step (one that landed on a milestone, or a cut-back) the step grows by
        at most a factor 2, which keeps variable-step BDF2 zero-stable.
        """
        dt = min(self.dt, self.dt_max)
        if dt_prev is not None:
            dt = min(dt, 2.0 * dt_prev)
        remaining = milestone - t
        if dt >= remaining * (1.0 - 1e-9) or remaining - dt < 1e-3 * dt:
            return remaining
        return dt

    def on_failure(self, dt: float) -> bool:
        """Halve the step after a failed solve; False when it would drop below ``dt_min``."""
        self.failures += 1
        self.dt = dt * 0.5
        return self.dt >= self.dt_min

    def estimate(self, u: np.ndarray, hist: list[np.ndarray], dts: list[float], dt: float,
                 comm: object) -> float:
        """Weighted RMS error estimate of the step just computed (0 without history)."""
        from mpi4py import MPI

        p = order(self.scheme)
        if len(hist) < p + 1 - (1 if p == 1 else 0) or len(dts) < p:
            return 0.0
        if p == 1:
            un, unm1 = hist[0], hist[1]
            pred = un + dt * (un - unm1) / dts[-1]
            c = dt / (2.0 * dt + dts[-1])
        else:
            if len(hist) < 3 or len(dts) < 2:
                return 0.0
            # quadratic extrapolation through (t_n, t_{n-1}, t_{n-2})
            t0, t1, t2 = 0.0, -dts[-1], -dts[-1] - dts[-2]
            tn = dt
            l0 = (tn - t1) * (tn - t2) / ((t0 - t1) * (t0 - t2))
            l1 = (tn - t0) * (tn - t2) / ((t1 - t0) * (t1 - t2))
            l2 = (tn - t0) * (tn - t1) / ((t2 - t0) * (t2 - t1))
            pred = l0 * hist[0] + l1 * hist[1] + l2 * hist[2]
            c = 2.0 / 11.0
        w = self.atol + self.rtol * np.maximum(np.abs(u), np.abs(hist[0]))
        local = np.array([float(np.sum((c * (u - pred) / w) ** 2)), float(u.size)])
        total = np.empty_like(local)
        comm.Allreduce(local, total, op=MPI.SUM)  # type: ignore[attr-defined]
        return math.sqrt(total[0] / max(total[1], 1.0))

    def accept(self, err: float, dt: float) -> bool:
        """Decide on a computed step and choose the next step size."""
        if not self.adaptive:
            self.dt = min(self.dt * 2.0, self.dt_fixed)  # regrow after a cut-back
            return True
        p = order(self.scheme)
        if err == 0.0:
            factor = 1.5
        else:
            factor = min(2.0, max(0.2, 0.9 * err ** (-1.0 / (p + 1))))
        if err > 1.0:
            self.rejected += 1
            self.dt = max(dt * min(factor, 0.9), self.dt_min)
            return False
        self.dt = min(max(dt * factor, self.dt_min), self.dt_max)
        return True
