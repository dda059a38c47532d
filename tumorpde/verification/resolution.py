"""Resolution of the bundled scenarios: each observable at the default mesh and step vs 1.5x finer.

``python -m tumorpde.verification.resolution [SCENARIO ...] [--factor F] [--out FILE]``.

For each scenario the run at its own settings (``[mesh] cells`` and ``[time] dt``) is
repeated with every ``cells`` entry multiplied by the factor (rounded) and ``dt`` divided by
it; both runs go to ``time.end``.  At each output time ``t_k = start + k*output_every`` (and
the end) the difference of each observable column is taken; its **change** is

    max_k |fine(t_k) - default(t_k)| / max_k |fine(t_k)|,

the largest difference relative to the observable's own scale over the run (a relative
change at each time would be meaningless where the observable passes through zero, as a
necrotic radius does before a core forms).  The **final change** is
``|fine(end) - default(end)| / |fine(end)|``.  An observable that is zero throughout in the
fine run has no scale: its change is reported as 0 when the default run is zero too and as
infinite otherwise.  The criterion of the project is a change of at most 5 %.

Writes a markdown report (``--out``, default ``docs/resolution.md``) and its numbers in JSON
beside it (same name, ``.json``).  Scenarios with a mesh file (no ``cells``) cannot be
refined this way and are reported as such.  Runs on any number of MPI ranks (the runs are
collective; rank 0 writes).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mpi4py import MPI

import numpy as np

__all__ = ["compare", "refine_settings", "study", "markdown", "main"]

CRITERION = 0.05
DEFAULT_SCENARIOS = ["quickstart", "fisher-kpp", "keller-segel", "spheroid", "tme-2d",
                     "tme-metastasis", "tme-3d"]


def _refined(cfg: Any, factor: float) -> tuple[list[int], float] | None:
    """``(cells, dt)`` of a loaded config refined by ``factor`` (None: a mesh file)."""
    if not cfg.mesh.cells:
        return None
    return [max(1, round(c * factor)) for c in cfg.mesh.cells], cfg.time.dt / factor


def refine_settings(cfg: Any, factor: float) -> list[str] | None:
    """``--set`` overrides that refine a loaded config by ``factor`` (None: a mesh file)."""
    fine = _refined(cfg, factor)
    if fine is None:
        return None
    return [f"mesh.cells={fine[0]!r}", f"time.dt={fine[1]!r}"]


def _at(obs: dict[str, Any], times: np.ndarray) -> dict[str, np.ndarray]:
    """Each observable column at the given times (the last row at each: after a jump)."""
    t = np.asarray(obs["t"], dtype=float)
    tol = 1e-9 * max(1.0, float(np.max(np.abs(t))))
    idx = []
    for s in times:
        hit = np.flatnonzero(np.abs(t - s) <= tol)
        idx.append(int(hit[-1]) if hit.size else int(np.argmin(np.abs(t - s))))
    return {k: np.asarray(v, dtype=float)[idx] for k, v in obs.items() if k != "t"}


def compare(coarse: dict[str, np.ndarray], fine: dict[str, np.ndarray]) -> dict[str, dict]:
    """Change and final change of every column shared by two runs (see the module doc)."""
    out = {}
    for k in coarse:
        if k not in fine:
            continue
        a, b = np.asarray(coarse[k], dtype=float), np.asarray(fine[k], dtype=float)
        scale = float(np.max(np.abs(b)))
        diff = float(np.max(np.abs(b - a)))
        if scale > 0:
            change = diff / scale
        else:
            change = 0.0 if diff == 0 else math.inf
        end = float(abs(b[-1]))
        final = abs(float(b[-1] - a[-1])) / end if end > 0 else (
            0.0 if a[-1] == b[-1] else math.inf)
        out[k] = {"default": float(a[-1]), "fine": float(b[-1]), "change": change,
                  "final_change": final}
    return out


def _run(name: str, sets: Sequence[str],
         comm: MPI.Comm) -> tuple[dict[str, Any], np.ndarray, float]:
    """The observables of a run, its output times and the seconds it took."""
    import tumorpde as tp

    t0 = time.perf_counter()
    p = tp.Problem(tp.load(name, [*sets, "output.progress=false"]), comm)
    try:
        obs = p.solve().observables
        times = np.asarray(p.output_times())
    finally:
        p.destroy()
    return obs, times, time.perf_counter() - t0


def study(scenarios: Sequence[str], factor: float = 1.5, extra: Sequence[str] = (),
          comm: MPI.Comm = MPI.COMM_WORLD, log: Any = None) -> dict[str, Any]:
    """Run every scenario at its settings and refined by ``factor``; the numbers per scenario.

    Args:
        scenarios: Bundled names or config paths.
        factor: Refinement of the mesh (cells per dimension) and of the step.
        extra: ``--set`` overrides applied to both runs (e.g. a shorter ``time.end``).
        comm: Communicator of the runs.
        log: Callable taking one line of progress (rank 0), or None.
    """
    import tumorpde as tp
    from tumorpde.errors import SolverError

    results: dict[str, Any] = {}
    for name in scenarios:
        cfg = tp.load(name, list(extra))
        refined = _refined(cfg, factor)
        entry: dict[str, Any] = {"factor": factor, "overrides": list(extra)}
        if refined is None:
            entry["status"] = "not refined: the mesh is a file (no [mesh] cells)"
            results[name] = entry
            continue
        entry.update({"cells": list(cfg.mesh.cells), "dt": cfg.time.dt,
                      "fine_cells": refined[0], "fine_dt": refined[1]})
        try:
            coarse, times, s0 = _run(name, list(extra), comm)
            fine, _, s1 = _run(name, [*extra, *refine_settings(cfg, factor)], comm)
        except SolverError as exc:
            entry["status"] = f"failed: {exc}"
            results[name] = entry
            if log:
                log(f"{name}: failed ({exc})")
            continue
        entry["times"] = times.tolist()
        entry["observables"] = compare(_at(coarse, times), _at(fine, times))
        entry["seconds"] = [s0, s1]
        worst = max((v["change"] for v in entry["observables"].values()), default=0.0)
        entry["worst_change"] = worst
        entry["status"] = "converged" if worst <= CRITERION else "not converged"
        results[name] = entry
        if log:
            log(f"{name}: largest change {100 * worst:.2f} % ({s0:.0f} s + {s1:.0f} s)")
    return results


def _pct(v: float) -> str:
    return "inf" if math.isinf(v) else f"{100 * v:.2f} %"


def markdown(results: dict[str, Any], command: str) -> str:
    """The report: one table per scenario."""
    lines = ["# Resolution of the bundled scenarios", "",
             "Generated by `" + command + "`; do not edit by hand.", "",
             "Each scenario is run at its own mesh and step and again with every `cells` entry "
             "and the step refined by the factor below.  *Change* is the largest difference "
             "of an observable over the output times divided by the largest magnitude of the "
             "finer run's values (the observable's own scale); *final change* is the relative "
             f"difference at the end.  The project's criterion is a change of at most "
             f"{100 * CRITERION:.0f} %; rows above it are marked **no**.", ""]
    summary = ["| scenario | default | finer | largest change | within 5 % |", "|---|---|---|---|---|"]
    body = []
    for name, r in results.items():
        if "observables" not in r:
            summary.append(f"| `{name}` | | | {r['status']} | |")
            continue
        cells = "x".join(map(str, r["cells"]))
        fine = "x".join(map(str, r["fine_cells"]))
        worst = r["worst_change"]
        summary.append(f"| `{name}` | {cells} cells, dt {r['dt']:g} | {fine} cells, dt "
                       f"{r['fine_dt']:.4g} | {_pct(worst)} | "
                       f"{'yes' if worst <= CRITERION else '**no**'} |")
        over = f" (with `{'`, `'.join(r['overrides'])}`)" if r["overrides"] else ""
        body += [f"## `{name}`{over}", "",
                 f"{cells} cells, dt {r['dt']:g} against {fine} cells, dt {r['fine_dt']:.4g} "
                 f"({r['seconds'][0]:.0f} s and {r['seconds'][1]:.0f} s).", "",
                 "| observable | default (end) | finer (end) | change | final change | within 5 % |",
                 "|---|---|---|---|---|---|"]
        for k, v in r["observables"].items():
            ok = "yes" if v["change"] <= CRITERION else "**no**"
            body.append(f"| `{k}` | {v['default']:.6g} | {v['fine']:.6g} | {_pct(v['change'])} | "
                        f"{_pct(v['final_change'])} | {ok} |")
        body.append("")
    return "\n".join(lines + summary + [""] + body)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status (2 for bad input, with one line)."""
    ap = argparse.ArgumentParser(prog="python -m tumorpde.verification.resolution",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("scenarios", nargs="*", default=DEFAULT_SCENARIOS,
                    help="bundled names or config files (default: every bundled scenario)")
    ap.add_argument("--factor", type=float, default=1.5, help="refinement factor (> 1)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="override applied to both runs of every scenario (repeatable)")
    ap.add_argument("--out", type=Path, default=Path("docs/resolution.md"),
                    help="markdown report (its numbers go beside it as .json)")
    args = ap.parse_args(argv)
    comm = MPI.COMM_WORLD
    from tumorpde.errors import ConfigError

    if not args.factor > 1:
        if comm.rank == 0:
            print(f"tumorpde: error: --factor: must be > 1, got {args.factor}", file=sys.stderr)
        return 2

    def log(line: str) -> None:
        if comm.rank == 0:
            print(line, flush=True)

    try:
        results = study(args.scenarios, args.factor, args.sets, comm, log)
    except ConfigError as exc:
        if comm.rank == 0:
            print(f"tumorpde: error: {exc}", file=sys.stderr)
        return 2
    if comm.rank == 0:
        # the command that reproduces the report (where it is written does not matter)
        parts = [] if list(args.scenarios) == DEFAULT_SCENARIOS else list(args.scenarios)
        parts += [] if args.factor == 1.5 else [f"--factor {args.factor:g}"]
        parts += [f"--set {s}" for s in args.sets]
        cmd = "python -m tumorpde.verification.resolution " + " ".join(parts)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(markdown(results, cmd.strip()))
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
