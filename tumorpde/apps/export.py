"""Fields of a run on the grid of a reference image (``tumorpde export DIR --nifti --like REF``).

Each field of a finished run (its P1 nodal values in ``fields.h5``) is resampled at the
voxel centres of a reference NIfTI image and written with that image's affine and shape,
one file per field and output time: ``OUTDIR/<field>_t<t>.nii.gz`` (``t`` as ``{t:g}``;
more digits only where two output times would otherwise share a name).

Resampling (:func:`resample_matrix`):

* The voxel centres are taken in physical coordinates (the affine: spacing, rotation,
  offset); a 2-D image (one axial slice) is resampled in the ``(x, y)`` plane of a 2-D
  mesh, as :mod:`tumorpde.io.images` maps images onto meshes.  Mesh coordinates are the
  image's physical coordinates (millimetres in the scanner's frame).
* A centre inside a cell takes the P1 interpolant: the cell's nodal values with the
  barycentric coordinates of the centre as weights.  Cells are found exactly, on any
  mesh, convex or not: each cell tests the voxel centres in its bounding box.
* A centre outside the mesh whose nearest point of the mesh (on a boundary facet) lies
  within its voxel (at most half a voxel from the centre along each of the voxel's axes)
  takes the value at that nearest point, so the voxels the mesh's boundary cuts are not
  lost.
* Every other voxel is 0.

The weights are one sparse matrix (voxels x nodes), found once per run (all output times
share the mesh) and applied to every field and time.

With ``observed`` (``--observed OBS.nii.gz``, on the grid of ``like``), each exported map
is compared with :func:`tumorpde.io.images.compare` (Dice and volumes above ``threshold``,
totals, RMSE; over the voxels of ``mask``, default all of them) and the results go to
``OUTDIR/metrics.csv``.

Everything here is numpy/scipy on one process (the CLI runs it on rank 0).
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tumorpde.errors import ConfigError
from tumorpde.io import images
from tumorpde.io.rundir import Run, read

__all__ = ["ExportResult", "Resampling", "export_nifti", "resample_matrix", "METRICS_COLUMNS",
           "DEFAULT_THRESHOLD"]

#: columns of ``metrics.csv``
METRICS_COLUMNS = ("field", "t", "dice", "volume_predicted", "volume_observed", "volume_error",
                   "total_predicted", "total_observed", "total_error", "rmse", "voxels")

#: default tumour threshold of the metrics: a tenth of a unit carrying capacity (the
#: normalisation of the bundled models and of ``images.adc_to_cellularity``'s default)
DEFAULT_THRESHOLD = 0.1

#: barycentric coordinates down to this (negative) value count as inside a cell
_INSIDE = -1e-10
#: (point, candidate cell) pairs handled at a time (bounds the memory of the search)
_PAIRS = 1 << 20


@dataclass
class Resampling:
    """The map from a mesh's nodal values to an image grid.

    Attributes:
        matrix: Sparse ``(voxels, nodes)`` weights (scipy CSR); row ``i`` is the voxel
            ``i`` of the image in C order.
        inside: Number of voxels whose centre lies inside the mesh.
        rim: Number of voxels outside the mesh that take the value of its nearest point.
        shape: The image's shape (``Image.data.shape``).
    """

    matrix: Any
    inside: int
    rim: int
    shape: tuple[int, ...]

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Nodal values -> voxel values, in the image's shape (0 away from the mesh)."""
        return np.asarray(self.matrix @ np.asarray(values, dtype=float)).reshape(self.shape)


@dataclass
class ExportResult:
    """What :func:`export_nifti` wrote.

    Attributes:
        outdir: Output directory.
        files: The NIfTI files, field by field and time by time.
        fields: Fields exported.
        times: Output times exported.
        metrics: ``metrics.csv`` (with ``observed``), else None.
        rows: The rows of ``metrics.csv`` (column -> value), in file order.
        inside: Voxels whose centre lies inside the mesh.
        rim: Voxels outside the mesh that take the value of its nearest point.
    """

    outdir: Path
    files: list[Path] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    metrics: Path | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    inside: int = 0
    rim: int = 0

    def line(self) -> str:
        """One line for the command line."""
        def count(n: int, what: str) -> str:
            return f"{n} {what}" + ("" if n == 1 else "s")

        n = len(self.files) + (self.metrics is not None)
        return (f"wrote {count(n, 'file')} -> {self.outdir} ({count(len(self.fields), 'field')} x "
                f"{count(len(self.times), 'time')} on {count(self.inside + self.rim, 'voxel')}"
                f"{', metrics.csv' if self.metrics is not None else ''})")


