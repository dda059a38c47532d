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
# # Tutorial 3: stepping by hand and changing the state
#
# `Problem.solve()` runs to the end; `Problem.step()` takes one accepted step at a time
# (rejected or failed attempts are retried inside it), so that Python code can look at
# the state and change it between steps.  You will learn to
#
# - write the time loop yourself: `problem.step()`, `problem.t`, `problem.done`,
#   `problem.rows` and `problem.observe()`;
# - inspect the fields: `problem.fields[name]` is a `dolfinx.fem.Function` (nodal values
#   in `.x.array`, coordinates from its function space, forms with UFL);
# - change a field between steps: a **surgical resection** that removes the tumour
#   cells in a disk;
# - do the same inside `solve()` with a `tp.Callback`, and record quantities of your own
#   with a `tp.Tracker` subclass.
#
# The model is the bundled `quickstart` example: cells that grow logistically, diffuse
# and move up the gradient of a signal they secrete, on a 2 mm x 1 mm rectangle.

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

import tumorpde as tp
import tumorpde.compat

tumorpde.compat.import_dolfinx()  # before importing dolfinx yourself (MPI load order)
import ufl
from dolfinx import fem

SIZE = os.environ.get("TUMORPDE_TUTORIAL_SIZE", "full")  # "full" or "ci" (small, for tests)
OUT = Path(os.environ.get("TUMORPDE_TUTORIAL_OUT", "out/tutorials")) / "03_stepping"
comm = MPI.COMM_WORLD
rank = comm.rank
if rank == 0:
    OUT.mkdir(parents=True, exist_ok=True)


def say(*args):
    """Print on rank 0 only (every rank runs this script under mpiexec)."""
    if rank == 0:
        print(*args, flush=True)


END = {"full": 3.0, "ci": 1.5}[SIZE]
OVERRIDES = [f"time.end={END}", "time.output_every=0.25", "output.progress=false"]
if SIZE == "ci":
    OVERRIDES.append("mesh.cells=[30, 15]")
T_RESECT = 0.5                     # day of the operation
CENTRE, RADIUS = (0.5, 0.5), 0.3   # the resected disk (mm): the seed's position

# %% [markdown]
# ## A control run
#
# Without any change, for comparison.

# %%
config = tp.load("quickstart", OVERRIDES)
control = tp.Problem(config).solve()
say("control:", control.status, control.steps, "steps; final", control.final)

# %% [markdown]
# ## The time loop by hand
#
# `step()` returns the new time.  After each step `problem.rows[-1]` is the new row of
# observables (the columns are `problem.columns`) and `problem.observe()` computes
# them for the current state (a collective call: every rank must make it).
#
# `problem.fields["cells"]` is a `dolfinx.fem.Function` on the scalar P1 space: its
# `x.array` holds the values at the nodes this rank owns, followed by its ghost nodes,
# in the order of `function_space.tabulate_dof_coordinates()`.  Changing the values
# (on every rank, owned and ghost nodes alike, as here; or only owned ones followed by
# `x.scatter_forward()`) changes the state: the next step starts from it, and the
# multistep (BDF2) history restarts there, as after a radiotherapy fraction.
#
# The change is taken into the state by the next `problem.observe()` or `problem.step()`
# (both collective); no row is recorded for it: the first row after the operation is
# the one of the next step.

# %%
def resect(problem):
    """Remove every tumour cell inside the disk (on every rank: collective)."""
    cells = problem.fields["cells"]
    xyz = cells.function_space.tabulate_dof_coordinates()   # owned nodes, then ghosts
    inside = (xyz[:, 0] - CENTRE[0]) ** 2 + (xyz[:, 1] - CENTRE[1]) ** 2 < RADIUS**2
    cells.x.array[inside] = 0.0
    owned = cells.function_space.dofmap.index_map.size_local
    return comm.allreduce(int(inside[:owned].sum()), op=MPI.SUM)   # nodes resected


def peak(problem, name):
    """The largest nodal value of a field over all ranks (collective)."""
    local = problem.fields[name].x.array
    return comm.allreduce(local.max() if local.size else -np.inf, op=MPI.MAX)


problem = tp.Problem(tp.load("quickstart", OVERRIDES))
operated = None
while not problem.done:
    t = problem.step()
    if operated is None and t >= T_RESECT - 1e-9:
        before = problem.observe()["total_cells"]
        say(f"t = {t:g}: {before:.4g} cells, peak density {peak(problem, 'cells'):.3f}")
        nodes = resect(problem)
        operated = len(problem.rows)   # the next row is the first after the operation
        say(f"resected {nodes} nodes; peak density now {peak(problem, 'cells'):.3f}")

