"""Resident memory of the phases of the split strategy, in bytes per unknown (Linux, 1 rank).

``python -m benchmarks.memory_profile CONFIG CELLS [option=value ...]`` (options as in the
``[solver]`` table), e.g.
``python -m benchmarks.memory_profile tme-3d "[20, 20, 20]"``.

Runs the phases of two Newton iterations one by one (set-up, residuals, Jacobians,
preconditioned solves) and prints, for each, the resident memory it kept and the peak
during it: the high-water mark is reset between phases by writing 5 to
``/proc/self/clear_refs``.  Figures are above the resident memory after the imports
("peak, all": the peak during the phase, counting everything allocated before it).
"""

from __future__ import annotations

import gc
import sys


def _status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmHWM", "VmRSS")):
                key, value = line.split(":")
                out[key] = int(value.split()[0]) * 1024
    return out


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def main(argv: list[str]) -> None:
    """Command line."""
    config, cells, *options = argv
    from tumorpde.compat import import_dolfinx

    import_dolfinx()
    from tumorpde.model.config import find_config, load
    from tumorpde.simulation import prepare
    from tumorpde.solvers import splitting
    from tumorpde.solvers.snes import StepSolver

    cfg = load(find_config(config), [f"mesh.cells={cells}"])
    gc.collect()
    base = prev = _status()["VmRSS"]
    _reset_peak()
    rows = []

    def mark(label: str) -> None:
        nonlocal prev
        gc.collect()
        s = _status()
        rows.append((label, s["VmRSS"] - prev, s["VmHWM"] - prev, s["VmHWM"] - base))
        prev = s["VmRSS"]
        _reset_peak()

    _spec, _domain, disc = prepare(cfg)
    disc.set_initial()
    mark("mesh, spaces, forms, state")
    sj = splitting.for_discretisation(disc)
    mark("split Jacobian set-up")
    opts = dict(cfg.solver)
    for kv in options:
        key, value = kv.split("=", 1)
        opts[key] = value
    solver = StepSolver(disc, opts)
    mark("matrix and SNES")
    x, b, A = solver.x, solver.b, solver.A
    disc.u.x.petsc_vec.copy(x)
    ksp = solver.snes.getKSP()
    ksp.setOperators(A, A)
    y = x.duplicate()
    for it in (1, 2):
        disc.residual(None, x, b)
        mark(f"residual {it}")
        sj.jacobian(None, x, A, A)
        mark(f"Jacobian {it}")
        ksp.solve(b, y)
        mark(f"preconditioner set-up and solve {it} ({ksp.getIterationNumber()} its)")
    disc.residual(None, x, b)
    mark("residual 3")
    n = disc.V.dofmap.index_map.size_local * disc.n
    print(f"{config} {cells}: {n} unknowns; bytes per unknown above the imports")
    print(f"{'phase':52s} {'kept':>7s} {'peak in phase':>14s} {'peak, all':>12s}")
    for label, kept, peak, total in rows:
        print(f"{label:52s} {kept / n:7.0f} {peak / n:14.0f} {total / n:12.0f}")
    solver.destroy()


if __name__ == "__main__":
    main(sys.argv[1:])
