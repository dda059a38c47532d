"""Meshes from segmented images (``tumorpde mesh --from-image MASK.nii.gz``).

A label image (NIfTI) becomes a triangle mesh (a 2-D image, one axial slice) or a
tetrahedral mesh (3-D) of its labelled voxels, in the image's physical coordinates (its
affine: spacing, orientation, offset), with smooth boundaries rather than voxel
staircases:

1. The selected labels (``--label N``, default every non-zero voxel) form a binary mask,
   padded with empty voxels so that every boundary closes.  Its signed distance (in
   physical units, so that thick slices interpolate between their neighbours: the
   shape-based interpolation of medical imaging) through a smooth step one voxel wide,
   smoothed by a Gaussian of half a voxel, is a smooth indicator of the mask.
2. The boundary is the iso-line (2-D, :func:`skimage.measure.find_contours`) or
   iso-surface (3-D, :func:`skimage.measure.marching_cubes`) of the smoothed mask, at
   the level at which the mesh encloses the mask's own area or volume (its voxel count
   times the voxel volume; found by bisection): smoothing moves a curved boundary
   inwards, and remeshing cuts it with chords; this level puts the volume back.
3. The boundary is mapped through the affine and meshed by gmsh: in 2-D each contour is
   resampled to the cell size and becomes a curve loop (holes included); in 3-D the
   surface triangles are classified into patches, reparametrised and remeshed
   (``classifySurfaces`` / ``createGeometry``), each closed shell with its cavities
   bounding a volume.
4. Each cell gets the label of the selected voxel nearest to its centroid: region
   ``label<N>`` (or ``--region N=NAME``); the boundary is ``outer``.  Interfaces between
   labels follow the cells (to the cell size); the outer boundary is smooth.

The cell size ``--size H`` defaults to the mean voxel edge (the voxel volume to the
power 1/dim: about as many vertices as voxels).  ``.msh`` output keeps
the names; ``.xdmf`` output (DOLFINx) keeps the tags, named by their numbers.

gmsh and scikit-image run on one process; the CLI calls this on rank 0.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tumorpde.apps.meshgen import (
    MeshSummary,
    exterior_facets,
    gmsh_error,
    gmsh_session,
    parse_pairs,
    write_tagged,
)
from tumorpde.errors import ConfigError
from tumorpde.io import images

__all__ = ["mesh_from_image", "SMOOTHING"]

#: width (voxels, index space) of the Gaussian that smooths the mask's staircase
SMOOTHING = 0.5


def _skimage_measure() -> Any:
    try:
        from skimage import measure
    except ImportError:  # pragma: no cover - the imaging extra is part of the test set-up
        raise ConfigError("--from-image", "meshing images needs scikit-image: "
                                          "pip install 'tumorpde[imaging]'") from None
    return measure


def _smoothed(mask: np.ndarray, spacing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A smooth indicator of the mask (cropped, padded) and the index of its first voxel.

    The signed distance to the mask's boundary (in physical units, so that thick slices
    interpolate between their neighbours: shape-based interpolation) through a smooth
    step one voxel edge wide, then a Gaussian of :data:`SMOOTHING` voxels.
    """
    from scipy import ndimage

    pad = int(np.ceil(3 * SMOOTHING)) + 2
    where = np.argwhere(mask)
    lo, hi = where.min(axis=0), where.max(axis=0) + 1
    crop = np.pad(mask[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))], pad)
    h = float(np.min(spacing))
    inside = ndimage.distance_transform_edt(crop, sampling=spacing)
    outside = ndimage.distance_transform_edt(~crop, sampling=spacing)
    sdf = np.where(crop, inside - 0.5 * h, 0.5 * h - outside)
    field = 0.5 + 0.5 * np.tanh(sdf / h)
    return ndimage.gaussian_filter(field, SMOOTHING, mode="constant"), lo - pad


