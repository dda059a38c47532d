"""Radially symmetric and axisymmetric problems: ``mesh.coordinates``.

``spherical`` on an interval is a ball (weight 4 pi r^2), ``cylindrical`` on an interval a
disc and on a rectangle the (r, z) half-plane of an axisymmetric body (weight 2 pi r).
Checked against the heat kernels of 3, 2 and 3 dimensions (second-order convergence),
conservation (the no-flux totals to round-off, and the totals are those of the body),
uniform states, boundary fluxes through the sphere, observables, and bad input.
"""

from __future__ import annotations

import math

from mpi4py import MPI

import numpy as np
import pytest

import tumorpde as tp
from tumorpde.errors import ConfigError

T0, T = 0.05, 0.1  # the kernel's age at the start, and the run's length


def _owned(p: tp.Problem) -> tuple[np.ndarray, np.ndarray]:
    disc = p.disc
    n = disc.V.dofmap.index_map.size_local
    return disc.V.tabulate_dof_coordinates()[:n], disc.u.x.array[:n * disc.V.dofmap.bs]


def _sum(x: float) -> float:
    return MPI.COMM_WORLD.allreduce(float(x), op=MPI.SUM)


def kernel(coords: str, shape: str, n: int) -> tuple[float, float, float, float]:
    """The heat kernel of age T0 run for T: (relative weighted L2 error, total at the
    start, total at the end, the exact total)."""
    dim = 3 if coords == "spherical" or shape == "rectangle" else 2
    mesh = {"shape": "interval", "size": [3.0], "cells": [n]} if shape == "interval" else \
        {"shape": "rectangle", "origin": [0.0, -3.0], "size": [3.0, 6.0], "cells": [n, 2 * n]}
    mesh["coordinates"] = coords
    r2 = "x**2" if shape == "interval" else "(x**2 + y**2)"
    cfg = {"mesh": mesh,
           "time": {"end": T, "dt": T / (n / 10), "scheme": "bdf2", "output_every": T},
           "output": {"progress": False},
           "species": {"u": {"diffusion": 1.0, "initial": f"exp(-{r2}/(4*{T0}))"}}}
    p = tp.Problem(cfg)
    start = p.disc.totals()[0]
    while not p.done:
        p.step()
    X, u = _owned(p)
    rr = X[:, 0] ** 2 + (X[:, 1] ** 2 if shape == "rectangle" else 0.0)
    exact = (T0 / (T0 + T)) ** (dim / 2) * np.exp(-rr / (4 * (T0 + T)))
    w = p.disc.volume_mass()
    err = math.sqrt(_sum(np.sum(w * (u - exact) ** 2)) / _sum(np.sum(w * exact ** 2)))
    end = p.disc.totals()[0]
    p.destroy()
    return err, start, end, (4 * math.pi * T0) ** (dim / 2)


@pytest.mark.parametrize("coords", ["spherical", "cylindrical"])
def test_the_radial_heat_kernel_converges_at_second_order_and_conserves(coords):
    errors = []
    for n in (40, 80, 160):
        err, start, end, mass = kernel(coords, "interval", n)
        assert abs(end - start) <= 1e-12 * start  # no flux: the total is kept
        errors.append(err)
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(orders > 1.9), (errors, orders)  # measured 2.2, 2.2
    assert errors[-1] < 5e-3
    # the total is the ball's (disc's) integral: the kernel's exact mass, to O(h^2)
    assert abs(end / mass - 1) < 2e-3


def test_an_axisymmetric_rectangle_is_a_three_dimensional_body():
    # the 3-D heat kernel in (r, z); measured errors 0.091 and 0.018 on 24 x 48 and
    # 48 x 96 cells (h = 0.125 and 0.0625 against the kernel's width 0.45): order 2.3
    coarse, start, end, _ = kernel("cylindrical", "rectangle", 24)
    assert abs(end - start) <= 1e-12 * start
    fine, start, end, mass = kernel("cylindrical", "rectangle", 48)
    assert abs(end - start) <= 1e-12 * start
    assert math.log2(coarse / fine) > 1.9
    assert fine < 0.03
    assert abs(end / mass - 1) < 0.01  # measured 0.3 %


