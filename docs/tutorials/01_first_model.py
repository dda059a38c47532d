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
# # Tutorial 1: a first model in Python
#
# This tutorial builds a model from the Python objects of `tumorpde.model` instead of a
# TOML file, and checks it against results known on paper.  You will learn to
#
# - declare parameters (with units), species, a mesh, time stepping and observables as
#   a `tumorpde.model.Config`;
# - read the error that a bad value gives (`tumorpde.ConfigError`: the same checks and
#   messages as for a TOML file);
# - solve in memory with `tp.Problem(config).solve()` and use `result.observables`;
# - plot an observable with matplotlib;
# - compare with analytic values: logistic growth of a well-mixed population, and the
#   speed `2*sqrt(D*rho)` of a Fisher-KPP invasion front, also when growth is limited
#   by an oxygen field that the cells consume.
#
# The model is the proliferation-invasion model of tumour growth (Swanson et al.): a
# density `cells` (relative to the carrying capacity) that diffuses with coefficient `D`
# and grows logistically at rate `rho`,
#
# $$\partial_t c = D\,\Delta c + \rho\, c\,(1 - c),$$
#
# on a line of tissue, with no flux through its ends.
#
# The tutorial runs as a script (`python docs/tutorials/01_first_model.py`, also under
# `mpiexec -n 2`) or as a notebook (`jupytext --to notebook`, see README.md).  Set
# `TUMORPDE_TUTORIAL_SIZE=ci` for the small size the test suite uses, and
# `TUMORPDE_TUTORIAL_OUT` for where figures go (default `out/tutorials`).

# %%
import copy
import math
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
from tumorpde.model import Config, Mesh, Observable, Output, Parameter, Species, Time, Units

SIZE = os.environ.get("TUMORPDE_TUTORIAL_SIZE", "full")  # "full" or "ci" (small, for tests)
OUT = Path(os.environ.get("TUMORPDE_TUTORIAL_OUT", "out/tutorials")) / "01_first_model"
comm = MPI.COMM_WORLD
rank = comm.rank
if rank == 0:
    OUT.mkdir(parents=True, exist_ok=True)


def say(*args):
    """Print on rank 0 only (every rank runs this script under mpiexec)."""
    if rank == 0:
        print(*args, flush=True)


# length of the line (mm), number of cells, end time (days), step (days)
LENGTH, CELLS, END, DT = {"full": (60.0, 1200, 80.0, 0.25), "ci": (30.0, 600, 40.0, 0.25)}[SIZE]

# %% [markdown]
# ## The model as Python objects
#
# Every TOML table has its dataclass: `[units]` is `Units`, `[mesh]` is `Mesh`, a
# `[species.NAME]` table is a `Species`, and so on (docs/configuration.md, "Python API").
# Parameters may be plain numbers (in the model's units), strings with units that pint
# converts to the model's units, or a `Parameter` that also records a description and
# a source.  Coefficients are numbers, parameter names or expressions in `x`, `y`, `z`,
# `t`, the species and the parameters.
#
# The observable `front_position` is the largest `x` where the density exceeds 0.1: the
# position of the leading edge of the front.

# %%
D_VALUE, RHO_VALUE = 0.1, 0.5  # mm^2/day and 1/day, as written in the parameters below


