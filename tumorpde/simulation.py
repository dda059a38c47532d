"""Running a simulation into a run directory.

A run is a :class:`~tumorpde.problem.Problem` solved with the run-directory trackers
(:func:`tumorpde.trackers.run_directory`).

:func:`run` is what ``tumorpde run`` does::

    import tumorpde as tp
    result = tp.Problem(tp.load("model.toml")).solve(output="out/model")

and :func:`resume` what ``tumorpde resume DIR`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mpi4py import MPI

from tumorpde.errors import ConfigError
from tumorpde.model.config import Spec, check, load_dict
from tumorpde.model.objects import Config
from tumorpde.problem import LoopState, Problem, Result, build

__all__ = ["run", "resume", "prepare", "Result", "RunResult", "LoopState"]

#: the result of :func:`run` (the same class as :class:`tumorpde.problem.Result`)
RunResult = Result


def prepare(cfg: Config, comm: MPI.Comm = MPI.COMM_WORLD,
            spec: Spec | None = None) -> tuple[Spec, Any, Any]:
    """Check a config (unless its ``spec`` is given) and build its domain and discretisation."""
    spec = check(cfg) if spec is None else spec
    domain, disc = build(spec, comm)
    return spec, domain, disc


def _load_previous(outdir: Path, comm: MPI.Comm) -> dict[str, Any]:
    """``run.json`` of the run to resume (rank 0 reads, every rank gets it or the error)."""
    from tumorpde.io.rundir import read_info

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
           progress: bool | None = None) -> Result:
    """Continue an interrupted run in ``outdir`` from its last checkpoint.

    The config is the one recorded in ``run.json``; the number of ranks may differ
    from the original run's.  Without a checkpoint the run restarts from its
    initial state.  The outputs are continued as if the run had never stopped.
    """
    outdir = Path(outdir)
    previous = _load_previous(outdir, comm)
    cfg = load_dict(previous["config"])
    return run(cfg, outdir, comm, argv, progress, previous=previous)


def run(cfg: Config, outdir: str | Path, comm: MPI.Comm = MPI.COMM_WORLD,
        argv: list[str] | None = None, progress: bool | None = None,
        previous: dict[str, Any] | None = None) -> Result:
    """Run a simulation and write its outputs into ``outdir``.

    With ``previous`` (the ``run.json`` of an interrupted run in ``outdir``; see
    :func:`resume`) the run continues from the checkpoint in ``outdir``.

    Raises:
        ConfigError: Bad input (raised on all ranks, before anything is written).
        SolverError: A step failed ``time.max_failures`` times in a row or fell below
            ``dt_min`` (``run.json`` says failed; a checkpoint of the last good step is written).
        Interrupted: SIGTERM/SIGINT (``run.json`` says interrupted; checkpoint written).
    """
    return Problem(cfg, comm).solve(outdir, progress=progress, argv=argv, previous=previous)
