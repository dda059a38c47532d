# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Tutorial 4: results, run directories and plots
#
# A run either stays in memory (`problem.solve()`) or writes a **run directory**
# (`problem.solve(output=DIR)`, the same as `tumorpde run CONFIG -o DIR`):
#
# | file | what |
# |---|---|
# | `observables.csv` | one row per accepted step: `t`, `total_<species>`, the observables |
# | `fields.xdmf` + `fields.h5` | every species at the output times (ParaView opens the `.xdmf`) |
# | `run.json` | the resolved config, versions, status, counters, final values |
#
# You will learn to
#
# - use the `Result` of `solve()`: `status`, `t`, `steps`, `observables`, `final`,
#   `minima`, `fields` and `to_pandas()`;
# - read a run directory back with `tp.read(DIR)`: its observables, config, output
#   times and the fields at an output time, as numpy arrays on the mesh nodes;
# - plot observables and field snapshots with matplotlib (`tripcolor` on the mesh
#   triangles), and check that what was written is what was computed.
#
# The model is the bundled `quickstart` example (cells with taxis towards a signal they
# produce, on a 2 mm x 1 mm rectangle).

# %%
import os
import sys
from pathlib import Path

from mpi4py import MPI

import matplotlib
import numpy as np

if "ipykernel" not in sys.modules:  # a script: draw into files only
    matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.tri as mtri

import tumorpde as tp

SIZE = os.environ.get("TUMORPDE_TUTORIAL_SIZE", "full")  # "full" or "ci" (small, for tests)
OUT = Path(os.environ.get("TUMORPDE_TUTORIAL_OUT", "out/tutorials")) / "04_results_and_plots"
RUN_DIR = OUT / "quickstart-run"
comm = MPI.COMM_WORLD
rank = comm.rank
if rank == 0:
    OUT.mkdir(parents=True, exist_ok=True)


def say(*args):
    """Print on rank 0 only (every rank runs this script under mpiexec)."""
    if rank == 0:
        print(*args, flush=True)


OVERRIDES = {"full": [], "ci": ["mesh.cells=[30, 15]"]}[SIZE] + ["output.progress=false"]

# %% [markdown]
# ## Solve into a run directory
#
# `solve(output=DIR)` writes the run directory as it goes and also returns the `Result`,
# as in memory.  Under MPI this is collective; rank 0 writes `observables.csv` and
# `run.json`, every rank writes its part of `fields.h5`.  A run directory that holds a
# run already is overwritten; one that a running job holds is refused.

# %%
config = tp.load("quickstart", OVERRIDES)
problem = tp.Problem(config)
result = problem.solve(output=RUN_DIR)
say(f"{result.status}: t = {result.t:g} after {result.steps} steps, into {result.outdir}")
say("final values:", {k: round(v, 5) for k, v in result.final.items()})
say("smallest value of each species:", result.minima)
say("output times:", problem.output_times())

# %% [markdown]
# ## The `Result` in memory
#
# `result.observables` maps every column of `observables.csv` (`t` first) to a numpy
# array; `result.fields` are the final `dolfinx.fem.Function`s.  `result.to_pandas()`
# gives a `pandas.DataFrame` if pandas is installed (it is not a dependency of
# tumorpde).

# %%
obs = result.observables
say("columns:", list(obs))
try:
    frame = result.to_pandas()
except ImportError as exc:
    frame = None
    say(f"no pandas here ({exc}); the numpy arrays of result.observables do the same job")
else:
    say(frame.tail(3).to_string())
    say("largest total of cells:", frame["total_cells"].max())

# %% [markdown]
# ## Reading the run directory back
#
# `tp.read(DIR)` opens a run directory (one that a running job is still writing, too)
# without DOLFINx or MPI: `run.status`, `run.config` (the resolved config as a dict),
# `run.observables`, `run.times` (the output times of the fields) and
# `run.fields(t)`, a snapshot: a mapping field -> values at the nodes, with
# `snapshot.nodes` (coordinates) and `snapshot.cells` (node indices of each triangle).
# Only rank 0 reads here: after `solve()` returns, every file is complete.

