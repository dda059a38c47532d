"""Helpers for tests: build configs from dicts and run them in-process."""

from __future__ import annotations

import copy
import tomllib
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