def make_config(initial="where(x < 1.0, 1.0, 0.0)", oxygen=False):
    """The proliferation-invasion model; with ``oxygen``, growth is limited by oxygen."""
    growth = "rho*cells*(1 - cells)"
    species = {}
    if oxygen:
        growth += "*oxygen/(K_o2 + oxygen)"
    species["cells"] = Species(diffusion="D", reaction=growth, initial=initial,
                               description="tumour cell density / carrying capacity")
    if oxygen:
        # oxygen: supplied towards its normal level 1, consumed by the cells
        species["oxygen"] = Species(diffusion="D_o2", initial=1.0,
                                    reaction="supply*(1 - oxygen) - uptake*cells*oxygen")
    return Config(
        title="Proliferation-invasion (Fisher-KPP) model",
        units=Units(length="mm", time="day"),
        parameters={
            "D": Parameter(f"{D_VALUE} mm^2/day", description="tumour cell motility"),
            "rho": f"{RHO_VALUE} 1/day",
            "K_o2": 0.5,                 # oxygen level of half-maximal growth
            "D_o2": "1 mm^2/day",
            "supply": "0.2 1/day",
            "uptake": "2 1/day",
        },
        species=species,
        mesh=Mesh(shape="interval", size=[LENGTH], cells=[CELLS]),
        time=Time(end=END, dt=DT, scheme="bdf2", output_every=END / 4),
        observables={
            "front_position": Observable(maximum="where(cells > 0.1, x, 0)",
                                         description="leading edge of the front (mm)"),
            "mean_density": Observable(integral="cells", per="1"),
        },
        output=Output(progress=False),
    )


config = make_config()
say(config.species["cells"])

# %% [markdown]
# ## Validation: a bad value is reported with its key
#
# `tp.Problem` validates a config with exactly the checks of the TOML loader, so a
# mistake in a Python object gives the message a TOML file would give, naming the
# offending key.  `ConfigError` has `.key` and `.message`; under MPI every rank raises
# it alike (so every rank can handle it).

# %%
bad = copy.deepcopy(config)
bad.time.dt = -0.5
try:
    tp.Problem(bad)
except tp.ConfigError as exc:
    say("ConfigError:", exc)
    dt_error = exc
else:
    raise AssertionError("a negative time step was accepted")

typo = copy.deepcopy(config)
typo.species["cells"].reaction = "rho*cells*(1 - cell)"   # `cell` is not a species
try:
    tp.Problem(typo)
except tp.ConfigError as exc:
    say("ConfigError:", exc)
    typo_error = exc

assert dt_error.key == "time.dt"
assert typo_error.key == "species.cells.reaction" and "cell" in typo_error.message

# %% [markdown]
# ## Logistic growth of a well-mixed population
#
# Started from a uniform density `c0`, diffusion does nothing (no flux at the ends), and
# the density follows the logistic solution
# $c(t) = 1/\bigl(1 + (1/c_0 - 1)\,e^{-\rho t}\bigr)$ everywhere.  `solve()` runs in
# memory (nothing is written) and returns a `Result` whose `observables` are numpy
# arrays, one per column of `observables.csv` (`t`, `total_<species>`, then the
# `observables`).  A uniform state needs no resolution in space, so four cells do; we
# solve with two step sizes to see BDF2's second order in time.

# %%
C0 = 0.01


def logistic_run(dt):
    """The well-mixed model with step ``dt``: its observables and largest error."""
    mixed = make_config(initial=C0)
    mixed.mesh.cells = [4]
    mixed.time.end, mixed.time.dt = 20.0, dt
    result = tp.Problem(mixed).solve()
    o = result.observables
    exact = 1.0 / (1.0 + (1.0 / C0 - 1.0) * np.exp(-RHO_VALUE * o["t"]))
    return result, exact, np.max(np.abs(o["mean_density"] - exact))


result, exact, error_coarse = logistic_run(0.5)
_, _, error_fine = logistic_run(0.25)
obs = result.observables
order = math.log2(error_coarse / error_fine)
say(result.status, "after", result.steps, "steps; columns:", list(obs))
say(f"largest deviation from the logistic solution: {error_coarse:.2e} (dt = 0.5), "
    f"{error_fine:.2e} (dt = 0.25): order {order:.2f}")
assert result.status == "completed"
np.testing.assert_allclose(obs["total_cells"], LENGTH * obs["mean_density"], rtol=1e-10)
assert error_fine < 1e-2 and order > 1.7

