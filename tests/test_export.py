"""``tumorpde export DIR --nifti --like REF``: fields of a run on the grid of a reference image.

The images have anisotropic voxels and affines that rotate and shift them; the meshes are
axis-aligned boxes and an L-shaped (non-convex) graded triangulation, for which the exact
expected map (inside: the P1 interpolant; on the rim: the value at the mesh's nearest point
if that lies in the voxel; else 0) is known in closed form.

The in-process tests run serially and under ``mpiexec -n 2`` (each rank exports the same
run into its own directory); the command-line tests run as child processes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mpi4py import MPI

import nibabel as nib
import numpy as np
import pytest
from helpers import save_nifti as save
from helpers import shared_tmp_dir
from helpers import voxel_centres as centres
from helpers import write_on_root as write

import tumorpde as tp
from tumorpde.apps.cli import main
from tumorpde.apps.export import METRICS_COLUMNS, _closest, _time_labels, export_nifti, resample_matrix
from tumorpde.errors import ConfigError
from tumorpde.io import images

MPIEXEC = Path(sys.executable).parent / "mpiexec"

C, S = np.cos(np.radians(20)), np.sin(np.radians(20))
# 0.9 x 1.1 x 2.0 mm voxels, rotated by 20 degrees about z and shifted
AFFINE3 = np.array([[0.9 * C, -1.1 * S, 0.0, -3.0],
                    [0.9 * S, 1.1 * C, 0.0, -4.0],
                    [0.0, 0.0, 2.0, -6.0],
                    [0.0, 0.0, 0.0, 1.0]])
SHAPE3 = (18, 16, 9)
# a box inside the hull of the image's voxel centres, so that the image initial condition
# is the exact trilinear (here: linear) interpolant at every node
BOX_LO, BOX_HI = np.array([-2.0, 0.0, -4.0]), np.array([6.0, 8.0, 6.0])


def linear(p):
    return 1.0 + 0.1 * p[:, 0] - 0.05 * p[:, 1] + 0.02 * p[:, 2]


def image_of(data, affine):
    return images.from_array(np.asarray(data, dtype=float), affine)


# ------------------------------------------------------------------- point location
def l_mesh():
    """An L-shaped triangulation of [0,1]^2 minus (0.5,1]^2, graded (cells 0.01 to 0.2)."""
    xs = np.unique(np.r_[0.5 * np.linspace(0, 1, 8) ** 2, 0.5 + 0.5 * np.linspace(0, 1, 4)])
    nx = len(xs)
    nodes = np.array([[x, y] for x in xs for y in xs])
    tris = []
    for i in range(nx - 1):
        for j in range(nx - 1):
            if xs[i] >= 0.5 and xs[j] >= 0.5:
                continue  # the notch
            a, b, c, d = i * nx + j, (i + 1) * nx + j, (i + 1) * nx + j + 1, i * nx + j + 1
            tris += [[a, b, c], [a, c, d]]
    return nodes, np.array(tris)


def l_expected(p, index, f):
    """Exact export of a linear ``f`` on the L: inside f(p), rim f(nearest), else 0."""
    boxes = [(np.array([0.0, 0.0]), np.array([1.0, 0.5])), (np.array([0.0, 0.0]),
                                                             np.array([0.5, 1.0]))]
    qs = [np.clip(p, lo, hi) for lo, hi in boxes]
    ds = np.array([np.linalg.norm(p - q, axis=1) for q in qs])
    q = np.where((ds[0] <= ds[1])[:, None], qs[0], qs[1])
    dist = ds.min(axis=0)
    shift = np.abs(index(p) - index(q))
    keep = (dist == 0) | np.all(shift <= 0.5, axis=1)
    # voxels too close to a tie or to the half-voxel limit to be decided robustly
    unclear = (np.abs(ds[0] - ds[1]) < 1e-9) & (dist > 0) | \
        (np.abs(shift - 0.5).min(axis=1) < 1e-9) | ((dist > 0) & (dist < 1e-9))
    return np.where(keep, f(q), 0.0), dist == 0, unclear


def test_a_non_convex_graded_mesh_is_resampled_exactly():
    nodes, cells = l_mesh()
    n = (36, 40)
    rot = np.array([[C, -S], [S, C]]) @ np.diag([0.05, 0.04])
    affine = np.eye(4)
    affine[:2, :2] = rot
    affine[:2, 3] = [0.5, 0.5] - rot @ ((np.array(n) - 1) / 2)
    image = image_of(np.zeros(n), affine)

    def f(x):
        return 1.0 + 2.0 * x[:, 0] - 3.0 * x[:, 1]

    res = resample_matrix(nodes, cells, image)
    got = res.apply(f(nodes)).ravel()
    p = centres(n, affine)
    want, inside, unclear = l_expected(p, image.index, f)
    ok = ~unclear
    np.testing.assert_allclose(got[ok], want[ok], atol=1e-12)
    assert res.inside == int(inside.sum())
    notch = np.all((p > 0.5 + 0.05) & (p < 1.0 - 0.05), axis=1)
    assert notch.sum() > 20 and np.all(got[notch] == 0.0)  # nothing leaks into the notch
    # the weights of every voxel with a value are a partition of unity
    rows = np.asarray(res.matrix.sum(axis=1)).ravel()
    np.testing.assert_allclose(rows[rows != 0], 1.0, atol=1e-12)
    assert res.rim > 20 and np.sum((rows != 0) & ~inside) == res.rim
    assert np.sum(rows[ok] == 0) > 100  # voxels away from the mesh are 0
    # a 2-D mesh stored with a z = 0 column is the same mesh
    again = resample_matrix(np.c_[nodes, np.zeros(len(nodes))], cells, image)
    assert (again.matrix != res.matrix).nnz == 0


def test_point_location_on_an_unstructured_mesh_agrees_with_a_search_of_every_cell():
    from scipy.spatial import Delaunay

    rng = np.random.default_rng(1)
    pts = np.vstack([rng.random((120, 3)), np.array(np.meshgrid(*[[0, 1]] * 3)).reshape(3, -1).T])
    cells = Delaunay(pts).simplices
    u = rng.random(len(pts))
    affine = AFFINE3.copy()
    affine[:3, :3] *= 0.1
    affine[:3, 3] = [-0.1, -0.25, -0.13]
    n = (14, 13, 7)
    image = image_of(np.zeros(n), affine)
    got = resample_matrix(pts, cells, image).apply(u).ravel()
    p = centres(n, affine)
    # every voxel against every cell
    v = pts[cells]
    m = np.transpose(v[:, 1:] - v[:, :1], (0, 2, 1))
    mu = np.einsum("cij,pcj->pci", np.linalg.inv(m), p[:, None, :] - v[None, :, 0])
    lam = np.concatenate([1 - mu.sum(-1, keepdims=True), mu], -1)
    best = np.argmax(lam.min(-1), axis=1)
    inside = lam.min(-1).max(axis=1) >= -1e-10
    want = np.zeros(len(p))
    want[inside] = np.einsum("pv,pv->p", lam[inside, best[inside]], u[cells[best[inside]]])
    # outside: the nearest point over every facet of every cell
    facets = np.concatenate([np.delete(cells, i, axis=1) for i in range(4)])
    outside = np.flatnonzero(~inside)
    pp = np.repeat(p[outside], len(facets), axis=0)
    dist, w = _closest(pp, np.tile(pts[facets], (len(outside), 1, 1)))
    dist, w = dist.reshape(len(outside), -1), w.reshape(len(outside), len(facets), -1)
    j = np.argmin(dist, axis=1)
    wj = w[np.arange(len(outside)), j]
    q = np.einsum("pv,pvd->pd", wj, pts[facets[j]])
    near = np.all(np.abs(image.index(p[outside]) - image.index(q)) <= 0.5, axis=1)
    want[outside[near]] = np.einsum("pv,pv->p", wj[near], u[facets[j[near]]])
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert inside.sum() > 50 and near.sum() > 50 and (~near).sum() > 50


def test_a_mesh_of_another_dimension_or_place_is_refused():
    nodes, cells = l_mesh()
    with pytest.raises(ConfigError, match="is a 3-D image but the run's mesh is 2-D"):
        resample_matrix(nodes, cells, image_of(np.zeros(SHAPE3), AFFINE3))
    far = np.eye(4)
    far[:2, 3] = 50.0
    with pytest.raises(ConfigError, match=r"does not overlap the run's mesh.*mesh box \[0, 1\] x "
                                          r"\[0, 1\], image box \[49.5, 60.5\]"):
        resample_matrix(nodes, cells, image_of(np.zeros((11, 11)), far))


# -------------------------------------------------------------- a run of an image
@pytest.fixture(scope="module")
def shared():
    """A directory for the whole module, shared by the ranks."""
    yield from shared_tmp_dir("tumorpde-export-")


@pytest.fixture(scope="module")
def run3(shared):
    """A 3-D run whose initial condition is a linear image on a rotated anisotropic grid."""
    save(shared / "lin.nii.gz", linear(centres(SHAPE3, AFFINE3)).reshape(SHAPE3), AFFINE3)
    cfg = {"mesh": {"shape": "box", "origin": BOX_LO.tolist(), "size": (BOX_HI - BOX_LO).tolist(),
                    "cells": [8, 8, 10]},
           "time": {"end": 0.1, "dt": 0.05, "output_every": 0.05}, "output": {"progress": False},
           "parameters": {"D": 0.1},
           "species": {"cells": {"diffusion": "D",
                                 "initial": {"image": str(shared / "lin.nii.gz")}}}}
    p = tp.Problem(cfg)
    p.solve(output=shared / "run3")
    p.destroy()
    return shared / "run3"


def mine(shared, name):
    """This rank's own output directory."""
    return shared / f"{name}-rank{MPI.COMM_WORLD.rank}"


