"""Engine tests, run in-process serially and under ``mpiexec -n 2``.

Covers: the quick-start example, units equivalence, outputs, boundary
conditions, regions, time orders (BE 1, BDF2 2), spatial orders of P1/P2 on a
coupled taxis system, the edge-taxis scheme (equal to Galerkin where it should
be, exact Jacobian, positivity and exact conservation where Galerkin fails),
adaptive stepping and solver-failure cut-back.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

from mpi4py import MPI

import numpy as np
import pytest
from helpers import example, h1_error, l2_error, rates, run_dict

from tumorpde.io.rundir import read
from tumorpde.model.config import load_dict
from tumorpde.simulation import prepare


def test_quickstart_runs_and_writes_outputs(mpi_tmp):
    res = run_dict(example("quickstart"), mpi_tmp / "qs")
    assert res.status == "completed" and res.t == pytest.approx(1.0)
    obs = read(mpi_tmp / "qs").observables
    assert list(obs) == ["t", "total_cells", "total_signal"]
    assert obs["t"][0] == 0.0 and obs["t"][-1] == pytest.approx(1.0, abs=1e-12)
    assert np.all(np.diff(obs["t"]) > 0)
    # growth with logistic kinetics and a signal produced by the cells
    assert obs["total_cells"][-1] > obs["total_cells"][0] * 1.4
    assert obs["total_signal"][-1] > 0.05
    MPI.COMM_WORLD.Barrier()
    run = read(mpi_tmp / "qs").info
    assert run.status == "completed"
    assert run.ranks == MPI.COMM_WORLD.size
    assert {"tumorpde", "dolfinx", "petsc"} <= set(run.versions)
    assert run.config["parameters"]["D0"] == "0.01 mm^2/day"
    assert run.wall_time.total > 0 and run.counters.outputs == 5
    # one XDMF function per species, named exactly as the species, at every output time
    tree = ET.parse(mpi_tmp / "qs" / "fields.xdmf")
    names = {a.get("Name") for a in tree.iter("Attribute")}
    assert names == {"cells", "signal"}
    times = sorted({float(t.get("Value")) for t in tree.iter("Time")})
    assert times == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert (mpi_tmp / "qs" / "fields.h5").stat().st_size > 0


def test_fields_h5_holds_every_species_at_every_output(mpi_tmp):
    run_dict(example("quickstart") | {"time": {"end": 0.1, "dt": 0.05, "output_every": 0.05}},
             mpi_tmp / "m")
    MPI.COMM_WORLD.Barrier()
    tree = ET.parse(mpi_tmp / "m" / "fields.xdmf")
    items = [d.text.strip() for d in tree.iter("DataItem") if d.text and "Function" in d.text]
    assert len(items) == 6  # 2 species x 3 output times
    run = read(mpi_tmp / "m")
    assert run.field_names == ["cells", "signal"]
    assert run.times == pytest.approx([0.0, 0.05, 0.1])
    assert run.nodes.shape == (41 * 21, 2)
    for t in run.times:
        for values in run.fields(t).values():
            assert values.shape == (41 * 21,) and np.all(np.isfinite(values))


def test_units_mm2_per_day_equals_mm2_per_second(mpi_tmp):
    base = example("quickstart")
    other = example("quickstart")
    other["parameters"]["D0"] = f"{0.01 / 86400.0!r} mm^2/s"
    other["parameters"]["rho"] = f"{0.8 / 24.0!r} 1/hour"
    run_dict(base, mpi_tmp / "a")
    run_dict(other, mpi_tmp / "b")
    a = read(mpi_tmp / "a").observables
    b = read(mpi_tmp / "b").observables
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-12, atol=1e-15)


def _decay_1d(n: int, bc: dict, degree: int = 1) -> dict:
    return {
        "mesh": {"shape": "interval", "size": [1.0], "cells": [n]},
        "time": {"end": 50.0, "dt": 5.0, "scheme": "backward-euler"},
        "discretisation": {"degree": degree},
        "parameters": {"D": 0.1, "k": 1.0},
        "species": {"u": {"diffusion": "D", "reaction": "-k*u", "initial": 0.0,
                          "boundary": bc}},
    }


def test_dirichlet_steady_state_matches_closed_form(mpi_tmp):
    """-D u'' + k u = 0, u(0)=1, u(1)=0: u = sinh(L(1-x))/sinh(L), L = sqrt(k/D)."""
    import ufl

    errs = []
    for n in (16, 32):
        res = run_dict(_decay_1d(n, {"left": {"value": 1.0}, "right": {"value": 0.0}}),
                       mpi_tmp / f"d{n}")
        disc = res.discretisation
        x = ufl.SpatialCoordinate(disc.domain.mesh)[0]
        lam = math.sqrt(10.0)
        errs.append(l2_error(disc, 0, ufl.sinh(lam * (1 - x)) / math.sinh(lam)))
    assert errs[1] < 1e-3
    assert rates(errs, [1 / 16, 1 / 32])[0] == pytest.approx(2.0, abs=0.2)


def test_robin_and_flux_boundaries(mpi_tmp):
    """Robin: -D u'(0) = h (1 - u(0)) (inflow); closed form u = A cosh(L(1-x))."""
    import ufl

    h, D, k = 0.5, 0.1, 1.0
    lam = math.sqrt(k / D)
    A = h / (D * lam * math.sinh(lam) + h * math.cosh(lam))
    res = run_dict(_decay_1d(64, {"left": {"transfer": h, "value": 1.0}}), mpi_tmp / "r")
    disc = res.discretisation
    x = ufl.SpatialCoordinate(disc.domain.mesh)[0]
    assert l2_error(disc, 0, A * ufl.cosh(lam * (1 - x))) < 2e-4
    # Neumann inflow flux g: -D u'(0) = g -> u = g cosh(L(1-x))/(D L sinh L)
    g = 0.3
    res = run_dict(_decay_1d(64, {"left": {"flux": g}}), mpi_tmp / "f")
    disc = res.discretisation
    x = ufl.SpatialCoordinate(disc.domain.mesh)[0]
    exact = g * ufl.cosh(lam * (1 - x)) / (D * lam * math.sinh(lam))
    assert l2_error(disc, 0, exact) < 2e-4


