"""A residual affine in the state: one linear solve per step, the Jacobian kept.

The solver detects it (no edge-upwind taxis, a Jacobian form free of the state) and then
uses SNES ``ksponly`` and assembles the Jacobian (and sets up its factorisation or
preconditioner) only when the constants it depends on change: the BDF coefficient c0,
time, drug levels.  The results must be those of Newton's method.
"""

from __future__ import annotations

import numpy as np
import pytest

import tumorpde as tp


def model(**over) -> dict:
    cfg = {"mesh": {"size": [1.0, 1.0], "cells": [16, 16]},
           "time": {"end": 0.2, "dt": 0.02, "output_every": 0.1},
           "output": {"progress": False},
           "species": {"a": {"diffusion": 0.01, "reaction": "-0.5*a + 0.1*b",
                             "initial": "exp(-((x-0.5)**2 + (y-0.5)**2)/0.02)"},
                       "b": {"diffusion": 0.05, "reaction": "0.3*a - 0.2*b", "initial": 0.1}}}
    for k, v in over.items():
        cfg["species"]["a"][k] = v
    return cfg


def run(cfg: dict, **solver) -> tuple[tp.Problem, dict]:
    cfg = {**cfg, "solver": solver}
    p = tp.Problem(cfg)
    res = p.solve()
    return p, res.observables


@pytest.mark.parametrize("strategy", ["monolithic", "split"])
def test_a_linear_problem_is_solved_once_per_step_with_one_jacobian(strategy):
    p, fast = run(model(), strategy=strategy)
    q = tp.Problem({**model(), "solver": {"strategy": strategy}})
    assert q.solver.linear and q.solver.reuse
    assert q.solver.snes.getType() == "ksponly"
    while not q.done:
        q.step()
    # backward Euler's first step, then BDF2 at the same dt: two matrices in all
    assert q.solver.jacobian_assemblies == 2
    assert q.state.newton == q.state.steps  # one linear solve per step
    newton = tp.Problem({**model(), "solver": {"strategy": strategy, "snes_type": "newtonls"}})
    ref = newton.solve().observables
    for col in ref:
        np.testing.assert_allclose(fast[col], ref[col], rtol=1e-11, atol=1e-14, err_msg=col)
    q.destroy()


def test_a_jacobian_that_changes_in_time_is_assembled_every_step():
    cfg = model(diffusion="0.01*(1 + 5*t)")
    q = tp.Problem(cfg)
    assert q.solver.linear
    steps = 0
    while not q.done:
        q.step()
        steps += 1
    assert q.solver.jacobian_assemblies == steps
    _, ref = run(cfg, snes_type="newtonls")
    fast = q.rows[-1]
    np.testing.assert_allclose(fast, [ref[c][-1] for c in q.columns], rtol=1e-11, atol=1e-14)
    q.destroy()


def test_nonlinear_problems_and_user_options_keep_newton():
    q = tp.Problem(model(reaction="-0.5*a*a + 0.1*b"))
    assert not q.solver.linear and q.solver.snes.getType() == "newtonls"
    q.step()
    q.step()
    assert q.solver.jacobian_assemblies == q.state.newton  # one per Newton iteration
    q.destroy()
    user = tp.Problem({**model(), "solver": {"snes_lag_jacobian": 2}})
    assert user.solver.linear and not user.solver.reuse  # the user's lagging rules
    user.destroy()
    taxis = model()
    taxis["species"]["a"]["taxis"] = [{"toward": "b", "sensitivity": "0.01*a"}]
    t = tp.Problem(taxis)
    assert not t.solver.linear  # the edge-upwind limiter is nonlinear
    t.destroy()