# ---------------------------------------------------------------------------- geometry
def _half_diagonal(matrix: np.ndarray) -> float:
    """The largest distance from a voxel's centre to a point of the voxel."""
    d = matrix.shape[0]
    signs = np.array(list(itertools.product((-0.5, 0.5), repeat=d)))
    return float(np.max(np.linalg.norm(signs @ matrix.T, axis=1)))


def _mesh_coordinates(nodes: np.ndarray, cells: np.ndarray) -> tuple[np.ndarray, int]:
    """Node coordinates in the mesh's own dimension, and that dimension."""
    nodes = np.asarray(nodes, dtype=float)
    cells = np.asarray(cells)
    if cells.ndim != 2 or len(cells) == 0:
        raise ConfigError("", "the run's mesh has no cells")
    tdim = cells.shape[1] - 1
    if nodes.shape[1] < tdim:
        raise ConfigError("", f"the run's mesh has {nodes.shape[1]} coordinates for "
                              f"{tdim}-D cells")
    x = nodes[:, :tdim]
    extra = nodes[:, tdim:]
    if extra.size and np.ptp(extra, axis=0).max() > 1e-9 * max(np.ptp(x, axis=0).max(), 1e-300):
        raise ConfigError("", f"the run's mesh is a {tdim}-D surface in {nodes.shape[1]}-D "
                              "space; export needs a mesh in the image's coordinates")
    return x, tdim