def test_region_table_and_custom_regions(mpi_tmp):
    """Per-region diffusion: the species spreads faster where D is larger."""
    cfg = {
        "mesh": {"shape": "rectangle", "size": [2.0, 1.0], "cells": [40, 20],
                 "regions": {"tumor": "x < 1.0"}},
        "time": {"end": 0.5, "dt": 0.05},
        "species": {"u": {"diffusion": {"tumor": 0.1, "default": 0.001},
                          "initial": "exp(-((x-1.0)**2 + (y-0.5)**2)/0.01)"}},
        "observables": {"left_mass": "u*where(x < 1.0, 1, 0)"},
    }
    res = run_dict(cfg, mpi_tmp / "reg")
    obs = read(mpi_tmp / "reg").observables
    assert obs["left_mass"][-1] > 0.6 * obs["total_u"][-1]  # mass drifts into the fast region
    np.testing.assert_allclose(obs["total_u"], obs["total_u"][0], rtol=1e-10)
    assert res.minima["u"] > -1e-12


@pytest.mark.parametrize("scheme,order", [("backward-euler", 1), ("bdf2", 2)])
def test_time_order(mpi_tmp, scheme, order):
    """Logistic growth as a local ODE (diffuses = false) against its closed form."""
    errs, dts = [], [0.04, 0.02, 0.01]
    for dt in dts:
        cfg = {"mesh": {"shape": "interval", "cells": [4]},
               "time": {"end": 2.0, "dt": dt, "scheme": scheme, "output_every": 1.0},
               "species": {"u": {"diffuses": False, "reaction": "2*u*(1-u)", "initial": 0.1}}}
        res = run_dict(cfg, mpi_tmp / f"{scheme}{dt}")
        exact = 1.0 / (1.0 + 9.0 * math.exp(-4.0))
        errs.append(abs(res.final["total_u"] - exact))
    observed = rates(errs, dts)
    assert observed[-1] == pytest.approx(order, abs=0.1), observed


