"""``tumorpde mesh``: bundled gmsh sources, .geo parameters, imports with names mapped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mpi4py import MPI

import numpy as np
import pytest

from tumorpde.apps.meshgen import MESHES_DIR, bundled, geo_parameters
from tumorpde.fem.mesh import build_domain
from tumorpde.io.rundir import read
from tumorpde.model.objects import Mesh

pytestmark = pytest.mark.subprocess


def tumorpde(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tumorpde", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def area(domain, tag: int | None = None) -> float:
    import ufl
    from dolfinx import fem

    dx = ufl.Measure("dx", domain=domain.mesh, subdomain_data=domain.cell_tags)
    one = fem.Constant(domain.mesh, 1.0)
    form = fem.form(one * (dx if tag is None else dx(tag)))
    return MPI.COMM_WORLD.allreduce(fem.assemble_scalar(form), op=MPI.SUM)


def test_bundled_sources_are_in_meshes_dir():
    assert MESHES_DIR.name == "meshes"
    assert set(bundled()) == {"disk", "sphere", "tissue-section", "spheroid-box"}
    assert geo_parameters(bundled()["disk"]) == {"radius": "1.0", "cx": "0.0", "cy": "0.0",
                                                 "cell_size": "0.0"}


def test_disk_source_is_the_builtin_disk(tmp_path):
    r = tumorpde("mesh", "disk", "-o", str(tmp_path / "d.msh"), "--set", "radius=2",
                 "--set", "cell_size=0.25")
    assert r.returncode == 0, r.stderr
    assert "regions: tissue; boundaries: outer" in r.stdout
    from_file = build_domain(Mesh(shape="file", file=str(tmp_path / "d.msh")), MPI.COMM_WORLD)
    builtin = build_domain(Mesh(shape="disk", radius=2.0, cell_size=0.25), MPI.COMM_WORLD)
    assert from_file.num_cells_global() == builtin.num_cells_global()
    assert from_file.regions == builtin.regions == {"tissue": 1}
    assert from_file.boundaries == builtin.boundaries == {"outer": 1}
    assert area(from_file) == pytest.approx(area(builtin), rel=1e-12)
    assert area(from_file) == pytest.approx(np.pi * 4, rel=2e-2)


def test_tissue_section_runs_with_its_names(tmp_path):
    r = tumorpde("mesh", "tissue-section", "-o", str(tmp_path / "s.msh"), "--set", "cell_size=0.4",
                 "--set", "fine_cell_size=0.15")
    assert r.returncode == 0, r.stderr
    d = build_domain(Mesh(shape="file", file=str(tmp_path / "s.msh")), MPI.COMM_WORLD)
    assert d.regions == {"seed": 1, "stroma": 2}
    assert d.boundaries == {"left": 1, "right": 2, "bottom": 3, "top": 4}
    assert area(d, 1) == pytest.approx(np.pi * 0.3**2, rel=6e-2)  # polygon in a circle
    assert area(d) == pytest.approx(4.5**2, rel=1e-12)
    # a model that uses the region and boundary names of the file
    (tmp_path / "m.toml").write_text("""
