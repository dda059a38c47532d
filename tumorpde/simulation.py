"""Running a simulation: config -> domain -> discretisation -> time loop -> outputs.

:func:`run` is the library entry point used by the CLI::

    from tumorpde.config import load
    from tumorpde.simulation import run
    result = run(load("model.toml"), "out/model")
"""

from __future__ import annotations

import logging
import math
import os
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
from tumorpde.output import FieldWriter, ObservableWriter, RunLock, RunRecord
from tumorpde.signals import Interrupted, StopRequest
from tumorpde.timestepping import Controller, Milestones, bdf_coefficients

__all__ = ["run", "resume", "RunResult", "prepare", "LoopState"]

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


def output_times(start: float, end: float, every: float, milestones: Milestones) -> list[float]:
    """Every output time of a run: the start, then the milestones on the output grid."""
    return [start] + [m for m in milestones.times if milestones.hit(m, every, start)]


@dataclass
class LoopState:
    """What the time loop carries from step to step (all of it goes into checkpoints)."""

    t: float
    steps: int = 0
    newton: int = 0
    linear: int = 0
    dts: list[float] = field(default_factory=list)
    dt: float = 0.0
    rejected: int = 0
    failures: int = 0
    outputs: int = 0
    rows: int = 0
    running: dict[str, float] = field(default_factory=dict)
    previous: dict[str, list[float]] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)
    t_solve: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """Plain data for the checkpoint."""
        return dict(self.__dict__)


def _load_previous(outdir: Path, comm: MPI.Comm) -> dict[str, Any]:
    """``run.json`` of the run to resume (rank 0 reads, every rank gets it or the error)."""
    from tumorpde.rundir import read_info

    data, error = None, None
    if comm.rank == 0:
        try:
            info = read_info(outdir)
            data = info.to_json()
            if info.status == "completed":
                error = f"the run in {outdir} has already completed (nothing to resume)"
        except ConfigError as exc:
            error = exc.message
    error = comm.bcast(error, root=0)
    if error:
        raise ConfigError("resume", error)
    return comm.bcast(data, root=0)


def resume(outdir: str | Path, comm: MPI.Comm = MPI.COMM_WORLD, argv: list[str] | None = None,
           progress: bool | None = None) -> RunResult:
    """Continue an interrupted run in ``outdir`` from its last checkpoint.

    The config is the one recorded in ``run.json``; the number of ranks may differ
    from the original run's.  Without a checkpoint the run restarts from its
    initial state.  The outputs are continued as if the run had never stopped.
    """
    from tumorpde.config import load_dict

    outdir = Path(outdir)
    previous = _load_previous(outdir, comm)
    cfg = load_dict(previous["config"])
    return run(cfg, outdir, comm, argv, progress, previous=previous)


def run(cfg: Config, outdir: str | Path, comm: MPI.Comm = MPI.COMM_WORLD,
        argv: list[str] | None = None, progress: bool | None = None,
        previous: dict[str, Any] | None = None) -> RunResult:
    """Run a simulation and write its outputs into ``outdir``.

    With ``previous`` (the ``run.json`` of an interrupted run in ``outdir``; see
    :func:`resume`) the run continues from the checkpoint in ``outdir``.

    Raises:
        ConfigError: Bad input (raised on all ranks, before ``run.json`` says completed).
        SolverError: A step failed ``time.max_failures`` times in a row or fell below
            ``dt_min`` (``run.json`` says failed; a checkpoint of the last good step is written).
        Interrupted: SIGTERM/SIGINT (``run.json`` says interrupted; checkpoint written).
    """
    from tumorpde import checkpoint

    t_setup = time.perf_counter()
    spec = check(cfg)  # fail fast, before creating directories
    outdir = Path(outdir)
    if comm.rank == 0:
        outdir.mkdir(parents=True, exist_ok=True)
    comm.Barrier()
    lock = RunLock(comm, outdir)
    try:
        return _run(cfg, spec, outdir, comm, argv, progress, previous, t_setup, checkpoint)
    finally:
        lock.release()


