"""Greenspan's spheroid model as parametrised by Browning et al. (eLife 10:e73020, 2021).

The structure at outer radius ``R`` follows from quasi-steady oxygen with constant uptake in
the living shell: ``R_d`` is the radius at which a fully living ball reaches the necrosis
threshold at its centre, ``Q = sqrt((c_medium - c_i)/(c_medium - c_n))`` the inhibited
threshold on that scale.  Phases:

* ``R <= Q R_d``: no inhibited region, no necrotic core (``phi = eta = 0``);
* ``Q R_d < R <= R_d``: ``phi = sqrt(1 - Q^2 R_d^2 / R^2)``, ``eta = 0``;
* ``R > R_d``: ``1 - 3 eta^2 + 2 eta^3 = R_d^2 / R^2`` and ``phi`` the root in ``(eta, 1)`` of
  ``R^2 phi^3 + (Q^2 R_d^2 - R^2 (1 + 2 eta^3)) phi + 2 R^2 eta^3 = 0``.

Growth: ``dR/dt = lambda R / 3 (1 - phi^3 - gamma eta^3)`` (proliferation outside the
inhibited region, loss of necrotic volume).  Our own implementation of the published
equations, for the comparison in ``run.py``.
"""

from __future__ import annotations

import numpy as np
from scipy.integrate import solve_ivp
from scipy.optimize import brentq, least_squares

NAMES = ("lambda", "R_d", "Q", "gamma")


def structure(R: float, Rd: float, Q: float) -> tuple[float, float]:
    """``(phi, eta)``: the inhibited and necrotic radii over ``R``."""
    if R <= Q * Rd:
        return 0.0, 0.0
    if R <= Rd:
        return float(np.sqrt(1.0 - (Q * Rd / R) ** 2)), 0.0
    s = (Rd / R) ** 2
    eta = brentq(lambda e: 1 - 3 * e**2 + 2 * e**3 - s, 0.0, 1.0)
    f = lambda p: R**2 * p**3 + (Q**2 * Rd**2 - R**2 * (1 + 2 * eta**3)) * p + 2 * R**2 * eta**3  # noqa: E731
    lo = eta + 1e-12
    phi = brentq(f, lo, 1.0) if f(lo) * f(1.0) < 0 else 1.0
    return float(phi), float(eta)


def radii(theta: np.ndarray, R0: float, t0: float, times: np.ndarray) -> np.ndarray:
    """``(outer, inhibited, necrotic)`` radii at ``times`` (rows) from ``R(t0) = R0``."""
    lam, Rd, Q, gamma = theta

    def rhs(_t: float, y: np.ndarray) -> list[float]:
        phi, eta = structure(float(y[0]), Rd, Q)
        return [lam * y[0] / 3.0 * (1.0 - phi**3 - gamma * eta**3)]

    ts = np.unique(times)
    sol = solve_ivp(rhs, (t0, float(ts[-1])), [R0], t_eval=ts, rtol=1e-8, atol=1e-8)
    out = {}
    for t, R in zip(sol.t, sol.y[0], strict=True):
        phi, eta = structure(float(R), Rd, Q)
        out[round(float(t), 9)] = (R, phi * R, eta * R)
    return np.array([out[round(float(t), 9)] for t in times])


def fit(times: np.ndarray, observed: np.ndarray, kind: np.ndarray, R0: float, t0: float,
        start: tuple[float, ...] = (0.5, 250.0, 0.8, 3.0)) -> tuple[np.ndarray, np.ndarray]:
    """Least squares of the three radii (``kind`` 0, 1, 2 per row): ``(theta, model)``."""
    def residual(th: np.ndarray) -> np.ndarray:
        m = radii(th, R0, t0, times)
        return m[np.arange(len(times)), kind] - observed

    lo, hi = [0.01, 10.0, 0.0, 0.0], [5.0, 1000.0, 1.0, 50.0]  # Browning's bounds on gamma
    best = None
    for s in (start, (1.0, 200.0, 0.6, 0.8), (0.3, 150.0, 0.9, 1.0)):
        r = least_squares(residual, s, bounds=(lo, hi), x_scale=[0.1, 50.0, 0.1, 0.5])
        if best is None or r.cost < best.cost:
            best = r
    theta = best.x
    return theta, radii(theta, R0, t0, times)[np.arange(len(times)), kind]