def test_the_exported_initial_condition_is_the_image_inside_the_mesh(run3, shared):
    ref = shared / "lin.nii.gz"
    res = export_nifti(run3, ref, times=[0.0], output=mine(shared, "t0"))
    assert [f.name for f in res.files] == ["cells_t0.nii.gz"]
    like = images.read_image(ref)
    out = images.read_image(res.files[0])
    assert out.shape3 == like.shape3 and np.array_equal(out.affine, like.affine)
    assert nib.load(res.files[0]).get_data_dtype() == np.float32
    got, want = out.data.ravel(), like.data.ravel()
    p = like.points(np.argwhere(np.ones(SHAPE3, bool)))
    inside = np.all((p >= BOX_LO) & (p <= BOX_HI), axis=1)
    # a linear image, sampled at nodes inside its voxel centres' hull and interpolated in
    # P1: exact, up to the float32 of the file
    np.testing.assert_allclose(got[inside], want[inside], rtol=2e-7, atol=2e-7)
    # outside the mesh: the value at the nearest point of the box if that is in the voxel,
    # else 0
    q = np.clip(p, BOX_LO, BOX_HI)
    shift = np.abs(like.index(p) - like.index(q))
    rim = ~inside & np.all(shift <= 0.5, axis=1)
    clear = np.abs(shift - 0.5).min(axis=1) > 1e-9
    value_at_q = linear(like.index(q) @ AFFINE3[:3, :3].T + AFFINE3[:3, 3])
    np.testing.assert_allclose(got[rim & clear], value_at_q[rim & clear], rtol=2e-7, atol=2e-7)
    assert np.all(got[~inside & ~rim & clear] == 0.0)
    assert inside.sum() == res.inside > 300 and (rim & clear).sum() > 100
    assert (~inside & ~rim).sum() > 1000


