"""Post-processing of verification runs: fronts, fits, self-convergence, profiles.

Pure numpy functions of arrays (no MPI): they are called with data that every
rank already holds (broadcast CSV columns and fields).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["fisher_vstar", "bramson_fit", "nodal_difference", "profile", "crossing",
           "local_maxima", "gap_width"]


def fisher_vstar(h: float, dt: float, D: float = 1.0, rho: float = 1.0) -> tuple[float, float]:
    """Asymptotic front speed (and decay rate) of lumped P1 + constant-step BDF2 for Fisher-KPP.

    The leading edge ``exp(-lam (x - v t))`` of the linearised scheme grows per step by the
    root ``g`` of ``(3 - 2 dt s) g**2 - 4 g + 1 = 0`` with ``s = rho + 2 D (cosh(lam h) - 1)/h**2``;
    the selected speed is ``min_lam log(g)/(dt lam)`` (-> 2 sqrt(D rho) as h, dt -> 0).
    """
    from scipy.optimize import minimize_scalar

    def speed(lam: float) -> float:
        s = rho + 2.0 * D * (math.cosh(lam * h) - 1.0) / h ** 2
        g = (2.0 + math.sqrt(1.0 + 2.0 * dt * s)) / (3.0 - 2.0 * dt * s)
        return math.log(g) / (dt * lam)

    lam0 = math.sqrt(rho / D)
    r = minimize_scalar(speed, bounds=(0.2 * lam0, 5.0 * lam0), method="bounded",
                        options={"xatol": 1e-10})
    return float(r.fun), float(r.x)


def bramson_fit(t: np.ndarray, x: np.ndarray, t_from: float, vstar: float) -> dict[str, float]:
    """Fits of a front position ``x(t)`` for ``t >= t_from``.

    * ``speed``: free fit ``x = a t + b ln t + c + d t**-0.5`` (a: the asymptotic speed);
    * ``log_coef``: ``x - vstar t = b ln t + c + d t**-0.5`` with the speed fixed at ``vstar``
      (Bramson: b = -3/2 sqrt(D/rho); the t**-0.5 term is the next correction of Ebert &
      van Saarloos 2000, fitted freely);
    * ``log_coef_2``: the same without the t**-0.5 term.
    """
    m = t >= t_from
    tt, xx = t[m], x[m]
    A = np.vstack([tt, np.log(tt), np.ones_like(tt), tt ** -0.5]).T
    a, b_free, _, _ = np.linalg.lstsq(A, xx, rcond=None)[0]
    A = np.vstack([np.log(tt), np.ones_like(tt), tt ** -0.5]).T
    b, c, d = np.linalg.lstsq(A, xx - vstar * tt, rcond=None)[0]
    A = np.vstack([np.log(tt), np.ones_like(tt)]).T
    b2, c2 = np.linalg.lstsq(A, xx - vstar * tt, rcond=None)[0]
    return {"speed": float(a), "log_coef_free": float(b_free), "log_coef": float(b),
            "const": float(c), "sqrt_coef": float(d), "log_coef_2": float(b2), "const_2": float(c2)}


def _keys(x: np.ndarray, scale: float) -> np.ndarray:
    k = np.rint(np.asarray(x) * scale).astype(np.int64)
    if k.ndim == 1:
        return k
    out = np.zeros(len(k), dtype=np.int64)
    for j in range(k.shape[1]):
        out = out * 1_000_003 + k[:, j]
    return out


def nodal_difference(xc: np.ndarray, uc: np.ndarray, xf: np.ndarray, uf: np.ndarray,
                     scale: float, measure: float) -> tuple[float, float]:
    """(L1, max) difference of a coarse and a fine nodal field at the coarse nodes.

    The meshes are nested (the coarse nodes are fine nodes); ``scale`` times a coordinate
    is an integer at every fine node; the L1 norm is the mean absolute difference times
    ``measure`` (the size of the domain).
    """
    kc, kf = _keys(xc, scale), _keys(xf, scale)
    order = np.argsort(kf)
    pos = np.searchsorted(kf[order], kc)
    if np.any(pos >= len(kf)) or np.any(kf[order][np.minimum(pos, len(kf) - 1)] != kc):
        raise ValueError("the coarse nodes are not nodes of the fine mesh")
    diff = np.abs(uc - uf[order][pos])
    return float(np.mean(diff) * measure), float(np.max(diff))


def profile(x: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A 1D field sorted by x."""
    xs = np.asarray(x)[:, 0] if np.ndim(x) == 2 else np.asarray(x)
    i = np.argsort(xs)
    return xs[i], np.asarray(values)[i]


def crossing(x: np.ndarray, u: np.ndarray, level: float, start: int = 0,
             downward: bool = True) -> float:
    """First x (from index ``start``) where the sorted profile crosses ``level``."""
    for i in range(max(start, 0), len(x) - 1):
        a, b = u[i] - level, u[i + 1] - level
        if (downward and a >= 0 > b) or (not downward and a <= 0 < b):
            return float(x[i] + (x[i + 1] - x[i]) * a / (a - b))
    return float("nan")


def local_maxima(x: np.ndarray, u: np.ndarray, x_min: float, rel: float = 1e-3) -> list[tuple[float, float]]:
    """Interior local maxima (x, u) with x > x_min and u > rel*max(u)."""
    out = []
    top = float(np.max(u))
    for i in range(1, len(u) - 1):
        if x[i] > x_min and u[i] > u[i - 1] and u[i] >= u[i + 1] and u[i] > rel * top:
            out.append((float(x[i]), float(u[i])))
    return out


def gap_width(x: np.ndarray, tumour: np.ndarray, normal: np.ndarray, front: float,
              level: float = 0.1) -> float:
    """Length of the interval ahead of ``front`` where both densities are below ``level``."""
    m = (x > front) & (tumour < level) & (normal < level)
    if not np.any(m):
        return 0.0
    dx = np.diff(x)
    inside = m[:-1] & m[1:]
    return float(np.sum(dx[inside]))


def summary(values: dict[str, Any]) -> dict[str, float]:
    """Keep the finite float entries of a dictionary (metrics for comparisons)."""
    return {k: float(v) for k, v in values.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}