def _closest(p: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest points of simplices ``v`` ``(m, k, d)`` (``k <= d``: facets) to points ``p``.

    The nearest point is the orthogonal projection onto the affine hull of one face (vertex,
    edge, triangle) that falls inside that face: every face is tried (the normal equations
    of a face are at most 2 x 2 for d <= 3, solved in closed form).

    Returns:
        Distances ``(m,)`` and the barycentric coordinates ``(m, k)`` of the nearest points.
    """
    m, nv, _ = v.shape
    if nv > 3:
        raise ValueError(f"faces of up to 3 vertices, got {nv}")
    best = np.full(m, np.inf)
    lam = np.zeros((m, nv))
    for size in range(1, nv + 1):
        for face in itertools.combinations(range(nv), size):
            v0 = v[:, face[0]]
            r = p - v0
            if size == 1:
                mu = np.zeros((m, 0))
                ok = np.ones(m, dtype=bool)
            elif size == 2:
                e = v[:, face[1]] - v0
                g = np.einsum("md,md->m", e, e)
                ok = g > 0
                mu = (np.einsum("md,md->m", e, r) / np.where(ok, g, 1.0))[:, None]
            else:
                e1, e2 = v[:, face[1]] - v0, v[:, face[2]] - v0
                a11, a12 = np.einsum("md,md->m", e1, e1), np.einsum("md,md->m", e1, e2)
                a22 = np.einsum("md,md->m", e2, e2)
                b1, b2 = np.einsum("md,md->m", e1, r), np.einsum("md,md->m", e2, r)
                det = a11 * a22 - a12 * a12
                ok = det > 1e-12 * a11 * a22
                det = np.where(ok, det, 1.0)
                mu = np.stack([(a22 * b1 - a12 * b2) / det, (a11 * b2 - a12 * b1) / det], axis=1)
            weights = np.concatenate([1.0 - mu.sum(axis=1, keepdims=True), mu], axis=1)
            ok &= np.all(weights >= 0.0, axis=1)
            q = v0 + np.einsum("ms,msd->md", mu, v[:, list(face[1:])] - v0[:, None]) \
                if size > 1 else v0
            dist = np.linalg.norm(p - q, axis=1)
            better = ok & (dist < best)
            best[better] = dist[better]
            lam[better] = 0.0
            lam[np.ix_(better, face)] = weights[better]
    return best, lam


def _boxes(q: np.ndarray, pad: np.ndarray | float,
           shape: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes of the voxel centres within ``pad`` of the bounding boxes of simplices.

    ``q`` ``(m, k, d)`` are the simplices' vertices in voxel-index coordinates, ``pad`` is
    in index units (per axis).

    Returns:
        The first voxel ``(m, d)`` and the extent ``(m, d)`` (0 where none) of each box.
    """
    lo = np.maximum(np.ceil(q.min(axis=1) - pad - 1e-9), 0).astype(np.int64)
    hi = np.minimum(np.floor(q.max(axis=1) + pad + 1e-9), shape - 1).astype(np.int64)
    return lo, np.maximum(hi - lo + 1, 0)


def _box_voxels(lo: np.ndarray, ext: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every (box, voxel) pair of boxes ``(lo, ext)``, at most ``_PAIRS`` at a time.

    Yields:
        Box numbers ``(n,)`` and voxel indices ``(n, d)``.
    """
    count = ext.prod(axis=1)
    end = np.cumsum(count)
    total = int(end[-1]) if len(end) else 0
    for a in range(0, total, _PAIRS):
        g = np.arange(a, min(a + _PAIRS, total), dtype=np.int64)
        box = np.searchsorted(end, g, side="right")
        local = g - (end[box] - count[box])
        idx = np.empty((len(g), lo.shape[1]), dtype=np.int64)
        for axis in range(lo.shape[1] - 1, -1, -1):
            e = ext[box, axis]
            idx[:, axis] = local % e
            local //= e
        yield box, idx + lo[box]


def _first(key: np.ndarray, *by: np.ndarray) -> np.ndarray:
    """Positions of the first entry of each distinct ``key`` after sorting by ``key, *by``."""
    order = np.lexsort((*reversed(by), key))
    k = key[order]
    return order[np.r_[True, k[1:] != k[:-1]]] if len(k) else order


def _boundary_facets(cells: np.ndarray) -> np.ndarray:
    """The facets ``(f, d)`` (node indices) that belong to one cell only."""
    nv = cells.shape[1]
    facets = np.sort(np.concatenate([np.delete(cells, i, axis=1) for i in range(nv)]), axis=1)
    facets = facets[np.lexsort(facets.T[::-1])]
    new = np.r_[True, np.any(facets[1:] != facets[:-1], axis=1), True]
    start = np.flatnonzero(new)
    once = start[:-1][np.diff(start) == 1]
    return facets[once]


def resample_matrix(nodes: np.ndarray, cells: np.ndarray, image: images.Image,
                    key: str = "--like") -> Resampling:
    """The weights that resample P1 nodal values on a simplex mesh at an image's voxel centres.

    Every cell is tested against the voxel centres in its bounding box (barycentric
    coordinates, in voxel-index space, where they are the same as in physical space);
    every boundary facet against the centres within half a voxel diagonal of its box, for
    the nearest point of the mesh to a centre outside it.  The work is proportional to the
    voxels the mesh covers, whatever the mesh's shape.

    Args:
        nodes: Node coordinates ``(n, >= d)`` (extra constant columns, such as ``z = 0`` of
            a 2-D mesh, are dropped).
        cells: Node indices of the cells ``(cells, d + 1)``: triangles or tetrahedra.
        image: The grid (its shape and affine).
        key: Option named in messages.

    Raises:
        ConfigError: The mesh's dimension is not the image's, or no voxel centre lies
            inside the mesh (the message gives both bounding boxes).
    """
    from scipy import sparse

    x, d = _mesh_coordinates(nodes, cells)
    cells = np.asarray(cells, dtype=np.int64)
    name = Path(image.path).name or "the image"
    if d != image.dim:
        raise ConfigError(key, f"{name} is a {image.dim}-D image but the run's mesh is {d}-D")
    shape = np.array(image.data.shape)
    q = image.index(x)  # nodes in voxel-index coordinates
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []

    # -- centres inside a cell: P1 interpolation
    v = q[cells]
    m = np.transpose(v[:, 1:] - v[:, :1], (0, 2, 1))
    det = np.linalg.det(m)
    good = np.flatnonzero(np.abs(det) > 1e-12 * np.prod(np.linalg.norm(m, axis=1), axis=1))
    inverse = np.linalg.inv(m[good])
    origin = v[good, 0]
    lo, ext = _boxes(v[good], 0.0, shape)
    hits: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for box, idx in _box_voxels(lo, ext):
        mu = np.einsum("mij,mj->mi", inverse[box], idx - origin[box])
        worst = np.minimum(1.0 - mu.sum(axis=1), mu.min(axis=1))
        ok = worst >= _INSIDE
        hits.append((np.ravel_multi_index(tuple(idx[ok].T), image.data.shape), box[ok],
                     worst[ok]))
    vox = np.concatenate([h[0] for h in hits]) if hits else np.zeros(0, dtype=np.int64)
    if len(vox) == 0:
        raise ConfigError(key, f"{name} does not overlap the run's mesh: no voxel centre lies "
                               f"inside it (mesh box {images.format_box(x.min(0), x.max(0))}, "
                               f"image box {images.format_box(*image.bounds())})")
    box = np.concatenate([h[1] for h in hits])
    first = _first(vox, -np.concatenate([h[2] for h in hits]))  # the most inside cell
    vox, box = vox[first], box[first]
    idx = np.array(np.unravel_index(vox, image.data.shape)).T
    mu = np.einsum("mij,mj->mi", inverse[box], idx - origin[box])
    rows.append(np.repeat(vox, d + 1))
    cols.append(cells[good[box]].ravel())
    vals.append(np.concatenate([1.0 - mu.sum(axis=1, keepdims=True), mu], axis=1).ravel())
    inside = len(vox)
    covered = np.zeros(image.data.size, dtype=bool)
    covered[vox] = True

    # -- centres outside: the nearest point of the mesh (on a boundary facet), if in the voxel
    tol = _half_diagonal(image.matrix)
    to_index = np.linalg.inv(image.matrix)
    pad = tol * np.linalg.norm(to_index, axis=1)  # the ball of radius tol, in index units
    facets = _boundary_facets(cells)
    lo, ext = _boxes(q[facets], pad, shape)
    near: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    for fb, idx in _box_voxels(lo, ext):
        flat = np.ravel_multi_index(tuple(idx.T), image.data.shape)
        out = ~covered[flat]
        fb, idx, flat = fb[out], idx[out], flat[out]
        gap, weights = _closest(image.points(idx), x[facets[fb]])
        ok = gap <= tol * (1 + 1e-9)
        fb, flat, gap, weights = fb[ok], flat[ok], gap[ok], weights[ok]
        f = _first(flat, gap)
        near.append((flat[f], fb[f], gap[f], weights[f]))
    rim = 0
    if near:
        flat = np.concatenate([n[0] for n in near])
        fb = np.concatenate([n[1] for n in near])
        weights = np.concatenate([n[3] for n in near])
        f = _first(flat, np.concatenate([n[2] for n in near]))
        flat, fb, weights = flat[f], fb[f], weights[f]
        point = np.einsum("mk,mkd->md", weights, x[facets[fb]])
        idx = np.array(np.unravel_index(flat, image.data.shape)).T
        ok = np.all(np.abs(idx - image.index(point)) <= 0.5 + 1e-9, axis=1)
        rows.append(np.repeat(flat[ok], d))
        cols.append(facets[fb[ok]].ravel())
        vals.append(weights[ok].ravel())
        rim = int(ok.sum())
    matrix = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows),
                                                       np.concatenate(cols))),
                               shape=(image.data.size, len(x)))
    return Resampling(matrix, inside, rim, tuple(image.data.shape))


# ---------------------------------------------------------------------------- export
def _pick_times(run: Run, times: Sequence[float] | None) -> list[float]:
    available = run.times
    if not available:
        raise ConfigError("", f"{run.path} holds no fields (the run has written no output of "
                              "its fields)")
    if not times:
        return available
    span = abs(available[-1] - available[0])
    picked = []
    for t in times:
        best = min(available, key=lambda s: abs(s - t))
        if not math.isfinite(t) or abs(best - t) > 1e-9 * max(abs(t), abs(best), span, 1e-300):
            shown = ", ".join(f"{s:g}" for s in available[:12])
            more = f", ... ({len(available)} in all)" if len(available) > 12 else ""
            raise ConfigError("--time", f"{t:g} is not an output time of {run.path} "
                                        f"(output times: {shown}{more})")
        if best not in picked:
            picked.append(best)
    return picked


def _pick_fields(run: Run, fields: Sequence[str] | None) -> list[str]:
    names = run.field_names
    if not fields:
        return names
    for f in fields:
        if f not in names:
            raise ConfigError("--field", f"no field {f!r} in {run.path} "
                                         f"(fields: {', '.join(names) or 'none'})")
    return list(dict.fromkeys(fields))


def _time_labels(times: Sequence[float]) -> list[str]:
    """``{t:g}`` for each time, with more digits only where two would coincide."""
    for digits in range(6, 18):
        labels = [f"{t:.{digits}g}" for t in times]
        if len(set(labels)) == len(labels):
            return labels
    return [repr(t) for t in times]  # pragma: no cover - distinct floats differ in 17 digits


def _on_grid(path: str | Path, like: images.Image, key: str) -> images.Image:
    image = images.read_image(path, key)
    name = Path(image.path).name
    if image.data.shape != like.data.shape:
        raise ConfigError(key, f"{name} has shape {image.data.shape}, the grid of "
                               f"{Path(like.path).name} has {like.data.shape}")
    scale = float(np.abs(like.affine[:3]).max())
    if not np.allclose(image.affine, like.affine, rtol=0.0, atol=1e-5 * scale):
        raise ConfigError(key, f"{name} is not on the grid of {Path(like.path).name} "
                               "(its affine differs)")
    return image


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    def text(v: Any) -> str:
        return repr(float(v)) if isinstance(v, float) else str(v)

    lines = [",".join(METRICS_COLUMNS)]
    lines += [",".join(text(r[c]) for c in METRICS_COLUMNS) for r in rows]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def export_nifti(run_dir: str | Path, like: str | Path, fields: Sequence[str] | None = None,
                 times: Sequence[float] | None = None, output: str | Path | None = None,
                 observed: str | Path | None = None, threshold: float = DEFAULT_THRESHOLD,
                 mask: str | Path | None = None) -> ExportResult:
    """Write fields of a run as NIfTI images on the grid of a reference image.

    Args:
        run_dir: Output directory of ``tumorpde run``.
        like: The reference NIfTI image: its shape and affine are those of the files.
        fields: Fields to export (default: all).
        times: Output times to export (default: all); each must be an output time (to
            1e-9 relative).
        output: Output directory (default ``run_dir/nifti``).
        observed: A NIfTI image on the grid of ``like`` to compare every exported map with;
            the metrics go to ``OUTDIR/metrics.csv``.
        threshold: Voxels above it are tumour, for Dice and volumes (default
            :data:`DEFAULT_THRESHOLD`).
        mask: A NIfTI image on the grid of ``like``: only its non-zero voxels are compared
            (default all).

    Returns:
        The files written, with the metrics.

    Raises:
        ConfigError: ``run_dir`` is not a run directory or holds no fields; ``like``,
            ``observed`` or ``mask`` is not a readable NIfTI image, or not on the grid of
            ``like``; an unknown field or time; a mesh of another dimension than the image;
            a mesh and image that do not overlap; an unusable output directory.  Nothing
            is written then.
    """
    run_dir = Path(run_dir)
    run = read(run_dir)
    ref = images.read_image(like, "--like")
    chosen = _pick_fields(run, fields)
    picked = _pick_times(run, times)
    if not chosen:
        raise ConfigError("", f"{run_dir} holds no fields")
    obs = _on_grid(observed, ref, "--observed") if observed is not None else None
    where = None
    if mask is not None:
        if obs is None:
            raise ConfigError("--mask", "selects the voxels compared with --observed: give "
                                        "--observed too")
        where = images.select_labels(_on_grid(mask, ref, "--mask"), key="--mask")
    if not math.isfinite(threshold):
        raise ConfigError("--threshold", f"must be a finite number, got {threshold}")
    resampling = resample_matrix(run.nodes, run.cells, ref)
    outdir = Path(output) if output is not None else run_dir / "nifti"
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError("--output", f"cannot create {outdir}: {exc.strerror}") from None
    res = ExportResult(outdir, fields=chosen, times=picked, inside=resampling.inside,
                       rim=resampling.rim)
    labels = _time_labels(picked)
    for t, label in zip(picked, labels, strict=True):
        snap = run.fields(t, names=chosen)
        for name in chosen:
            data = resampling.apply(snap[name])
            try:
                path = images.write_like(outdir / f"{name}_t{label}.nii.gz", data, ref)
            except OSError as exc:
                raise ConfigError("--output", f"cannot write {outdir}: {exc.strerror}") from None
            res.files.append(path)
            if obs is not None:
                stored = data.astype(np.float32).astype(float)  # as the file holds it
                row = images.compare(stored, obs.data, ref.voxel_volume, threshold, where)
                res.rows.append({"field": name, "t": float(t), **row})
    if obs is not None:
        res.metrics = outdir / "metrics.csv"
        try:
            _write_csv(res.metrics, res.rows)
        except OSError as exc:
            raise ConfigError("--output", f"cannot write {res.metrics}: {exc.strerror}") \
                from None
    return res
