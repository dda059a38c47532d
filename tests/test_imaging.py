"""Images in the model: initial conditions, parameter maps and calibration data from NIfTI.

The images have anisotropic voxels and affines that rotate and shift them, so that every
test also checks that voxel indices and physical coordinates are not confused.
"""

from __future__ import annotations

from mpi4py import MPI

import numpy as np
import pytest
from helpers import save_nifti as save
from helpers import voxel_centres as centres
from helpers import write_on_root as write

import tumorpde as tp
from tumorpde.calibration.fit import FitParameter, calibrate
from tumorpde.calibration.objective import Objective
from tumorpde.calibration.operators import within_mesh
from tumorpde.errors import ConfigError
from tumorpde.io import images
from tumorpde.io.data import read_data

# a rotation about z by 20 degrees with anisotropic voxels (0.9 x 1.1 x 2.0 mm) and an offset
C, S = np.cos(np.radians(20)), np.sin(np.radians(20))
AFFINE3 = np.array([[0.9 * C, -1.1 * S, 0.0, -3.0],
                    [0.9 * S, 1.1 * C, 0.0, -4.0],
                    [0.0, 0.0, 2.0, -6.0],
                    [0.0, 0.0, 0.0, 1.0]])
AFFINE2 = np.array([[0.05 * C, -0.04 * S, 0.0, 0.1],
                    [0.05 * S, 0.04 * C, 0.0, -0.05],
                    [0.0, 0.0, 1.0, 0.0],
                    [0.0, 0.0, 0.0, 1.0]])


def blob3():
    shape = (18, 16, 9)
    p = centres(shape, AFFINE3)
    return shape, np.exp(-((p - [4.0, 3.0, 1.0]) ** 2).sum(1) / 8.0).reshape(shape)


def box3(initial, parameters=None, cells=(18, 20, 18)):
    return {"mesh": {"shape": "box", "origin": [-4.0, -6.0, -8.0], "size": [18.0, 20.0, 18.0],
                     "cells": list(cells)},
            "time": {"end": 0.1, "dt": 0.05}, "output": {"progress": False},
            "parameters": parameters or {"D": 0.1},
            "species": {"cells": {"diffusion": "D", "initial": initial}}}


def test_an_image_initial_condition_integrates_to_the_image_integral(mpi_tmp):
    shape, blob = blob3()
    save(mpi_tmp / "ic.nii.gz", blob, AFFINE3)
    image = images.read_image(mpi_tmp / "ic.nii.gz")
    expect = image.integral()  # sum of voxels x voxel volume (1.98 mm^3)
    p = tp.Problem(box3({"image": str(mpi_tmp / "ic.nii.gz"), "scale": 2.0}))
    total = p.observe()["total_cells"]
    # a smooth image well inside the mesh: the P1 interpolant of the trilinear image on
    # 1 mm cells integrates like the voxel sum to 0.2 % (measured 0.19 %)
    assert total == pytest.approx(2.0 * expect, rel=4e-3)
    # at the nodes the field is the trilinear interpolant of the image in physical space
    owned = p.disc.V0.dofmap.index_map.size_local
    x = p.disc.V0.tabulate_dof_coordinates()[:owned]
    np.testing.assert_allclose(p.fields["cells"].x.array[:owned], 2.0 * image.sample(x),
                               atol=1e-12)
    p.destroy()


def test_a_linear_image_is_reproduced_exactly_at_the_nodes_on_any_partition(mpi_tmp):
    shape = (18, 16, 9)
    p = centres(shape, AFFINE3)
    save(mpi_tmp / "lin.nii.gz", (1.0 + 0.1 * p[:, 0] - 0.05 * p[:, 1] + 0.02 * p[:, 2])
         .reshape(shape), AFFINE3)
    pr = tp.Problem(box3({"image": str(mpi_tmp / "lin.nii.gz")}))
    owned = pr.disc.V0.dofmap.index_map.size_local
    x = pr.disc.V0.tabulate_dof_coordinates()[:owned]
    inside = images.read_image(mpi_tmp / "lin.nii.gz").inside(x)
    # trilinear interpolation of a linear field is exact inside the voxel centres' hull
    q = images.read_image(mpi_tmp / "lin.nii.gz").index(x)
    core = inside & np.all((q >= 0) & (q <= np.array(shape) - 1), axis=1)
    u = pr.fields["cells"].x.array[:owned]
    # the file stores its affine in single precision: the values are linear in the
    # coordinates of the voxel indices under the affine they were made with
    y = q @ AFFINE3[:3, :3].T + AFFINE3[:3, 3]
    np.testing.assert_allclose(u[core], 1.0 + 0.1 * y[core, 0] - 0.05 * y[core, 1]
                               + 0.02 * y[core, 2], atol=1e-12)
    assert np.all(u[~inside] == 0.0)  # zero outside the image
    assert MPI.COMM_WORLD.allreduce(int(core.sum()), op=MPI.SUM) > 100
    pr.destroy()