def test_every_field_and_output_time_by_default_with_metrics(run3, shared):
    ref = shared / "lin.nii.gz"
    out = mine(shared, "all")
    res = export_nifti(run3, ref, output=out)
    assert [f.name for f in res.files] == ["cells_t0.nii.gz", "cells_t0.05.nii.gz",
                                           "cells_t0.1.nii.gz"]
    assert res.metrics is None and not (out / "metrics.csv").exists()
    # observed = the exported file itself: Dice 1, no error
    obs = res.files[0]
    m = export_nifti(run3, ref, times=[0.0, 0.1], output=mine(shared, "metrics"), observed=obs,
                     threshold=0.5)
    lines = m.metrics.read_text().splitlines()
    assert lines[0] == ",".join(METRICS_COLUMNS)
    assert lines[0] == ("field,t,dice,volume_predicted,volume_observed,volume_error,"
                        "total_predicted,total_observed,total_error,rmse,voxels")
    assert len(lines) == 3
    first = dict(zip(METRICS_COLUMNS, lines[1].split(","), strict=True))
    assert first["field"] == "cells" and float(first["t"]) == 0.0
    assert float(first["dice"]) == 1.0 and float(first["rmse"]) == 0.0
    assert float(first["volume_error"]) == 0.0 and float(first["total_error"]) == 0.0
    assert int(first["voxels"]) == int(np.prod(SHAPE3))
    assert float(first["volume_predicted"]) > 0  # 0.5 is inside the image's range
    later = m.rows[1]
    assert later["t"] == 0.1 and 0.9 < later["dice"] <= 1.0 and later["rmse"] > 0
    # a mask restricts the comparison to its voxels
    mask = np.zeros(SHAPE3, np.uint8)
    mask[:6] = 1
    save(shared / "mask.nii.gz", mask, AFFINE3, np.uint8)
    mm = export_nifti(run3, ref, times=[0.0], output=mine(shared, "masked"), observed=obs,
                      mask=shared / "mask.nii.gz")
    assert mm.rows[0]["voxels"] == int(mask.sum()) and mm.rows[0]["dice"] == 1.0


