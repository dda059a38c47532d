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
# # Tutorial 6: from images to a calibrated model and back
#
# Tumour models of real patients start from images.  You will learn to
#
# - mesh a segmentation (a NIfTI label image) in the scanner's physical coordinates
#   (`tumorpde mesh --from-image`, here `mesh_from_image`);
# - start a model from a cellularity image (`initial = { image = ... }`) and set a
#   coefficient per tissue class from the label image (`{ value, image, labels }`);
# - calibrate a parameter against a later image (an image manifest `t, field, image,
#   mask, sigma`, as `tumorpde calibrate --data` reads it);
# - export fields onto the scanner's grid and compare them with an observed map (Dice,
#   volume, cell count): `tumorpde export --nifti`, here `export_nifti`.
#
# The "patient" is a single axial slice made here: 0.6 x 0.9 mm pixels whose axes are
# rotated by 30 degrees, a tissue of two classes (label 1 grey, label 2 white matter,
# where cells migrate five times faster: Swanson's convention, literature.md 1.1) and a
# tumour seeded in the grey matter.  A second "visit" 40 days later is made by the model
# with a known proliferation rate, plus noise; the fit should recover it.
# `docs/imaging.md` documents each step; `experiments/image-twin/` does it in 3-D.

# %%
import csv
import os
from pathlib import Path

from mpi4py import MPI

import matplotlib
import numpy as np

if "ipykernel" not in __import__("sys").modules:  # a script: draw into files only
    matplotlib.use("Agg")
import matplotlib.pyplot as plt

import tumorpde as tp
from tumorpde.apps.calibrate import run_calibration
from tumorpde.apps.export import export_nifti
from tumorpde.apps.imagemesh import mesh_from_image
from tumorpde.io import images

SIZE = os.environ.get("TUMORPDE_TUTORIAL_SIZE", "full")  # "full" or "ci" (small, for tests)
OUT = Path(os.environ.get("TUMORPDE_TUTORIAL_OUT", "out/tutorials")) / "06_imaging"
comm = MPI.COMM_WORLD
if comm.rank == 0:
    OUT.mkdir(parents=True, exist_ok=True)
comm.Barrier()


def say(*args):
    if comm.rank == 0:
        print(*args, flush=True)


PIXEL = {"full": (0.6, 0.9), "ci": (1.0, 1.5)}[SIZE]

# %% [markdown]
# ## The images
#
# A NIfTI image is a voxel array with an *affine*: voxel index `(i, j, k)` -> physical
# position in mm.  `images.from_array` and `images.write_like` make and write one;
# `images.read_image` reads one back with its affine.  The tissue is an ellipse of
# semi-axes 30 x 22 mm with an inner white-matter ellipse; the seed a Gaussian of width
# 3 mm and peak 0.6.

# %%
theta = np.radians(30.0)
rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
shape = (int(70 / PIXEL[0]), int(54 / PIXEL[1]))
affine = np.eye(4)
affine[:2, :2] = rot @ np.diag(PIXEL)
centre = np.array([12.0, -30.0])
affine[:2, 3] = centre - affine[:2, :2] @ ((np.array(shape) - 1) / 2)
grid = images.from_array(np.zeros(shape), affine)
_, xy = grid.centres()
body = (xy - centre) @ rot  # coordinates along the ellipse's axes
tissue = np.where((body[:, 0] / 30) ** 2 + (body[:, 1] / 22) ** 2 <= 1, 1, 0)
tissue = np.where((body[:, 0] / 18) ** 2 + (body[:, 1] / 8) ** 2 <= 1, 2, tissue)
seed = centre + rot @ np.array([-12.0, 8.0])
cells0 = 0.6 * np.exp(-((xy - seed) ** 2).sum(axis=1) / (2 * 3.0 ** 2)) * (tissue > 0)
if comm.rank == 0:
    images.write_like(OUT / "tissue.nii.gz", tissue.reshape(shape), grid, dtype=np.uint8)
    images.write_like(OUT / "visit0.nii.gz", cells0.reshape(shape), grid)
comm.Barrier()
say("tissue labels:", images.labels_of(images.read_image(OUT / "tissue.nii.gz")))

# %% [markdown]
# ## The mesh
#
# On the command line: `tumorpde mesh --from-image tissue.nii.gz -o tissue.msh`.  The
# mesh covers the labelled pixels with a smooth boundary (`outer`), in physical
# coordinates, with a region per label (`label1`, `label2`; `--region 2=white` would
# rename one).  Its area is the mask's own (the pixel count times the pixel area).

# %%
if comm.rank == 0:
    summary = mesh_from_image(OUT / "tissue.nii.gz", OUT / "tissue.msh")
    say(summary.line())
comm.Barrier()

# %% [markdown]
# ## The model on the image
#
# The initial condition is the visit-0 image, interpolated (bilinearly) at the mesh's
# nodes in physical coordinates; `D` takes one value per label of the tissue image (in
# the unit `value` is written in).  Proliferation-invasion model, no flux at the tissue's
# edge.

# %%
TRUE_RHO = 0.05  # 1/day, the value that makes the second visit


