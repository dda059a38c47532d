"""``tumorpde mesh --from-image``: meshes of labelled NIfTI voxels in physical coordinates.

The images have anisotropic voxels and affines that rotate and shift them; the meshes are
made on rank 0 and then read on every rank (the tests run on 1 and 2 ranks).
"""

from __future__ import annotations

import subprocess
import sys

from mpi4py import MPI

import nibabel as nib
import numpy as np
import pytest

import tumorpde as tp
from tumorpde.apps.imagemesh import mesh_from_image
from tumorpde.fem.mesh import build_domain
from tumorpde.model.objects import Mesh

COMM = MPI.COMM_WORLD


def rotation(axis_z: float, axis_x: float = 0.0) -> np.ndarray:
    cz, sz = np.cos(axis_z), np.sin(axis_z)
    cx, sx = np.cos(axis_x), np.sin(axis_x)
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    return rz @ rx


def make_image(path, shape, linear, centre, label_of):
    """A label image whose voxel centres are ``linear @ (index - middle) + centre``;
    ``label_of(points)`` gives each voxel's label."""
    dim = len(shape)
    affine = np.eye(4)
    affine[:dim, :dim] = linear
    affine[:dim, 3] = np.asarray(centre) - linear @ ((np.array(shape) - 1) / 2)
    idx = np.indices(shape).reshape(dim, -1).T
    points = idx @ linear.T + affine[:dim, 3]
    data = label_of(points).reshape(shape).astype(np.uint8)
    if COMM.rank == 0:
        img = nib.Nifti1Image(data if dim == 3 else data[:, :, None], affine)
        img.set_sform(affine, code=1)
        nib.save(img, str(path))
    COMM.Barrier()
    return data, affine


def on_root(fn, *args, **kw):
    res = fn(*args, **kw) if COMM.rank == 0 else None
    return COMM.bcast(res, root=0)


def measure(domain, fn=None, tag=None):
    """Integral of ``fn(x)`` (default 1) over the mesh or one region."""
    import ufl
    from dolfinx import fem

    dx = ufl.Measure("dx", domain=domain.mesh, subdomain_data=domain.cell_tags)
    x = ufl.SpatialCoordinate(domain.mesh)
    integrand = fn(x) if fn else fem.Constant(domain.mesh, 1.0)
    form = fem.form(integrand * (dx if tag is None else dx(tag)))
    return COMM.allreduce(fem.assemble_scalar(form), op=MPI.SUM)


# an ellipsoid of semi-axes 6, 4, 3 mm centred at (10, -5, 20), in voxels of 0.5 x 0.7 x 1.5 mm
# rotated by 0.4 rad about z and 0.3 rad about x: its body frame is the rotation's
AXES = np.array([6.0, 4.0, 3.0])
CENTRE = np.array([10.0, -5.0, 20.0])
ROT = rotation(0.4, 0.3)


def ellipsoid(points):
    body = (points - CENTRE) @ ROT
    return (((body / AXES) ** 2).sum(axis=1) <= 1.0).astype(int)


@pytest.mark.parametrize("suffix", [".msh", ".xdmf"])
def test_an_ellipsoid_mask_meshes_to_its_volume_in_its_place(mpi_tmp, suffix):
    spacing = np.array([0.5, 0.7, 1.5])
    data, affine = make_image(mpi_tmp / "ell.nii.gz", (34, 26, 14), ROT @ np.diag(spacing),
                              CENTRE, ellipsoid)
    summary = on_root(mesh_from_image, mpi_tmp / "ell.nii.gz", mpi_tmp / f"ell{suffix}")
    # .msh names the boundary; .xdmf keeps its tag, which the config names by number
    assert summary.dim == 3
    assert summary.boundaries == ({"outer": 1} if suffix == ".msh" else {"1": 1})
    d = build_domain(Mesh(shape="file", file=str(mpi_tmp / f"ell{suffix}")), COMM)
    exact = 4.0 / 3.0 * np.pi * AXES.prod()  # 301.6 mm^3
    voxels = data.sum() * spacing.prod()      # the mask's own volume: 306.5 mm^3 (+1.6 %)
    vol = measure(d)
    # the mesh encloses the mask's volume (measured +0.1 %), within the voxelisation's own
    # error of the ellipsoid
    assert vol == pytest.approx(voxels, rel=1e-2)
    assert abs(vol / exact - 1) <= abs(voxels / exact - 1) + 1e-2
    # in its physical place: the centroid within a tenth of the smallest voxel edge
    centroid = np.array([measure(d, lambda x, i=i: x[i]) for i in range(3)]) / vol
    assert np.linalg.norm(centroid - CENTRE) < 0.1 * spacing.min()
    # and its orientation and shape: the second moments along the body axes are those of
    # the voxels (a^2/5, b^2/5, c^2/5 of the ellipsoid as its voxels resolve it; the
    # shortest axis is 4 slices thick, so to 12 %)
    idx = np.argwhere(data)
    body_vox = (idx @ affine[:3, :3].T + affine[:3, 3] - CENTRE) @ ROT
    for i in range(3):
        axis = ROT[:, i]
        m2 = measure(d, lambda x, a=axis: sum((x[j] - CENTRE[j]) * a[j] for j in range(3)) ** 2)
        assert m2 / vol == pytest.approx(np.mean(body_vox[:, i] ** 2), rel=0.12)
    assert d.regions == ({"label1": 1} if suffix == ".msh" else {"1": 1})
    assert d.boundaries == summary.boundaries


