"""Meshes with named regions and boundaries.

Built-in shapes: ``interval``, ``rectangle``, ``box`` (structured simplices) and
``disk``, ``sphere`` (gmsh).  Boundary names of built-in shapes:

* interval: ``left`` (x = x0), ``right``;
* rectangle: ``left``, ``right`` (x), ``bottom``, ``top`` (y);
* box: ``left``, ``right`` (x), ``front``, ``back`` (y), ``bottom``, ``top`` (z);
* disk, sphere: ``outer``; the domain region is ``tissue``.

Files: gmsh ``.msh`` (physical-group names become region/boundary names) and
DOLFINx ``.xdmf`` (grids ``mesh``, ``cell_tags``, ``facet_tags``; regions named by
their integer tag).  ``[mesh.regions]`` and ``[mesh.boundaries]`` add names from
conditions on cell or facet midpoints; ``mesh.remove`` removes the cells whose
midpoints satisfy a condition (for example a strip that splits the mesh into
disconnected parts: two organs in one mesh).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpi4py import MPI

import numpy as np

from tumorpde.compat import gmsh_io, import_dolfinx, mesh_data_fields
from tumorpde.errors import ConfigError
from tumorpde.model import expressions as ex
from tumorpde.model.objects import Mesh as MeshConfig

__all__ = ["Domain", "build_domain", "domain_from_mesh"]


@dataclass
class Domain:
    """A mesh with region and boundary names.

    Attributes:
        mesh: The DOLFINx mesh.
        cell_tags: Cell meshtags (may be None when there are no regions).
        facet_tags: Boundary facet meshtags (may be None).
        regions: region name -> cell tag value.
        boundaries: boundary name -> facet tag value.
        grid: For the built-in ``interval``, ``rectangle`` and ``box``: the uniform grid
            of their vertices, ``(origin, size, cells)``; ``None`` for other meshes.
    """

    mesh: Any
    cell_tags: Any = None
    facet_tags: Any = None
    regions: dict[str, int] = field(default_factory=dict)
    boundaries: dict[str, int] = field(default_factory=dict)
    grid: tuple[tuple[float, ...], tuple[float, ...], tuple[int, ...]] | None = None

    @property
    def gdim(self) -> int:
        """Geometric dimension."""
        return int(self.mesh.geometry.dim)

    def num_cells_global(self) -> int:
        """Number of cells over all ranks."""
        imap = self.mesh.topology.index_map(self.mesh.topology.dim)
        return int(imap.size_global)


def build_domain(cfg: MeshConfig, comm: MPI.Comm) -> Domain:
    """Create the mesh and its named regions/boundaries (collective)."""
    import_dolfinx()
    from dolfinx import mesh as dmesh

    shape = cfg.shape
    if shape in ("interval", "rectangle", "box"):
        origin = list(cfg.origin) if cfg.origin else [0.0] * len(cfg.size)
        if len(origin) != len(cfg.size):
            raise ConfigError("mesh.origin", f"needs {len(cfg.size)} entries")
        hi = [o + s for o, s in zip(origin, cfg.size, strict=True)]
        if any(h - o < np.finfo(np.float64).eps for o, h in zip(origin, hi, strict=True)):
            # DOLFINx refuses such extents with a RuntimeError
            raise ConfigError("mesh.size", f"{cfg.size} is too small for a mesh at origin "
                                           f"{origin}")
        if shape == "interval":
            m = dmesh.create_interval(comm, cfg.cells[0], [origin[0], hi[0]])
            names = [("left", 0, origin[0]), ("right", 0, hi[0])]
        elif shape == "rectangle":
            if cfg.cell == "quadrilateral":
                m = dmesh.create_rectangle(comm, [origin, hi], cfg.cells,
                                           dmesh.CellType.quadrilateral)
            else:
                m = dmesh.create_rectangle(comm, [origin, hi], cfg.cells,
                                           dmesh.CellType.triangle,
                                           diagonal=dmesh.DiagonalType.right)
            names = [("left", 0, origin[0]), ("right", 0, hi[0]), ("bottom", 1, origin[1]),
                     ("top", 1, hi[1])]
        else:
            m = dmesh.create_box(comm, [origin, hi], cfg.cells,
                                 dmesh.CellType.hexahedron if cfg.cell == "hexahedron"
                                 else dmesh.CellType.tetrahedron)
            names = [("left", 0, origin[0]), ("right", 0, hi[0]), ("front", 1, origin[1]),
                     ("back", 1, hi[1]), ("bottom", 2, origin[2]), ("top", 2, hi[2])]
        tdim = m.topology.dim
        m.topology.create_entities(tdim - 1)
        m.topology.create_connectivity(tdim - 1, tdim)
        tol = 1e-10 * max(cfg.size)
        facets, values, boundaries = [], [], {}
        for tag, (name, axis, coord) in enumerate(names, start=1):
            f = dmesh.locate_entities_boundary(
                m, tdim - 1, lambda X, a=axis, c=coord: np.abs(X[a] - c) <= tol)
            facets.append(f)
            values.append(np.full(len(f), tag, dtype=np.int32))
            boundaries[name] = tag
        domain = Domain(m, None, _facet_tags(m, facets, values), {}, boundaries,
                        grid=(tuple(origin), tuple(cfg.size), tuple(cfg.cells)))
    elif shape in ("disk", "sphere"):
        domain = _gmsh_ball(cfg, comm, 2 if shape == "disk" else 3)
    else:
        domain = _read_file(cfg, comm)
    if cfg.remove:
        domain = _remove_cells(domain, cfg.remove)
    _custom_regions(domain, cfg)
    _custom_boundaries(domain, cfg)
    return domain


def domain_from_mesh(m: Any, cfg: MeshConfig, cell_tags: Any = None, facet_tags: Any = None,
                     regions: dict[str, int] | None = None,
                     boundaries: dict[str, int] | None = None) -> Domain:
    """A :class:`Domain` on an existing DOLFINx mesh (collective).

    Args:
        m: The ``dolfinx.mesh.Mesh``.
        cfg: The ``[mesh]`` table: its ``remove``, ``regions`` and ``boundaries`` apply;
            its shape and sizes are ignored.
        cell_tags: Cell meshtags (the regions), or None.
        facet_tags: Facet meshtags (the boundaries), or None.
        regions: Region name -> cell tag value (default: each tag value named by itself,
            as for an XDMF file).
        boundaries: Boundary name -> facet tag value (default likewise).
    """
    import_dolfinx()
    from dolfinx import mesh as dmesh

    if not isinstance(m, dmesh.Mesh):
        raise ConfigError("mesh", f"expected a dolfinx.mesh.Mesh, got {type(m).__name__}")
    tdim = m.topology.dim
    m.topology.create_entities(tdim - 1)
    m.topology.create_connectivity(tdim - 1, tdim)
    for tags, dim, what in ((cell_tags, tdim, "cell_tags"), (facet_tags, tdim - 1, "facet_tags")):
        if tags is not None and getattr(tags, "dim", None) != dim:
            raise ConfigError(what, f"expected meshtags of dimension {dim} of the mesh")
    names = []
    for given, tags, what in ((regions, cell_tags, "regions"), (boundaries, facet_tags,
                                                               "boundaries")):
        if given is None:
            names.append(_tag_names(tags, m.comm))
            continue
        if tags is None:
            raise ConfigError(what, f"names are given but no {what[:-1]} tags")
        if not all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
                   for k, v in given.items()):
            raise ConfigError(what, "expected a mapping of names to integer tag values")
        names.append(dict(given))
    domain = Domain(m, cell_tags, facet_tags, names[0], names[1])
    if cfg.remove:
        domain = _remove_cells(domain, cfg.remove)
    _custom_regions(domain, cfg)
    _custom_boundaries(domain, cfg)
    return domain


def _facet_tags(m: Any, facets: list[np.ndarray], values: list[np.ndarray]) -> Any:
    from dolfinx import mesh as dmesh

    tdim = m.topology.dim
    if facets:
        f = np.concatenate(facets).astype(np.int32)
        v = np.concatenate(values).astype(np.int32)
    else:
        f = np.zeros(0, dtype=np.int32)
        v = np.zeros(0, dtype=np.int32)
    # later entries win for facets named twice
    order = np.argsort(f, kind="stable")
    f, v = f[order], v[order]
    if len(f):
        last = np.r_[f[1:] != f[:-1], True]
        f, v = f[last], v[last]
    return dmesh.meshtags(m, tdim - 1, f, v)


def _gmsh_ball(cfg: MeshConfig, comm: MPI.Comm, dim: int) -> Domain:
    import gmsh

    gio = gmsh_io()
    center = list(cfg.center) if cfg.center else [0.0] * dim
    if len(center) != dim:
        raise ConfigError("mesh.center", f"needs {dim} entries")
    h = cfg.cell_size or cfg.radius / 16.0
    error = None
    if comm.rank == 0:
        gmsh.initialize(interruptible=False)
        gmsh.option.setNumber("General.Terminal", 0)
        try:
            gmsh.model.add("tumorpde")
            c = center + [0.0] * (3 - dim)
            if dim == 2:
                tag = gmsh.model.occ.addDisk(c[0], c[1], 0.0, cfg.radius, cfg.radius)
            else:
                tag = gmsh.model.occ.addSphere(c[0], c[1], c[2], cfg.radius)
            gmsh.model.occ.synchronize()
            gmsh.model.addPhysicalGroup(dim, [tag], 1, name="tissue")
            bnd = [b[1] for b in gmsh.model.getBoundary([(dim, tag)], oriented=False)]
            gmsh.model.addPhysicalGroup(dim - 1, bnd, 1, name="outer")
            gmsh.option.setNumber("Mesh.CharacteristicLengthMin", h)
            gmsh.option.setNumber("Mesh.CharacteristicLengthMax", h)
            gmsh.model.mesh.generate(dim)
        except Exception as exc:  # noqa: BLE001 - degenerate geometry is bad input
            error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            gmsh.finalize()
    # rank 0 alone talks to gmsh: share its verdict so that every rank fails together
    error = comm.bcast(error, root=0)
    if error is not None:
        raise ConfigError("mesh.radius", f"gmsh cannot mesh a {cfg.shape} of radius "
                                         f"{cfg.radius} at {center} with cell size {h:g}: {error}")
    try:
        data = gio.model_to_mesh(gmsh.model, comm, 0, gdim=dim)
    finally:
        if comm.rank == 0:
            gmsh.finalize()
    m, ct, ft, _groups = mesh_data_fields(data)
    return Domain(m, ct, ft, {"tissue": 1}, {"outer": 1})


def _read_file(cfg: MeshConfig, comm: MPI.Comm) -> Domain:
    path = Path(cfg.file or "")
    exists = comm.bcast(path.is_file() if comm.rank == 0 else None, root=0)
    if not exists:
        raise ConfigError("mesh.file", f"mesh file {str(path)!r} not found")
    suffix = path.suffix.lower()
    if suffix == ".msh":
        gio = gmsh_io()
        try:
            data = gio.read_from_msh(str(path), comm, 0, gdim=_msh_gdim(path, comm))
        except Exception as exc:  # noqa: BLE001 - any reader failure is bad input
            raise ConfigError("mesh.file", f"cannot read gmsh file {path.name}: "
                                           f"{str(exc).splitlines()[0] if str(exc) else exc}") from None
        m, ct, ft, groups = mesh_data_fields(data)
        tdim = m.topology.dim
        regions = {n: int(t) for n, (d, t) in groups.items() if d == tdim}
        boundaries = {n: int(t) for n, (d, t) in groups.items() if d == tdim - 1}
        return Domain(m, ct, ft, regions, boundaries)
    if suffix == ".xdmf":
        from dolfinx import io

        try:
            with io.XDMFFile(comm, str(path), "r") as f:
                m = f.read_mesh(name="mesh")
                tdim = m.topology.dim
                m.topology.create_connectivity(tdim - 1, tdim)
                ct = ft = None
                try:
                    ct = f.read_meshtags(m, name="cell_tags")
                except Exception:  # noqa: BLE001 - tags are optional
                    ct = None
                try:
                    ft = f.read_meshtags(m, name="facet_tags")
                except Exception:  # noqa: BLE001
                    ft = None
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise ConfigError("mesh.file", f"cannot read XDMF mesh {path.name}: {exc}") from None
        regions = _tag_names(ct, comm)
        boundaries = _tag_names(ft, comm)
        return Domain(m, ct, ft, regions, boundaries)
    raise ConfigError("mesh.file", f"unsupported mesh format {suffix!r} (use .msh or .xdmf; "
                                   f"`tumorpde mesh {path.name} -o {path.stem}.msh` converts "
                                   "other formats)")


def _msh_gdim(path: Path, comm: MPI.Comm) -> int:
    """Geometric dimension of a .msh file: 3 unless every z coordinate is zero."""
    gdim = None
    if comm.rank == 0:
        try:
            import meshio

            mm = meshio.read(str(path))
            pts = mm.points
            gdim = 3 if pts.shape[1] == 3 and np.any(np.abs(pts[:, 2]) > 0) else 2
            if pts.shape[1] == 3 and all(c.dim == 1 for c in mm.cells if c.dim > 0) and \
                    not np.any(np.abs(pts[:, 1]) > 0):
                gdim = 1
            top = max((c.dim for c in mm.cells), default=2)
            gdim = max(gdim, top)
        except Exception:  # noqa: BLE001 - let the DOLFINx reader report
            gdim = 3
    return int(comm.bcast(gdim, root=0))


def _tag_names(tags: Any, comm: MPI.Comm) -> dict[str, int]:
    if tags is None:
        return {}
    local = set(int(v) for v in np.unique(tags.values))
    allv = set().union(*comm.allgather(local))
    return {str(v): v for v in sorted(allv)}


def _remove_cells(domain: Domain, condition: str) -> Domain:
    """The sub-mesh of the cells whose midpoints do not satisfy ``condition``.

    Region tags are carried over cell by cell, boundary tags facet by facet (matched by
    midpoint); the new boundary where cells were removed is untagged (no-flux).
    """
    from scipy.spatial import cKDTree

    from dolfinx import mesh as dmesh

    key = "mesh.remove"
    m = domain.mesh
    comm = m.comm
    tdim = m.topology.dim
    imap = m.topology.index_map(tdim)
    ncells = imap.size_local + imap.num_ghosts
    cells = np.arange(ncells, dtype=np.int32)
    mid = dmesh.compute_midpoints(m, tdim, cells)
    env = {c: mid[:, i] for i, c in enumerate(ex.COORDINATES)}
    gone = np.broadcast_to(np.asarray(ex.evaluate(ex.parse_condition(condition, key, set()), env,
                                                  key)) > 0.5, (ncells,))
    kept = cells[~gone]
    left = comm.allreduce(int(np.sum(kept < imap.size_local)))
    if left == 0:
        raise ConfigError(key, f"{condition!r} removes every cell of the mesh")
    sub, cell_map, _, _ = dmesh.create_submesh(m, tdim, kept)
    smap = sub.topology.index_map(tdim)
    sub_cells = np.arange(smap.size_local + smap.num_ghosts, dtype=np.int32)
    parent = cell_map.sub_topology_to_topology(sub_cells, inverse=False)
    # keep the parent's input numbering of cells (outputs are written in it, so that they do
    # not depend on the number of ranks); the geometry keeps its input node indices already
    original = np.asarray(m.topology.original_cell_index, dtype=np.int64)
    if original.size >= ncells:
        sub.topology._cpp_object.original_cell_index = np.ascontiguousarray(original[parent])
    cell_tags = None
    if domain.cell_tags is not None:
        values = np.zeros(ncells, dtype=np.int32)
        values[domain.cell_tags.indices] = domain.cell_tags.values
        sub_values = values[parent]
        keep = sub_values > 0
        cell_tags = dmesh.meshtags(sub, tdim, sub_cells[keep], sub_values[keep])
    sub.topology.create_entities(tdim - 1)
    sub.topology.create_connectivity(tdim - 1, tdim)
    facet_tags = None
    if domain.facet_tags is not None:
        facets, values = [], []
        ft = domain.facet_tags
        if len(ft.indices):
            pmid = dmesh.compute_midpoints(m, tdim - 1, ft.indices)
            bfacets = dmesh.exterior_facet_indices(sub.topology)
            if len(bfacets):
                smid = dmesh.compute_midpoints(sub, tdim - 1, bfacets)
                dist, idx = cKDTree(pmid).query(smid)
                hit = dist <= 1e-12 * (1.0 + float(np.abs(smid).max()))  # same coordinates
                facets.append(bfacets[hit])
                values.append(ft.values[idx[hit]])
        facet_tags = _facet_tags(sub, facets, values)
    return Domain(sub, cell_tags, facet_tags, dict(domain.regions), dict(domain.boundaries))


def _custom_regions(domain: Domain, cfg: MeshConfig) -> None:
    if not cfg.regions:
        return
    from dolfinx import mesh as dmesh

    m = domain.mesh
    tdim = m.topology.dim
    ncells = m.topology.index_map(tdim).size_local + m.topology.index_map(tdim).num_ghosts
    cells = np.arange(ncells, dtype=np.int32)
    mid = dmesh.compute_midpoints(m, tdim, cells)
    values = np.zeros(ncells, dtype=np.int32)
    if domain.cell_tags is not None:
        values[domain.cell_tags.indices] = domain.cell_tags.values
    next_tag = max(list(domain.regions.values()) + [0]) + 1
    env = {c: mid[:, i] for i, c in enumerate(ex.COORDINATES)}
    for name, cond in cfg.regions.items():
        key = f"mesh.regions.{name}"
        mask = np.asarray(ex.evaluate(ex.parse_condition(cond, key, set()), env, key)) > 0.5
        mask = np.broadcast_to(mask, (ncells,))
        tag = domain.regions.get(name, next_tag)
        if tag == next_tag:
            next_tag += 1
        values[mask] = tag
        domain.regions[name] = tag
    keep = values > 0
    domain.cell_tags = dmesh.meshtags(m, tdim, cells[keep], values[keep])


def _custom_boundaries(domain: Domain, cfg: MeshConfig) -> None:
    if not cfg.boundaries:
        return
    from dolfinx import mesh as dmesh

    m = domain.mesh
    tdim = m.topology.dim
    m.topology.create_entities(tdim - 1)
    m.topology.create_connectivity(tdim - 1, tdim)
    bfacets = dmesh.exterior_facet_indices(m.topology)
    mid = dmesh.compute_midpoints(m, tdim - 1, bfacets)
    env = {c: mid[:, i] for i, c in enumerate(ex.COORDINATES)}
    facets, values = [], []
    if domain.facet_tags is not None:
        facets.append(domain.facet_tags.indices)
        values.append(domain.facet_tags.values)
    next_tag = max(list(domain.boundaries.values()) + [0]) + 1
    for name, cond in cfg.boundaries.items():
        key = f"mesh.boundaries.{name}"
        mask = np.asarray(ex.evaluate(ex.parse_condition(cond, key, set()), env, key)) > 0.5
        mask = np.broadcast_to(mask, bfacets.shape)
        tag = domain.boundaries.get(name, next_tag)
        if tag == next_tag:
            next_tag += 1
        facets.append(bfacets[mask])
        values.append(np.full(int(mask.sum()), tag, dtype=np.int32))
        domain.boundaries[name] = tag
    domain.facet_tags = _facet_tags(m, facets, values)
