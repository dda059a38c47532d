"""Unit tests of the model layer: TOML -> objects, expressions, units (no DOLFINx)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import example

from tumorpde.errors import ConfigError
from tumorpde.model import expressions as ex
from tumorpde.model import units as un
from tumorpde.model.config import apply_overrides, check, load_dict, parse_set, term_factor
from tumorpde.model.objects import Config, Species, Taxis, Time


def test_toml_maps_one_to_one_onto_objects():
    cfg = load_dict(example("quickstart"))
    assert cfg.mesh.size == [2.0, 1.0] and cfg.mesh.cells == [40, 20]
    assert cfg.time == Time(end=1.0, dt=0.05, scheme="bdf2", adaptive=False, output_every=0.25)
    assert cfg.species["cells"].taxis == [Taxis("signal", "chi*cells")]
    assert cfg.output.checkpoint_every == 0.5
    # the same model built in Python
    py = Config(species={"cells": Species(diffusion="D0*(1 + 0.5*tanh((x - 1.0)/0.1))",
                                          reaction="rho*cells*(1 - cells)",
                                          initial="exp(-((x-0.5)**2 + (y-0.5)**2)/0.02)",
                                          taxis=[Taxis("signal", "chi*cells")]),
                         "signal": Species(diffusion=0.05, reaction="cells - 0.5*signal",
                                           initial=0.0)})
    assert py.species == cfg.species


def test_unknown_keys_are_errors():
    data = example("quickstart")
    data["species"]["cells"]["difusion"] = 1.0
    with pytest.raises(ConfigError, match=r"species\.cells\.difusion: unknown key"):
        load_dict(data)


@pytest.mark.parametrize("text", ["__import__('os')", "x.real", "[1]", "x if y else z",
                                  "lambda: 1", "'s'", "f(1)", "exp(x=1)", "x[0]", "x < 1"])
def test_hostile_expressions_rejected(text):
    with pytest.raises(ConfigError):
        ex.parse(text, "k", set())


def test_expression_symbols_and_numpy_evaluation():
    e = ex.parse("where(x < 0.5 and y >= 0, hill(x, 0.5, 2), smoothstep(x - 1, 0.1))", "k", set())
    assert ex.symbols_of(e) == {"x", "y"}
    x = np.array([0.25, 0.75])
    val = ex.evaluate(e, {"x": x, "y": 0.0}, "k")
    np.testing.assert_allclose(val, [0.0625 / (0.25 + 0.0625), 0.5 * (1 + math.tanh(-2.5))])
    with pytest.raises(ConfigError, match="unknown symbol 'foo'"):
        ex.parse("foo + 1", "k", {"bar"})


def test_parse_set():
    assert parse_set("time.end=2.5") == (["time", "end"], 2.5)
    assert parse_set("time.scheme=backward-euler") == (["time", "scheme"], "backward-euler")
    assert parse_set('species.u.reaction="u*(1-u)"') == (["species", "u", "reaction"], "u*(1-u)")
    assert parse_set("mesh.cells=[10, 5]") == (["mesh", "cells"], [10, 5])
    for bad in ("time.end", "=1", "time..end=1", "time.end=", "time.end=[1,"):
        with pytest.raises(ConfigError, match="--set"):
            parse_set(bad)
    out = apply_overrides({"time": {"end": 1}}, [parse_set("time.end=3")])
    assert out == {"time": {"end": 3}}


def test_units_conversion_factors():
    data = example("quickstart")
    spec = check(load_dict(data))
    L, T = spec.length_unit, spec.time_unit
    s = spec.species["cells"]
    assert term_factor(spec, s.diffusion, un.required_units("diffusion", L, T, s.unit)) == [1.0]
    data["parameters"]["D0"] = "1 mm^2/s"
    data["parameters"]["rho"] = "1 1/hour"
    spec = check(load_dict(data))
    s = spec.species["cells"]
    # quantities of length and time enter in model units (mm, day) wherever they appear
    assert spec.parameters["D0"][0] == pytest.approx(86400.0)
    assert spec.parameters["rho"][0] == pytest.approx(24.0)
    assert spec.parameters["D0"][1] == L**2 / T
    f = term_factor(spec, s.diffusion, un.required_units("diffusion", L, T, s.unit))
    assert f == [pytest.approx(1.0)]


@pytest.mark.parametrize("key,value,match", [
    (("parameters", "D0"), "0.01 mm^2", r"species\.cells\.diffusion: has units of mm \*\* 2"),
    (("species", "cells", "reaction"), "D0*cells", r"species\.cells\.reaction: has units"),
    (("species", "cells", "reaction"), "rho + D0", "cannot combine"),
    (("species", "cells", "initial"), "exp(x)", r"exp\(\) needs a dimensionless argument"),
])
def test_unit_mismatches(key, value, match):
    data = example("quickstart")
    node = data
    for k in key[:-1]:
        node = node[k]
    node[key[-1]] = value
    with pytest.raises(ConfigError, match=match):
        check(load_dict(data))


def test_units_need_units_table():
    data = example("quickstart")
    del data["units"]
    with pytest.raises(ConfigError, match=r"parameters\.D0: .* no \[units\] table"):
        check(load_dict(data))