def _level(measure_at: Any, target: float, top: float) -> float:
    """The iso-level in ``(0, top)`` at which ``measure_at(level)`` (decreasing) is ``target``."""
    a, b = 0.02 * top, 0.98 * top
    fa, fb = measure_at(a) - target, measure_at(b) - target
    if fa <= 0:
        return a
    if fb >= 0:
        return b
    for _ in range(40):
        m = 0.5 * (a + b)
        fm = measure_at(m) - target
        if abs(fm) <= 1e-6 * target or b - a < 1e-6:
            return m
        if fm > 0:
            a = m
        else:
            b = m
    return 0.5 * (a + b)


# ----------------------------------------------------------------------------- 3-D
def _surface(field: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    measure = _skimage_measure()
    verts, faces, _, _ = measure.marching_cubes(field, level, allow_degenerate=False)
    return verts, faces


def _signed_volumes(x: np.ndarray, faces: np.ndarray, shell: np.ndarray, n: int) -> np.ndarray:
    a, b, c = x[faces[:, 0]], x[faces[:, 1]], x[faces[:, 2]]
    v = np.einsum("ij,ij->i", a, np.cross(b, c)) / 6.0
    return np.bincount(shell, weights=v, minlength=n)


def _shells(faces: np.ndarray, nverts: int) -> tuple[np.ndarray, int]:
    """Connected component of each face (faces sharing a vertex)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rows = np.repeat(np.arange(len(faces)), 3)
    g = coo_matrix((np.ones(len(rows)), (rows, faces.ravel())),
                   shape=(len(faces), nverts)).tocsr()
    n, comp_v = connected_components(g.T @ g, directed=False)
    return comp_v[faces[:, 0]], n


def _inside_shell(p: np.ndarray, x: np.ndarray, faces: np.ndarray) -> bool:
    """Whether point ``p`` is inside the closed triangle surface (a ray along a skew axis)."""
    d = np.array([0.5773, 0.5774, 0.5775])
    a, b, c = x[faces[:, 0]], x[faces[:, 1]], x[faces[:, 2]]
    e1, e2 = b - a, c - a
    h = np.cross(d, e2)
    det = np.einsum("ij,ij->i", e1, h)
    ok = np.abs(det) > 1e-14
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    s = p - a
    u = inv * np.einsum("ij,ij->i", s, h)
    q = np.cross(s, e1)
    v = inv * (q @ d)
    t = inv * np.einsum("ij,ij->i", e2, q)
    hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0)
    return bool(np.count_nonzero(hit) % 2)


def _mesh_3d(image: images.Image, mask: np.ndarray, size: float) -> tuple[np.ndarray, np.ndarray]:
    """Tetrahedra ``(points, tets)`` of the mask's smoothed boundary.

    The remeshed surface cuts the curved iso-surface with chords (about ``h^2 / 8R``
    inwards): a first mesh measures that loss, and the second is made from the level that
    makes up for it.
    """
    field, first = _smoothed(mask, image.spacing)
    target = float(np.count_nonzero(mask))  # in voxels (index space)
    points, tets = _tets(image, field, first, size, target)
    got = _volume(points, tets) / image.voxel_volume
    if got > 0 and abs(got / target - 1) > 1e-3:
        points, tets = _tets(image, field, first, size, target * target / got)
    return points, tets


def _volume(points: np.ndarray, tets: np.ndarray) -> float:
    p = points[tets]
    e = p[:, 1:] - p[:, :1]
    return float(np.abs(np.linalg.det(e)).sum() / 6.0)


def _tets(image: images.Image, field: np.ndarray, first: np.ndarray, size: float,
          target: float) -> tuple[np.ndarray, np.ndarray]:
    def volume(level: float) -> float:
        verts, faces = _surface(field, level)
        if not len(faces):
            return 0.0
        shell = np.zeros(len(faces), dtype=int)
        return abs(float(_signed_volumes(verts, faces, shell, 1)[0]))

    level = _level(volume, target, float(field.max()))
    verts, faces = _surface(field, level)
    x = image.points(verts + first)
    shell, n = _shells(faces, len(verts))
    vols = _signed_volumes(x, faces, shell, n)
    if vols.sum() < 0:  # marching cubes' orientation under a mirroring affine
        faces = faces[:, [0, 2, 1]]
        vols = -vols
    keep = np.abs(vols) > 1e-9 * np.abs(vols).max()
    outer = [s for s in range(n) if keep[s] and vols[s] > 0]
    cavities = [s for s in range(n) if keep[s] and vols[s] < 0]
    parent: dict[int, list[int]] = {s: [] for s in outer}
    for c in cavities:
        p = x[faces[shell == c][0, 0]]
        hosts = [s for s in outer if _inside_shell(p, x, faces[shell == s])]
        if hosts:
            parent[min(hosts, key=lambda s: vols[s])].append(c)

    gmsh = gmsh_session()
    try:
        gmsh.model.add("image")
        for s in outer + cavities:
            tag = gmsh.model.addDiscreteEntity(2)
            f = faces[shell == s]
            nodes = np.unique(f)
            gmsh.model.mesh.addNodes(2, tag, nodes + 1, x[nodes].ravel())
            gmsh.model.mesh.addElementsByType(tag, 2, [], (f + 1).ravel())
        gmsh.model.mesh.classifySurfaces(np.pi / 4, True, True, np.pi)
        gmsh.model.mesh.createGeometry()
        gmsh.model.geo.synchronize()
        # the surfaces createGeometry made, each mapped back to its shell by a node
        from scipy.spatial import cKDTree

        tree = cKDTree(x)
        vshell = np.zeros(len(x), dtype=int)
        vshell[faces.ravel()] = np.repeat(shell, 3)
        loops: dict[int, list[int]] = {}
        for _, tag in gmsh.model.getEntities(2):
            _, coords, _ = gmsh.model.mesh.getNodes(2, tag, includeBoundary=True)
            if not len(coords):
                continue
            _, near = tree.query(coords.reshape(-1, 3)[:1])
            loops.setdefault(int(vshell[near[0]]), []).append(tag)
        for s, cavs in parent.items():
            if s not in loops:  # a speck that classifySurfaces merged away
                continue
            shells = [gmsh.model.geo.addSurfaceLoop(loops[s])]
            shells += [gmsh.model.geo.addSurfaceLoop(loops[c]) for c in cavs if c in loops]
            gmsh.model.geo.addVolume(shells)
        gmsh.model.geo.synchronize()
        gmsh.option.setNumber("Mesh.MeshSizeMax", size)
        gmsh.option.setNumber("Mesh.MeshSizeMin", 0.25 * size)
        gmsh.option.setNumber("Mesh.MeshSizeFromPoints", 0)
        gmsh.option.setNumber("Mesh.MeshSizeExtendFromBoundary", 0)
        gmsh.model.mesh.generate(3)
        return _elements(gmsh, 3, 4)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - a boundary gmsh cannot mesh
        raise ConfigError("--from-image", f"gmsh could not mesh the mask: {gmsh_error(exc)}") \
            from None
    finally:
        gmsh.finalize()


def _elements(gmsh: Any, dim: int, etype: int) -> tuple[np.ndarray, np.ndarray]:
    tags, coords, _ = gmsh.model.mesh.getNodes()
    coords = coords.reshape(-1, 3)
    index = np.full(int(tags.max()) + 1, -1, dtype=np.int64)
    index[tags.astype(np.int64)] = np.arange(len(tags))
    _, nodes = gmsh.model.mesh.getElementsByType(etype)
    conn = index[nodes.astype(np.int64)].reshape(-1, dim + 1)
    used = np.unique(conn)
    renum = np.full(len(coords), -1, dtype=np.int64)
    renum[used] = np.arange(len(used))
    return coords[used, :dim], renum[conn]


# ----------------------------------------------------------------------------- 2-D
def _contours(field: np.ndarray, level: float) -> list[np.ndarray]:
    return [c for c in _skimage_measure().find_contours(field, level) if len(c) >= 4]


def _area(c: np.ndarray) -> float:
    x, y = c[:, 0], c[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _resampled(c: np.ndarray, h: float) -> np.ndarray:
    """A closed polyline resampled to about ``h`` between points (at least 8 points)."""
    c = c[:-1] if np.allclose(c[0], c[-1]) else c
    seg = np.linalg.norm(np.diff(np.vstack([c, c[:1]]), axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(8, int(np.ceil(s[-1] / h)))
    t = np.linspace(0.0, s[-1], n, endpoint=False)
    closed = np.vstack([c, c[:1]])
    return np.c_[np.interp(t, s, closed[:, 0]), np.interp(t, s, closed[:, 1])]


def _mesh_2d(image: images.Image, mask: np.ndarray, size: float) -> tuple[np.ndarray, np.ndarray]:
    """Triangles ``(points, triangles)`` of the mask's smoothed boundary."""
    from skimage.measure import points_in_poly

    field, first = _smoothed(mask, image.spacing)
    target = float(np.count_nonzero(mask))

    def boundary(level: float) -> list[np.ndarray]:
        return [_resampled(image.points(c + first), size) for c in _contours(field, level)]

    def area(level: float) -> float:
        # the area of the polygons gmsh meshes, in pixels (holes wind the other way)
        return abs(sum(_area(c) for c in boundary(level))) / image.voxel_volume

    level = _level(area, target, float(field.max()))
    loops = boundary(level)
    loops = [c for c in loops if abs(_area(c)) > 1e-12]
    if not loops:
        raise ConfigError("--from-image", "the mask has no boundary to mesh")
    # nesting depth: even = an outer boundary, odd = a hole of its innermost container
    depth = [sum(bool(points_in_poly(c[:1], o)[0]) for j, o in enumerate(loops) if j != i)
             for i, c in enumerate(loops)]
    gmsh = gmsh_session()
    try:
        gmsh.model.add("image")
        geo = gmsh.model.geo
        curve_loops = []
        for c in loops:
            pts = [geo.addPoint(px, py, 0.0, size) for px, py in c]
            lines = [geo.addLine(pts[k], pts[(k + 1) % len(pts)]) for k in range(len(pts))]
            curve_loops.append(geo.addCurveLoop(lines))
        for i, c in enumerate(loops):
            if depth[i] % 2:
                continue
            holes = [j for j, o in enumerate(loops) if depth[j] == depth[i] + 1
                     and points_in_poly(o[:1], c)[0]]
            geo.addPlaneSurface([curve_loops[i]] + [curve_loops[j] for j in holes])
        geo.synchronize()
        gmsh.option.setNumber("Mesh.MeshSizeMax", size)
        gmsh.model.mesh.generate(2)
        return _elements(gmsh, 2, 2)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ConfigError("--from-image", f"gmsh could not mesh the mask: {gmsh_error(exc)}") \
            from None
    finally:
        gmsh.finalize()


# ----------------------------------------------------------------------------- entry
def _labels(values: Sequence[Any]) -> list[int]:
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise ConfigError("--label", f"{v!r} is not an integer label") from None
        if not f.is_integer() or f == 0:
            raise ConfigError("--label", f"{v!r} is not a non-zero integer label")
        out.append(int(f))
    return out


def mesh_from_image(mask_path: str | Path, output: str | Path | None = None,
                    labels: Sequence[Any] = (), size: float | None = None,
                    regions: Sequence[str] = ()) -> MeshSummary:
    """``tumorpde mesh --from-image MASK``: mesh the labelled voxels of a NIfTI image.

    Args:
        mask_path: A label image (``.nii`` / ``.nii.gz``): 0 outside, integer labels inside.
        output: ``.msh`` (region names kept) or ``.xdmf`` file (default ``MASK.msh``).
        labels: The labels to mesh (default every non-zero label).
        size: Cell size in the image's physical unit (default: the mean voxel edge).
        regions: ``N=NAME`` names of labels (default ``label<N>``).

    Raises:
        ConfigError: A non-NIfTI or unreadable file, a singular affine, an empty label, a
            bad size or output name, or a boundary gmsh cannot mesh.
    """
    image = images.read_image(mask_path, "--from-image")
    chosen = _labels(labels)
    mask = images.select_labels(image, chosen, "--label" if chosen else "--from-image")
    names = parse_pairs(regions, "--region", True)
    present = chosen or images.labels_of(image)
    for lab in names:
        if lab not in present:
            raise ConfigError("--region", f"label {lab} is not meshed (labels: "
                                          f"{', '.join(map(str, present))})")
    h = image.voxel_volume ** (1.0 / image.dim) if size is None else float(size)
    if not np.isfinite(h) or h <= 0:
        raise ConfigError("--size", f"the cell size must be a positive number, got {size!r}")
    stem = Path(mask_path).name
    stem = re.sub(r"\.nii(\.gz)?$", "", stem, flags=re.I)
    out = Path(output) if output else Path(f"{stem}.msh")
    suffix = out.suffix.lower()
    if suffix not in (".msh", ".xdmf"):
        raise ConfigError("--output", f"{out.name}: --from-image writes .msh or .xdmf files")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError("--output", f"cannot create {out.parent}: {exc.strerror}") from None

    points, cells = (_mesh_2d if image.dim == 2 else _mesh_3d)(image, mask, h)
    if not len(cells):
        raise ConfigError("--from-image", "gmsh produced no cells (is --size larger than the "
                                          "mask?)")
    # each cell: the label of the selected voxel nearest to its centroid
    from scipy.spatial import cKDTree

    idx, centres = image.centres(mask)
    cell_label = image.data[tuple(idx.T)].astype(np.int64)
    _, near = cKDTree(centres).query(points[cells].mean(axis=1))
    tags = cell_label[near]
    ctype = "triangle" if image.dim == 2 else "tetra"
    top = {ctype: [(cells, tags)]}
    region_map = {int(t): names.get(int(t), f"label{int(t)}") for t in np.unique(tags)}
    ftype, facets = exterior_facets(top, {})
    outer_tag = 1
    facet_part = {ftype: [(facets, np.full(len(facets), outer_tag))]}
    if suffix == ".msh":
        return write_tagged(stem, points, image.dim, top, facet_part, region_map,
                            {outer_tag: "outer"}, out)
    with tempfile.TemporaryDirectory() as tmp:
        msh = Path(tmp) / "mesh.msh"
        summary = write_tagged(stem, points, image.dim, top, facet_part, region_map,
                               {outer_tag: "outer"}, msh)
        _to_xdmf(msh, out, image.dim)
    # XDMF keeps the tags, not their names: the config names them by number
    summary.path = out
    summary.regions = {str(t): t for t in summary.regions.values()}
    summary.boundaries = {str(t): t for t in summary.boundaries.values()}
    return summary


def _to_xdmf(msh: Path, out: Path, gdim: int) -> None:
    """Rewrite a .msh file as DOLFINx XDMF (grids ``mesh``, ``cell_tags``, ``facet_tags``)."""
    from mpi4py import MPI

    from tumorpde.compat import gmsh_io, import_dolfinx, mesh_data_fields

    import_dolfinx()
    from dolfinx import io

    gmsh = gmsh_session()
    try:
        gmsh.merge(str(msh))
        data = gmsh_io().model_to_mesh(gmsh.model, MPI.COMM_SELF, 0, gdim=gdim)
    finally:
        gmsh.finalize()
    m, ct, ft, _ = mesh_data_fields(data)
    m.topology.create_connectivity(m.topology.dim - 1, m.topology.dim)
    ct.name, ft.name = "cell_tags", "facet_tags"
    tmp = out.with_name(out.stem + ".part.xdmf")
    with io.XDMFFile(MPI.COMM_SELF, str(tmp), "w") as f:
        f.write_mesh(m)
        f.write_meshtags(ct, m.geometry)
        f.write_meshtags(ft, m.geometry)
    # the XDMF file names its heavy-data file: rename both, then point the XML at the new .h5
    h5_old, h5_new = tmp.with_suffix(".h5"), out.with_suffix(".h5")
    h5_old.replace(h5_new)
    text = tmp.read_text().replace(h5_old.name, h5_new.name)
    out.write_text(text)
    tmp.unlink()
