"""A nonlinear problem solved with a direct factorisation: the Jacobian is lagged.

The monolithic strategy's default (1D/2D) solves each Newton iteration with an LU
factorisation.  For a nonlinear residual the solver keeps the assembled Jacobian, and so its
factorisation, across Newton iterations and steps (a chord iteration, every iteration an
exact solve with the kept matrix) while the step's BDF coefficients keep their values; a
chord solve that converges slowly has the next step assemble anew, one that does not
converge is solved again by Newton.  The residual, and so the solution to the Newton
tolerance, is Newton's.
"""

from __future__ import annotations

from mpi4py import MPI

import numpy as np
import pytest

import tumorpde as tp
from tumorpde.solvers import snes


def fisher(**solver) -> dict:
    """Fisher-KPP on a 2-D strip from the exact travelling wave (Ablowitz & Zeppetella)."""
    wave = "1/(1 + exp((x - 5/sqrt(6)*t)/sqrt(6)))**2"
    return {"mesh": {"shape": "rectangle", "origin": [-20.0, 0.0], "size": [40.0, 4.0],
                     "cells": [80, 8]},
            "time": {"end": 2.0, "dt": 0.05, "scheme": "bdf2", "output_every": 1.0},
            "output": {"progress": False},
            "species": {"u": {"diffusion": 1.0, "reaction": "u*(1 - u)", "initial": wave}},
            "solver": solver}


def solve(cfg: dict) -> tuple[tp.Problem, np.ndarray]:
    p = tp.Problem(cfg)
    while not p.done:
        p.step()
    return p, p.disc.u.x.array.copy()


def test_the_lagged_jacobian_gives_newtons_solution_with_few_assemblies():
    lagged, u = solve(fisher())
    assert lagged.solver.strategy == "monolithic" and lagged.solver.lagged
    newton, ref = solve(fisher(snes_lag_jacobian=1))  # the user's lagging rules: Newton
    assert not newton.solver.lagged
    assert newton.solver.jacobian_assemblies == newton.state.newton  # one per iteration
    # the same discrete solution, to the Newton tolerance (snes_rtol 1e-9)
    assert np.max(np.abs(u - ref)) < 1e-8
    # and far fewer matrices: 40 steps, one or two dt values (backward Euler first)
    assert lagged.state.steps == newton.state.steps == 40
    assert lagged.solver.jacobian_assemblies <= lagged.state.steps // 4
    assert lagged.solver.jacobian_assemblies < newton.solver.jacobian_assemblies / 5
    lagged.destroy()
    newton.destroy()


def test_a_chord_solve_that_does_not_converge_is_solved_again_by_newton(monkeypatch):
    # one chord iteration cannot reach the tolerance: every step falls back on Newton
    monkeypatch.setattr(snes, "CHORD_MAX_IT", 1)
    p, u = solve(fisher())
    assert p.solver.lagged
    assert p.state.steps == 40  # no step failed
    newton, ref = solve(fisher(snes_lag_jacobian=1))
    assert np.max(np.abs(u - ref)) < 1e-8
    p.destroy()
    newton.destroy()


def test_a_new_step_size_assembles_a_new_jacobian():
    p = tp.Problem(fisher())
    p.step()
    first = p.solver.jacobian_assemblies
    assert first >= 1
    p.step()  # BDF2 after backward Euler: new coefficients, a new matrix
    assert p.solver.jacobian_assemblies > first
    p.destroy()


@pytest.mark.parametrize("opts", [{"snes_type": "newtonls"}, {"ksp_type": "gmres"},
                                  {"snes_lag_jacobian": 2}])
def test_user_options_turn_the_lag_off(opts):
    p = tp.Problem(fisher(**opts))
    assert not p.solver.lagged
    p.destroy()


def test_another_preconditioner_does_not_inherit_the_lu_package():
    # the default LU's package (MUMPS) is not asked to make an ILU
    p, u = solve(fisher(ksp_type="gmres", pc_type="jacobi" if MPI.COMM_WORLD.size > 1
                        else "ilu", ksp_rtol=1e-12))
    assert "pc_factor_mat_solver_type" not in p.solver.options
    q, ref = solve(fisher())
    assert np.max(np.abs(u - ref)) < 1e-7
    p.destroy()
    q.destroy()


def test_the_leading_edge_of_a_pulled_front_stays_exact_with_the_chord_iteration(mpi_tmp):
    # ahead of the front u is exp(-x)-small; the zero state is unstable, so an error of
    # one sign left there grows like exp(t) (docs/numerics.md): the exact solves of the
    # chord iteration leave none
    cfg = {"mesh": {"shape": "interval", "size": [200.0], "cells": [2000]},
           "time": {"end": 45.0, "dt": 0.05, "scheme": "bdf2", "output_every": 45.0,
                    "negative_tolerance": 1.0},
           "output": {"progress": False},
           "species": {"u": {"diffusion": 1.0, "reaction": "u*(1 - u)",
                             "initial": "where(x < 5, 1, 0)"}}}
    p, u = solve(cfg)
    assert p.solver.lagged
    assert MPI.COMM_WORLD.allreduce(float(u.min()), op=MPI.MIN) > 0.0
    p.destroy()
