"""Fields from measurements: scattered samples interpolated onto the mesh.

An initial condition ``{data = "FILE.csv", time = T0}`` takes the rows of its species at
``T0`` from a field-sample file (:mod:`tumorpde.io.data`), averages replicates (rows at
the same point), and interpolates them linearly: piecewise linear in 1-D, on the Delaunay
triangulation of the samples in 2-D and 3-D (scipy), with the value of the nearest
sample outside the samples' hull (constant outside the data).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tumorpde.errors import ConfigError
from tumorpde.io.data import read_data

__all__ = ["samples_at", "interpolator"]


def samples_at(path: str, species: str, t0: float, gdim: int, key: str,
               tol: float) -> tuple[np.ndarray, np.ndarray]:
    """The distinct sample points of ``species`` at ``t0`` and their mean values.

    Raises:
        ConfigError: (key ``key``) an unreadable file, observables instead of field samples,
            coordinates that do not match the mesh, no rows of ``species`` at ``t0``.
    """
    try:
        data = read_data(path)
    except ConfigError as exc:
        raise ConfigError(key, f"{exc.key}: {exc.message}") from None
    if data.kind != "field":
        raise ConfigError(key, f"{path} holds observable samples; an initial condition needs "
                               "field samples (t, x[, y, z], field, value)")
    if data.points.shape[1] != gdim:
        raise ConfigError(key, f"{path} has {data.points.shape[1]} coordinate column(s) but the "
                               f"mesh is {gdim}-D")
    rows = [i for i, n in enumerate(data.name) if n == species and abs(data.t[i] - t0) <= tol]
    if not rows:
        times = sorted({float(t) for t, n in zip(data.t, data.name, strict=True) if n == species})
        shown = ", ".join(f"{t:g}" for t in times[:8]) or "none"
        raise ConfigError(key, f"{path} has no rows of {species!r} at t={t0:g} "
                               f"(its times for {species!r}: {shown})")
    pts = data.points[rows]
    vals = data.value[rows]
    uniq, inv = np.unique(np.round(pts, 12), axis=0, return_inverse=True)
    inv = np.asarray(inv).reshape(-1)
    mean = np.bincount(inv, weights=vals, minlength=len(uniq)) / np.bincount(inv, minlength=len(uniq))
    return uniq, mean


def interpolator(points: np.ndarray, values: np.ndarray, key: str) -> Any:
    """``f(x)`` for ``x`` of shape (3, n): linear inside the samples' hull, nearest outside."""
    d = points.shape[1]
    if len(points) == 1:
        return lambda x: np.full(x.shape[1], values[0])
    if d == 1:
        order = np.argsort(points[:, 0])
        xs, vs = points[order, 0], values[order]
        return lambda x: np.interp(x[0], xs, vs)
    from scipy.interpolate import LinearNDInterpolator, NearestNDInterpolator

    nearest = NearestNDInterpolator(points, values)
    try:
        linear = LinearNDInterpolator(points, values, fill_value=np.nan)
    except Exception:  # noqa: BLE001 - degenerate (e.g. collinear) samples: Qhull refuses
        raise ConfigError(key, f"the {len(points)} sample points span no {d}-D region: "
                               "linear interpolation needs points in general position") from None

    def f(x: np.ndarray) -> np.ndarray:
        q = x[:d].T
        v = linear(q)
        out = np.where(np.isnan(v), nearest(q), v)
        return np.asarray(out, dtype=float)
    return f