def test_two_labels_become_two_regions(mpi_tmp):
    # a sphere of radius 5 mm (label 1) around a core of radius 2.5 mm (label 2)
    centre = np.array([1.0, 2.0, -3.0])

    def labels(p):
        r = np.linalg.norm(p - centre, axis=1)
        return np.where(r <= 2.5, 2, np.where(r <= 5.0, 1, 0))

    data, _ = make_image(mpi_tmp / "two.nii.gz", (28, 24, 16),
                         rotation(-0.7) @ np.diag([0.45, 0.5, 0.8]), centre, labels)
    vox = 0.45 * 0.5 * 0.8
    summary = on_root(mesh_from_image, mpi_tmp / "two.nii.gz", mpi_tmp / "two.msh",
                      regions=["2=core"], size=0.5)
    assert summary.regions == {"label1": 1, "core": 2}
    d = build_domain(Mesh(shape="file", file=str(mpi_tmp / "two.msh")), COMM)
    assert d.regions == {"label1": 1, "core": 2}
    assert measure(d) == pytest.approx(data.astype(bool).sum() * vox, rel=1e-2)
    # the interface between labels follows the cells (0.5 mm): the core to 10 %
    assert measure(d, tag=2) == pytest.approx((data == 2).sum() * vox, rel=0.1)
    # --label 2 meshes the core alone
    core = on_root(mesh_from_image, mpi_tmp / "two.nii.gz", mpi_tmp / "core.msh", labels=[2])
    dc = build_domain(Mesh(shape="file", file=str(mpi_tmp / "core.msh")), COMM)
    assert core.regions == {"label2": 2}
    assert measure(dc) == pytest.approx((data == 2).sum() * vox, rel=2e-2)


def test_a_hollow_sphere_keeps_its_cavity(mpi_tmp):
    # a shell between radii 3 and 6 mm: the inner surface bounds a cavity, not a second body
    centre = np.array([1.0, 2.0, 3.0])

    def labels(p):
        r = np.linalg.norm(p - centre, axis=1)
        return ((r >= 3.0) & (r <= 6.0)).astype(int)

    data, _ = make_image(mpi_tmp / "hollow.nii.gz", (40, 36, 20),
                         rotation(0.3) @ np.diag([0.4, 0.45, 0.8]), centre, labels)
    on_root(mesh_from_image, mpi_tmp / "hollow.nii.gz", mpi_tmp / "hollow.msh")
    d = build_domain(Mesh(shape="file", file=str(mpi_tmp / "hollow.msh")), COMM)
    vol = measure(d)
    assert vol == pytest.approx(data.sum() * 0.4 * 0.45 * 0.8, rel=1e-2)  # measured +0.02 %
    # the polar moment of a shell: 4 pi / 5 (6^5 - 3^5); a filled cavity would add 3^5 of it
    polar = measure(d, lambda x: sum((x[i] - centre[i]) ** 2 for i in range(3)))
    assert polar == pytest.approx(4 * np.pi / 5 * (6.0 ** 5 - 3.0 ** 5), rel=0.03)