def config(rho):
    return {
        "mesh": {"shape": "file", "file": str(OUT / "tissue.msh")},
        "time": {"end": 40.0, "dt": 2.0, "output_every": 20.0, "negative_tolerance": 0.01},
        "output": {"progress": False},
        "parameters": {
            "D": {"value": 0.05, "image": str(OUT / "tissue.nii.gz"),
                  "labels": {"1": 0.05, "2": 0.25}, "description": "diffusivity (mm^2/day)"},
            "rho": {"value": rho, "range": [0.001, 0.5], "description": "proliferation (1/day)"}},
        "species": {"cells": {"diffusion": "D", "reaction": "rho * cells * (1 - cells)",
                              "initial": {"image": str(OUT / "visit0.nii.gz")},
                              "boundary": {"outer": {"flux": 0.0}}}},
    }


truth = tp.Problem(config(TRUE_RHO))
total0 = truth.observe()["total_cells"]
image_total = images.read_image(OUT / "visit0.nii.gz").integral()
say(f"cells at day 0: {total0:.2f} on the mesh, {image_total:.2f} in the image")
truth.solve(output=OUT / "truth")
truth.destroy()

# %% [markdown]
# ## Back on the scanner's grid
#
# `tumorpde export truth --nifti --like visit0.nii.gz` writes one image per field and
# output time, `cells_t0.nii.gz`, ..., on the reference's grid, 0 outside the mesh.
# At day 0 it gives back the input image inside the tissue.  The second visit is the
# day-40 map plus noise of standard deviation 0.02.

# %%
if comm.rank == 0:
    exported = export_nifti(OUT / "truth", OUT / "visit0.nii.gz", output=OUT / "truth-nifti")
    back = images.read_image(OUT / "truth-nifti" / "cells_t0.nii.gz").data
    inside = tissue.reshape(shape) > 0
    err0 = float(np.max(np.abs(back - cells0.reshape(shape))[inside]))
    day40 = images.read_image(OUT / "truth-nifti" / "cells_t40.nii.gz").data
    noisy = np.where(inside, day40 + 0.02 * np.random.default_rng(0).standard_normal(shape), 0)
    images.write_like(OUT / "visit1.nii.gz", noisy, grid)
    with open(OUT / "visits.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t", "field", "image", "mask", "sigma"])
        w.writerow([40, "cells", "visit1.nii.gz", "tissue.nii.gz", 0.02])
    say(f"exported {len(exported.files)} files; day 0 back on the grid to {err0:.2e}")
else:
    err0 = None
err0 = comm.bcast(err0, root=0)

# %% [markdown]
# ## Calibration on the second visit
#
# The manifest `visits.csv` names the image and its mask; each pixel of the mask whose
# centre lies in the mesh is one datum (`t, x, y, field, value, sigma`).  On the
# command line:
#
# ```sh
# tumorpde calibrate model.toml --data visits.csv --fit rho=0.001:0.5 -o fit
# ```

# %%
model = OUT / "model.toml"
if comm.rank == 0:
    from tumorpde.io.tomlio import dumps

    model.write_text(dumps(config(0.02)))  # start from a rate 2.5x too low
comm.Barrier()
fit = run_calibration(str(model), [str(OUT / "visits.csv")], ["rho=0.001:0.5"],
                      output=OUT / "fit", starts=1, progress=False)
if comm.rank == 0:
    import json

    rec = json.loads((OUT / "fit" / "calibration.json").read_text())
    est, (lo, hi) = rec["parameters"]["rho"]["estimate"], rec["parameters"]["rho"]["ci95"]
    say(f"rho = {est:.4f} /day, 95 % interval [{lo:.4f}, {hi:.4f}] (true {TRUE_RHO}) from "
        f"{rec['n_data']} pixels")
    pred = export_nifti(OUT / "fit" / "fit", OUT / "visit0.nii.gz", times=[40.0],
                        output=OUT / "fit-nifti", observed=OUT / "visit1.nii.gz",
                        mask=OUT / "tissue.nii.gz")
    row = pred.rows[0]
    say(f"day 40: Dice {row['dice']:.3f}, cell count {100 * row['total_error']:+.1f} %, "
        f"RMSE {row['rmse']:.4f} (metrics.csv)")

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    ext = (0, shape[0] * PIXEL[0], 0, shape[1] * PIXEL[1])
    fitted = images.read_image(pred.files[0]).data
    for ax, (title, data) in zip(axes, [("visit 0", cells0.reshape(shape)),
                                        ("visit 1 (day 40, observed)", noisy),
                                        ("fitted model, day 40", fitted)], strict=True):
        im = ax.imshow(data.T, origin="lower", extent=ext, vmin=0, vmax=1, cmap="magma")
        ax.contour(tissue.reshape(shape).T, levels=[0.5, 1.5], colors="w", linewidths=0.6,
                   extent=ext, origin="lower")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("pixel axis i (mm)")
    fig.colorbar(im, ax=axes, fraction=0.02)
    fig.savefig(OUT / "slices.png", dpi=110)
    plt.close(fig)

# %% [markdown]
# ## Checks

# %%
if comm.rank == 0:
    assert abs(total0 / image_total - 1) < 0.05, (total0, image_total)
    # image -> P1 nodes -> pixel centres: two linear interpolations of a 3 mm Gaussian of
    # peak 0.6 on 1-1.5 mm pixels, each off by about h^2/8 |u''| ~ 0.02 at the peak
    assert err0 < 0.1 * 0.6, err0
    assert lo <= TRUE_RHO <= hi, (lo, hi)
    assert row["dice"] > 0.9 and abs(row["total_error"]) < 0.05, row
say("all checks passed")