[mesh]
file = "s.msh"
[time]
end = 0.2
dt = 0.1
[output]
progress = false
[species.u]
diffusion = { seed = 0.1, stroma = 0.01 }
initial = { seed = 1.0, stroma = 0.0 }
boundary.left = { value = 0.0 }
""")
    r = tumorpde("run", "m.toml", "-o", "out", "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    obs = read(tmp_path / "out").observables
    first, last = obs["total_u"][0], obs["total_u"][-1]
    # u = 1 on the seed region's nodes (its interface nodes take either value)
    assert 0.5 * area(d, 1) < first < 2.0 * area(d, 1)
    assert last == pytest.approx(first, rel=1e-6)  # no flux reaches the far boundary


def test_spheroid_box_has_the_box_boundary_names(tmp_path):
    r = tumorpde("mesh", "spheroid-box", "-o", str(tmp_path / "b.msh"), "--set", "cell_size=0.5",
                 "--set", "fine_cell_size=0.25")
    assert r.returncode == 0, r.stderr
    d = build_domain(Mesh(shape="file", file=str(tmp_path / "b.msh")), MPI.COMM_WORLD)
    assert d.gdim == 3 and d.regions == {"spheroid": 1, "stroma": 2}
    assert d.boundaries == {"left": 1, "right": 2, "front": 3, "back": 4, "bottom": 5, "top": 6}
    assert area(d) == pytest.approx(8.0, rel=1e-12)


def pixel_mesh(path: Path) -> None:
    """A segmented 'image' of 8 x 6 pixels of 0.1 mm: label 2 (tumour) in a 3 x 2 block."""
    import meshio

    labels = np.ones((6, 8), dtype=int)
    labels[2:4, 3:6] = 2
    ny, nx = labels.shape
    xs, ys = np.meshgrid(np.arange(nx + 1) * 0.1, np.arange(ny + 1) * 0.1)
    points = np.c_[xs.ravel(), ys.ravel(), np.zeros(xs.size)]
    tri, tags = [], []
    for i in range(ny):
        for j in range(nx):
            a, b = i * (nx + 1) + j, i * (nx + 1) + j + 1
            c, d = b + nx + 1, a + nx + 1
            tri += [[a, b, c], [a, c, d]]
            tags += [labels[i, j]] * 2
    meshio.write(str(path), meshio.Mesh(points, [("triangle", np.array(tri))],
                                        cell_data={"label": [np.array(tags)]}))


def test_import_segmented_image_with_names(tmp_path):
    pixel_mesh(tmp_path / "seg.vtu")
    r = tumorpde("mesh", str(tmp_path / "seg.vtu"), "-o", str(tmp_path / "seg.msh"),
                 "--tag-data", "label", "--region", "1=stroma", "--region", "2=tumor",
                 "--outer", "outer")
    assert r.returncode == 0, r.stderr
    assert "96 cells (2D), regions: stroma, tumor; boundaries: outer" in r.stdout
    d = build_domain(Mesh(shape="file", file=str(tmp_path / "seg.msh")), MPI.COMM_WORLD)
    assert d.regions == {"stroma": 1, "tumor": 2} and d.boundaries == {"outer": 1}
    assert area(d, 2) == pytest.approx(0.06, rel=1e-12)
    assert area(d) == pytest.approx(0.48, rel=1e-12)
    nfacets = MPI.COMM_WORLD.allreduce(int(np.sum(d.facet_tags.values == 1)), op=MPI.SUM)
    assert nfacets == 28  # 2 * (8 + 6) exterior edges
    (tmp_path / "m.toml").write_text("""
[mesh]
file = "seg.msh"
[species.u]
diffusion = { tumor = 0.1, stroma = 0.01 }
initial = 0.0
boundary.outer = { value = 1.0 }
""")
    r = tumorpde("check", "m.toml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (tmp_path / "m.toml").write_text((tmp_path / "m.toml").read_text().replace("tumor =", "tumour ="))
    r = tumorpde("check", "m.toml", cwd=tmp_path)
    assert r.returncode == 2 and "unknown region 'tumour'" in r.stderr and "stroma, tumor" in r.stderr


def test_import_gmsh_file_renames_groups(tmp_path):
    r = tumorpde("mesh", "disk", "-o", str(tmp_path / "d.msh"), "--set", "cell_size=0.5")
    assert r.returncode == 0, r.stderr
    r = tumorpde("mesh", str(tmp_path / "d.msh"), "-o", str(tmp_path / "e.msh"), "--region",
                 "1=brain", "--boundary", "1=skull")
    assert r.returncode == 0, r.stderr
    d = build_domain(Mesh(shape="file", file=str(tmp_path / "e.msh")), MPI.COMM_WORLD)
    assert d.regions == {"brain": 1} and d.boundaries == {"skull": 1}


@pytest.mark.parametrize("args, message", [
    (["disk", "--set", "radiuss=2"], "--set: disk has no parameter 'radiuss' (parameters: radius, "
                                     "cx, cy, cell_size)"),
    (["disk", "--set", "radius=two"], "--set: radius: 'two' is not a number"),
    (["disk", "--set", "radius=-1"], "disk: gmsh: "),
    (["disk", "--region", "1=x"], "--region: applies to imported meshes"),
    (["disk", "-o", "d.vtk"], "--output: d.vtk: tumorpde writes gmsh .msh files"),
    (["cube"], "no mesh file or bundled geometry 'cube' (bundled: disk, sphere, spheroid-box, "
               "tissue-section"),
    ([], "give a NAME"),
])
def test_mesh_bad_input(tmp_path, args, message):
    r = tumorpde("mesh", *args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("tumorpde: error: ") and r.stderr.count("\n") == 1
    assert message in r.stderr


def test_mesh_list():
    r = tumorpde("mesh", "--list")
    assert r.returncode == 0
    assert "tissue-section" in r.stdout and "fine_cell_size=0.03" in r.stdout
