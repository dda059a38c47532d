"""Radius observables (``{ radius = EXPR, above|below = L }``) and the ``spheroid`` scenario.

The crossing of a nodal profile and its derivatives against finite differences; exact radii
of linear profiles on 1 and 2 ranks (empty region, region reaching the end); the adjoint
gradient and the tangent Jacobian of a misfit on radius data (with a fitted parameter in the
observable's own expression) against central differences on a short spheroid run; bad input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tumorpde as tp
from tumorpde.calibration.objective import Objective
from tumorpde.errors import ConfigError
from tumorpde.fem.radius import crossing
from tumorpde.io.data import Data


def test_the_crossing_and_its_derivatives_agree_with_finite_differences():
    x = np.linspace(0.0, 1.0, 11)
    e = np.cos(2.0 * x)  # decreasing through 0.5 between x = 0.5 and 0.6
    r, j, dj, dk = crossing(x, e, 0.5, above=True)
    assert j == 5 and 0.5 < r < 0.6
    assert abs(r - 0.5 * np.arccos(0.5)) < 2e-3  # linear interpolation of the root
    h = 1e-7
    for node, d in ((j, dj), (j + 1, dk)):
        ep, em = e.copy(), e.copy()
        ep[node] += h
        em[node] -= h
        fd = (crossing(x, ep, 0.5, True)[0] - crossing(x, em, 0.5, True)[0]) / (2 * h)
        assert abs(d - fd) <= 1e-6 * abs(fd)
    # below: the outer edge of e < L counted from the centre
    assert crossing(x, -e, -0.5, above=False)[0] == pytest.approx(r)
    # an empty region is the first node, one that reaches the end the last
    assert crossing(x, e, 2.0, above=True)[:2] == (0.0, None)
    assert crossing(x, e, -2.0, above=True)[:2] == (1.0, None)


def _line(**observables) -> tp.Problem:
    return tp.Problem({
        "mesh": {"shape": "interval", "size": [2.0], "cells": [20], "coordinates": "spherical"},
        "time": {"end": 0.1, "dt": 0.1, "output_every": 0.1},
        "output": {"progress": False},
        "species": {"u": {"diffusion": 0.0, "initial": "x/2"}},
        "observables": observables})


def test_radii_of_a_linear_profile_are_exact_on_every_rank():
    p = _line(half={"radius": "u", "below": 0.35}, rim={"radius": "1 - u", "above": 0.4},
              empty={"radius": "u", "above": 5.0}, whole={"radius": "u", "above": -1.0})
    obs = p.solve().observables
    assert obs["half"][0] == pytest.approx(0.7, abs=1e-12)
    assert obs["rim"][0] == pytest.approx(1.2, abs=1e-12)
    assert obs["empty"][0] == 0.0
    assert obs["whole"][0] == pytest.approx(2.0, abs=1e-14)
    p.destroy()


def _radius_data(times: tuple[float, ...], names: tuple[str, ...]) -> Data:
    rows = [(t, o) for t in times for o in names]
    n = len(rows)
    return Data(Path("synthetic-radii"), "observable", ["t", "observable", "value"],
                [[repr(t), o, "0"] for t, o in rows], np.array([r[0] for r in rows]),
                [r[1] for r in rows], np.zeros(n), np.ones(n), np.zeros((n, 0)),
                np.arange(2, n + 2))


SHORT = ["mesh.cells=[70]", "time.end=5.0", "time.dt=0.1", "output.progress=false",
         "solver.snes_rtol=1e-12"]
RADII = ("outer_radius", "inhibited_radius", "necrotic_radius")
FIT = ["lam", "q_max", "c_i", "k_pressure"]


@pytest.fixture(scope="module")
def spheroid_misfit():
    problem = tp.Problem(tp.load("spheroid", SHORT))
    data = [_radius_data((4.0, 5.0), RADII)]
    obj = Objective(problem, data, FIT)
    model = obj.evaluate(obj.start()).model
    data[0].value[:] = model * (1 + 0.1 * np.cos(np.arange(model.size)))
    obj = Objective(problem, data, FIT)
    p0 = obj.start()
    yield obj, p0, model
    obj.destroy()
    problem.destroy()


def test_a_spheroid_grows_and_its_radii_are_ordered(spheroid_misfit):
    _, _, model = spheroid_misfit
    outer, inhibited = model[0::3], model[1::3]
    assert 160.0 < outer[0] < outer[1] < 400.0  # it grows from initial_radius = 160 um
    assert np.all(inhibited <= outer)


def test_the_gradient_on_radius_data_equals_central_differences(spheroid_misfit):
    obj, p0, _ = spheroid_misfit
    g = obj.gradient(p0)
    assert np.all(np.isfinite(g)) and np.any(g != 0)
    for j, name in enumerate(FIT):
        h = 1e-5 * abs(p0[j])
        e = np.zeros_like(p0)
        e[j] = h
        fd = (obj(p0 + e) - obj(p0 - e)) / (2 * h)
        assert abs(g[j] - fd) <= 1e-4 * abs(fd) + 1e-9 * np.abs(g).max(), (name, g[j], fd)
    ev = obj.evaluate(p0)
    jac = obj.jacobian(p0)
    np.testing.assert_allclose(jac.T @ ev.residuals, g, rtol=1e-8, atol=1e-12 * np.abs(g).max())


def test_the_direct_derivative_of_a_parameter_in_the_observable_counts():
    """``c_i`` appears in ``inhibited_radius = {radius = "oxygen - c_i", below = 0}`` itself:
    at a fixed state the radius moves with c_i, and the gradient must include that."""
    # c_i = 130 mmHg: the centre of the 160 um spheroid (about 100 mmHg) is inhibited
    problem = tp.Problem(tp.load("spheroid", SHORT + ["time.end=3.5", "parameters.c_i=130"]))
    data = _radius_data((3.5,), ("inhibited_radius",))
    obj = Objective(problem, [data], ["c_i"])
    data.value[:] = obj.evaluate(obj.start()).model - 20.0
    obj = Objective(problem, [data], ["c_i"])
    p0 = obj.start()
    g = obj.gradient(p0)
    h = 1e-5 * p0[0]
    fd = (obj(p0 + h) - obj(p0 - h)) / (2 * h)
    assert obj.evaluate(p0).model[0] > 0 and g[0] != 0
    assert abs(g[0] - fd) <= 1e-4 * abs(fd), (g[0], fd)
    obj.destroy()
    problem.destroy()


@pytest.mark.parametrize("changes, message", [
    ({"mesh": {"shape": "rectangle", "size": [1.0, 1.0], "cells": [4, 4]}},
     "needs an interval mesh"),
    ({"observables": {"r": {"radius": "u", "above": 0.5, "below": 0.5}}}, "exactly one of"),
    ({"observables": {"r": {"radius": "u"}}}, "exactly one of"),
    ({"observables": {"r": {"integral": "u", "above": 0.5}}}, "applies to a 'radius' only"),
    ({"observables": {"r": {"radius": "u", "above": 0.5, "cumulative": True}}},
     "cannot be cumulative"),
    ({"scalars": {"s": {"initial": 0.0, "reaction": "r"}}}, "is a radius"),
])
def test_bad_radius_observables_are_refused(changes, message):
    cfg = {"mesh": {"shape": "interval", "size": [1.0], "cells": [8]},
           "time": {"end": 0.1, "dt": 0.1}, "output": {"progress": False},
           "species": {"u": {"diffusion": 1.0, "initial": "x"}},
           "observables": {"r": {"radius": "u", "above": 0.5}}}
    cfg.update(changes)
    with pytest.raises(ConfigError, match=message):
        tp.Problem(cfg).destroy()


def test_spheroid_doc_is_generated_from_the_scenario():
    from pathlib import Path

    from tumorpde.apps.modeldoc import model_markdown
    from tumorpde.model.config import find_config, load

    text = model_markdown(load(find_config("spheroid")), "spheroid")
    doc = Path(__file__).resolve().parents[1] / "docs" / "spheroid.md"
    assert doc.read_text() == text, "docs/spheroid.md is stale: run `make docs`"