# %% [markdown]
# ## An invasion front and its speed
#
# From a step (cells at the left end), a front invades the line.  Its speed tends to
# $c^* = 2\sqrt{D\rho}$ from below, with Bramson's logarithmic delay: the position
# goes as $c^* t - \frac{3}{2\lambda}\ln t$ with $\lambda = \sqrt{\rho/D}$, so the speed at
# time $t$ is $c^* - \frac{3}{2\lambda t}$.  We fit a line to the front position over
# the second half of the run.

# %%
def front_speed(result):
    """Slope of front_position over the second half of the run (mm/day)."""
    o = result.observables
    late = o["t"] >= 0.5 * END
    return np.polyfit(o["t"][late], o["front_position"][late], 1)[0]


def bramson(linear_rate):
    """Asymptotic speed and the speed expected at 3/4 of the run (the fit's middle)."""
    asymptotic = 2.0 * math.sqrt(D_VALUE * linear_rate)
    lam = math.sqrt(linear_rate / D_VALUE)
    return asymptotic, asymptotic - 3.0 / (2.0 * lam * 0.75 * END)


fisher = tp.Problem(config).solve()
speed = front_speed(fisher)
c_star, c_expected = bramson(RHO_VALUE)
say(f"front speed {speed:.4f} mm/day; 2*sqrt(D*rho) = {c_star:.4f}, "
    f"with Bramson's delay {c_expected:.4f}")

# %% [markdown]
# ## Growth limited by oxygen
#
# Now the cells consume oxygen and grow at the rate `rho*oxygen/(K_o2 + oxygen)`.
# Behind the front oxygen is depleted and growth is slow, but the speed of this
# *pulled* front is set at its leading edge, where the cells are few and the oxygen is
# at its normal level 1: the linear growth rate there is $\rho/(1 + K_{O_2})$, so the
# front travels at $2\sqrt{D\rho/(1 + K_{O_2})}$.

# %%
limited = tp.Problem(make_config(oxygen=True)).solve()
speed_o2 = front_speed(limited)
c_star_o2, c_expected_o2 = bramson(RHO_VALUE / (1.0 + 0.5))
say(f"oxygen-limited front speed {speed_o2:.4f} mm/day; 2*sqrt(D*rho/(1+K)) = "
    f"{c_star_o2:.4f}, with Bramson's delay {c_expected_o2:.4f}")
say("oxygen left behind the front:", f"{limited.minima['oxygen']:.3f}")

# %% [markdown]
# ## Plot
#
# Only rank 0 draws (the observables are the same on every rank).

# %%
if rank == 0:
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    t = fisher.observables["t"]
    ax[0].plot(t, fisher.observables["front_position"], label="no oxygen limit")
    ax[0].plot(t, limited.observables["front_position"], label="oxygen-limited")
    ax[0].plot(t, 1.0 + c_star * t, "k:", label=r"$2\sqrt{D\rho}\,t$")
    ax[0].plot(t, 1.0 + c_star_o2 * t, "k--", label=r"$2\sqrt{D\rho/(1+K)}\,t$")
    ax[0].set(xlabel="t (day)", ylabel="front position (mm)", title="Invasion fronts")
    ax[0].legend(fontsize=8)
    ax[1].plot(obs["t"], obs["mean_density"], "o", ms=3, label="tumorpde")
    ax[1].plot(obs["t"], exact, "k-", lw=1, label="logistic solution")
    ax[1].set(xlabel="t (day)", ylabel="mean density", title="Well-mixed growth")
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / "fronts.png", dpi=120)
    plt.close(fig)
    say("wrote", OUT / "fronts.png")

# %% [markdown]
# ## Checks
#
# The tutorial ends with assertions, so that the test suite can run it as a test.

# %%
assert fisher.status == limited.status == "completed"
assert abs(speed / c_expected - 1.0) < 0.06, (speed, c_expected)
assert speed < 1.03 * c_star                    # approached from below (within the mesh)
assert abs(speed_o2 / c_expected_o2 - 1.0) < 0.06, (speed_o2, c_expected_o2)
assert speed_o2 < speed
assert limited.minima["oxygen"] < 0.5           # the oxygen is consumed behind the front
say("tutorial 1: all checks passed")