def _run(cfg: Config, spec: Spec, outdir: Path, comm: MPI.Comm, argv: list[str] | None,
         progress: bool | None, previous: dict[str, Any] | None, t_setup: float,
         checkpoint: Any) -> RunResult:
    record = RunRecord(comm, outdir, to_dict(cfg), versions(), argv, previous)
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

    def new_solver() -> StepSolver:
        try:
            return StepSolver(disc, cfg.solver)
        except ConfigError as exc:
            record.finish("failed", str(exc))
            raise

    solver = new_solver()
    tc = cfg.time
    span = tc.end - tc.start
    out_every = tc.output_every or span / 10.0
    ckpt_every = cfg.output.checkpoint_every or out_every
    milestones = Milestones.build(tc.start, tc.end, [out_every, ckpt_every],
                                  couplings.milestones(tc.start, tc.end))
    ctrl = Controller(tc.scheme, tc.dt, tc.adaptive, tc.dt_min or 1e-9 * span,
                      tc.dt_max or out_every, tc.rtol, tc.atol)
    names = spec.names
    nloc = disc.V.dofmap.index_map.size_local * disc.n
    nonneg = np.array([spec.config.species[n].nonnegative for n in names])
    cumulative = {n for n, o in spec.observables.items() if o.cumulative}
    st = LoopState(t=tc.start, dt=tc.dt, running={n: 0.0 for n in cumulative})
    hist = [disc.u.x.array[:nloc].copy()]
    restored = False
    if previous is not None:
        restored, hist = _restore(disc, st, ctrl, outdir, comm, nloc, checkpoint, couplings)
    fields = cfg.output.fields if cfg.output.fields is not None else names
    writer = FieldWriter(disc, outdir, fields, output_times(tc.start, tc.end, out_every, milestones),
                         resume=st.outputs if restored else None)
    obs_names = list(spec.observables)
    scalar_names = couplings.columns()
    obs = ObservableWriter(comm, outdir, ["t"] + [f"total_{n}" for n in names] + scalar_names +
                           obs_names, resume=st.rows if restored else None)
    show = cfg.output.progress if progress is None else progress
    bar = None
    if show and comm.rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=span, initial=st.t - tc.start, unit="t", desc="tumorpde", leave=False,
                   bar_format="{l_bar}{bar}| t={n:.4g}/{total:.4g} [{elapsed}<{remaining}]")

    def record_row(t: float) -> dict[str, float]:
        totals = disc.totals()
        extra = disc.observables()
        extra.update(couplings.row(t, extra))
        for n in cumulative:  # time integral by the trapezoidal rule over accepted steps
            if n in st.previous:
                t_prev, v_prev = st.previous[n]
                st.running[n] += 0.5 * (t - t_prev) * (v_prev + extra[n])
            st.previous[n] = [t, extra[n]]
            extra[n] = st.running[n]
        obs.write([t] + totals + [extra[n] for n in scalar_names + obs_names])
        st.rows = obs.rows
        st.last = {**{f"total_{n}": v for n, v in zip(names, totals, strict=True)}, **extra}
        return st.last

    def save_checkpoint() -> None:
        arrays = {"u_n": disc.u_n.x.array[:nloc], "u_nm1": disc.u_nm1.x.array[:nloc]}
        if len(hist) > 2:
            arrays["u_nm2"] = hist[2]
        st.dt, st.rejected, st.failures = ctrl.dt, ctrl.rejected, ctrl.failures
        state = st.to_json() | {"history": len(hist), "config": to_dict(cfg),
                                "couplings": couplings.state()}
        checkpoint.save(outdir, comm, disc.V, arrays, state)

    t = st.t
    disc.t.value = t
    if not restored:
        record_row(t)
        if couplings.start(t, milestones.tol):  # radiotherapy at the start: rows before, after
            hist = [disc.u.x.array[:nloc].copy()]  # the state jumped: history from after it
            record_row(t)
        writer.write(t)
        st.outputs = writer.count
    record.update(mesh={"cells": domain.num_cells_global(),
                        "dofs": disc.V.dofmap.index_map.size_global * disc.n,
                        "degree": disc.degree})
    record.data["wall_time"]["setup"] = time.perf_counter() - t_setup
    record.save()
    status, message = "completed", None
    fails_in_row = 0
    collective = True  # whether every rank leaves the loop together
    stop = StopRequest(comm)
    try:
        with stop:
            while t < tc.end - milestones.tol:
                signum = stop.requested()
                if signum:
                    save_checkpoint()
                    raise Interrupted(signum, f"stopped by signal {signum} at t={t:.6g}; "
                                              f"checkpoint written (tumorpde resume {outdir})")
                milestone = milestones.next_after(t)
                dt_prev = st.dts[-1] if st.dts else None
                dt = ctrl.propose(t, milestone, dt_prev)
                c = bdf_coefficients(tc.scheme, dt, dt_prev)
                for const, val in zip(disc.coeffs, c, strict=True):
                    const.value = val
                disc.t.value = t + dt
                disc.update_boundary_values()
                # drug levels over the step; scalars at its end (the same on every rank)
                converged = couplings.begin_step(t, t + dt, c)
                why = None if converged else "the scalar compartments did not converge"
                if converged:
                    # initial guess: the previous solution
                    t0 = time.perf_counter()
                    res = solver.solve()
                    st.t_solve += time.perf_counter() - t0
                    st.newton += res.iterations
                    st.linear += res.linear_iterations
                    converged = res.converged
                    why = f"SNES reason {res.reason}"
                    if res.converged:
                        why = _check_state(disc, nonneg, tc.negative_tolerance, names, nloc,
                                           tc.atol)
                ok = comm.allreduce(int(converged and why is None), op=MPI.MIN) == 1
                if not ok:
                    why = _first_reason(comm, why)
                    disc.u.x.array[:] = disc.u_n.x.array
                    fails_in_row += 1
                    if not ctrl.on_failure(dt) or fails_in_row >= tc.max_failures:
                        save_checkpoint()
                        raise SolverError(
                            f"step from t={t:.6g} failed {fails_in_row} times (last: dt={dt:.3g}, "
                            f"{why}); checkpoint of t={t:.6g} written")
                    log.info("step t=%.6g dt=%.3g failed (%s): retrying with dt=%.3g",
                             t, dt, why, ctrl.dt)
                    continue
                fails_in_row = 0
                unew = disc.u.x.array[:nloc]
                err = ctrl.estimate(unew, hist, st.dts, dt, comm) if tc.adaptive else 0.0
                if not ctrl.accept(err, dt):
                    disc.u.x.array[:] = disc.u_n.x.array
                    if dt <= ctrl.dt_min * (1 + 1e-12):
                        save_checkpoint()
                        raise SolverError(f"the error tolerance cannot be met at t={t:.6g} "
                                          f"even with dt_min={ctrl.dt_min:.3g}")
                    continue
                st.steps += 1
                t_prev = t
                t = milestone if abs(t + dt - milestone) <= milestones.tol else t + dt
                st.t = t
                hist = [unew.copy()] + hist[:2]
                st.dts = (st.dts + [dt])[-3:]
                disc.u_nm1.x.array[:] = disc.u_n.x.array
                disc.u_n.x.array[:] = disc.u.x.array
                couplings.accept()
                _injected_fault(comm, st.steps)
                record_row(t)
                if couplings.apply_fractions(t_prev, t, milestones.tol):
                    # radiotherapy: the state jumps (a second row at t); restart the history
                    hist, st.dts = [disc.u.x.array[:nloc].copy()], []
                    record_row(t)
                if milestones.hit(t, out_every, tc.start):
                    writer.write(t)
                    st.outputs = writer.count
                if milestones.hit(t, ckpt_every, tc.start) and t < tc.end - milestones.tol:
                    save_checkpoint()
                    # a fresh solver after each checkpoint, exactly as a resumed run starts
                    solver.destroy()
                    solver = new_solver()
                    record.update(counters=_counters(st, ctrl, writer, obs, couplings), t=t)
                    record.save()
                if bar is not None:
                    bar.update(dt)
    except SolverError as exc:
        status, message = "failed", str(exc)
    except Interrupted as exc:
        record.update(counters=_counters(st, ctrl, writer, obs, couplings))
        record.finish("interrupted", str(exc))
        raise
    except KeyboardInterrupt:
        collective = comm.size == 1
        record.finish("interrupted", f"interrupted at t={t:.6g}")
        raise
    except BaseException as exc:
        # possibly raised on this rank alone: no collective clean-up (the CLI aborts all ranks)
        collective = comm.size == 1
        record.finish("failed", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if bar is not None:
            bar.close()
        writer.close()
        obs.close()
        if collective:
            solver.destroy()
    minima = dict(zip(names, disc.minima(), strict=True))
    record.update(counters=_counters(st, ctrl, writer, obs, couplings),
                  final={"t": t, "observables": st.last, "minima": minima})
    record.data["wall_time"]["solve"] = st.t_solve
    if status == "completed" and comm.rank == 0:
        (outdir / checkpoint.FILENAME).unlink(missing_ok=True)  # only useful to unfinished runs
    record.finish(status, message)
    if status != "completed":
        raise SolverError(message or "run failed")
    if not math.isclose(t, tc.end, rel_tol=0, abs_tol=10 * milestones.tol):  # pragma: no cover
        raise SolverError(f"stopped at t={t} before end={tc.end}")
    return RunResult(outdir, status, t, st.steps, st.last, minima, disc)


def _injected_fault(comm: MPI.Comm, step: int) -> None:
    """Testing aid: ``TUMORPDE_FAULT_INJECTION=RANK:STEP`` raises on one rank after that step."""
    spec = os.environ.get("TUMORPDE_FAULT_INJECTION")
    if spec:
        rank, _, at = spec.partition(":")
        if comm.rank == int(rank) and step == int(at):
            raise RuntimeError(f"injected fault on rank {rank} at step {at}")


def _counters(st: LoopState, ctrl: Controller, writer: FieldWriter,
              obs: ObservableWriter, couplings: Any) -> dict[str, Any]:
    return {"steps": st.steps, "rejected_steps": ctrl.rejected, "failed_solves": ctrl.failures,
            "newton_iterations": st.newton, "linear_iterations": st.linear,
            "outputs": writer.count, "observable_rows": obs.rows, **couplings.summary()}


def _check_state(disc: Any, nonneg: np.ndarray, tol: float, names: list[str],
                 nloc: int, floor: float = 0.0) -> str | None:
    """Why the new solution is unacceptable on this rank (NaN, or too negative), or None."""
    arr = disc.u.x.array[:nloc].reshape(-1, disc.n)
    if not np.all(np.isfinite(arr)):
        arr = np.zeros((0, disc.n))
        finite = False
    else:
        finite = True
    if arr.size:
        lo, hi = arr.min(axis=0), np.abs(arr).max(axis=0)
    else:
        lo, hi = np.full(disc.n, np.inf), np.zeros(disc.n)
    local = np.where(nonneg, lo, 0.0)
    gmin = np.empty_like(local)
    ghi = np.empty_like(hi)
    disc.comm.Allreduce(np.ascontiguousarray(local), gmin, op=MPI.MIN)
    disc.comm.Allreduce(np.ascontiguousarray(hi), ghi, op=MPI.MAX)
    # relative to the field's size, with the absolute tolerance as a floor: a field that
    # decays to zero everywhere (oxygen without vessels) may round below zero by ~atol
    bad = np.nonzero(gmin < -(tol * ghi + floor))[0]
    if not finite:
        return "NaN or infinite values in the solution"
    if len(bad):
        k = int(bad[0])
        return (f"{names[k]} fell to {gmin[k]:.3g} (below -negative_tolerance*max|{names[k]}| "
                "- atol)")
    return None


def _first_reason(comm: MPI.Comm, why: str | None) -> str:
    """The failure reason of the lowest rank that has one (collective)."""
    reasons = comm.allgather(why)
    return next((r for r in reasons if r), "unknown failure")


def _restore(disc: Any, st: LoopState, ctrl: Controller, outdir: Path, comm: MPI.Comm,
             nloc: int, checkpoint: Any, couplings: Any) -> tuple[bool, list[np.ndarray]]:
    """Load the checkpoint into ``disc``/``st``/``ctrl``; (False, history) when there is none."""
    try:
        state, x, vals = checkpoint.load(outdir, comm)
    except FileNotFoundError:
        log.warning("no checkpoint in %s: restarting from the initial state", outdir)
        return False, [disc.u.x.array[:nloc].copy()]
    except ValueError as exc:
        raise ConfigError("resume", str(exc)) from None
    state = comm.bcast(state, root=0)
    try:
        arrays = checkpoint.restore_arrays(comm, disc.V, x, vals)
    except ValueError as exc:
        raise ConfigError("resume", str(exc)) from None
    for target, key in ((disc.u_n, "u_n"), (disc.u_nm1, "u_nm1"), (disc.u, "u_n")):
        target.x.array[:nloc] = arrays[key]
        target.x.scatter_forward()
    hist = [arrays["u_n"].copy(), arrays["u_nm1"].copy()]
    if "u_nm2" in arrays:
        hist.append(arrays["u_nm2"].copy())
    hist = hist[: int(state["history"])]
    for k in LoopState.__dataclass_fields__:
        if k in state:
            setattr(st, k, state[k])
    ctrl.dt, ctrl.rejected, ctrl.failures = st.dt, st.rejected, st.failures
    couplings.resume(state.get("couplings", {}), st.t, st.dts[-1] if st.dts else None)
    log.info("resuming at t=%.6g (step %d) from %s", st.t, st.steps, outdir / checkpoint.FILENAME)
    return True, hist