def _mms(n: int, degree: int, taxis: str) -> tuple[dict, object, object]:
    """Coupled taxis system with a manufactured solution (zero normal fluxes)."""
    import sympy as sp

    x, y, t = sp.symbols("x y t")
    u = (1 + t) * (1 + sp.Rational(1, 2) * sp.cos(sp.pi * x) * sp.cos(sp.pi * y))
    v = (1 + t) * (1 + sp.Rational(1, 4) * sp.cos(2 * sp.pi * x) * sp.cos(sp.pi * y))
    Du = sp.Rational(1, 10) * (1 + x / 2)
    Dv, chi = sp.Rational(1, 5), sp.Rational(1, 20)

    def div(fx, fy):
        return sp.diff(fx, x) + sp.diff(fy, y)

    fu = sp.diff(u, t) - div(Du * sp.diff(u, x), Du * sp.diff(u, y)) + \
        div(chi * u * sp.diff(v, x), chi * u * sp.diff(v, y)) - u * (1 - u / 4)
    fv = sp.diff(v, t) - Dv * div(sp.diff(v, x), sp.diff(v, y)) - (u - v)
    cfg = {
        "mesh": {"shape": "rectangle", "size": [1.0, 1.0], "cells": [n, n]},
        "time": {"end": 0.1, "dt": 0.05, "scheme": "bdf2"},
        "discretisation": {"degree": degree, "taxis": taxis},
        "parameters": {"chi": 0.05},
        "species": {
            "u": {"diffusion": "0.1*(1 + x/2)", "reaction": f"u*(1 - u/4) + {sp.sstr(fu)}",
                  "initial": sp.sstr(u.subs(t, 0)),
                  "taxis": [{"toward": "v", "sensitivity": "chi*u"}]},
            "v": {"diffusion": 0.2, "reaction": f"u - v + {sp.sstr(fv)}",
                  "initial": sp.sstr(v.subs(t, 0))},
        },
    }
    return cfg, u, v


@pytest.mark.parametrize("degree,taxis,ns", [(1, "upwind", (8, 16, 32)),
                                             (1, "galerkin", (8, 16, 32)),
                                             (2, "galerkin", (4, 8, 16))])
def test_spatial_orders_coupled_taxis(mpi_tmp, degree, taxis, ns):
    import ufl

    l2, h1 = [], []
    for n in ns:
        cfg, u, v = _mms(n, degree, taxis)
        res = run_dict(cfg, mpi_tmp / f"mms{degree}{taxis}{n}")
        disc = res.discretisation
        X = ufl.SpatialCoordinate(disc.domain.mesh)
        pi = ufl.pi
        ue = 1.1 * (1 + 0.5 * ufl.cos(pi * X[0]) * ufl.cos(pi * X[1]))
        ve = 1.1 * (1 + 0.25 * ufl.cos(2 * pi * X[0]) * ufl.cos(pi * X[1]))
        l2.append(l2_error(disc, 0, ue) + l2_error(disc, 1, ve))
        h1.append(h1_error(disc, 0, ue) + h1_error(disc, 1, ve))
    hs = [1.0 / n for n in ns]
    r2, r1 = rates(l2, hs), rates(h1, hs)
    assert r2[-1] == pytest.approx(degree + 1, abs=0.2), (l2, r2)
    assert r1[-1] == pytest.approx(degree, abs=0.2), (h1, r1)


