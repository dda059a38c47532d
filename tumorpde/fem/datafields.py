"""Fields from measurements: scattered samples interpolated onto the mesh.

An initial condition ``{data = "FILE.csv", time = T0}`` takes the rows of its species at
``T0`` from a field-sample file (:mod:`tumorpde.io.data`), averages replicates (rows at
the same point), and interpolates them linearly: piecewise linear in 1-D, on the Delaunay
triangulation of the samples in 2-D and 3-D (scipy), with the value of the nearest
sample outside the samples' hull (constant outside the data).

An initial condition ``{image = "FILE.nii.gz", scale = S}`` and a parameter field
``{value = V, image = "FILE.nii.gz"[, labels = {...}]}`` read a NIfTI image
(:mod:`tumorpde.io.images`) at the nodes: trilinearly in the image's physical coordinates
(taken to be in the model's length unit), or voxel by voxel for label maps.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tumorpde.errors import ConfigError
from tumorpde.io.data import read_data

__all__ = ["samples_at", "interpolator", "image_on_nodes"]


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
    from scipy.interpolate import NearestNDInterpolator
    from scipy.spatial import Delaunay

    nearest = NearestNDInterpolator(points, values)
    try:
        tri = Delaunay(points)
    except Exception:  # noqa: BLE001 - degenerate (e.g. collinear) samples: Qhull refuses
        raise ConfigError(key, f"the {len(points)} sample points span no {d}-D region: "
                               "linear interpolation needs points in general position") from None
    # points on the hull within round-off count as inside (Qhull's own test is exact)
    tol = 1e-10 * float(np.ptp(points, axis=0).max())

    def f(x: np.ndarray) -> np.ndarray:
        q = np.ascontiguousarray(x[:d].T)
        simplex = tri.find_simplex(q, tol=tol)
        out = np.asarray(nearest(q), dtype=float)
        ok = simplex >= 0
        if ok.any():
            T = tri.transform[simplex[ok]]
            b = np.einsum("nij,nj->ni", T[:, :d], q[ok] - T[:, d])
            bary = np.c_[b, 1.0 - b.sum(axis=1)]
            out[ok] = np.einsum("ni,ni->n", bary, values[tri.simplices[simplex[ok]]])
        return out
    return f


def image_on_nodes(path: str, points: np.ndarray, gdim: int, comm: Any, key: str,
                   order: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A NIfTI image at the nodes ``points`` (``(n, 3)``, this rank's): values and inside-mask.

    ``order`` 1 interpolates trilinearly, 0 takes the value of the voxel containing the
    node (label maps).  Collective: every rank reads the image and learns whether any
    node of the mesh lies in it.

    Raises:
        ConfigError: (key ``key``) an unreadable or non-NIfTI file, an image whose dimension
            is not the mesh's, an image that does not overlap the mesh.
    """
    from mpi4py import MPI

    from tumorpde.io.images import format_box, read_image

    image = read_image(path, key)
    if image.dim != gdim:
        raise ConfigError(key, f"{path} is a {image.dim}-D image but the mesh is {gdim}-D")
    inside = image.inside(points)
    if comm.allreduce(int(inside.sum()), op=MPI.SUM) == 0:
        lo = np.full(gdim, np.inf)
        hi = np.full(gdim, -np.inf)
        if len(points):
            lo, hi = points[:, :gdim].min(axis=0), points[:, :gdim].max(axis=0)
        lo = np.min(comm.allgather(lo), axis=0)  # (arrays: not an elementwise MPI.MIN of objects)
        hi = np.max(comm.allgather(hi), axis=0)
        raise ConfigError(key, f"{path} does not overlap the mesh (mesh box "
                               f"{format_box(lo, hi)}, image box {format_box(*image.bounds())})")
    return image.sample(points, order=order, outside=0.0), inside

