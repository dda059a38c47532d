"""Running verification configs and measuring them: error norms, orders, fields.

Everything here is collective under MPI (every rank calls every function) and
returns the same numbers on every rank.
"""

from __future__ import annotations

import copy
import gc
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpi4py import MPI

import numpy as np

from tumorpde.compat import import_dolfinx
from tumorpde.io import rundir
from tumorpde.model import expressions as ex
from tumorpde.model.config import load_dict
from tumorpde.simulation import RunResult, run

__all__ = ["run_config", "exact_ufl", "errors", "rates", "read_observables", "read_fields", "Study",
           "study", "fit_order", "Fields"]


def run_config(data: dict[str, Any], outdir: Path, comm: MPI.Comm = MPI.COMM_WORLD,
               fields: bool | list[str] = False) -> RunResult:
    """Run a config given as the dictionary of a TOML file (no progress bar).

    Args:
        data: The config.
        outdir: Output directory.
        comm: Communicator.
        fields: Species written to ``fields.xdmf``: True for all, a list, or False for none
            (unless the config chooses ``[output] fields`` itself).
    """
    data = copy.deepcopy(data)
    out = data.setdefault("output", {})
    out["progress"] = False
    if fields is False:
        out.setdefault("fields", [])
    elif fields is not True:
        out["fields"] = list(fields)
    return run(load_dict(data), outdir, comm)


def _params(data: dict[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in data.get("parameters", {}).items():
        val = v["value"] if isinstance(v, dict) else v
        out[k] = float(val)
    return out


def exact_ufl(disc: Any, text: str, t: float, params: dict[str, float]) -> Any:
    """A UFL expression for an exact solution written in the config expression language."""
    import_dolfinx()
    import ufl

    X = ufl.SpatialCoordinate(disc.domain.mesh)
    gdim = disc.domain.gdim
    flex = ex.Dim(None, False)
    syms = ex.reserved_symbols([X[i] for i in range(gdim)], float(t), flex)
    for k, v in params.items():
        syms[k] = (v, flex)
    value, _ = ex.lower(ex.parse(text, "exact"), syms, "exact", None)
    return ufl.as_ufl(value)


def errors(res: RunResult, data: dict[str, Any], exact: dict[str, str],
           qdeg: int = 8) -> dict[str, tuple[float, float]]:
    """(L2 error, H1-seminorm error) of every species at the final time of a run."""
    import_dolfinx()
    import ufl
    from dolfinx import fem

    disc = res.discretisation
    params = _params(data)
    dx = ufl.dx(domain=disc.domain.mesh, metadata={"quadrature_degree": qdeg})
    out = {}
    for k, name in enumerate(disc.spec.names):
        e = disc.comp(disc.u, k) - exact_ufl(disc, exact[name], res.t, params)
        l2 = fem.assemble_scalar(fem.form(e * e * dx))
        h1 = fem.assemble_scalar(fem.form(ufl.inner(ufl.grad(e), ufl.grad(e)) * dx))
        l2, h1 = disc.comm.allreduce(np.array([l2, h1], dtype=float), op=MPI.SUM)
        out[name] = (math.sqrt(max(l2, 0.0)), math.sqrt(max(h1, 0.0)))
    return out


def rates(errs: list[float], hs: list[float]) -> list[float]:
    """Observed orders between successive refinements."""
    out = []
    for i in range(len(errs) - 1):
        if errs[i] <= 0 or errs[i + 1] <= 0:
            out.append(float("nan"))
        else:
            out.append(float(math.log(errs[i] / errs[i + 1]) / math.log(hs[i] / hs[i + 1])))
    return out


def fit_order(errs: list[float], hs: list[float]) -> float:
    """Least-squares slope of log(error) against log(h)."""
    return float(np.polyfit(np.log(hs), np.log(errs), 1)[0])


def read_observables(outdir: Path, comm: MPI.Comm = MPI.COMM_WORLD) -> dict[str, np.ndarray]:
    """Columns of ``observables.csv`` of a run directory (read by rank 0, broadcast)."""
    return comm.bcast(rundir.read_observables(outdir) if comm.rank == 0 else None, root=0)


@dataclass
class Fields:
    """Fields of ``fields.h5``: P1 node coordinates, cells and values at the output times."""

    x: np.ndarray
    cells: np.ndarray
    times: list[float]
    values: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def at(self, name: str, t: float) -> np.ndarray:
        """Values of ``name`` at the output time closest to ``t``."""
        i = int(np.argmin(np.abs(np.asarray(self.times) - t)))
        return self.values[name][i]


def read_fields(outdir: Path, names: list[str], comm: MPI.Comm = MPI.COMM_WORLD,
                bcast: bool = True) -> Fields | None:
    """Every output of ``names`` in a run directory (rank 0 reads; broadcast unless not ``bcast``)."""
    out = None
    comm.Barrier()
    if comm.rank == 0:
        run = rundir.read(outdir)
        snaps = [run.fields(t, names=names) for t in run.times]
        out = Fields(run.nodes, run.cells, [s.t for s in snaps],
                     {n: [s[n] for s in snaps] for n in names})
    if bcast:
        out = comm.bcast(out, root=0)
    return out


@dataclass
class Study:
    """A convergence study: mesh sizes (or steps), errors per norm and observed orders."""

    hs: list[float]
    errs: dict[str, list[float]]
    labels: list[str] = field(default_factory=list)
    extra: dict[str, list[float]] = field(default_factory=dict)

    def rates(self, norm: str) -> list[float]:
        """Observed orders in one norm."""
        return rates(self.errs[norm], self.hs)


def study(builds: list[tuple[float, dict[str, Any]]], exact: dict[str, str], workdir: Path,
          comm: MPI.Comm = MPI.COMM_WORLD, labels: list[str] | None = None) -> Study:
    """Run configs of decreasing ``h`` and measure L2 and H1 errors against ``exact``.

    The error of a system is the root sum of squares of the species' errors.
    """
    hs, l2, h1, mins, steps, rmin, rmax = [], [], [], [], [], [], []
    for i, (h, data) in enumerate(builds):
        res = run_config(data, workdir / f"run{i}", comm)
        errs = errors(res, data, exact)
        hs.append(h)
        l2.append(math.sqrt(sum(e[0] ** 2 for e in errs.values())))
        h1.append(math.sqrt(sum(e[1] ** 2 for e in errs.values())))
        mins.append(min(res.minima.values()))
        steps.append(float(res.steps))
        dts = np.diff(read_observables(workdir / f"run{i}", comm)["t"])
        ratios = dts[1:] / dts[:-1] if len(dts) > 1 else np.ones(1)
        rmin.append(float(ratios.min()))
        rmax.append(float(ratios.max()))
        res.problem = None
        del res
        gc.collect()
        comm.Barrier()
    return Study(hs, {"L2": l2, "H1": h1}, labels or [f"{h:.4g}" for h in hs],
                 {"min": mins, "steps": steps, "ratio_min": rmin, "ratio_max": rmax})
