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
# # Tutorial 5: calibrating a model to data, then forecasting
#
# A model's parameters can be learned from measurements.  You will learn to
#
# - write data in the long CSV format of `tumorpde calibrate` (field samples
#   `t, x, y, field, value, sigma`);
# - compute the misfit and its **gradient by the discrete adjoint**
#   (`tumorpde.calibration.objective.Objective`), and check it with a Taylor test;
# - fit parameters by bounded least squares with intervals (`calibrate`), fitting early
#   data and forecasting later data (`until`);
# - do the same from the command line (`tumorpde calibrate`).
#
# The data here are synthetic, made by the `quickstart` model itself with a known
# proliferation rate `rho = 0.8/day` and taxis sensitivity `chi = 0.02`, plus 5 % noise,
# so that we can see whether the fit recovers them.  `docs/calibration.md` documents the
# formats, the method and the outputs; `experiments/scratch-assay/` does this on real data.

# %%
import csv
import os
import subprocess
import sys
from pathlib import Path

from mpi4py import MPI

import matplotlib
import numpy as np

if "ipykernel" not in sys.modules:  # a script: draw into files only
    matplotlib.use("Agg")
import matplotlib.pyplot as plt

import tumorpde as tp
from tumorpde.calibration.fit import FitParameter, calibrate
from tumorpde.calibration.objective import Objective
from tumorpde.io.data import read_data

SIZE = os.environ.get("TUMORPDE_TUTORIAL_SIZE", "full")  # "full" or "ci" (small, for tests)
OUT = Path(os.environ.get("TUMORPDE_TUTORIAL_OUT", "out/tutorials")) / "05_calibration"
comm = MPI.COMM_WORLD
if comm.rank == 0:
    OUT.mkdir(parents=True, exist_ok=True)
comm.Barrier()


def say(*args):
    if comm.rank == 0:
        print(*args, flush=True)


CELLS = {"full": "[40, 20]", "ci": "[20, 10]"}[SIZE]
OVERRIDES = [f"mesh.cells={CELLS}", "output.progress=false", "time.end=1.0",
             "solver.snes_rtol=1e-12", "solver.snes_atol=1e-14"]

# %% [markdown]
# ## Synthetic measurements
#
# Point samples of both species at 12 places at four times.  The model's value of a
# row is the finite-element field at the point; `Objective(...).evaluate(p)` runs the
# model at parameter values `p` and returns the model's value of every row.  Here we
# use it to make the data: the model at the true values, times `1 + 0.05 * noise`, with
# `sigma` (the measurement error) 5 % of the value.