def test_a_uniform_ball_stays_uniform_and_counts_its_volume():
    # logistic growth without gradients: every node follows the same ODE, and the total is
    # the ball's volume times the value (the weighted lumped mass sums to 4/3 pi R^3)
    R = 2.0
    cfg = {"mesh": {"shape": "interval", "size": [R], "cells": [16], "coordinates": "spherical"},
           "time": {"end": 1.0, "dt": 0.1, "output_every": 1.0},
           "output": {"progress": False},
           "species": {"u": {"diffusion": 0.3, "reaction": "u*(1 - u)", "initial": 0.2}},
           "observables": {"cells": "u"}}
    p = tp.Problem(cfg)
    while not p.done:
        p.step()
    _, u = _owned(p)
    lo = MPI.COMM_WORLD.allreduce(float(u.min()), op=MPI.MIN)
    hi = MPI.COMM_WORLD.allreduce(float(u.max()), op=MPI.MAX)
    assert hi - lo < 1e-12
    volume = 4 / 3 * math.pi * R ** 3
    assert abs(p.disc.totals()[0] - volume * hi) < 1e-10 * volume
    assert abs(p.disc.observables()["cells"] - volume * hi) < 1e-10 * volume
    assert 0.3 < hi < 0.5  # logistic from 0.2 for one unit of time: 0.405
    p.destroy()


def test_a_flux_through_the_sphere_enters_with_its_area():
    # no diffusion gradient to begin with, a constant influx g at r = R: the total grows by
    # 4 pi R^2 g per unit time exactly (a linear problem: BDF is exact for a linear total)
    R, g = 1.5, 0.2
    cfg = {"mesh": {"shape": "interval", "origin": [0.5], "size": [R - 0.5], "cells": [20],
                    "coordinates": "spherical"},
           "time": {"end": 1.0, "dt": 0.05, "output_every": 1.0},
           "output": {"progress": False},
           "species": {"u": {"diffusion": 1.0, "initial": 1.0,
                             "boundary": {"right": {"flux": g}}}}}
    p = tp.Problem(cfg)
    start = p.disc.totals()[0]
    while not p.done:
        p.step()
    gained = p.disc.totals()[0] - start
    assert abs(gained - 4 * math.pi * R ** 2 * g * 1.0) < 1e-9
    # a shell from r = 0.5: the inner sphere is a boundary too, closed here (no flux)
    p.destroy()


@pytest.mark.parametrize("mesh,solver,disc,key", [
    ({"shape": "rectangle", "coordinates": "spherical"}, {}, {}, "mesh.coordinates"),
    ({"shape": "box", "coordinates": "cylindrical"}, {}, {}, "mesh.coordinates"),
    ({"shape": "interval", "coordinates": "polar"}, {}, {}, "mesh.coordinates"),
    ({"shape": "interval", "origin": [-1.0], "coordinates": "spherical"}, {}, {},
     "mesh.origin"),
    ({"shape": "interval", "coordinates": "spherical"}, {"strategy": "tensor"}, {},
     "solver.strategy"),
    ({"shape": "interval", "coordinates": "spherical"}, {}, {"taxis": "upwind"},
     "discretisation.taxis"),
])
def test_bad_coordinates_are_one_clear_error(mesh, solver, disc, key):
    cfg = {"mesh": mesh, "time": {"end": 0.1, "dt": 0.05}, "output": {"progress": False},
           "solver": solver, "discretisation": disc,
           "species": {"u": {"diffusion": 0.1, "initial": 1.0},
                       "v": {"diffusion": 0.1, "initial": "x", "taxis": [
                           {"toward": "u", "sensitivity": 0.1}]}}}
    if key == "solver.strategy":  # linear, constant coefficients on an interval: only the
        del cfg["species"]["v"]      # coordinates keep the tensor strategy out
    with pytest.raises(ConfigError) as exc:
        p = tp.Problem(cfg)
        p.destroy()
    assert exc.value.key == key, str(exc.value)
    if key in ("solver.strategy", "discretisation.taxis"):
        assert "coordinates" in str(exc.value)


def test_galerkin_taxis_works_in_radial_coordinates():
    cfg = {"mesh": {"shape": "interval", "size": [1.0], "cells": [40],
                    "coordinates": "spherical"},
           "time": {"end": 0.2, "dt": 0.02, "output_every": 0.2},
           "output": {"progress": False}, "discretisation": {"taxis": "galerkin"},
           "species": {"s": {"diffusion": 0.1, "initial": "x**2"},
                       "c": {"diffusion": 0.01, "initial": 1.0,
                             "taxis": [{"toward": "s", "sensitivity": 0.05}]}}}
    p = tp.Problem(cfg)
    start = p.disc.totals()
    while not p.done:
        p.step()
    end = p.disc.totals()
    # taxis moves cells outwards (up the signal) and keeps their number
    assert abs(end[1] - start[1]) < 1e-10 * start[1]
    X, u = _owned(p)
    c = u.reshape(-1, 2)[:, 1]
    outer = _sum(c[X[:, 0] > 0.9].sum()) / max(_sum((X[:, 0] > 0.9).sum()), 1)
    inner = _sum(c[X[:, 0] < 0.1].sum()) / max(_sum((X[:, 0] < 0.1).sum()), 1)
    assert outer > inner
    p.destroy()
