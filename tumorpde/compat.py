"""The one place where DOLFINx / PETSc version differences are handled.

tumorpde runs on DOLFINx >= 0.10 from any source (the ``dolfinx-solver-real``
wheel, conda, Spack, the official images).  Code elsewhere imports DOLFINx
through :func:`import_dolfinx` and uses the helpers here instead of testing
versions itself.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from types import ModuleType
from typing import Any

__all__ = ["import_dolfinx", "gmsh_io", "geometry_dofmap", "coordinate_element",
           "mesh_data_fields", "versions", "DOLFINX_MIN"]

DOLFINX_MIN = (0, 10)
_dolfinx: ModuleType | None = None


def import_dolfinx() -> ModuleType:
    """Import DOLFINx, loading the binary wheel's MPI first when it is installed.

    Returns:
        The ``dolfinx`` module.

    Raises:
        ImportError: DOLFINx is missing or older than :data:`DOLFINX_MIN`.
    """
    global _dolfinx
    if _dolfinx is not None:
        return _dolfinx
    # h5py first: it bundles its own HDF5, which must be bound before DOLFINx's HDF5 is loaded
    # (with numba installed, DOLFINx's form compiler imports it, and an h5py imported after
    # that resolves to the wrong HDF5: "Not a datatype")
    importlib.import_module("h5py")
    try:  # the wheel must order its MPI ahead of the compiled bindings
        importlib.import_module("dolfinx_solver")
    except ImportError:
        pass
    try:
        dolfinx = importlib.import_module("dolfinx")
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "DOLFINx is not installed: `pip install tumorpde[fenics]` or use a DOLFINx >= 0.10 "
            f"build ({exc})"
        ) from exc
    major_minor = tuple(int(p) for p in dolfinx.__version__.split(".")[:2])
    if major_minor < DOLFINX_MIN:  # pragma: no cover - depends on the install
        raise ImportError(f"tumorpde needs DOLFINx >= 0.10, found {dolfinx.__version__}")
    importlib.import_module("dolfinx.fem.petsc")
    _dolfinx = dolfinx
    return dolfinx


def gmsh_io() -> ModuleType:
    """Return DOLFINx's gmsh interface (``dolfinx.io.gmsh`` in 0.11, ``gmshio`` before)."""
    import_dolfinx()
    try:
        return importlib.import_module("dolfinx.io.gmsh")
    except ImportError:  # DOLFINx 0.10
        return importlib.import_module("dolfinx.io.gmshio")


def mesh_data_fields(data: Any) -> tuple[Any, Any, Any, dict[str, tuple[int, int]]]:
    """Unpack gmsh mesh data as ``(mesh, cell_tags, facet_tags, physical_groups)``.

    DOLFINx 0.10+ returns a ``MeshData`` object; older releases returned a tuple
    without physical names.
    """
    if hasattr(data, "mesh"):
        groups = dict(getattr(data, "physical_groups", {}) or {})
        return data.mesh, data.cell_tags, data.facet_tags, groups
    mesh, cell_tags, facet_tags = data[:3]  # pragma: no cover - pre-0.10 layout
    return mesh, cell_tags, facet_tags, {}


def _first_of(mesh: Any, plural: str, singular: str) -> Any:
    """``geometry.<plural>[0]`` (DOLFINx 0.11: one per cell type) or ``geometry.<singular>``."""
    geom = mesh.geometry
    items = getattr(geom, plural, None)
    if items is not None:
        return items(0) if callable(items) else items[0]
    return getattr(geom, singular)  # pragma: no cover - DOLFINx 0.10


def geometry_dofmap(mesh: Any) -> Any:
    """Cell-to-geometry-node map (``geometry.dofmaps[0]`` from 0.11, ``geometry.dofmap`` before)."""
    return _first_of(mesh, "dofmaps", "dofmap")


def coordinate_element(mesh: Any) -> Any:
    """The mesh's coordinate element (``geometry.cmaps[0]`` from 0.11, ``geometry.cmap`` before)."""
    return _first_of(mesh, "cmaps", "cmap")


def versions() -> dict[str, str]:
    """Versions of tumorpde and the numerical stack, for ``run.json``."""
    from tumorpde.version import __version__

    out = {"tumorpde": __version__}
    dolfinx = import_dolfinx()
    out["dolfinx"] = dolfinx.__version__
    from petsc4py import PETSc

    out["petsc"] = ".".join(str(v) for v in PETSc.Sys.getVersion())
    import ufl

    out["ufl"] = getattr(ufl, "__version__", "unknown")
    from mpi4py import MPI

    out["mpi"] = MPI.Get_library_version().splitlines()[0].strip()
    for dist in ("dolfinx-solver-real", "pint", "numpy"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out
