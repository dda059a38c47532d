"""One tumorpde run for the benchmarks, with PETSc event timings and memory (prints JSON).

``python -m benchmarks.tme_case CONFIG [--set key=value ...] --outdir DIR [--state FILE.npy]``

Runs ``tumorpde.simulation.run`` on a bundled scenario or a config file and reports, on
rank 0: the solve time per simulated day, Newton and Krylov iteration counts, the time in
``KSPSolve`` (the linear-solve phase) and its memory traffic modelled from PETSc's flop counts
(see :data:`benchmarks.scaling_step.BYTES_PER_FLOP`), the peak resident memory of all ranks
less the resident memory after the imports, and the number of unknowns.  ``--state`` saves the final state
(serial runs) for error measurements against a reference.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time


def _rss(peak: bool) -> float:
    """Peak (``peak``) or current resident memory in bytes.

    On Linux the current figure is ``VmRSS`` and the peak ``VmHWM``, which
    :func:`benchmarks.memory_profile._reset_peak` resets after the imports, so a transient
    peak of the imports is not taken as the baseline; elsewhere both are ``ru_maxrss``.
    """
    try:
        from benchmarks.memory_profile import _status

        return float(_status()["VmHWM" if peak else "VmRSS"])
    except (OSError, KeyError):
        return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024.0


def _reset_peak() -> None:
    try:
        from benchmarks.memory_profile import _reset_peak as reset

        reset()
    except OSError:  # not Linux: the peak then includes the imports' own
        pass


def main(argv: list[str] | None = None) -> None:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config")
    p.add_argument("--set", action="append", default=[], dest="overrides")
    p.add_argument("--outdir", required=True)
    p.add_argument("--state", help="save the final state here (.npy, serial runs)")
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    from mpi4py import MPI

    from tumorpde.compat import import_dolfinx

    import_dolfinx()
    from petsc4py import PETSc

    import numpy as np

    from benchmarks.scaling_step import BYTES_PER_FLOP
    from tumorpde.io.rundir import read_info
    from tumorpde.model.config import find_config, load
    from tumorpde.simulation import run

    comm = MPI.COMM_WORLD
    rss0 = _rss(peak=False)
    _reset_peak()
    cfg = load(find_config(args.config), args.overrides)
    PETSc.Log.begin()
    res = run(cfg, args.outdir, comm, progress=False)
    # rank 0 writes run.json at the end of the run: read it there
    info = comm.bcast(read_info(args.outdir) if comm.rank == 0 else None, root=0)
    local_bytes = 0.0
    for ev, factor in BYTES_PER_FLOP.items():
        try:
            local_bytes += factor * float(PETSc.Log.Event(ev).getPerfInfo()["flops"])
        except Exception:  # an event that never ran
            continue
    ksp = PETSc.Log.Event("KSPSolve").getPerfInfo()
    ksp_time = comm.allreduce(float(ksp["time"]), op=MPI.MAX)
    solve_bytes = comm.allreduce(local_bytes, op=MPI.SUM)
    events = {}
    for ev in ("SNESFunctionEval", "SNESJacobianEval", "KSPSolve", "PCSetUp", "PCApply", "MatMult"):
        events[ev] = comm.allreduce(float(PETSc.Log.Event(ev).getPerfInfo()["time"]), op=MPI.MAX)
    rss = comm.allreduce(_rss(peak=True), op=MPI.SUM)
    base = comm.allreduce(rss0, op=MPI.SUM)
    disc = res.discretisation
    if args.state and comm.size == 1:
        nown = disc.V.dofmap.index_map.size_local * disc.n
        np.save(args.state, disc.u.x.array[:nown])
    span = cfg.time.end - cfg.time.start
    wall, mesh, counters = info.wall_time, info.mesh, info.counters
    out = {
        "config": args.config,
        "overrides": args.overrides,
        "ranks": comm.size,
        "unknowns": mesh.dofs,
        "steps": res.steps,
        "days": span,
        "solve_s": wall.solve,
        "setup_s": wall.setup,
        "process_s": time.perf_counter() - t_start,
        "solve_s_per_day": wall.solve / span,
        "step_s": wall.solve / max(res.steps, 1),
        "newton_iterations": counters.newton_iterations,
        "linear_iterations": counters.linear_iterations,
        "events_s": events,
        "ksp_solve_s": ksp_time,
        "solve_modelled_GBs": 1e-9 * solve_bytes / ksp_time if ksp_time > 0 else None,
        "peak_rss_bytes": rss,
        "rss_after_imports_bytes": base,
        "bytes_per_unknown": (rss - base) / mesh.dofs,
        "minima": res.minima,
        "loadavg": list(os.getloadavg()),
    }
    if comm.rank == 0:
        print(json.dumps(out), flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
