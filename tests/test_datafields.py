"""Initial conditions from data: ``initial = { data = "FILE.csv", time = T0 }``."""

from __future__ import annotations

from mpi4py import MPI

import numpy as np
import pytest

import tumorpde as tp
from tumorpde.errors import ConfigError


def write(path, text):
    if MPI.COMM_WORLD.rank == 0:
        path.write_text(text)
    MPI.COMM_WORLD.Barrier()


def interval(data: str, time: float | None = 0.0, cells: int = 10) -> dict:
    init = {"data": data} if time is None else {"data": data, "time": time}
    return {"mesh": {"shape": "interval", "size": [1.0], "cells": [cells]},
            "time": {"end": 0.1, "dt": 0.05}, "output": {"progress": False},
            "species": {"u": {"diffusion": 0.01, "initial": init}, "v": {"initial": 2.0}}}


def test_a_profile_is_interpolated_linearly_with_replicates_averaged(mpi_tmp):
    f = mpi_tmp / "d.csv"
    write(f, "t,x,field,value\n0,0.0,u,1.0\n0,0.5,u,0.0\n0,0.5,u,0.2\n0,0.2,u,0.5\n"
             "1,0.2,u,9\n0,0.3,v,7\n")
    p = tp.Problem(interval(str(f)))
    x = p.disc.V0.tabulate_dof_coordinates()[:, 0]
    expect = np.interp(x, [0.0, 0.2, 0.5], [1.0, 0.5, 0.1])  # constant beyond x = 0.5
    np.testing.assert_allclose(p.fields["u"].x.array, expect, rtol=0, atol=1e-14)
    np.testing.assert_allclose(p.fields["v"].x.array, 2.0)
    p.destroy()


def test_the_time_defaults_to_the_start_and_paths_are_relative_to_the_config(mpi_tmp):
    write(mpi_tmp / "d.csv", "t,x,field,value\n0,0.0,u,1.0\n0,1.0,u,3.0\n")
    write(mpi_tmp / "m.toml", '[mesh]\nshape = "interval"\nsize = [1.0]\ncells = [4]\n'
                              '[time]\nend = 0.1\ndt = 0.05\n'
                              '[species.u]\ninitial = { data = "d.csv" }\n')
    p = tp.Problem(tp.load(mpi_tmp / "m.toml"))
    # the integral of the interpolated profile 1 + 2x
    assert p.observe()["total_u"] == pytest.approx(2.0, rel=1e-12)
    p.destroy()


def test_a_2d_image_of_samples_integrates_like_the_linear_function_it_samples(mpi_tmp):
    rng = np.random.default_rng(0)
    pts = np.vstack([[[0, 0], [1, 0], [0, 1], [1, 1]], rng.uniform(0, 1, (30, 2))])
    lines = "".join(f"2,{x:.17g},{y:.17g},u,{1 + 2 * x + 3 * y:.17g}\n" for x, y in pts)
    write(mpi_tmp / "d.csv", "t,x,y,field,value\n" + lines)
    cfg = {"mesh": {"size": [1.0, 1.0], "cells": [12, 12]},
           "time": {"start": 2.0, "end": 2.1, "dt": 0.05}, "output": {"progress": False},
           "species": {"u": {"initial": {"data": str(mpi_tmp / "d.csv"), "time": 2.0}}}}
    p = tp.Problem(cfg)
    # linear data are reproduced exactly by linear interpolation (inside the hull = the square)
    assert p.observe()["total_u"] == pytest.approx(1 + 1 + 1.5, rel=1e-12)
    p.destroy()


@pytest.mark.parametrize("text, time, message", [
    ("t,x,field,value\n0,0.5,u,1\n", 3.0, "no rows of 'u' at t=3"),
    ("t,observable,value\n0,total_u,1\n", 0.0, "holds observable samples"),
    ("t,x,y,field,value\n0,0.5,0.5,u,1\n", 0.0, "the mesh is 1-D"),
    ("t,x,field,value\n0,0.5,u,inf\n", 0.0, "not a finite number"),
])
def test_bad_data_for_an_initial_condition_is_refused(mpi_tmp, text, time, message):
    write(mpi_tmp / "d.csv", text)
    with pytest.raises(ConfigError, match=message) as exc:
        tp.Problem(interval(str(mpi_tmp / "d.csv"), time))
    assert exc.value.key == "species.u.initial.data"


@pytest.mark.serial
def test_the_table_form_is_checked():
    with pytest.raises(ConfigError, match="unknown key"):
        tp.load(interval("d.csv") | {"species": {"u": {"initial": {"data": "d.csv", "at": 1}}}})
    with pytest.raises(ConfigError, match="no such data file"):
        tp.Problem(interval("/nonexistent/d.csv"))