# %%
truth = {"rho": 0.8, "chi": 0.02}
rng = np.random.default_rng(11)
points = np.column_stack([rng.uniform(0.2, 1.4, 12), rng.uniform(0.2, 0.8, 12)])
times = [0.25, 0.5, 0.75, 1.0]
rows = [(t, f, p) for t in times for f in ("cells", "signal") for p in points]
template = OUT / "layout.csv"
if comm.rank == 0:
    with open(template, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t", "x", "y", "field", "value"])
        w.writerows([[t, p[0], p[1], fld, 0.0] for t, fld, p in rows])
comm.Barrier()

problem = tp.Problem(tp.load("quickstart", OVERRIDES))
layout = read_data(template)
model = Objective(problem, [layout], list(truth)).evaluate(list(truth.values())).model
measured = model * (1 + 0.05 * rng.standard_normal(model.size))
data_file = OUT / "measurements.csv"
if comm.rank == 0:
    with open(data_file, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t", "x", "y", "field", "value", "sigma"])
        for (t, fld, p), v, m in zip(rows, measured, model, strict=True):
            w.writerow([t, p[0], p[1], fld, v, 0.05 * abs(m)])
comm.Barrier()
say(f"{len(rows)} measurements written to {data_file}")

# %% [markdown]
# ## The misfit and its gradient
#
# `Objective(problem, data, names)` is `J(p) = 1/2 sum ((model - value)/sigma)^2` as a
# function of the named parameters.  `gradient(p)` is the derivative of this *discrete*
# objective by the adjoint of the time stepping: one backward sweep after the forward
# run, whatever the number of parameters.  A Taylor test checks it: the remainder
# `|J(p + e dp) - J(p) - e g.dp|` must fall 4-fold when `e` halves (second order), while
# without the gradient term it only halves.

# %%
start = tp.Problem(tp.load("quickstart", [*OVERRIDES, "parameters.rho=0.5",
                                          "parameters.chi=0.05"]))
J = Objective(start, [read_data(data_file)], ["rho", "chi"])
p0 = J.start()
g = J.gradient(p0)
say("start", p0, "misfit", J(p0), "gradient", g)
dp = np.array([0.05, 0.005])
rem = [abs(J(p0 + e * dp) - J(p0) - e * g @ dp) for e in (0.4, 0.2, 0.1)]
rates = np.log2(np.array(rem[:-1]) / rem[1:])
say("Taylor remainder rates (2 expected):", rates)
J.destroy()

# %% [markdown]
# ## Fitting early data, forecasting the rest
#
# `calibrate` fits by bounded least squares with the exact Jacobian of the residuals
# (forward sensitivities), starting from the config's values.  `until=0.5` fits the
# rows with `t <= 0.5` and forecasts the later ones; the result holds estimates,
# standard deviations, 95 % intervals (Gauss-Newton covariance), AIC/BIC and the
# model's value of every row with a 95 % band.  Expect `rho` to be well determined and
# `chi` poorly: over one day the taxis moves few cells, so its interval is wide (a Wald
# interval, symmetric about the estimate, may even reach outside the bounds).

# %%
fit = calibrate(start, [read_data(data_file)],
                [FitParameter("rho", "rho", 0.1, 2.0), FitParameter("chi", "chi", 0.0, 0.2)],
                until=0.5)
for p, est, (lo, hi) in zip(fit.parameters, fit.estimate, fit.ci95, strict=True):
    say(f"{p.key}: {est:.4g}  95 % interval [{lo:.4g}, {hi:.4g}]  (truth {truth[p.key]})")
say(f"status {fit.status}, {fit.n_data} rows fitted, {fit.evaluations} runs, "
    f"{fit.seconds['total']:.1f} s; AIC {fit.aic:.1f}")

# %%
if comm.rank == 0:
    d = read_data(data_file)
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.6))
    for a, name in zip(ax, ("cells", "signal"), strict=True):
        sel = np.array([n == name for n in d.name])
        fitted = fit.fitted & sel
        fore = ~fit.fitted & sel
        a.plot(d.value[fitted], fit.predictions["model"][fitted], "o", ms=3, label="fitted")
        a.plot(d.value[fore], fit.predictions["model"][fore], "s", ms=3, mfc="none",
               label="forecast")
        lim = [0, 1.05 * max(d.value[sel].max(), fit.predictions["model"][sel].max())]
        a.plot(lim, lim, "k-", lw=0.5)
        a.set(xlabel="measured", ylabel="model", title=name)
    ax[0].legend()
    fig.tight_layout()
    fig.savefig(OUT / "fit.png", dpi=120)

# %% [markdown]
# ## The same from the command line
#
# ```sh
# tumorpde calibrate quickstart --data measurements.csv --fit rho=0.1:2 --fit chi=0:0.2 \
#     --until 0.5 --set parameters.rho=0.5 --set parameters.chi=0.05 -o out/quickstart-fit
# ```
#
# writes `calibration.json`, `predictions.csv`, the run at the estimate (`fit/`) and
# `fit.png` (see `docs/calibration.md`).  The tutorial runs it on one rank.

# %%
start.destroy()
problem.destroy()
if comm.size == 1:
    cmd = [sys.executable, "-m", "tumorpde", "calibrate", "quickstart", "--data", str(data_file),
           "--fit", "rho=0.1:2", "--fit", "chi=0:0.2", "--until", "0.5", "-q",
           "-o", str(OUT / "cli")] + [a for o in [*OVERRIDES, "parameters.rho=0.5",
                                                  "parameters.chi=0.05"] for a in ("--set", o)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    say(r.stdout.strip() or r.stderr.strip())
    assert r.returncode == 0, r.stderr
    assert (OUT / "cli" / "calibration.json").exists()

# %% [markdown]
# ## Checks

# %%
assert all(abs(r - 2.0) < 0.1 for r in rates), rates
assert fit.status == "converged"
for p, (lo, hi) in zip(fit.parameters, fit.ci95, strict=True):
    assert lo <= truth[p.key] <= hi, (p.key, lo, hi)
say("all checks passed")