def _strong_taxis(n: int, taxis: str) -> dict:
    """Anderson-Chaplain (1998)-type endothelial chemotaxis: D = 3.5e-4, chi = 0.38."""
    return {
        "mesh": {"shape": "rectangle", "size": [1.0, 1.0], "cells": [n, n]},
        "time": {"end": 0.5, "dt": 0.05, "scheme": "backward-euler"},
        "discretisation": {"taxis": taxis},
        "parameters": {"D": 0.00035, "chi": 0.38},
        "species": {
            "n": {"diffusion": "D", "initial": "exp(-((x-0.2)**2 + (y-0.5)**2)/0.005)",
                  "taxis": [{"toward": "c", "sensitivity": "chi*n"}],
                  "nonnegative": taxis != "galerkin"},  # Galerkin is shown going negative
            "c": {"diffuses": False, "initial": "x**2"},
        },
    }


def test_edge_taxis_positive_and_conservative_where_galerkin_fails(mpi_tmp):
    run_dict(_strong_taxis(20, "galerkin"), mpi_tmp / "g")
    res = run_dict(_strong_taxis(20, "upwind"), mpi_tmp / "u")
    galerkin = read(mpi_tmp / "g").observables
    upwind = read(mpi_tmp / "u").observables
    MPI.COMM_WORLD.Barrier()
    gmin = read(mpi_tmp / "g").info.final.minima["n"]
    assert gmin < -1e-3  # plain Galerkin oscillates at mesh Peclet ~ 27
    assert res.minima["n"] >= -1e-12
    np.testing.assert_allclose(upwind["total_n"], upwind["total_n"][0], rtol=1e-10)
    np.testing.assert_allclose(galerkin["total_n"], galerkin["total_n"][0], rtol=1e-10)
    # the cells moved up the gradient
    assert res.discretisation is not None


def _disc(cfg: dict):
    spec, domain, disc = prepare(load_dict(cfg))
    disc.set_initial()
    return disc


def _residual(disc) -> np.ndarray:
    b = disc.u.x.petsc_vec.duplicate()
    disc.residual(None, disc.u.x.petsc_vec, b)
    out = b.array.copy()
    b.destroy()
    return out


def test_edge_taxis_equals_galerkin_for_constant_sensitivity():
    cfg = _strong_taxis(8, "upwind")
    cfg["species"]["n"]["taxis"] = [{"toward": "c", "sensitivity": "chi"}]
    cfg["species"]["c"]["initial"] = "sin(3*x)*cos(2*y)"
    a = _residual(_disc(cfg))
    cfg["discretisation"]["taxis"] = "galerkin"
    b = _residual(_disc(cfg))
    np.testing.assert_allclose(a, b, atol=1e-12)


@pytest.mark.parametrize("two_signals", [False, True])
def test_edge_taxis_jacobian_matches_finite_differences(two_signals):
    cfg = _strong_taxis(6, "upwind")
    if two_signals:  # chemotaxis and haptotaxis share one limiter
        cfg["species"]["f"] = {"diffuses": False, "initial": "0.5 + 0.4*sin(4*x)*cos(3*y)"}
        cfg["species"]["n"]["taxis"].append({"toward": "f", "sensitivity": "0.3*n"})
    cfg["parameters"]["D"] = 0.002  # artificial diffusion active on part of the edges
    cfg["species"]["c"]["diffuses"] = True
    cfg["species"]["c"]["diffusion"] = 0.01
    cfg["species"]["c"]["initial"] = "x**2 + 0.3*sin(5*y)"
    disc = _disc(cfg)
    rng = np.random.default_rng(1 + MPI.COMM_WORLD.rank)
    x0 = disc.u.x.petsc_vec.copy()
    dx = x0.duplicate()
    dx.array[:] = rng.standard_normal(dx.array.size) * 1e-3
    from tumorpde.solvers.snes import StepSolver

    solver = StepSolver(disc, {"strategy": "monolithic"})  # the split Jacobian: test_splitting.py
    J = solver.A
    disc.jacobian(None, x0, J, J)
    Jd = x0.duplicate()
    J.mult(dx, Jd)
    eps = 1e-4
    fp, fm = x0.duplicate(), x0.duplicate()
    xp = x0.copy()
    xp.axpy(eps, dx)
    disc.residual(None, xp, fp)
    xm = x0.copy()
    xm.axpy(-eps, dx)
    disc.residual(None, xm, fm)
    fd = (fp.array - fm.array) / (2 * eps)
    num = disc.comm.allreduce(float(np.sum((fd - Jd.array) ** 2)), op=MPI.SUM)
    den = disc.comm.allreduce(float(np.sum(fd ** 2)), op=MPI.SUM)
    solver.destroy()
    assert math.sqrt(num / den) < 1e-6


