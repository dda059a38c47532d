"""A simulation as a Python object: built once, then stepped or solved.

::

    import tumorpde as tp

    problem = tp.Problem(tp.load("quickstart"))
    result = problem.solve()                   # in memory: nothing is written
    result.observables["total_cells"]          # numpy array, one value per row
    problem.fields["cells"]                    # the dolfinx.fem.Function of a species

    problem = tp.Problem(tp.load("quickstart"))
    while problem.t < problem.end:             # or step by step
        problem.step()
        problem.fields["signal"].x.array[:] *= 0.5   # change the state between steps

A :class:`Problem` validates its config (with exactly the checks of the TOML loader),
builds the mesh, spaces, forms and solver once, and owns the time integration: the BDF
history, step-size control, rejected and retried steps, milestones (output, checkpoint
and dose times), drug levels, scalar compartments and radiotherapy fractions.  What is
written, and when, is the business of :mod:`tumorpde.trackers`: ``solve(output=DIR)``
adds the run-directory trackers (fields, observables, run.json, checkpoints), and the
command line is exactly that.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpi4py import MPI

import numpy as np

from tumorpde.errors import ConfigError, SolverError
from tumorpde.model.config import check, find_config, load, load_dict
from tumorpde.model.objects import Config
from tumorpde.signals import Interrupted, StopRequest
from tumorpde.time.stepping import Controller, Milestones, bdf_coefficients

__all__ = ["Problem", "Result", "LoopState", "load_config", "build"]

log = logging.getLogger("tumorpde")


def load_config(source: str | Path | dict[str, Any] | Config,
                overrides: Sequence[str] | None = None) -> Config:
    """A config from a TOML file, the name of a bundled example, a dict or a :class:`Config`.

    Args:
        source: Path of a TOML file, a bundled example's name (``tumorpde list``), a
            dict with the TOML file's tables, or a :class:`~tumorpde.model.objects.Config`.
        overrides: ``--set`` strings (``"time.end=5"``) applied to a file or dict.

    Raises:
        ConfigError: The file is missing or invalid, or a value is wrong.
    """
    if isinstance(source, Config):
        if overrides:
            raise ConfigError("--set", "overrides apply to a TOML file or a dict, not to a "
                                       "Config object (change its attributes instead)")
        return source
    if isinstance(source, dict):
        from tumorpde.model.config import apply_overrides, parse_set

        return load_dict(apply_overrides(source, [parse_set(s) for s in (overrides or [])]))
    if not isinstance(source, str | os.PathLike):
        raise ConfigError("", f"expected a TOML path, an example name, a dict or a Config, "
                              f"got {type(source).__name__}")
    return load(find_config(str(source)), list(overrides or []))


def build(spec: Any, comm: MPI.Comm, mesh: Any = None, cell_tags: Any = None,
          facet_tags: Any = None, regions: dict[str, int] | None = None,
          boundaries: dict[str, int] | None = None) -> tuple[Any, Any]:
    """The domain and discretisation of a checked model (collective).

    Without ``mesh`` the domain is built from ``[mesh]``; with a ``dolfinx.mesh.Mesh``
    (and optional meshtags with their names) it is used as it is.
    """
    from tumorpde.fem.discretisation import Discretisation
    from tumorpde.fem.mesh import build_domain, domain_from_mesh

    cfg = spec.config
    if mesh is None:
        domain = build_domain(cfg.mesh, comm)
    else:
        domain = domain_from_mesh(mesh, cfg.mesh, cell_tags, facet_tags, regions, boundaries)
    for region, key in spec.regions_used.items():
        if region not in domain.regions:
            raise ConfigError(key, f"unknown region {region!r} (mesh regions: "
                                   f"{', '.join(sorted(domain.regions)) or 'none'})")
    return domain, Discretisation(spec, domain)


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


@dataclass
class Result:
    """The outcome of :meth:`Problem.solve`.

    Attributes:
        status: ``completed``, ``failed`` or ``interrupted``.
        t: The time reached.
        steps: Accepted steps (over the whole run, a resumed one included).
        columns: The columns of ``observables.csv``, ``t`` first.
        rows: Every observable row (one per accepted step, two at a radiotherapy fraction).
        final: The last row as a dict (without ``t``).
        minima: The smallest value of each species at the end.
        message: Why a run failed or stopped (``None`` when completed).
        outdir: The run directory (``None`` for a run in memory).
        resumable: The run stopped cleanly before its end (solver failure or signal, on
            every rank): its state is worth a checkpoint.
        problem: The problem, whose ``fields`` hold the final state.
    """

    status: str
    t: float
    steps: int
    columns: list[str]
    rows: list[list[float]]
    final: dict[str, float]
    minima: dict[str, float]
    message: str | None = None
    outdir: Path | None = None
    resumable: bool = False
    problem: Problem | None = field(default=None, repr=False)

    @property
    def observables(self) -> dict[str, np.ndarray]:
        """Every column of ``observables.csv`` (``t`` included) as a numpy array."""
        data = np.array(self.rows, dtype=float).reshape(len(self.rows), len(self.columns))
        return {c: data[:, i].copy() for i, c in enumerate(self.columns)}

    @property
    def fields(self) -> dict[str, Any]:
        """The final ``dolfinx.fem.Function`` of each species."""
        if self.problem is None:
            raise ValueError("this result holds no problem")
        return self.problem.fields

    @property
    def discretisation(self) -> Any:
        """The discretisation (spaces, forms) of the problem."""
        return None if self.problem is None else self.problem.disc

    def to_pandas(self) -> Any:
        """The observables as a ``pandas.DataFrame`` (needs pandas)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("Result.to_pandas needs pandas (pip install pandas)") from None
        return pd.DataFrame(self.observables, columns=self.columns)