def test_a_label_image_sets_a_parameter_per_tissue_class(mpi_tmp):
    shape, blob = blob3()
    p = centres(shape, AFFINE3)
    save(mpi_tmp / "tissue.nii.gz", np.where(p[:, 0] > 4.0, 2, 1).reshape(shape), AFFINE3,
         np.int16)
    save(mpi_tmp / "ic.nii.gz", blob, AFFINE3)
    params = {"D": {"value": 0.1, "image": str(mpi_tmp / "tissue.nii.gz"),
                    "labels": {"1": 0.5, "2": 2.0}}}
    pr = tp.Problem(box3({"image": str(mpi_tmp / "ic.nii.gz")}, params))
    assert "D" in pr.spec.fields
    D = pr.parameter_fields["D"].x.array
    x = pr.disc.V0.tabulate_dof_coordinates()
    lab = images.read_image(mpi_tmp / "tissue.nii.gz").sample(x, order=0)
    np.testing.assert_array_equal(D, np.select([lab == 1, lab == 2], [0.5, 2.0], 0.1))
    assert set(np.unique(D)) <= {0.1, 0.5, 2.0}
    pr.destroy()


def test_a_parameter_image_is_read_in_the_unit_its_value_is_written_in(mpi_tmp):
    shape = (18, 16, 9)
    save(mpi_tmp / "r.nii.gz", np.full(shape, 3.0), AFFINE3)
    cfg = box3(0.0, {"r": {"value": "1 1/hour", "image": str(mpi_tmp / "r.nii.gz")}})
    cfg["units"] = {"length": "mm", "time": "day"}
    cfg["species"]["cells"]["diffusion"] = 0.1
    cfg["species"]["cells"]["reaction"] = "r * cells"
    pr = tp.Problem(cfg)
    x = pr.disc.V0.tabulate_dof_coordinates()
    inside = images.read_image(mpi_tmp / "r.nii.gz").inside(x)
    r = pr.parameter_fields["r"].x.array
    np.testing.assert_allclose(r[inside], 72.0)  # 3 /hour in a model timed in days
    np.testing.assert_allclose(r[~inside], 24.0)  # the value outside the image
    pr.destroy()


@pytest.mark.parametrize("initial, message", [
    ({"image": "ic.png"}, "is not a NIfTI image name"),
    ({"image": "ic.nii.gz", "time": 0.0}, "unknown key"),
    ({"image": "ic.nii.gz", "data": "d.csv"}, "not both"),
])
def test_bad_image_initial_conditions_are_config_errors(initial, message):
    with pytest.raises(ConfigError, match=message):
        tp.load(box3(initial))


def test_images_that_miss_the_mesh_or_its_dimension_are_config_errors(mpi_tmp):
    shape, blob = blob3()
    far = AFFINE3.copy()
    far[:3, 3] += 500.0
    save(mpi_tmp / "far.nii.gz", blob, far)
    with pytest.raises(ConfigError, match="does not overlap the mesh"):
        tp.Problem(box3({"image": str(mpi_tmp / "far.nii.gz")}))
    save(mpi_tmp / "flat.nii.gz", blob[:, :, 0], AFFINE3)
    with pytest.raises(ConfigError, match="2-D image but the mesh is 3-D"):
        tp.Problem(box3({"image": str(mpi_tmp / "flat.nii.gz")}))
    write(mpi_tmp / "junk.nii.gz", "not an image")
    with pytest.raises(ConfigError, match="cannot be read as a NIfTI image"):
        tp.Problem(box3({"image": str(mpi_tmp / "junk.nii.gz")}))
    with pytest.raises(ConfigError, match="labels map the values of a label image"):
        tp.load(box3(0.0, {"D": {"value": 0.1, "labels": {"1": 2.0}}}))


# ----------------------------------------------------------------------- images as data
def square(D=0.02, r=2.0):
    return {"mesh": {"shape": "rectangle", "size": [1.0, 1.0], "cells": [16, 16]},
            "time": {"end": 0.2, "dt": 0.02}, "output": {"progress": False},
            "parameters": {"D": D, "r": r},
            "species": {"u": {"diffusion": "D", "reaction": "r * u * (1 - u)",
                              "initial": "0.8 * exp(-((x - 0.4)**2 + (y - 0.5)**2) / 0.02)"}}}


def test_an_image_manifest_is_read_as_voxel_samples_inside_the_mask(mpi_tmp):
    shape = (30, 28)
    grid = centres(shape, AFFINE2)
    save(mpi_tmp / "v1.nii.gz", (grid[:, 0] + 2 * grid[:, 1]).reshape(shape), AFFINE2)
    mask = (np.indices(shape)[0] < 20).astype(np.uint8)
    save(mpi_tmp / "mask.nii.gz", mask, AFFINE2, np.uint8)
    write(mpi_tmp / "m.csv", "t,field,image,mask,sigma\n0.1,u,v1.nii.gz,mask.nii.gz,0.05\n"
                             "0.2,u,v1.nii.gz,,\n")
    d = read_data(mpi_tmp / "m.csv")
    assert d.kind == "field" and d.voxels and d.columns[:5] == ["t", "x", "y", "field", "value"]
    assert len(d) == int(mask.sum()) + shape[0] * shape[1]
    np.testing.assert_allclose(d.value, d.points[:, 0] + 2 * d.points[:, 1], atol=1e-12)
    assert set(d.sigma[d.t == 0.1]) == {0.05} and set(d.sigma[d.t == 0.2]) == {1.0}
    p = tp.Problem(square())
    inner = within_mesh(p, d)  # the image's corner sticks out of the unit square
    assert 0 < len(inner) < len(d)
    assert np.all((inner.points >= 0) & (inner.points <= 1))
    p.destroy()