def test_chemotaxis_plus_haptotaxis_stays_non_negative(mpi_tmp):
    """Two taxis terms of one species: the species' diffusion is counted once."""
    cfg = _strong_taxis(24, "upwind")
    cfg["species"]["f"] = {"diffuses": False, "initial": "0.5 + 0.4*cos(6*x)*cos(5*y)"}
    cfg["species"]["n"]["taxis"].append({"toward": "f", "sensitivity": "0.34*n"})
    res = run_dict(cfg, mpi_tmp / "two")
    obs = read(mpi_tmp / "two").observables
    assert res.minima["n"] >= -1e-12
    np.testing.assert_allclose(obs["total_n"], obs["total_n"][0], rtol=1e-10)


def test_adaptive_bdf2_hits_outputs_and_controls_error(mpi_tmp):
    errs = []
    for rtol in (1e-3, 1e-5):
        cfg = {"mesh": {"shape": "interval", "cells": [2]},
               "time": {"end": 3.0, "dt": 0.001, "scheme": "bdf2", "adaptive": True,
                        "rtol": rtol, "atol": 1e-8, "output_every": 0.5},
               "species": {"u": {"diffuses": False, "reaction": "2*u*(1-u)", "initial": 0.01}}}
        res = run_dict(cfg, mpi_tmp / f"a{rtol}")
        exact = 1.0 / (1.0 + 99.0 * math.exp(-6.0))
        errs.append(abs(res.final["total_u"] - exact))
        MPI.COMM_WORLD.Barrier()
        tree = ET.parse(mpi_tmp / f"a{rtol}" / "fields.xdmf")
        times = sorted({float(t.get("Value")) for t in tree.iter("Time")})
        assert times == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0], abs=1e-12)
        run = read(mpi_tmp / f"a{rtol}").info
        assert run.counters.steps < 3.0 / 0.01  # the step grew from 0.001
    assert errs[1] < errs[0] / 10


def test_solver_failure_cuts_the_step_back(mpi_tmp):
    """A Newton iteration limit of 2 fails large steps of a stiff problem; halving recovers."""
    cfg = {"mesh": {"shape": "interval", "cells": [4]},
           "time": {"end": 1.0, "dt": 0.5, "scheme": "backward-euler"},
           "solver": {"snes_max_it": 2},
           "species": {"u": {"diffuses": False, "reaction": "20*u*(1-u)", "initial": 0.01}}}
    res = run_dict(cfg, mpi_tmp / "cut")
    MPI.COMM_WORLD.Barrier()
    run = read(mpi_tmp / "cut").info
    assert run.counters.failed_solves > 0
    assert res.status == "completed" and res.t == pytest.approx(1.0)


