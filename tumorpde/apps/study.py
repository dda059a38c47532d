"""In-silico experiments: variants of a model run side by side.

An experiment is a base config plus named *variants* (``--set``-style overrides and
knockouts).  :func:`run_variants` runs them (in this process, on this
communicator), collects the observables and writes ``results.json``;
:func:`plot_variants` draws the time courses.  Experiments in ``experiments/``
are thin scripts over these two functions, with a ``--size`` switch:

* ``full``: the model's own resolution,
* ``medium``: the figure resolution of the committed results (cells 1.5 times as
  large, 2-day steps),
* ``small``: the size used by the test suite (cells 3 times as large, 4-day steps,
  24 days).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpi4py import MPI

from tumorpde.io.rundir import read_observables
from tumorpde.model.config import apply_overrides, find_config, load_dict, parse_set, read_data

__all__ = ["Variant", "SIZES", "CELL_FACTOR", "model_at_size", "run_variants",
           "plot_variants", "experiment_setup", "read_series"]

#: overrides that shrink a model for figures ("medium") and for tests ("small")
SIZES: dict[str, list[str]] = {
    "full": [],
    "medium": ["time.dt=2.0"],
    "small": ["time.dt=4.0", "time.end=24.0", "time.output_every=12.0"],
}
#: factor on the number of cells per direction of the model's mesh (``mesh.cells``, or
#: ``1/factor`` on ``mesh.cell_size``): medium cells are 1.5 times, small cells 3 times
#: as large as the model's own
CELL_FACTOR: dict[str, float] = {"full": 1.0, "medium": 2 / 3, "small": 1 / 3}


@dataclass
class Variant:
    """One arm of an experiment.

    Attributes:
        name: Label (directory name, legend).
        set: ``KEY=VALUE`` overrides as for ``--set``.
        knockout: Species held at zero.
    """

    name: str
    set: list[str] = field(default_factory=list)
    knockout: list[str] = field(default_factory=list)


def model_at_size(model: str, size: str, extra: Sequence[str] = ()) -> dict[str, Any]:
    """The config table of ``model`` at an experiment size, then ``extra`` overrides.

    The size scales the mesh's cells by :data:`CELL_FACTOR` and applies :data:`SIZES`.
    """
    data = read_data(find_config(model))
    mesh, factor = data.get("mesh", {}), CELL_FACTOR[size]
    if factor != 1.0 and isinstance(mesh.get("cells"), list):
        mesh["cells"] = [max(1, round(c * factor)) for c in mesh["cells"]]
    if factor != 1.0 and isinstance(mesh.get("cell_size"), (int, float)):
        mesh["cell_size"] = mesh["cell_size"] / factor
    return apply_overrides(data, [parse_set(s) for s in [*SIZES[size], *extra]])


def read_series(run_dir: Path) -> dict[str, list[float]]:
    """``observables.csv`` of a run directory as columns (lists of floats)."""
    return {k: v.tolist() for k, v in read_observables(run_dir).items()}


def run_variants(model: str, variants: Sequence[Variant], outdir: Path, size: str = "medium",
                 extra: Sequence[str] = (), comm: MPI.Comm = MPI.COMM_WORLD) -> dict[str, Any]:
    """Run every variant of ``model`` and return ``{variant: {"final": ..., "series": ...}}``.

    Args:
        model: Bundled example name or config path.
        variants: The arms.
        outdir: Each variant writes into ``outdir/<variant>``.
        size: ``full`` | ``medium`` | ``small`` (see :data:`SIZES`).
        extra: Overrides applied to every variant.
        comm: Communicator.
    """
    from tumorpde.simulation import run

    results: dict[str, Any] = {}
    for v in variants:
        data = model_at_size(model, size, extra)
        data = apply_overrides(data, [parse_set(s) for s in v.set])
        data.setdefault("output", {})["progress"] = False
        if v.knockout:
            data["knockout"] = sorted(set(data.get("knockout", [])) | set(v.knockout))
        res = run(load_dict(data), outdir / v.name, comm)
        series = comm.bcast(read_series(outdir / v.name) if comm.rank == 0 else None, root=0)
        results[v.name] = {"final": res.final, "series": series,
                           "set": v.set, "knockout": v.knockout}
    return results


def write_results(path: Path, summary: Mapping[str, Any], results: Mapping[str, Any],
                  comm: MPI.Comm = MPI.COMM_WORLD) -> None:
    """``results.json``: the summary (effect sizes) and every variant's final observables."""
    if comm.rank == 0:
        data = {"summary": summary,
                "variants": {k: {"final": v["final"], "set": v["set"], "knockout": v["knockout"]}
                             for k, v in results.items()}}
        path.write_text(json.dumps(data, indent=2) + "\n")


def plot_variants(results: Mapping[str, Any], columns: Sequence[str], path: Path, title: str,
                  comm: MPI.Comm = MPI.COMM_WORLD, log: Sequence[str] = ()) -> None:
    """One panel per observable, one line per variant (rank 0 writes the PNG).

    The panels of the observables in ``log`` have a logarithmic y axis.
    """
    if comm.rank != 0:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(columns), figsize=(4.2 * len(columns), 3.4), squeeze=False)
    for ax, col in zip(axes[0], columns, strict=True):
        for name, r in results.items():
            s = r["series"]
            ax.plot(s["t"], s[col], label=name, lw=2)
        ax.set_xlabel("time (day)")
        if col in log:
            ax.set_yscale("log")
        ax.set_title(col.replace("_", " ") + (" (log scale)" if col in log else ""))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def experiment_setup(script: str, description: str | None,
                     options: Mapping[str, Mapping[str, Any]] | None = None,
                     ) -> tuple[argparse.Namespace, Path, Path]:
    """Command line of an experiment script: ``--size``, ``-o`` and its own ``options``.

    Args:
        script: The script's ``__file__`` (outputs go beside it by default).
        description: Help text (the script's docstring).
        options: Extra arguments, flag -> ``add_argument`` keywords.

    Returns:
        (arguments, directory for figure and results.json, directory for the runs).
    """
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--size", choices=sorted(SIZES), default="medium",
                   help="model resolution: full, medium (committed figures) or small (tests)")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="directory for runs, figure and results.json (default: the script's)")
    for flag, kw in (options or {}).items():
        p.add_argument(flag, **kw)
    args = p.parse_args()
    out = args.output or Path(script).resolve().parent
    out.mkdir(parents=True, exist_ok=True)
    return args, out, out / "runs"


def ratio(a: float, b: float) -> float:
    """a/b, or inf when b vanishes."""
    return a / b if b else float("inf")
