"""Verification tests (issue #4): orders, closed forms, conservation, positivity, benchmarks.

The fast tests run in ``make test`` (serially and under ``mpiexec -n 2``); the long
studies carry the ``convergence`` marker (``make verify``, which also regenerates
``docs/verification.md`` with ``python -m tumorpde.verification``).  Every problem is a
config built by :mod:`tumorpde.verification.configs` and run through the public
``tumorpde.simulation.run``.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tomllib
from pathlib import Path

from mpi4py import MPI

import numpy as np
import pytest

from tumorpde.io.rundir import read
from tumorpde.model.config import check, load_dict
from tumorpde.verification import configs as vc
from tumorpde.verification.cases import (
    Ctx,
    ac98_min_and_mass,
    ac98_self_convergence,
    decay_study,
    fisher_front,
    fisher_wave_study,
    gg_run,
    glioma_speed,
    run_case,
    spatial_study,
    spatial_variants,
    temporal_study,
    temporal_variants,
)
from tumorpde.verification.mms import dump_toml, manufacture
from tumorpde.verification.report import compare_metrics, run_metrics

BIN = Path(sys.executable).parent


def _assert_order(observed: float, expected: float, tol: float, what: str, data) -> None:
    assert abs(observed - expected) <= tol, f"{what}: order {observed:.3f}, expected {expected}; {data}"


# ----------------------------------------------------------------- manufactured solutions
def test_manufactured_config_is_a_valid_config():
    data, exact = vc.mms_coupled(8, 1, "upwind", error_observables=True)
    text = dump_toml(data, "exact:\n" + "\n".join(f"{k} = {v}" for k, v in exact.items()))
    back = tomllib.loads(text)
    assert back == data
    check(load_dict(back))
    # the source was added to the model's own reaction; initial values are the exact solution
    assert back["species"]["u"]["reaction"].startswith("(u*(1 - u/4)) + (")
    assert "where(x < 0.5" in back["species"]["u"]["initial"]
    assert back["observables"]["sq_error_v"]["integral"].startswith("(v - (")


def test_manufacture_differentiates_the_config_terms():
    """Source of du/dt = div(D grad u) - div(S grad v) + R for a hand-checkable case."""
    import sympy as sp

    data = {"mesh": {"shape": "interval"}, "parameters": {"a": 2.0},
            "definitions": {"rate": "a*u"},
            "species": {"u": {"diffusion": "1 + x", "reaction": "-rate",
                              "taxis": {"toward": "v", "sensitivity": "u"}},
                        "v": {"diffuses": False}}}
    out = manufacture(data, {"u": "t*x**2", "v": "x"}, dirichlet=["left"])
    x, t = sp.symbols("x t")
    # f = u_t - ((1+x) u_x)_x + (u v_x)_x + a u  with u = t x^2, v = x
    expected = x**2 - (2 * t * x + 2 * t * (1 + x)) + 2 * t * x + 2 * t * x**2
    src = out["species"]["u"]["reaction"].split(") + (", 1)[1][:-1]
    got = sp.sympify(src, locals={"x": x, "t": t})
    assert sp.simplify(got - expected) == 0
    assert out["species"]["v"]["reaction"] == "0"
    assert out["species"]["u"]["boundary"]["left"]["value"] == "t*x**2"


def _ids(variants: list[tuple]) -> list[str]:
    return [v[0].replace(" + ", "+").replace(", ", "-").replace(" ", "-") for v in variants]


SPATIAL_2D = [v for v in spatial_variants(False) if v[4] == 2]
TEMPORAL_P1 = [v for v in temporal_variants() if v[3] == 1]


@pytest.mark.parametrize("label,builder,degree,ns,dim", SPATIAL_2D, ids=_ids(SPATIAL_2D))
def test_spatial_orders(mpi_tmp, label, builder, degree, ns, dim):
    """P1: 2 in L2, 1 in H1; P2: 3 and 2 (single species; coupled taxis with a D jump)."""
    st = spatial_study(builder, ns, mpi_tmp, MPI.COMM_WORLD)
    _assert_order(st.rates("L2")[-1], degree + 1, 0.15, f"{label} L2", st.errs)
    _assert_order(st.rates("H1")[-1], degree, 0.15, f"{label} H1", st.errs)


@pytest.mark.parametrize("label,scheme,variable,degree,order", TEMPORAL_P1,
                         ids=_ids(TEMPORAL_P1))
def test_temporal_orders(mpi_tmp, label, scheme, variable, degree, order):
    """Backward Euler 1, BDF2 2, with fixed steps and with steps of ratio 0.3 to 2."""
    st = temporal_study(scheme, variable, degree, [0.1 / 2 ** k for k in range(4)], mpi_tmp)
    _assert_order(st.rates("L2")[-1], order, 0.1, label, st.errs)
    if variable:
        assert min(st.extra["ratio_min"]) < 0.5 and max(st.extra["ratio_max"]) > 1.5


# ----------------------------------------------------------------- closed forms
@pytest.mark.parametrize("dim,ns,bound", [(1, (16, 32, 64), 5e-5), (2, (8, 16, 32), 4e-4),
                                          (3, (4, 8), 5e-3)])
def test_diffusion_decay_closed_form(mpi_tmp, dim, ns, bound):
    st = decay_study(dim, ns, mpi_tmp)
    _assert_order(st.rates("L2")[-1], 2, 0.15, f"{dim}D", st.errs)
    assert st.errs["L2"][-1] < bound


def test_keller_segel_mass_and_positivity(mpi_tmp):
    """Bundled example and a strongly aggregating variant: exact mass, n >= 0 (edge upwind)."""
    res = run_case("keller-segel", Ctx("quick", mpi_tmp))
    for c in res.checks:
        assert c.ok, (c.what, c.observed)
    assert res.metrics["strong aggregation (chi = 5, BE, upwind) max end"] > 5.0  # aggregates


# ----------------------------------------------------------------- strong taxis (AC98)
def test_ac98_strong_taxis_positive_and_conservative(mpi_tmp):
    gal = ac98_min_and_mass(vc.ac98(32, 0.5, 0.05, taxis="galerkin"), mpi_tmp / "g")
    up = ac98_min_and_mass(vc.ac98(32, 0.5, 0.05), mpi_tmp / "u")
    assert gal["min"] < -1e-2  # plain Galerkin oscillates (mesh Peclet ~ 30)
    assert up["min"] >= -1e-12
    assert up["drift"] < 1e-10 and gal["drift"] < 1e-10
    assert up["obs"]["centroid_x"][-1] > up["obs"]["centroid_x"][0] + 0.05


def test_ac98_chemotaxis_plus_haptotaxis_stays_non_negative(mpi_tmp):
    """Uniform initial fibronectin: both velocities add up (regression of the shared limiter)."""
    r = ac98_min_and_mass(vc.ac98(64, 0.6, 0.05, fibronectin="0.4"), mpi_tmp / "w")
    assert r["drift"] < 1e-10
    assert r["min"] >= -1e-12


# ----------------------------------------------------------------- through the CLI, 2 ranks
@pytest.mark.subprocess
def test_manufactured_toml_runs_through_the_cli_on_two_ranks(tmp_path):
    model = tmp_path / "model.toml"
    model.write_text('[mesh]\nshape = "rectangle"\ncells = [16, 16]\n'
                     '[time]\nend = 0.2\ndt = 0.05\n'
                     '[parameters]\nchi = 0.1\n'
                     '[species.cells]\ndiffusion = 0.05\nreaction = "cells*(1 - cells/3)"\n'
                     'taxis = { toward = "signal", sensitivity = "chi*cells" }\n'
                     '[species.signal]\ndiffusion = 0.1\nreaction = "cells - signal"\n')
    mms = tmp_path / "mms.toml"
    subprocess.run([sys.executable, "-m", "tumorpde.verification", "manufacture", str(model),
                    "--exact", "cells=(1 + t)*(1 + 0.5*cos(pi*x)*cos(pi*y))",
                    "--exact", "signal=(1 + t)*(1 + 0.25*cos(2*pi*x))", "-o", str(mms)],
                   check=True, capture_output=True, text=True)
    out = tmp_path / "out"
    subprocess.run([str(BIN / "mpiexec"), "-n", "2", str(BIN / "tumorpde"), "run", str(mms),
                    "-o", str(out), "-q"], check=True, capture_output=True, text=True)
    obs = read(out).observables
    err = {k: math.sqrt(obs[f"sq_error_{k}"][-1]) for k in ("cells", "signal")}
    assert err["cells"] < 5e-3 and err["signal"] < 5e-3, err
    assert read(out).info.ranks == 2


@pytest.mark.subprocess
def test_verification_numbers_equal_on_one_and_two_ranks(tmp_path):
    keys = ["diffusion-decay", "keller-segel"]
    serial = run_metrics(keys, "quick", tmp_path / "np1")
    path = tmp_path / "np2.json"
    subprocess.run([str(BIN / "mpiexec"), "-n", "2", sys.executable, "-m", "tumorpde.verification",
                    "metrics", "--cases", ",".join(keys), "--workdir", str(tmp_path),
                    "--json", str(path)], check=True, capture_output=True, text=True)
    par = json.loads(path.read_text())
    assert par["ranks"] == 2
    for k in keys:
        c = compare_metrics(serial[k]["metrics"], par["cases"][k]["metrics"])
        assert c["ok"], (k, c)
        assert c["n_rel"] >= 3 and c["n_rel"] + c["n_abs"] > 5


# ================================================================= long studies (make verify)
@pytest.mark.convergence
@pytest.mark.parametrize("label,builder,degree,ns,dim", spatial_variants(True),
                         ids=_ids(spatial_variants(True)))
def test_spatial_orders_fine(mpi_tmp, label, builder, degree, ns, dim):
    st = spatial_study(builder, ns, mpi_tmp)
    _assert_order(st.rates("L2")[-1], degree + 1, 0.15, f"{label} L2", st.errs)
    _assert_order(st.rates("H1")[-1], degree, 0.15, f"{label} H1", st.errs)


@pytest.mark.convergence
@pytest.mark.parametrize("label,scheme,variable,degree,order", temporal_variants(),
                         ids=_ids(temporal_variants()))
def test_temporal_orders_fine(mpi_tmp, label, scheme, variable, degree, order):
    st = temporal_study(scheme, variable, degree, [0.1 / 2 ** k for k in range(6)], mpi_tmp)
    _assert_order(st.rates("L2")[-1], order, 0.1, label, st.errs)


@pytest.mark.convergence
def test_fisher_exact_wave_order(mpi_tmp):
    st = fisher_wave_study((100, 200, 400, 800), mpi_tmp)
    _assert_order(st.rates("L2")[-1], 2, 0.1, "Ablowitz-Zeppetella wave", st.errs)
    assert min(st.extra["min"]) >= 0.0


@pytest.mark.convergence
def test_fisher_front_speed_and_bramson_delay(mpi_tmp):
    fr = fisher_front(0.1, 0.05, 200.0, 450.0, mpi_tmp)
    assert abs(fr["speed"] - 2.0) < 0.02                  # -> 2 sqrt(D rho)
    assert abs(fr["speed"] - fr["vstar_h"]) < 2e-3        # = the scheme's own asymptotic speed
    assert abs(fr["log_coef_2"] + 1.5) < 0.15             # Bramson: -(3/2) sqrt(D/rho) ln t
    v = np.diff(fr["x"][1:]) / np.diff(fr["t"][1:])
    assert np.all(v[len(v) // 4:] < fr["vstar_h"] + 1e-3)  # approached from below


@pytest.mark.convergence
def test_ac98_100x100_non_negative_and_mass_conserving(mpi_tmp):
    r = ac98_min_and_mass(vc.ac98(100, 2.0, 0.05), mpi_tmp)
    assert r["min"] >= -1e-12
    assert r["drift"] < 1e-10
    obs = r["obs"]
    assert np.all(np.diff(obs["centroid_x"]) > 0)         # migration towards the tumour


@pytest.mark.convergence
def test_ac98_self_convergence(mpi_tmp):
    """1D reduction of AC98: first order while upwinding (Peclet > 2), second once resolved."""
    sc = ac98_self_convergence((100, 200, 400, 800, 1600, 3200), 1.0, 0.005, mpi_tmp, dim=1)
    assert all(a > b for a, b in zip(sc["l1"], sc["l1"][1:], strict=False)), sc
    assert abs(sc["rates"][0] - 1.0) < 0.2, sc     # Peclet 10 -> 5: upwinding
    assert abs(sc["rates"][-1] - 2.0) < 0.4, sc    # Peclet < 2: edge Galerkin
    assert min(sc["min"]) >= -1e-12 and max(sc["drift"]) < 1e-10
    sc2 = ac98_self_convergence((25, 50, 100), 0.5, 0.02, mpi_tmp / "2d")
    assert sc2["l1"][1] < sc2["l1"][0] and min(sc2["min"]) >= -1e-12


@pytest.mark.convergence
def test_ac2000_invasion(mpi_tmp):
    res = run_case("ac2000", Ctx("quick", mpi_tmp))
    for c in res.checks:
        assert c.ok, (c.what, c.observed)


@pytest.mark.convergence
def test_gatenby_gawlinski_gap_and_speed(mpi_tmp):
    c = 2 * math.sqrt(4e-5)
    big = gg_run(12.5, 1500, 1.5, 60.0, 0.05, mpi_tmp / "big")
    small = gg_run(0.5, 1500, 1.5, 60.0, 0.05, mpi_tmp / "small")
    assert big["gap"] > 0.05 and small["gap"] == 0.0 and small["separation"] == 0.0
    assert big["normal_behind"] < 0.01
    assert abs(small["normal_behind"] - small["predicted"]) < 0.05
    assert abs(big["speed"] - c) < 0.05 * c
    assert small["speed"] < 0.7 * c


@pytest.mark.convergence
def test_glioma_example_speed(mpi_tmp):
    """The bundled fisher-kpp example: speed close to Bramson's 2 sqrt(D rho) - 3/2 sqrt(D/rho)/t."""
    g = glioma_speed(mpi_tmp)
    assert g["speed"] < g["fisher"]
    assert abs(g["speed"] - g["bramson"]) < 0.05 * g["bramson"]