def test_times_match_to_1e_9_and_file_names_stay_distinct(run3, shared):
    res = export_nifti(run3, shared / "lin.nii.gz", times=[0.05 * (1 + 1e-12), 0.05],
                       output=mine(shared, "near"))
    assert res.times == [0.05] and [f.name for f in res.files] == ["cells_t0.05.nii.gz"]
    with pytest.raises(ConfigError, match="0.05 is not an output time"):
        export_nifti(run3, shared / "lin.nii.gz", times=[0.05 * (1 + 1e-6)])
    assert _time_labels([0.0, 2.5, 30.0]) == ["0", "2.5", "30"]
    assert _time_labels([1.0, 1.0000001, 2.0]) == ["1", "1.0000001", "2"]


# ----------------------------------------------------------------- bad input (in-process)
def bad_cases(shared):
    junk = shared / "junk.nii.gz"
    write(junk, "not an image")
    write(shared / "ref.png", "png")
    far = AFFINE3.copy()
    far[:3, 3] += 500.0
    save(shared / "far.nii.gz", np.zeros(SHAPE3), far)
    save(shared / "flat.nii.gz", np.zeros(SHAPE3[:2]), AFFINE3)
    save(shared / "small.nii.gz", np.zeros((4, 4, 4)), AFFINE3)
    (shared / "empty").mkdir(exist_ok=True) if MPI.COMM_WORLD.rank == 0 else None
    MPI.COMM_WORLD.Barrier()
    ref = str(shared / "lin.nii.gz")
    run = str(shared / "run3")
    return [
        (["--nifti", "--like", str(shared / "ref.png")], "ref.png is not a NIfTI image"),
        (["--nifti", "--like", str(junk)], "junk.nii.gz cannot be read as a NIfTI image"),
        (["--nifti", "--like", ref, "--field", "tumour"], "no field 'tumour'"),
        (["--nifti", "--like", ref, "--time", "0.07"],
         "--time: 0.07 is not an output time of .* \\(output times: 0, 0.05, 0.1\\)"),
        (["--nifti", "--like", str(shared / "far.nii.gz")],
         "does not overlap the run's mesh: .*mesh box \\[-2, 6\\] x \\[0, 8\\] x \\[-4, 6\\], "
         "image box"),
        (["--like", ref], "--nifti: give the output format"),
        (["--nifti"], "the following arguments are required: --like"),
        (["--nifti", "--like", str(shared / "flat.nii.gz")],
         "is a 2-D image but the run's mesh is 3-D"),
        (["--nifti", "--like", ref, "--observed", str(shared / "small.nii.gz")],
         "--observed: small.nii.gz has shape \\(4, 4, 4\\)"),
        (["--nifti", "--like", ref, "--observed", str(shared / "far.nii.gz")],
         "--observed: far.nii.gz is not on the grid of lin.nii.gz"),
        (["--nifti", "--like", ref, "--mask", ref], "--mask: .*give --observed too"),
        (["--nifti", "--like", ref, "--threshold", "0.3"], "--threshold: .*give --observed"),
        (["--nifti", "--like", ref, "--observed", ref, "--mask", str(shared / "far.nii.gz")],
         "--mask: far.nii.gz is not on the grid"),
    ], run