columns = problem.columns
rows = np.array(problem.rows)
total = rows[:, columns.index("total_cells")]
times = rows[:, 0]
after = total[operated]
say(f"first row after the operation, t = {times[operated]:g}: {after:.4g} cells "
    f"({after / before:.1%} of those before it)")
say(f"at the end: {total[-1]:.4g} cells, against {control.final['total_cells']:.4g} "
    "without the operation")

# %% [markdown]
# ## The same operation as a callback, and a tracker of your own
#
# `solve(trackers=[...])` calls each tracker at the times of its `interval`: `"step"`,
# `"output"`, `"checkpoint"`, `"end"` or a number (model time).  A `tp.Callback(fn,
# interval)` calls `fn(problem, t)`; a `tp.Tracker` subclass has `initialize`, `handle`
# and `finalize`.  Trackers run on every rank, so they may make collective calls.
#
# Here a tracker records, at every output time, the peak density and the cells left
# in the resection cavity (local recurrence), an integral over the disk written in UFL
# and assembled by DOLFINx.  The trackers run in the order given: at the output time of
# the operation, the tracker sees the state after it.

# %%
class Cavity(tp.Tracker):
    """Peak density and the cells inside the resected disk, at every output time."""

    interval = "output"

    def initialize(self, problem):  # noqa: D102
        self.times, self.peaks, self.cavity = [], [], []
        c = problem.fields["cells"]
        x = ufl.SpatialCoordinate(c.function_space.mesh)
        disk = ufl.lt((x[0] - CENTRE[0]) ** 2 + (x[1] - CENTRE[1]) ** 2, RADIUS**2)
        self.form = fem.form(ufl.conditional(disk, c, 0.0) * ufl.dx)

    def handle(self, problem, t):  # noqa: D102
        problem.fields["cells"]   # brings the function's values up to date with the state
        self.times.append(float(t))
        self.peaks.append(float(peak(problem, "cells")))
        self.cavity.append(float(comm.allreduce(fem.assemble_scalar(self.form), op=MPI.SUM)))

    def finalize(self, problem, result, collective):  # noqa: D102
        self.status = result.status


def operate(problem, t):
    """Resect once, at the first step at or after T_RESECT."""
    if not operate.done and t >= T_RESECT - 1e-9:
        resect(problem)
        operate.done = True


operate.done = False
shape = Cavity()
with_callback = tp.Problem(tp.load("quickstart", OVERRIDES)).solve(
    trackers=[tp.Callback(operate, "step"), shape])
say("output times:", [round(x, 6) for x in shape.times])
say("peak density:", [round(x, 3) for x in shape.peaks])
say("cells in the cavity (mm^2):", [round(x, 5) for x in shape.cavity])

# %% [markdown]
# ## Plot

# %%
if rank == 0:
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    o = control.observables
    ax[0].plot(o["t"], o["total_cells"], label="no operation")
    ax[0].plot(times, total, label=f"resection at day {T_RESECT:g}")
    ax[0].axvline(T_RESECT, color="k", lw=0.5)
    ax[0].set(xlabel="t (day)", ylabel="total cells (mm$^2$)", title="Tumour burden")
    ax[0].legend(fontsize=8)
    ax[1].semilogy(shape.times, shape.cavity, "o-")
    ax[1].axvline(T_RESECT, color="k", lw=0.5)
    ax[1].set(xlabel="t (day)", ylabel="cells in the cavity (mm$^2$)",
              title="Tracker: recurrence in the resected disk")
    fig.tight_layout()
    fig.savefig(OUT / "resection.png", dpi=120)
    plt.close(fig)
    say("wrote", OUT / "resection.png")

# %% [markdown]
# ## Checks

# %%
assert control.status == with_callback.status == shape.status == "completed"
assert problem.done and abs(problem.t - END) < 1e-9
assert after < 0.2 * before                          # most of the tumour is removed
assert np.all(np.diff(total[operated:]) > 0)         # what is left regrows...
assert total[-1] < control.final["total_cells"]      # ...but stays below the control
# the callback inside solve() did exactly what the loop by hand did
np.testing.assert_allclose(np.array(with_callback.rows), rows, rtol=1e-12, atol=1e-15)
expected_outputs = np.arange(0.0, END + 1e-9, 0.25)
np.testing.assert_allclose(shape.times, expected_outputs, atol=1e-9)
cavity = np.array(shape.cavity)
k = int(np.argmin(np.abs(expected_outputs - T_RESECT)))   # the output at the operation
assert cavity[k] < 0.05 * cavity[k - 1]              # the cavity is emptied...
assert np.all(np.diff(cavity[k:]) > 0)               # ...and refills from its margin
say("tutorial 3: all checks passed")
