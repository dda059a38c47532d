"""Running a simulation: config -> domain -> discretisation -> time loop -> outputs.

:func:`run` is the library entry point used by the CLI::

    from tumorpde.config import load
    from tumorpde.simulation import run
    result = run(load("model.toml"), "out/model")
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpi4py import MPI

import numpy as np

from tumorpde.compat import versions
from tumorpde.config import Spec, check, to_dict
from tumorpde.errors import ConfigError, SolverError
from tumorpde.model import Config
from tumorpde.output import FieldWriter, ObservableWriter, RunRecord
from tumorpde.timestepping import Controller, Milestones, bdf_coefficients

__all__ = ["run", "RunResult", "prepare"]

log = logging.getLogger("tumorpde")


@dataclass
class RunResult:
    """Summary of a finished run."""

    outdir: Path
    status: str
    t: float
    steps: int
    observables: dict[str, float] = field(default_factory=dict)
    minima: dict[str, float] = field(default_factory=dict)
    discretisation: Any = None


def prepare(cfg: Config, comm: MPI.Comm = MPI.COMM_WORLD,
            spec: Spec | None = None) -> tuple[Spec, Any, Any]:
    """Check a config (unless its ``spec`` is given) and build its domain and discretisation."""
    from tumorpde.discretisation import Discretisation
    from tumorpde.mesh import build_domain

    spec = check(cfg) if spec is None else spec
    domain = build_domain(cfg.mesh, comm)
    for region, key in spec.regions_used.items():
        if region not in domain.regions:
            raise ConfigError(key, f"unknown region {region!r} (mesh regions: "
                                   f"{', '.join(sorted(domain.regions)) or 'none'})")
    disc = Discretisation(spec, domain)
    return spec, domain, disc


def run(cfg: Config, outdir: str | Path, comm: MPI.Comm = MPI.COMM_WORLD,
        argv: list[str] | None = None, progress: bool | None = None) -> RunResult:
    """Run a simulation and write its outputs into ``outdir``.

    Raises:
        ConfigError: Bad input (raised on all ranks, before ``run.json`` says completed).
        SolverError: The time step fell below ``dt_min`` (``run.json`` says failed).
    """
    t_setup = time.perf_counter()
    spec = check(cfg)  # fail fast, before creating directories
    outdir = Path(outdir)
    if comm.rank == 0:
        outdir.mkdir(parents=True, exist_ok=True)
    comm.Barrier()
    record = RunRecord(comm, outdir, to_dict(cfg), versions(), argv)
    record.t0 = t_setup
    try:
        spec, domain, disc = prepare(cfg, comm, spec)
        disc.set_initial()
    except ConfigError as exc:
        record.finish("failed", str(exc))
        raise
    from tumorpde.coupling import Couplings
    from tumorpde.solver import StepSolver

    couplings = Couplings(disc)  # drug levels, scalar compartments, radiotherapy fractions
    try:
        solver = StepSolver(disc, cfg.solver)
    except ConfigError as exc:
        record.finish("failed", str(exc))
        raise
    tc = cfg.time
    span = tc.end - tc.start
    out_every = tc.output_every or span / 10.0
    milestones = Milestones.build(tc.start, tc.end, [out_every, cfg.output.checkpoint_every],
                                  couplings.milestones(tc.start, tc.end))
    ctrl = Controller(tc.scheme, tc.dt, tc.adaptive, tc.dt_min or 1e-9 * span,
                      tc.dt_max or out_every, tc.rtol, tc.atol)
    names = spec.names
    fields = cfg.output.fields if cfg.output.fields is not None else names
    writer = FieldWriter(disc, outdir, fields)
    obs_names = list(spec.observables)
    scalar_names = couplings.columns()
    obs = ObservableWriter(comm, outdir, ["t"] + [f"total_{n}" for n in names] + scalar_names +
                           obs_names)
    nloc = disc.V.dofmap.index_map.size_local * disc.n
    show = cfg.output.progress if progress is None else progress
    bar = None
    if show and comm.rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=span, unit="t", desc="tumorpde", leave=False,
                   bar_format="{l_bar}{bar}| t={n:.4g}/{total:.4g} [{elapsed}<{remaining}]")

    cumulative = {n for n, o in spec.observables.items() if o.cumulative}
    running = {n: 0.0 for n in cumulative}
    previous: dict[str, tuple[float, float]] = {}

    def record_row(t: float) -> dict[str, float]:
        totals = disc.totals()
        extra = disc.observables()
        extra.update(couplings.row(t, extra))
        for n in cumulative:  # time integral by the trapezoidal rule over accepted steps
            if n in previous:
                t_prev, v_prev = previous[n]
                running[n] += 0.5 * (t - t_prev) * (v_prev + extra[n])
            previous[n] = (t, extra[n])
            extra[n] = running[n]
        obs.write([t] + totals + [extra[n] for n in scalar_names + obs_names])
        return {**{f"total_{n}": v for n, v in zip(names, totals, strict=True)}, **extra}

    t = tc.start
    disc.t.value = t
    last = record_row(t)
    if couplings.start(t, milestones.tol):  # radiotherapy at the start: rows before and after
        last = record_row(t)
    writer.write(t)
    record.update(wall_time={"setup": time.perf_counter() - t_setup},
                  mesh={"cells": domain.num_cells_global(),
                        "dofs": disc.V.dofmap.index_map.size_global * disc.n,
                        "degree": disc.degree})
    record.save()
    hist = [disc.u.x.array[:nloc].copy()]
    dts: list[float] = []
    steps = newton = linear = 0
    t_solve = 0.0
    status, message = "completed", None
    try:
        while t < tc.end - milestones.tol:
            milestone = milestones.next_after(t)
            dt_prev = dts[-1] if dts else None
            dt = ctrl.propose(t, milestone, dt_prev)
            c = bdf_coefficients(tc.scheme, dt, dt_prev)
            for const, val in zip(disc.coeffs, c, strict=True):
                const.value = val
            disc.t.value = t + dt
            disc.update_boundary_values()
            if not couplings.begin_step(t, t + dt, c):
                if not ctrl.on_failure(dt):
                    raise SolverError(f"the scalar compartments failed to converge at t={t:.6g} "
                                      f"with dt={dt:.3g}; the step fell below dt_min")
                continue
            # initial guess: the previous solution
            t0 = time.perf_counter()
            res = solver.solve()
            t_solve += time.perf_counter() - t0
            newton += res.iterations
            linear += res.linear_iterations
            if res.converged and not np.all(np.isfinite(disc.u.x.array)):
                res.converged = False
            ok = comm.allreduce(int(res.converged), op=MPI.MIN) == 1
            if not ok:
                disc.u.x.array[:] = disc.u_n.x.array
                if not ctrl.on_failure(dt):
                    raise SolverError(f"nonlinear solver failed at t={t:.6g} with dt={dt:.3g} "
                                      f"(SNES reason {res.reason}); the step fell below dt_min")
                log.info("step t=%.6g dt=%.3g failed (reason %d): retrying with dt=%.3g",
                         t, dt, res.reason, ctrl.dt)
                continue
            unew = disc.u.x.array[:nloc]
            err = ctrl.estimate(unew, hist, dts, dt, comm) if tc.adaptive else 0.0
            if not ctrl.accept(err, dt):
                disc.u.x.array[:] = disc.u_n.x.array
                if dt <= ctrl.dt_min * (1 + 1e-12):
                    raise SolverError(f"the error tolerance cannot be met at t={t:.6g} even with "
                                      f"dt_min={ctrl.dt_min:.3g}")
                continue
            steps += 1
            t_prev = t
            t = milestone if abs(t + dt - milestone) <= milestones.tol else t + dt
            hist = [unew.copy()] + hist[:2]
            dts = (dts + [dt])[-3:]
            disc.u_nm1.x.array[:] = disc.u_n.x.array
            disc.u_n.x.array[:] = disc.u.x.array
            couplings.accept()
            last = record_row(t)
            if couplings.apply_fractions(t_prev, t, milestones.tol):
                # radiotherapy: the state jumps (a second row at t); restart the history
                hist, dts = [disc.u.x.array[:nloc].copy()], []
                last = record_row(t)
            if milestones.hit(t, out_every, tc.start):
                writer.write(t)
            if bar is not None:
                bar.update(dt)
    except SolverError as exc:
        status, message = "failed", str(exc)
    except KeyboardInterrupt:
        record.finish("interrupted", f"interrupted at t={t:.6g}")
        raise
    except BaseException as exc:
        record.finish("failed", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if bar is not None:
            bar.close()
        writer.close()
        obs.close()
        solver.destroy()
    minima = dict(zip(names, disc.minima(), strict=True))
    record.update(counters={"steps": steps, "rejected_steps": ctrl.rejected,
                            "failed_solves": ctrl.failures, "newton_iterations": newton,
                            "linear_iterations": linear, "outputs": writer.count,
                            "observable_rows": obs.rows, **couplings.summary()},
                  final={"t": t, "observables": last, "minima": minima})
    record.data["wall_time"]["solve"] = t_solve
    record.finish(status, message)
    if status != "completed":
        raise SolverError(message or "run failed")
    if not math.isclose(t, tc.end, rel_tol=0, abs_tol=10 * milestones.tol):  # pragma: no cover
        raise SolverError(f"stopped at t={t} before end={tc.end}")
    return RunResult(outdir, status, t, steps, last, minima, disc)