def test_bad_input_ends_with_status_2_and_one_line_and_writes_nothing(run3, shared, capsys):
    cases, run = bad_cases(shared)
    cases.append((["--nifti", "--like", str(shared / "lin.nii.gz")], "holds no run.json"))
    import re

    for i, (args, message) in enumerate(cases):
        out = shared / f"bad-{i}"
        where = str(shared / "empty") if message == "holds no run.json" else run
        capsys.readouterr()
        assert main(["export", where, *args, "-o", str(out)]) == 2, args
        err = capsys.readouterr().err
        if MPI.COMM_WORLD.rank == 0:
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("tumorpde: error: "), err
            assert re.search(message, lines[0]), (message, lines[0])
        else:
            assert err == ""
        assert not out.exists()


# ------------------------------------------------------------- the command line
CONFIG2 = """\
title = "export test"

[mesh]
shape = "rectangle"
size = [1.0, 1.0]
cells = [12, 12]

[time]
end = 0.1
dt = 0.05
output_every = 0.05

[parameters]
D = 0.01

[species.u]
diffusion = "D"
initial = {{ image = "{image}" }}

[species.v]
diffusion = "D"
initial = {{ image = "{image}", scale = 0.5 }}
"""

AFFINE2 = np.array([[0.05 * C, -0.04 * S, 0.0, 0.1],
                    [0.05 * S, 0.04 * C, 0.0, -0.05],
                    [0.0, 0.0, 1.0, 0.0],
                    [0.0, 0.0, 0.0, 1.0]])
SHAPE2 = (30, 28)


def cli(*args, cwd, np_=1):
    cmd = [sys.executable, "-m", "tumorpde", *map(str, args)]
    if np_ > 1:
        cmd = [str(MPIEXEC), "-n", str(np_), *cmd]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def run2(tmp_path_factory):
    """A 2-D run of two species whose initial conditions are a blob image, by the CLI."""
    d = tmp_path_factory.mktemp("export-cli")
    p = centres(SHAPE2, AFFINE2)
    blob = np.exp(-((p - [0.5, 0.5]) ** 2).sum(1) / 0.05).reshape(SHAPE2)
    save(d / "ic.nii.gz", blob, AFFINE2)
    (d / "cfg.toml").write_text(CONFIG2.format(image=d / "ic.nii.gz"))
    r = cli("run", "cfg.toml", "-o", "run", "-q", cwd=d)
    assert r.returncode == 0, r.stderr
    return d