class Problem:
    """A model on a mesh, ready to be stepped or solved.

    Args:
        config: A :class:`~tumorpde.model.objects.Config` (see :func:`tumorpde.load`), a TOML path,
            a bundled example's name or a dict.  It is validated with exactly the checks of
            the TOML loader; the validated copy is ``problem.config``.
        comm: The MPI communicator (every rank of it must build the problem).
        mesh: An existing ``dolfinx.mesh.Mesh`` to use instead of ``[mesh]`` (whose
            ``regions`` and ``boundaries`` conditions still apply).
        cell_tags: Cell meshtags of ``mesh``: the regions.
        facet_tags: Facet meshtags of ``mesh``: the boundaries.
        regions: Region name -> cell tag value (default: each value named by itself).
        boundaries: Boundary name -> facet tag value (default likewise).

    Raises:
        ConfigError: Bad input, on every rank alike.
    """

    def __init__(self, config: Config | str | Path | dict[str, Any],
                 comm: MPI.Comm = MPI.COMM_WORLD, mesh: Any = None, *,
                 cell_tags: Any = None, facet_tags: Any = None,
                 regions: dict[str, int] | None = None,
                 boundaries: dict[str, int] | None = None) -> None:
        self.created = time.perf_counter()
        self.spec = check(load_config(config))
        cfg = self.config = self.spec.config
        self.comm = comm = mesh.comm if mesh is not None and hasattr(mesh, "comm") else comm
        self.domain, self.disc = build(self.spec, comm, mesh, cell_tags, facet_tags, regions,
                                       boundaries)
        disc = self.disc
        disc.set_initial()
        from tumorpde.time.coupling import Couplings

        self.couplings = Couplings(disc)  # drug levels, scalar compartments, fractions
        self._couplings_start = self.couplings.state()
        tc = cfg.time
        span = tc.end - tc.start
        self.output_every = tc.output_every or span / 10.0
        self.checkpoint_every = cfg.output.checkpoint_every or self.output_every
        self.names: list[str] = list(self.spec.names)
        self._nloc = disc.V.dofmap.index_map.size_local * disc.n
        self._nonneg = np.array([cfg.species[n].nonnegative for n in self.names])
        self._cumulative = {n for n, o in self.spec.observables.items() if o.cumulative}
        self.columns: list[str] = (["t"] + [f"total_{n}" for n in self.names] +
                                   self.couplings.columns() + list(self.spec.observables))
        #: whether a tracker writes checkpoints (set by tumorpde.trackers.Checkpoints)
        self.checkpointing = False
        self._fields: dict[str, Any] | None = None
        self._snapshot: dict[str, np.ndarray] = {}
        self.solver = None
        self._start_loop(())

    def _start_loop(self, times: Sequence[float]) -> None:
        """The loop at ``time.start``: milestones (with ``times``), controller, rows, solver."""
        tc, disc = self.config.time, self.disc
        span = tc.end - tc.start
        self.milestones = Milestones.build(tc.start, tc.end,
                                           [self.output_every, self.checkpoint_every],
                                           [*self.couplings.milestones(tc.start, tc.end), *times])
        self.controller = Controller(tc.scheme, tc.dt, tc.adaptive, tc.dt_min or 1e-9 * span,
                                     tc.dt_max or self.output_every, tc.rtol, tc.atol)
        self.state = LoopState(t=tc.start, dt=tc.dt, running={n: 0.0 for n in self._cumulative})
        self._hist: list[np.ndarray] = [disc.u.x.array[: self._nloc].copy()]
        self.rows: list[list[float]] = []
        self.resumed = False
        self._started = False
        self._rebuild = False
        self.destroy()
        self.solver = self._new_solver()

    def reset(self, parameters: dict[str, float] | None = None,
              times: Sequence[float] = ()) -> None:
        """Go back to ``time.start``, optionally with new parameter values (no recompilation).

        Args:
            parameters: ``[parameters]`` name -> new value in the model's units; the
                initial conditions and boundary values are evaluated again with them.  A
                field parameter (``field = true``) takes a number (everywhere) or the
                array of its function's values (``problem.parameter_fields[name].x.array``:
                owned nodes, then ghosts).
            times: Extra times that steps must land on exactly (e.g. the times of data).

        Raises:
            ConfigError: An unknown parameter name or a non-finite value.
        """
        disc = self.disc
        for name, value in (parameters or {}).items():
            if name not in self.spec.parameters:
                raise ConfigError(f"parameters.{name}", "is not a parameter of the model "
                                  f"(parameters: {', '.join(sorted(self.spec.parameters))})")
            arr = np.asarray(value, dtype=float)
            if not np.all(np.isfinite(arr)):
                raise ConfigError(f"parameters.{name}", "must be finite")
            if name in disc.parameter_fields:
                f = disc.parameter_fields[name]
                if arr.ndim and arr.shape != f.x.array.shape:
                    raise ConfigError(f"parameters.{name}", f"a field takes a number or "
                                      f"{f.x.array.size} values, got {arr.size}")
                f.x.array[:] = arr
            elif arr.ndim:
                raise ConfigError(f"parameters.{name}", "is a number (not a field parameter)")
            else:
                disc.constants[name].value = float(arr)
        disc.t.value = self.config.time.start
        disc.set_initial()
        self.couplings.restore(self._couplings_start)
        self._start_loop(times)
        self._sync_out()

    @property
    def parameters(self) -> dict[str, float]:
        """The current value of every scalar ``[parameters]`` entry (in the model's units)."""
        return {n: float(self.disc.constants[n].value) for n in self.spec.parameters
                if n not in self.spec.fields}

    @property
    def parameter_fields(self) -> dict[str, Any]:
        """Field parameter name -> its ``dolfinx.fem.Function`` (set it between runs)."""
        return dict(self.disc.parameter_fields)

    # ------------------------------------------------------------------ state
    @property
    def t(self) -> float:
        """The current time."""
        return self.state.t

    @property
    def start(self) -> float:
        """``time.start``."""
        return self.config.time.start

    @property
    def end(self) -> float:
        """``time.end``."""
        return self.config.time.end

    @property
    def done(self) -> bool:
        """Whether the problem has reached ``time.end``."""
        return self.state.t >= self.end - self.milestones.tol

    @property
    def fields(self) -> dict[str, Any]:
        """Species name -> its ``dolfinx.fem.Function`` (the current state).

        The functions may be changed between steps (values, then ``x.scatter_forward()``
        if only owned values were set); the next step starts from the changed state, and
        the multistep history restarts there, as after a radiotherapy fraction.
        """
        if self._fields is None:
            from dolfinx import fem

            self._fields = {n: fem.Function(self.disc.V0, name=n) for n in self.names}
            self._sync_out()
        return self._fields

    def _sync_out(self) -> None:
        """Copy the state into the species functions (kept in step once they exist)."""
        if self._fields is None:
            return
        u, n = self.disc.u.x.array, self.disc.n
        for k, name in enumerate(self.names):
            f = self._fields[name]
            f.x.array[:] = u[k::n]
            self._snapshot[name] = f.x.array.copy()

    def _take_changes(self) -> None:
        """Copy changed species functions into the state (collective, on every step)."""
        flags = np.zeros(len(self.names), dtype=np.int32)
        if self._fields is not None and self._snapshot:
            for k, n in enumerate(self.names):
                if not np.array_equal(self._fields[n].x.array, self._snapshot[n]):
                    flags[k] = 1
        self.comm.Allreduce(MPI.IN_PLACE, flags, op=MPI.MAX)
        if not flags.any():
            return
        disc, n = self.disc, self.disc.n
        for k in np.nonzero(flags)[0]:
            if self._fields is not None:
                disc.u.x.array[k::n] = self._fields[self.names[k]].x.array
        disc.u.x.scatter_forward()  # owners' values win over ghosts set on one rank only
        disc.u_n.x.array[:] = disc.u.x.array
        self._hist, self.state.dts = [disc.u.x.array[: self._nloc].copy()], []
        self._sync_out()
        log.info("state changed at t=%.6g: multistep history restarted", self.t)

    def _new_solver(self) -> Any:
        from tumorpde.solvers.snes import step_solver

        return step_solver(self.disc, self.config.solver, dt=self.controller.dt)

    def is_output_time(self, t: float) -> bool:
        """Whether ``t`` is an output time (the start, multiples of output_every, the end)."""
        tc = self.config.time
        return abs(t - tc.start) <= self.milestones.tol or \
            self.milestones.hit(t, self.output_every, tc.start)

    def is_checkpoint_time(self, t: float) -> bool:
        """Whether a checkpoint is due at ``t`` (never at the end of a run)."""
        tc = self.config.time
        return self.milestones.hit(t, self.checkpoint_every, tc.start) and \
            t < tc.end - self.milestones.tol

    def output_times(self) -> list[float]:
        """Every output time of the run: the start, then the milestones on the output grid."""
        ms, start = self.milestones, self.config.time.start
        return [start] + [m for m in ms.times if ms.hit(m, self.output_every, start)]

    # ------------------------------------------------------------------ observables
    def observe(self) -> dict[str, float]:
        """Species totals, scalar compartments and observables now (collective; no row).

        Changes made to :attr:`fields` are taken into the state first.
        """
        self._take_changes()
        totals, extra = self._values(self.t)
        return {**{f"total_{n}": v for n, v in zip(self.names, totals, strict=True)}, **extra}

    def _values(self, t: float) -> tuple[list[float], dict[str, float]]:
        """The species totals and the other columns (scalars, observables) at ``t``."""
        extra = self.disc.observables()
        extra.update(self.couplings.row(t, extra))
        return self.disc.totals(), extra

    def _record_row(self, t: float) -> None:
        st = self.state
        totals, extra = self._values(t)
        for n in self._cumulative:  # time integral by the trapezoidal rule over accepted steps
            if n in st.previous:
                t_prev, v_prev = st.previous[n]
                st.running[n] += 0.5 * (t - t_prev) * (v_prev + extra[n])
            st.previous[n] = [t, extra[n]]
            extra[n] = st.running[n]
        row = [t] + totals + [extra[c] for c in self.columns[1 + len(self.names):]]
        self.rows.append([float(v) for v in row])
        st.rows += 1
        st.last = {**{f"total_{n}": v for n, v in zip(self.names, totals, strict=True)}, **extra}

    def begin(self) -> None:
        """Record the initial rows (and a radiotherapy fraction at the start); idempotent.

        :meth:`step` and :meth:`solve` call it; call it yourself to see the initial rows.
        """
        if self._started:
            return
        self._take_changes()
        self._started = True
        t = self.state.t
        self.disc.t.value = t
        if not self.resumed:
            self._record_row(t)
            if self.couplings.start(t, self.milestones.tol):
                # radiotherapy at the start: rows before and after; history from after it
                self._hist = [self.disc.u.x.array[: self._nloc].copy()]
                self._record_row(t)
            self.state.outputs = 1
        self._sync_out()

    # ------------------------------------------------------------------ stepping
    def step(self) -> float:
        """Take one accepted step (failed and rejected attempts are retried inside).

        Returns:
            The new time.

        Raises:
            SolverError: A step failed ``time.max_failures`` times in a row, or the
                error tolerance cannot be met even with ``dt_min``.
            RuntimeError: The problem has already reached ``time.end``.
        """
        self.begin()
        self._take_changes()
        if self.done:
            raise RuntimeError(f"the problem has reached time.end = {self.end:g}")
        st, ctrl, ms, disc = self.state, self.controller, self.milestones, self.disc
        tc = self.config.time
        if self._rebuild or self.solver is None:
            # a fresh solver after each checkpoint time, as a resumed run starts
            self.destroy()
            self.solver = self._new_solver()
            self._rebuild = False
        t = st.t
        fails_in_row = 0
        while True:
            milestone = ms.next_after(t)
            dt_prev = st.dts[-1] if st.dts else None
            dt = ctrl.propose(t, milestone, dt_prev)
            ok, why = self._attempt(t, dt, dt_prev)
            if not ok:
                disc.u.x.array[:] = disc.u_n.x.array
                fails_in_row += 1
                if not ctrl.on_failure(dt) or fails_in_row >= tc.max_failures:
                    raise SolverError(
                        f"step from t={t:.6g} failed {fails_in_row} times (last: dt={dt:.3g}, "
                        f"{why})" + self._written(t))
                log.info("step t=%.6g dt=%.3g failed (%s): retrying with dt=%.3g",
                         t, dt, why, ctrl.dt)
                continue
            unew = disc.u.x.array[: self._nloc]
            err = ctrl.estimate(unew, self._hist, st.dts, dt, self.comm) if tc.adaptive else 0.0
            if ctrl.accept(err, dt):
                break
            disc.u.x.array[:] = disc.u_n.x.array
            if dt <= ctrl.dt_min * (1 + 1e-12):
                raise SolverError(f"the error tolerance cannot be met at t={t:.6g} "
                                  f"even with dt_min={ctrl.dt_min:.3g}")
        self._accept(t, milestone, dt, unew)
        return st.t

    def _written(self, t: float) -> str:
        """The note on the checkpoint that a failure leaves (only where one is written)."""
        return f"; checkpoint of t={t:.6g} written" if self.checkpointing else ""

    def _attempt(self, t: float, dt: float, dt_prev: float | None) -> tuple[bool, str | None]:
        """Solve the step from ``t`` of size ``dt``; whether every rank accepts it, and why not."""
        disc, st = self.disc, self.state
        c = bdf_coefficients(self.config.time.scheme, dt, dt_prev)
        for const, val in zip(disc.coeffs, c, strict=True):
            const.value = val
        disc.t.value = t + dt
        disc.update_boundary_values()
        # drug levels over the step; scalars at its end (the same on every rank)
        converged = self.couplings.begin_step(t, t + dt, c)
        why = None if converged else "the scalar compartments did not converge"
        if converged:
            t0 = time.perf_counter()
            res = self.solver.solve()  # initial guess: the previous solution
            st.t_solve += time.perf_counter() - t0
            st.newton += res.iterations
            st.linear += res.linear_iterations
            converged = res.converged
            why = f"SNES reason {res.reason}"
            if res.converged:
                why = self._state_problem()
        ok = self.comm.allreduce(int(converged and why is None), op=MPI.MIN) == 1
        if not ok:
            reasons = self.comm.allgather(why)  # the reason of the lowest rank that has one
            why = next((r for r in reasons if r), "unknown failure")
        return ok, why

    def _accept(self, t: float, milestone: float, dt: float, unew: np.ndarray) -> None:
        st, ms, disc = self.state, self.milestones, self.disc
        st.steps += 1
        t_prev = t
        t = milestone if abs(t + dt - milestone) <= ms.tol else t + dt
        st.t = t
        self._hist = [unew.copy()] + self._hist[:2]
        st.dts = (st.dts + [dt])[-3:]
        disc.u_nm1.x.array[:] = disc.u_n.x.array
        disc.u_n.x.array[:] = disc.u.x.array
        self.couplings.accept()
        _injected_fault(self.comm, st.steps)
        self._record_row(t)
        if self.couplings.apply_fractions(t_prev, t, ms.tol):
            # radiotherapy: the state jumps (a second row at t); restart the history
            self._hist, st.dts = [disc.u.x.array[: self._nloc].copy()], []
            self._record_row(t)
        if self.is_output_time(t):
            st.outputs += 1
        if self.checkpointing and self.is_checkpoint_time(t) and not \
                (self.solver is not None and self.solver.reuse):
            # a fresh solver after each checkpoint, as a resumed run starts (in memory,
            # without checkpoints, the solver and what it keeps live on; a linear problem's
            # kept Jacobian and factorisation are the ones a fresh solver makes again)
            self._rebuild = True
        self._sync_out()

    def _state_problem(self) -> str | None:
        """Why the new solution is unacceptable on this rank (NaN, or too negative), or None."""
        disc, tc = self.disc, self.config.time
        arr = disc.u.x.array[: self._nloc].reshape(-1, disc.n)
        if arr.size:  # two passes: NaN and infinities reach the minimum or the maximum
            lo, top = arr.min(axis=0), arr.max(axis=0)
            finite = bool(np.isfinite(lo).all() and np.isfinite(top).all())
            hi = np.maximum(np.abs(lo), np.abs(top))
        else:
            finite = True
        if not finite or not arr.size:
            lo, hi = np.full(disc.n, np.inf), np.zeros(disc.n)
        local = np.where(self._nonneg, lo, 0.0)
        gmin = np.empty_like(local)
        ghi = np.empty_like(hi)
        self.comm.Allreduce(np.ascontiguousarray(local), gmin, op=MPI.MIN)
        self.comm.Allreduce(np.ascontiguousarray(hi), ghi, op=MPI.MAX)
        # relative to the field's size, with the absolute tolerance as a floor: a field that
        # decays to zero everywhere (oxygen without vessels) may round below zero by ~atol
        bad = np.nonzero(gmin < -(tc.negative_tolerance * ghi + tc.atol))[0]
        if not finite:
            return "NaN or infinite values in the solution"
        if len(bad):
            k = int(bad[0])
            name = self.names[k]
            return f"{name} fell to {gmin[k]:.3g} (below -negative_tolerance*max|{name}| - atol)"
        return None

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_data(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The arrays and loop state that a checkpoint holds (see :mod:`tumorpde.io.checkpoint`)."""
        from tumorpde.model.config import to_dict

        st, ctrl, disc = self.state, self.controller, self.disc
        arrays = {"u_n": disc.u_n.x.array[: self._nloc], "u_nm1": disc.u_nm1.x.array[: self._nloc]}
        if len(self._hist) > 2:
            arrays["u_nm2"] = self._hist[2]
        st.dt, st.rejected, st.failures = ctrl.dt, ctrl.rejected, ctrl.failures
        state = st.to_json() | {"history": len(self._hist), "config": to_dict(self.config),
                                "couplings": self.couplings.state()}
        return arrays, state

    def restore(self, outdir: str | Path) -> bool:
        """Continue from the checkpoint in ``outdir`` (collective); False when there is none.

        The rows recorded before the checkpoint are read back from ``observables.csv``.
        """
        from tumorpde.io import checkpoint

        outdir = Path(outdir)
        comm, disc, st, nloc = self.comm, self.disc, self.state, self._nloc
        try:
            state, x, vals = checkpoint.load(outdir, comm)
        except FileNotFoundError:
            log.warning("no checkpoint in %s: restarting from the initial state", outdir)
            return False
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
        self._hist = hist[: int(state["history"])]
        for k in LoopState.__dataclass_fields__:
            if k in state:
                setattr(st, k, state[k])
        ctrl = self.controller
        ctrl.dt, ctrl.rejected, ctrl.failures = st.dt, st.rejected, st.failures
        self.couplings.resume(state.get("couplings", {}), st.t, st.dts[-1] if st.dts else None)
        self.rows = _read_rows(outdir, self.columns, st.rows, comm)
        self.resumed = True
        self._sync_out()
        log.info("resuming at t=%.6g (step %d) from %s", st.t, st.steps,
                 outdir / checkpoint.FILENAME)
        return True

    # ------------------------------------------------------------------ solving
    def counters(self) -> dict[str, Any]:
        """Steps, rejected steps, failed solves, iterations, outputs, rows, dose counts."""
        st, ctrl = self.state, self.controller
        return {"steps": st.steps, "rejected_steps": ctrl.rejected,
                "failed_solves": ctrl.failures, "newton_iterations": st.newton,
                "linear_iterations": st.linear, "outputs": st.outputs,
                "observable_rows": st.rows, **self.couplings.summary()}

    def minima(self) -> dict[str, float]:
        """The smallest value of each species now (collective)."""
        return dict(zip(self.names, self.disc.minima(), strict=True))

    def solve(self, output: str | Path | None = None, trackers: Iterable[Any] = (), *,
              progress: bool | None = None, signals: bool | None = None,
              argv: list[str] | None = None, previous: dict[str, Any] | None = None) -> Result:
        """Run to ``time.end``.

        Args:
            output: A run directory to write (fields.xdmf/h5, observables.csv, run.json,
                checkpoints); nothing is written without it.
            trackers: More :class:`~tumorpde.trackers.Tracker` objects (a callable is
                wrapped in a :class:`~tumorpde.trackers.Callback` called every step).
            progress: Show a progress bar on rank 0 (default ``output.progress`` when
                writing a run directory, no bar in memory).
            signals: Stop cleanly on SIGTERM/SIGINT with a checkpoint (default: with
                ``output``).
            argv: The command line recorded in run.json.
            previous: run.json of the interrupted run in ``output`` to continue (see
                :func:`tumorpde.simulation.resume`).

        Returns:
            The :class:`Result` of a completed run.

        Raises:
            SolverError: The run failed (run.json says failed; a checkpoint is written).
            Interrupted: SIGTERM/SIGINT (run.json says interrupted; checkpoint written).
            ConfigError: A run directory that cannot be written or continued.
        """
        from tumorpde import trackers as tk

        user = [tk.as_tracker(x) for x in trackers]
        if output is not None and previous is None and self.state.steps > 0:
            raise RuntimeError("solve(output=...) writes a run from time.start: this problem has "
                               "already taken steps (build a new Problem)")
        show = (self.config.output.progress if output is not None else False) \
            if progress is None else progress
        lock = None
        if output is not None:
            outdir = Path(output)
            if self.comm.rank == 0:
                outdir.mkdir(parents=True, exist_ok=True)
            self.comm.Barrier()
            from tumorpde.io.output import RunLock

            lock = RunLock(self.comm, outdir)
        try:
            if output is not None and previous is not None:
                self.restore(Path(output))
            chain = (tk.run_directory(self, Path(output), argv, previous) if output is not None
                     else []) + user + ([tk.Progress()] if show else [])
            return self._loop(chain, Path(output) if output is not None else None,
                              signals if signals is not None else output is not None)
        finally:
            if lock is not None:
                lock.release()

    def _loop(self, chain: list[Any], outdir: Path | None, signals: bool) -> Result:
        from tumorpde.trackers import due

        # the start is handled by the trackers unless the run went past it before solve()
        fresh = not self.resumed and self.state.steps == 0
        self.begin()
        for tr in chain:
            tr.initialize(self)
        if fresh:
            for tr in chain:
                if due(tr, self, self.t, start=True):
                    tr.handle(self, self.t)
        for tr in chain:
            tr.started(self)
        status, message, collective = "completed", None, True
        stop = StopRequest(self.comm) if signals else None
        raised: BaseException | None = None
        try:
            if stop is not None:
                stop.__enter__()
            while not self.done:
                signum = stop.requested() if stop is not None else 0
                if signum:
                    note = f"; checkpoint written (tumorpde resume {outdir})" \
                        if self.checkpointing else ""
                    raise Interrupted(signum, f"stopped by signal {signum} at t={self.t:.6g}"
                                              + note)
                t = self.step()
                for tr in chain:
                    if due(tr, self, t):
                        tr.handle(self, t)
        except SolverError as exc:
            status, message, raised = "failed", str(exc), exc
        except Interrupted as exc:
            status, message, raised = "interrupted", str(exc), exc
        except KeyboardInterrupt as exc:
            status, message, raised = "interrupted", f"interrupted at t={self.t:.6g}", exc
            collective = self.comm.size == 1
        except BaseException as exc:
            # possibly raised on this rank alone: no collective clean-up (the CLI aborts all)
            status, message, raised = "failed", f"{type(exc).__name__}: {exc}", exc
            collective = self.comm.size == 1
        finally:
            if stop is not None:
                stop.__exit__(None, None, None)
        final = status == "completed" or (status == "failed" and isinstance(raised, SolverError))
        result = Result(status, self.t, self.state.steps, list(self.columns), self.rows,
                        dict(self.state.last), self.minima() if final else {}, message, outdir,
                        collective and isinstance(raised, SolverError | Interrupted), self)
        for tr in chain:
            tr.finalize(self, result, collective)
        if collective:
            self.destroy()  # its PETSc options go with it; step() builds a new one
        if raised is not None:
            raise raised
        if not math.isclose(self.t, self.end, rel_tol=0, abs_tol=10 * self.milestones.tol):
            raise SolverError(f"stopped at t={self.t} before end={self.end}")  # pragma: no cover
        return result

    def destroy(self) -> None:
        """Free the PETSc objects of the solver (collective)."""
        if self.solver is not None:
            self.solver.destroy()
            self.solver = None


def _read_rows(outdir: Path, columns: list[str], n: int, comm: MPI.Comm) -> list[list[float]]:
    """The first ``n`` rows of a run's observables (rank 0 reads; every rank gets them)."""
    from tumorpde.io.rundir import read_observables

    rows, error = None, None
    if comm.rank == 0:
        try:
            table = read_observables(outdir)
            if list(table) != columns:
                raise ConfigError("", "its columns differ from the run's")
            data = np.column_stack([table[c] for c in columns]) if columns else np.empty((0, 0))
            if len(data) < n:
                raise ConfigError("", f"it has fewer than {n} complete rows")
            rows = data[:n].tolist()
        except ConfigError as exc:
            error = f"cannot continue {outdir / 'observables.csv'}: {exc.message}"
    error = comm.bcast(error, root=0)
    if error:
        raise ConfigError("resume", error)
    return comm.bcast(rows, root=0)


def _injected_fault(comm: MPI.Comm, step: int) -> None:
    """Testing aid: ``TUMORPDE_FAULT_INJECTION=RANK:STEP`` raises on one rank after that step."""
    spec = os.environ.get("TUMORPDE_FAULT_INJECTION")
    if spec:
        rank, _, at = spec.partition(":")
        if comm.rank == int(rank) and step == int(at):
            raise RuntimeError(f"injected fault on rank {rank} at step {at}")