@pytest.mark.parametrize("text, message", [
    ("t,field,image,colour\n0,u,v1.nii.gz,red\n", "an image manifest has the columns"),
    ("t,field,image\n0,u,missing.nii.gz\n", "no such image file"),
    ("t,field,image,mask\n0,u,v1.nii.gz,other.nii.gz\n", "is not on the grid of the image"),
    ("t,field,image,mask\n0,u,v1.nii.gz,empty.nii.gz\n", "is empty"),
])
def test_bad_manifests_are_config_errors(mpi_tmp, text, message):
    shape = (10, 12)
    save(mpi_tmp / "v1.nii.gz", np.ones(shape), AFFINE2)
    save(mpi_tmp / "other.nii.gz", np.ones((10, 11)), AFFINE2)
    save(mpi_tmp / "empty.nii.gz", np.zeros(shape), AFFINE2)
    write(mpi_tmp / "m.csv", text)
    with pytest.raises(ConfigError, match=message):
        read_data(mpi_tmp / "m.csv")


def test_parameters_are_recovered_from_images_of_a_later_visit(mpi_tmp):
    """Noise-free images of the truth at two visits: D and r come back from a wrong start."""
    shape = (30, 28)
    for t in (0.1, 0.2):
        save(mpi_tmp / f"visit-{t}.nii.gz", np.zeros(shape), AFFINE2)
    write(mpi_tmp / "m.csv", "t,field,image\n0.1,u,visit-0.1.nii.gz\n0.2,u,visit-0.2.nii.gz\n")
    truth = tp.Problem(square())
    data = within_mesh(truth, read_data(mpi_tmp / "m.csv"))
    obj = Objective(truth, [data], ["D", "r"])
    data.value[:] = obj.evaluate(np.array([0.02, 2.0])).model  # the truth, voxel by voxel
    obj.destroy()
    truth.destroy()
    start = tp.Problem(square(D=0.01, r=1.0))
    fit = calibrate(start, [data], [FitParameter("D", "D", 1e-3, 0.1),
                                    FitParameter("r", "r", 0.1, 10.0)], starts=1)
    assert fit.status == "converged"
    np.testing.assert_allclose(fit.estimate, [0.02, 2.0], rtol=1e-5)
    start.destroy()


def test_a_proliferation_map_is_fitted_voxel_by_voxel_with_a_regulariser(mpi_tmp):
    """A field parameter r(x) (field = true) from the images of two visits: recovered where
    the tumour is, with the smoothness penalty alpha/2 int |grad r|^2 setting the rest."""
    shape = (30, 28)
    for t in (0.1, 0.2):
        save(mpi_tmp / f"visit-{t}.nii.gz", np.zeros(shape), AFFINE2)
    write(mpi_tmp / "m.csv", "t,field,image\n0.1,u,visit-0.1.nii.gz\n0.2,u,visit-0.2.nii.gz\n")

    def problem(r):
        cfg = square()
        cfg["parameters"]["r"] = {"value": r, "field": True}
        return tp.Problem(cfg)

    truth = problem(2.0)
    xy = truth.parameter_fields["r"].function_space.tabulate_dof_coordinates()
    exact = 2.0 * (1 + 0.5 * xy[:, 0])  # a proliferation gradient along x
    data = within_mesh(truth, read_data(mpi_tmp / "m.csv"))
    obj = Objective(truth, [data], [], fields=["r"])
    data.value[:] = obj.evaluate(obj.layout.gather(exact)).model
    obj.destroy()
    truth.destroy()
    start = problem(1.0)
    fit = calibrate(start, [data], [FitParameter("r", "r", 0.1, 10.0)],
                    regularisation={"r": 1e-5})
    assert fit.status == "converged"
    owned = start.disc.V0.dofmap.index_map.size_local
    est = start.parameter_fields["r"].x.array[:owned]
    u0 = 0.8 * np.exp(-((xy[:owned, 0] - 0.4) ** 2 + (xy[:owned, 1] - 0.5) ** 2) / 0.02)
    where = u0 > 0.2  # where the tumour is, its growth tells r
    err = np.abs(est - exact[:owned])[where] / exact[:owned][where]
    worst = MPI.COMM_WORLD.allreduce(float(err.max()) if where.any() else 0.0, op=MPI.MAX)
    # (measured: 0.06 % at worst)
    assert worst < 0.05
    start.destroy()