@pytest.mark.subprocess
def test_the_command_writes_every_field_and_time_and_the_metrics(run2):
    r = cli("export", "run", "--nifti", "--like", "ic.nii.gz", cwd=run2)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [r.stdout.strip()] and \
        r.stdout.startswith("tumorpde: wrote 6 files -> run/nifti")
    names = sorted(f.name for f in (run2 / "run" / "nifti").iterdir())
    assert names == sorted(f"{s}_t{t}.nii.gz" for s in "uv" for t in ("0", "0.05", "0.1"))
    img = nib.load(run2 / "run" / "nifti" / "u_t0.nii.gz")
    assert img.shape == (*SHAPE2, 1)
    np.testing.assert_allclose(img.affine, nib.load(run2 / "ic.nii.gz").affine)
    u = np.asarray(img.dataobj)[..., 0]
    v = np.asarray(nib.load(run2 / "run" / "nifti" / "v_t0.nii.gz").dataobj)[..., 0]
    np.testing.assert_allclose(v, 0.5 * u, rtol=1e-6)
    # the image's corner outside the unit square is 0
    p = centres(SHAPE2, AFFINE2)
    far = np.any((p < -0.03) | (p > 1.03), axis=1).reshape(SHAPE2)
    assert far.sum() > 10 and np.all(u[far] == 0)
    r = cli("export", "run", "--nifti", "--like", "ic.nii.gz", "--field", "u", "--time", "0",
            "--observed", "run/nifti/u_t0.nii.gz", "--threshold", "0.2", "-o", "m", cwd=run2)
    assert r.returncode == 0, r.stderr
    assert "wrote 2 files -> m" in r.stdout
    lines = (run2 / "m" / "metrics.csv").read_text().splitlines()
    assert lines[0] == ",".join(METRICS_COLUMNS) and len(lines) == 2
    row = dict(zip(METRICS_COLUMNS, lines[1].split(","), strict=True))
    assert row["field"] == "u" and float(row["dice"]) == 1.0 and float(row["rmse"]) == 0.0


@pytest.mark.subprocess
def test_bad_input_of_the_command_is_status_2_with_one_line(run2):
    for args, message in [(["--like", "ic.nii.gz"], "tumorpde: error: --nifti: give the output "
                                                     "format"),
                          (["--nifti", "--like", "cfg.toml"], "cfg.toml is not a NIfTI image"),
                          (["--nifti", "--like", "ic.nii.gz", "--time", "2"],
                           "2 is not an output time")]:
        r = cli("export", "run", *args, "-o", "bad", cwd=run2)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr, r.stderr
        assert not (run2 / "bad").exists()


@pytest.mark.subprocess
@pytest.mark.skipif(not MPIEXEC.exists(), reason="no mpiexec next to the interpreter")
def test_two_ranks_write_the_same_files_as_one(run2):
    args = ["export", "run", "--nifti", "--like", "ic.nii.gz", "--observed", "ic.nii.gz"]
    r1 = cli(*args, "-o", "one", cwd=run2)
    r2 = cli(*args, "-o", "two", cwd=run2, np_=2)
    assert r1.returncode == 0, r1.stderr
    assert r2.returncode == 0, r2.stderr
    assert r2.stdout.count("tumorpde: wrote") == 1
    one = sorted(p.name for p in (run2 / "one").iterdir())
    assert one == sorted(p.name for p in (run2 / "two").iterdir()) and len(one) == 7
    for name in one:
        assert (run2 / "one" / name).read_bytes() == (run2 / "two" / name).read_bytes(), name
    r = cli("export", "run", "--like", "ic.nii.gz", "-o", "bad", cwd=run2, np_=2)
    assert r.returncode == 2 and r.stderr.count("tumorpde: error:") == 1, r.stderr
