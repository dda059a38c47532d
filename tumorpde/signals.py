"""Graceful termination: SIGTERM and SIGINT ask the time loop to stop at the next step.

Slurm pre-emption and wall-time limits send SIGTERM (then SIGKILL after a grace
period); ``mpiexec`` forwards SIGTERM and SIGINT (Ctrl-C) to every rank.  While a
run is in its time loop, these signals only set a flag; the loop checks it after
every step (collectively, so all ranks stop together even if only one was
signalled), writes a checkpoint of the last accepted step, records
``"interrupted"`` in ``run.json`` and ends with status ``128 + signal``.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

from mpi4py import MPI

__all__ = ["StopRequest", "Interrupted"]


class Interrupted(Exception):  # noqa: N818 - a stop, not an error
    """The run was stopped by a signal after writing a checkpoint."""

    def __init__(self, signum: int, message: str) -> None:
        self.signum = signum
        super().__init__(message)

    @property
    def exit_status(self) -> int:
        """Shell convention: 128 + signal number."""
        return 128 + self.signum


class StopRequest:
    """Context manager that turns SIGTERM/SIGINT into a flag (the previous handlers return after)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, comm: MPI.Comm) -> None:
        self.comm = comm
        self.signum = 0
        self.handled = False
        self._old: dict[int, Any] = {}

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum

    def __enter__(self) -> StopRequest:
        try:
            for s in self.SIGNALS:
                self._old[s] = signal.signal(s, self._handler)
        except ValueError:  # not the main thread: leave the handlers alone
            self._old.clear()
        return self

    def __exit__(self, *exc: object) -> None:
        outer = self._old.get(self.signum)
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old.clear()
        # a signal that came too late for this loop (during its last step) is passed on to
        # an enclosing StopRequest (a sweep around a run), so that it is not lost
        if self.signum and not self.handled and isinstance(getattr(outer, "__self__", None),
                                                            StopRequest):
            outer.__self__.signum = self.signum

    def requested(self) -> int:
        """The signal received on any rank (0 if none); collective."""
        got = int(self.comm.allreduce(self.signum, op=MPI.MAX))
        self.handled = self.handled or bool(got)
        return got
