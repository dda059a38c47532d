"""Helpers for tests: build configs from dicts and run them in-process."""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mpi4py import MPI

import numpy as np

from tumorpde.model.config import EXAMPLES_DIR, load_dict
from tumorpde.simulation import RunResult, run


def example(name: str) -> dict[str, Any]:
    """A bundled example as a dict."""
    return tomllib.loads((EXAMPLES_DIR / f"{name}.toml").read_text())


def run_dict(data: dict[str, Any], outdir: Path, comm: MPI.Comm = MPI.COMM_WORLD) -> RunResult:
    """Run a config given as a dict (progress bar off)."""
    data = copy.deepcopy(data)
    data.setdefault("output", {})["progress"] = False
    return run(load_dict(data), outdir, comm)


def l2_error(disc: Any, k: int, exact: Any) -> float:
    """L2 norm of (u_k - exact) with exact a UFL expression of x and the time constant."""
    import ufl
    from dolfinx import fem

    dx = ufl.dx(domain=disc.domain.mesh, metadata={"quadrature_degree": 8})
    e = disc.comp(disc.u, k) - exact
    val = fem.assemble_scalar(fem.form(e * e * dx))
    return float(np.sqrt(disc.comm.allreduce(val, op=MPI.SUM)))


def h1_error(disc: Any, k: int, exact: Any) -> float:
    """H1 seminorm of (u_k - exact)."""
    import ufl
    from dolfinx import fem

    dx = ufl.dx(domain=disc.domain.mesh, metadata={"quadrature_degree": 8})
    e = ufl.grad(disc.comp(disc.u, k) - exact)
    val = fem.assemble_scalar(fem.form(ufl.inner(e, e) * dx))
    return float(np.sqrt(disc.comm.allreduce(val, op=MPI.SUM)))


def rates(errors: list[float], hs: list[float]) -> list[float]:
    """Observed orders between successive refinements."""
    return [float(np.log(errors[i] / errors[i + 1]) / np.log(hs[i] / hs[i + 1]))
            for i in range(len(errors) - 1)]


def save_nifti(path: Path, data: Any, affine: np.ndarray, dtype: Any = np.float64) -> None:
    """Write a NIfTI image with ``affine`` as sform and qform, on rank 0; every rank waits."""
    import nibabel as nib

    if MPI.COMM_WORLD.rank == 0:
        img = nib.Nifti1Image(np.asarray(data).astype(dtype), affine)
        img.set_sform(affine, code=1)
        img.set_qform(affine, code=1)
        nib.save(img, str(path))
    MPI.COMM_WORLD.Barrier()


def write_on_root(path: Path, text: str) -> None:
    """Write a text file on rank 0; every rank waits."""
    if MPI.COMM_WORLD.rank == 0:
        path.write_text(text)
    MPI.COMM_WORLD.Barrier()


def voxel_centres(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """Physical centres of every voxel of a grid, in C order."""
    idx = np.indices(shape).reshape(len(shape), -1).T
    d = len(shape)
    return idx @ affine[:d, :d].T + affine[:d, 3]


def shared_tmp_dir(prefix: str = "tumorpde-") -> Iterator[Path]:
    """A temporary directory shared by all ranks (made by rank 0, removed after use)."""
    import shutil
    import tempfile

    comm = MPI.COMM_WORLD
    path = Path(comm.bcast(tempfile.mkdtemp(prefix=prefix) if comm.rank == 0 else None, root=0))
    yield path
    comm.Barrier()
    if comm.rank == 0:
        shutil.rmtree(path, ignore_errors=True)