def test_disk_and_box_meshes(mpi_tmp):
    disk = {"mesh": {"shape": "disk", "radius": 1.0, "cell_size": 0.2},
            "time": {"end": 0.2, "dt": 0.1},
            "species": {"u": {"diffusion": 0.1, "initial": "exp(-(x**2+y**2)/0.1)",
                              "boundary": {"outer": {"value": 0.0}}}}}
    res = run_dict(disk, mpi_tmp / "disk")
    assert 0 < res.final["total_u"] < math.pi * 0.1
    box = {"mesh": {"shape": "box", "size": [1.0, 1.0, 1.0], "cells": [4, 4, 4]},
           "time": {"end": 0.2, "dt": 0.1},
           "species": {"u": {"diffusion": 0.1, "initial": "1 + x",
                             "taxis": [{"toward": "v", "sensitivity": "0.1*u"}]},
                       "v": {"diffusion": 0.1, "initial": "z", "boundary": {"top": {"value": 1}}}}}
    res = run_dict(box, mpi_tmp / "box")
    assert res.final["total_u"] == pytest.approx(1.5, rel=1e-8)  # conserved


def test_definitions_observable_kinds_and_cumulative(mpi_tmp):
    cfg = {
        "mesh": {"shape": "rectangle", "size": [1.0, 1.0], "cells": [16, 16]},
        "time": {"end": 1.0, "dt": 0.1, "scheme": "backward-euler"},
        "parameters": {"k": {"value": 0.5, "description": "decay rate",
                             "source": "assumed: test"}},
        "definitions": {"both": "a + b", "rate": "k*a"},
        "species": {"a": {"diffuses": False, "reaction": "-rate", "initial": "1 + x"},
                    "b": {"diffuses": False, "reaction": "rate", "initial": 0.0}},
        "observables": {
            "mass": "both",
            "peak_a": {"maximum": "a"},
            "low_a": {"minimum": "a"},
            "b_fraction": {"integral": "b", "per": "both"},
            "converted": {"integral": "rate", "cumulative": True},
        },
    }
    run_dict(cfg, mpi_tmp / "obs")
    obs = read(mpi_tmp / "obs").observables
    np.testing.assert_allclose(obs["mass"], 1.5, rtol=1e-12)
    decay = (1 + 0.5 * 0.1) ** -np.round(obs["t"] / 0.1)  # backward Euler factor per step
    np.testing.assert_allclose(obs["peak_a"], 2.0 * decay, rtol=1e-10)
    np.testing.assert_allclose(obs["low_a"], 1.0 * decay, rtol=1e-10)
    np.testing.assert_allclose(obs["b_fraction"], obs["total_b"] / 1.5, rtol=1e-10)
    # the time integral of the conversion rate equals the amount converted (to O(dt))
    assert obs["converted"][0] == 0.0
    assert obs["converted"][-1] == pytest.approx(obs["total_b"][-1], rel=0.05)


def test_knockout_holds_species_at_zero(mpi_tmp):
    data = example("quickstart")
    data["knockout"] = ["signal"]
    res = run_dict(data, mpi_tmp / "ko")
    obs = read(mpi_tmp / "ko").observables
    assert np.all(obs["total_signal"] == 0.0)
    assert res.minima["signal"] == 0.0
    # without the signal there is no taxis: cells grow by logistic kinetics only
    assert obs["total_cells"][-1] > obs["total_cells"][0]


@pytest.mark.parametrize("reaction", ["-k*u", "0*u - k*u", "p*u - k*u", "-(k + 0*p)*u"])
def test_parameters_with_units_are_converted_in_any_expression(mpi_tmp, reaction):
    """k = 1/hour must act as 24/day wherever it appears (p is a plain number, 0)."""
    cfg = {"units": {"length": "mm", "time": "day"},
           "mesh": {"shape": "interval", "cells": [2]},
           "time": {"end": 0.1, "dt": 0.001, "scheme": "bdf2"},
           "parameters": {"k": "1 1/hour", "p": 0.0},
           "species": {"u": {"diffuses": False, "reaction": reaction, "initial": 1.0}}}
    res = run_dict(cfg, mpi_tmp / "k")
    assert res.final["total_u"] == pytest.approx(math.exp(-2.4), rel=1e-4)