# %%
comm.Barrier()
if rank == 0:
    run = tp.read(RUN_DIR)
    print("status:", run.status, "| output times:", run.times)
    print("species in the recorded config:", list(run.config["species"]))
    snapshot = run.fields(run.times[-1])
    print(f"fields at t = {snapshot.t:g}:", list(snapshot), f"on {len(snapshot.nodes)} nodes "
          f"and {len(snapshot.cells)} triangles")

# %% [markdown]
# ## Plots: observables and field snapshots
#
# The observables come from the file read back; the snapshots are drawn on the mesh's
# own triangles (`matplotlib.tri.Triangulation(x, y, cells)`), with the nodal values
# interpolated linearly inside each triangle (`shading="gouraud"`), which is exactly the
# P1 finite-element field.

# %%
def triangulation(snap):
    """The mesh of a snapshot as a matplotlib triangulation."""
    return mtri.Triangulation(snap.nodes[:, 0], snap.nodes[:, 1], snap.cells)


if rank == 0:
    o = run.observables
    fig, ax = plt.subplots(1, 1, figsize=(5, 3.4))
    for column in o:
        if column != "t":
            ax.plot(o["t"], o[column], label=column)
    ax.set(xlabel="t (day)", ylabel="integral (mm$^2$)", title="quickstart: observables")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / "observables.png", dpi=120)
    plt.close(fig)

    times = run.times
    fig, axes = plt.subplots(2, len(times), figsize=(3.2 * len(times), 3.6), squeeze=False)
    for j, t in enumerate(times):
        snap = run.fields(t)
        tri = triangulation(snap)
        for i, name in enumerate(["cells", "signal"]):
            ax = axes[i][j]
            art = ax.tripcolor(tri, snap[name], shading="gouraud", cmap="viridis")
            ax.set_aspect("equal")
            ax.margins(0)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{name}, t = {t:g}", fontsize=9)
            fig.colorbar(art, ax=ax, shrink=0.7)
    fig.tight_layout()
    fig.savefig(OUT / "fields.png", dpi=110)
    plt.close(fig)
    print("wrote", OUT / "observables.png", "and", OUT / "fields.png")

# %% [markdown]
# ## Checks: the file is the computation
#
# `observables.csv` holds the rows of the `Result` exactly (numbers are written with all
# their digits).  The integral of the P1 field over the triangles, the mean of its
# three nodal values times the area, summed, is what `total_cells` is, so the last
# snapshot must give `result.final["total_cells"]` to rounding.

# %%
assert result.status == "completed" and result.outdir == RUN_DIR
assert abs(result.t - config.time.end) < 1e-9
if rank == 0:
    assert run.status == "completed"
    assert list(run.observables) == list(obs) == result.columns
    for column in obs:
        np.testing.assert_array_equal(run.observables[column], obs[column])
    np.testing.assert_allclose(run.times, problem.output_times(), atol=1e-12)
    last = run.fields(run.times[-1])
    p = last.nodes[last.cells]                              # (triangles, 3 vertices, xy)
    area = 0.5 * np.abs((p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1])
                        - (p[:, 2, 0] - p[:, 0, 0]) * (p[:, 1, 1] - p[:, 0, 1]))
    assert abs(area.sum() - 2.0) < 1e-12                    # the 2 mm x 1 mm rectangle
    for name in ("cells", "signal"):
        integral = np.sum(area * last[name][last.cells].mean(axis=1))
        assert abs(integral / result.final[f"total_{name}"] - 1) < 1e-10, (name, integral)
    assert min(last["cells"].min(), last["signal"].min()) >= -1e-8
    if frame is not None:
        assert list(frame.columns) == result.columns and len(frame) == len(obs["t"])
    for png in ("observables.png", "fields.png"):
        assert (OUT / png).stat().st_size > 10_000
say("tutorial 4: all checks passed")