def test_a_2d_slice_with_a_hole_and_an_island(mpi_tmp):
    # a ring (label 1, radii 2.5 and 6) and a disk (label 2, radius 2) in a slice of
    # 0.25 x 0.4 mm pixels rotated by 0.3 rad
    ring_c, disk_c = np.array([3.0, -2.0]), np.array([12.0, 1.0])

    def labels(p):
        r1 = np.linalg.norm(p - ring_c, axis=1)
        r2 = np.linalg.norm(p - disk_c, axis=1)
        return np.where((r1 >= 2.5) & (r1 <= 6.0), 1, np.where(r2 <= 2.0, 2, 0))

    rot = rotation(0.3)[:2, :2]
    data, _ = make_image(mpi_tmp / "slice.nii.gz", (90, 60), rot @ np.diag([0.25, 0.4]),
                         [7.0, -1.0], labels)
    px = 0.25 * 0.4
    summary = on_root(mesh_from_image, mpi_tmp / "slice.nii.gz", mpi_tmp / "slice.msh")
    assert summary.dim == 2 and set(summary.regions) == {"label1", "label2"}
    d = build_domain(Mesh(shape="file", file=str(mpi_tmp / "slice.msh")), COMM)
    assert d.mesh.geometry.dim == 2
    for tag in (1, 2):
        assert measure(d, tag=tag) == pytest.approx((data == tag).sum() * px, rel=2e-2)
    # the hole is empty: the ring's first moment about its centre vanishes and its
    # polar moment is that of an annulus, pi/2 (6^4 - 2.5^4)
    ring = measure(d, tag=1)
    cx = [measure(d, lambda x, i=i: x[i] - ring_c[i], tag=1) / ring for i in range(2)]
    assert np.hypot(*cx) < 0.05
    polar = measure(d, lambda x: (x[0] - ring_c[0]) ** 2 + (x[1] - ring_c[1]) ** 2, tag=1)
    assert polar == pytest.approx(np.pi / 2 * (6.0 ** 4 - 2.5 ** 4), rel=0.03)


def test_a_model_runs_on_an_image_mesh_with_the_image_as_initial_condition(mpi_tmp):
    spacing = np.array([0.5, 0.7, 1.5])
    data, _ = make_image(mpi_tmp / "ell.nii.gz", (34, 26, 14), ROT @ np.diag(spacing), CENTRE,
                         ellipsoid)
    on_root(mesh_from_image, mpi_tmp / "ell.nii.gz", mpi_tmp / "ell.msh", size=1.2)
    cfg = {"mesh": {"shape": "file", "file": str(mpi_tmp / "ell.msh")},
           "time": {"end": 0.2, "dt": 0.1}, "output": {"progress": False},
           "parameters": {"D": 0.05, "r": 0.1},
           "species": {"cells": {"diffusion": "D", "reaction": "r * cells * (1 - cells)",
                                 "initial": {"image": str(mpi_tmp / "ell.nii.gz")},
                                 "boundary": {"outer": {"flux": 0.0}}}}}
    p = tp.Problem(cfg)
    # the mask as initial density lands on the mesh: inside, the trilinear interpolant of
    # the mask is 1; it falls to about 1/2 across the boundary's half voxel, which on this
    # coarse mask (4 slices of 1.5 mm across) is a quarter of the volume (measured 0.74)
    total0 = p.observe()["total_cells"]
    assert 0.65 * measure(p.domain) < total0 <= measure(p.domain) * (1 + 1e-12)
    p.solve()
    assert p.observe()["total_cells"] > total0  # logistic growth with no flux out
    p.destroy()


@pytest.mark.subprocess
@pytest.mark.parametrize("case, message", [
    ("text", "--from-image: mask.txt is not a NIfTI image"),
    ("empty", "--from-image: empty.nii.gz has no non-zero voxel"),
    ("label", "--label: label 7 is not in mask.nii.gz (its labels: 1)"),
    ("singular", "--from-image: singular.nii.gz: the affine is singular"),
    ("size", "--size: the cell size must be a positive number"),
    ("output", "--output: m.vtk: --from-image writes .msh or .xdmf files"),
    ("name", "NAME: does not apply to --from-image"),
])
def test_bad_image_input_exits_2_with_one_line(tmp_path, case, message):
    aff = np.diag([0.5, 0.5, 1.0, 1.0])
    mask = np.zeros((8, 8, 4), np.uint8)
    mask[2:6, 2:6, 1:3] = 1
    nib.save(nib.Nifti1Image(mask, aff), str(tmp_path / "mask.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros_like(mask), aff), str(tmp_path / "empty.nii.gz"))
    sing = aff.copy()
    sing[2, 2] = 0.0
    img = nib.Nifti1Image(mask, None)
    img.set_qform(None, code=0)
    img.set_sform(sing, code=2)  # a singular sform (the qform cannot even store one)
    nib.save(img, str(tmp_path / "singular.nii.gz"))
    (tmp_path / "mask.txt").write_text("0 1\n")
    args = {"text": ["--from-image", "mask.txt"],
            "empty": ["--from-image", "empty.nii.gz"],
            "label": ["--from-image", "mask.nii.gz", "--label", "7"],
            "singular": ["--from-image", "singular.nii.gz"],
            "size": ["--from-image", "mask.nii.gz", "--size", "0"],
            "output": ["--from-image", "mask.nii.gz", "-o", "m.vtk"],
            "name": ["disk", "--from-image", "mask.nii.gz"]}[case]
    r = subprocess.run([sys.executable, "-m", "tumorpde", "mesh", *args], capture_output=True,
                       text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("tumorpde: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert message in r.stderr
