"""Trackers: what a run does besides stepping, each on its own schedule.

A tracker is called by :meth:`tumorpde.problem.Problem.solve`: ``initialize`` once
before the first step, ``handle`` at the times its ``interval`` names, ``finalize``
once at the end (whatever the end: completed, failed or interrupted).  ``interval`` is

- ``"step"``: after every accepted step (and at the start);
- ``"output"``: at the output times (the start, every ``time.output_every``, the end);
- ``"checkpoint"``: at the checkpoint times (``output.checkpoint_every``, never the end);
- ``"end"``: never between steps (only ``finalize``);
- a number: at the first step at or after each multiple of it from the start.

The run directory is four trackers (:func:`run_directory`): :class:`Checkpoints`,
:class:`Fields` (``fields.xdmf``/``.h5``), :class:`Observables` (``observables.csv``) and
:class:`RunJson` (``run.json``).  A callable passed to ``solve(trackers=...)`` becomes a
:class:`Callback` called every step.

Example::

    seen = []
    problem.solve(trackers=[tp.Callback(lambda p, t: seen.append(p.observe()), "output")])
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["Tracker", "Callback", "Progress", "Fields", "Observables", "RunJson",
           "Checkpoints", "run_directory", "as_tracker", "due"]

INTERVALS = ("step", "output", "checkpoint", "end")


class Tracker:
    """Base class: override what you need.

    Attributes:
        interval: When :meth:`handle` is called (see the module's documentation).
    """

    interval: str | float = "step"

    def initialize(self, problem: Any) -> None:
        """Before the first step (after a resumed run's checkpoint is restored)."""

    def handle(self, problem: Any, t: float) -> None:
        """At the times of ``interval``; the state is the one at time ``t``."""

    def started(self, problem: Any) -> None:
        """After the start has been handled by every tracker."""

    def finalize(self, problem: Any, result: Any, collective: bool) -> None:
        """At the end; ``collective`` is False when only this rank may have stopped."""


def _check_interval(interval: str | float) -> str | float:
    if isinstance(interval, str):
        if interval not in INTERVALS:
            raise ValueError(f"tracker interval must be one of {', '.join(INTERVALS)} or a "
                             f"positive number, got {interval!r}")
        return interval
    if isinstance(interval, bool) or not isinstance(interval, int | float) or \
            not math.isfinite(interval) or interval <= 0:
        raise ValueError(f"tracker interval must be positive and finite, got {interval!r}")
    return float(interval)


def due(tracker: Tracker, problem: Any, t: float, start: bool = False) -> bool:
    """Whether ``tracker`` is to be handled at ``t`` (``start``: the first call, at the start)."""
    iv = tracker.interval
    if iv == "end":
        return False
    if iv == "step":
        return True
    if iv == "output":
        return start or problem.is_output_time(t)
    if iv == "checkpoint":
        return not start and problem.is_checkpoint_time(t)
    # a model-time interval: the first step at or after each multiple of it
    k = math.floor((t - problem.start) / float(iv) + 1e-9)
    last = tracker.__dict__.get("_last_multiple", -1)
    if start or k > last:
        tracker.__dict__["_last_multiple"] = k
        return True
    return False


class Callback(Tracker):
    """Call ``function(problem, t)`` at the times of ``interval`` (default every step)."""

    def __init__(self, function: Callable[[Any, float], Any],
                 interval: str | float = "step") -> None:
        if not callable(function):
            raise TypeError(f"Callback needs a callable, got {type(function).__name__}")
        self.function = function
        self.interval = _check_interval(interval)

    def handle(self, problem: Any, t: float) -> None:
        """Call the function."""
        self.function(problem, t)


def as_tracker(obj: Any) -> Tracker:
    """``obj`` itself if it is a tracker; a callable becomes a :class:`Callback`."""
    if isinstance(obj, Tracker):
        _check_interval(obj.interval)
        return obj
    if callable(obj):
        return Callback(obj)
    raise TypeError(f"expected a Tracker or a callable, got {type(obj).__name__}")


class Progress(Tracker):
    """A progress bar on rank 0 (tqdm)."""

    interval = "step"

    def __init__(self) -> None:
        self.bar: Any = None
        self.shown = 0.0

    def initialize(self, problem: Any) -> None:
        """Open the bar on rank 0."""
        if problem.comm.rank != 0:
            return
        from tqdm import tqdm

        span = problem.end - problem.start
        self.shown = problem.t
        self.bar = tqdm(total=span, initial=problem.t - problem.start, unit="t",
                        desc="tumorpde", leave=False,
                        bar_format="{l_bar}{bar}| t={n:.4g}/{total:.4g} [{elapsed}<{remaining}]")

    def handle(self, problem: Any, t: float) -> None:
        """Advance the bar to ``t``."""
        if self.bar is not None and t > self.shown:
            self.bar.update(t - self.shown)
            self.shown = t

    def finalize(self, problem: Any, result: Any, collective: bool) -> None:
        """Close the bar."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Fields(Tracker):
    """``fields.xdmf`` + ``fields.h5`` at the output times (``output.fields``, default all)."""

    interval = "output"

    def __init__(self, outdir: str | Path, names: list[str] | None = None) -> None:
        self.outdir = Path(outdir)
        self.names = names
        self.writer: Any = None

    def initialize(self, problem: Any) -> None:
        """Open or continue the output."""
        from tumorpde.io.output import FieldWriter

        cfg_fields = problem.config.output.fields
        names = self.names if self.names is not None else \
            cfg_fields if cfg_fields is not None else problem.names
        self.writer = FieldWriter(problem.disc, self.outdir, list(names), problem.output_times(),
                                  resume=problem.state.outputs if problem.resumed else None)

    def handle(self, problem: Any, t: float) -> None:
        """Write at ``t``."""
        self.writer.write(t)

    def finalize(self, problem: Any, result: Any, collective: bool) -> None:
        """Close, and record how the run ended."""
        if self.writer is not None:
            self.writer.close()


class Observables(Tracker):
    """``observables.csv``: every row the problem records, as it records it."""

    interval = "step"

    def __init__(self, outdir: str | Path) -> None:
        self.outdir = Path(outdir)
        self.writer: Any = None
        self.written = 0

    def initialize(self, problem: Any) -> None:
        """Open or continue the output."""
        from tumorpde.io.output import ObservableWriter

        self.written = len(problem.rows) if problem.resumed else 0
        self.writer = ObservableWriter(problem.comm, self.outdir, problem.columns,
                                       resume=problem.state.rows if problem.resumed else None)

    def handle(self, problem: Any, t: float) -> None:
        """Write at ``t``."""
        for row in problem.rows[self.written:]:
            self.writer.write(row)
        self.written = len(problem.rows)

    def finalize(self, problem: Any, result: Any, collective: bool) -> None:
        """Close, and record how the run ended."""
        if self.writer is not None:
            self.writer.close()


class Checkpoints(Tracker):
    """``checkpoint.h5`` at the checkpoint times, and when a run fails or is stopped.

    A completed run removes it (it only serves unfinished runs).
    """

    interval = "checkpoint"

    def __init__(self, outdir: str | Path) -> None:
        self.outdir = Path(outdir)

    def initialize(self, problem: Any) -> None:
        """Mark the problem as checkpointed (failure messages say so)."""
        problem.checkpointing = True

    def handle(self, problem: Any, t: float) -> None:
        """Write the checkpoint of the state at ``t``."""
        from tumorpde.io import checkpoint

        arrays, state = problem.checkpoint_data()
        checkpoint.save(self.outdir, problem.comm, problem.disc.V, arrays, state)

    def finalize(self, problem: Any, result: Any, collective: bool) -> None:
        """Remove the checkpoint of a completed run; write one when a run stops cleanly."""
        from tumorpde.io import checkpoint

        if result.status == "completed":
            if problem.comm.rank == 0:
                (self.outdir / checkpoint.FILENAME).unlink(missing_ok=True)
        elif collective and result.resumable:
            self.handle(problem, result.t)


class RunJson(Tracker):
    """``run.json``: the config, versions, status, counters, wall times and final values."""

    interval = "checkpoint"

    def __init__(self, outdir: str | Path, argv: list[str] | None = None,
                 previous: dict[str, Any] | None = None) -> None:
        self.outdir = Path(outdir)
        self.argv = argv
        self.previous = previous
        self.record: Any = None

    def initialize(self, problem: Any) -> None:
        """Open or continue the output."""
        from tumorpde.compat import versions
        from tumorpde.io.output import RunRecord
        from tumorpde.model.config import to_dict

        self.record = RunRecord(problem.comm, self.outdir, to_dict(problem.config), versions(),
                                self.argv, self.previous)
        self.record.t0 = problem.created

    def started(self, problem: Any) -> None:
        """Record the set-up."""
        disc = problem.disc
        self.record.update(mesh={"cells": problem.domain.num_cells_global(),
                                 "dofs": disc.V.dofmap.index_map.size_global * disc.n,
                                 "degree": disc.degree})
        self.record.data["wall_time"]["setup"] = time.perf_counter() - problem.created
        self.record.save()

    def handle(self, problem: Any, t: float) -> None:
        """Write at ``t``."""
        self.record.update(counters=problem.counters(), t=t)
        self.record.save()

    def finalize(self, problem: Any, result: Any, collective: bool) -> None:
        """Close, and record how the run ended."""
        rec = self.record
        if rec is None:
            return
        if result.minima:  # a completed run, or one whose solver gave up (collective)
            rec.update(counters=problem.counters(),
                       final={"t": result.t, "observables": result.final,
                              "minima": result.minima})
            rec.data["wall_time"]["solve"] = problem.state.t_solve
        elif result.status == "interrupted" and collective:
            rec.update(counters=problem.counters())
        rec.finish(result.status, result.message)


def run_directory(problem: Any, outdir: Path, argv: list[str] | None = None,
                  previous: dict[str, Any] | None = None) -> list[Tracker]:
    """The trackers of a run directory, in the order they run."""
    return [Checkpoints(outdir), Fields(outdir), Observables(outdir),
            RunJson(outdir, argv, previous)]
