"""The ``tensor`` strategy: exact fast-diagonalisation steps on uniform tensor-product grids.

It must solve the same discrete equations as the general strategies (to round-off), be
chosen by ``auto`` only where it applies, say why it does not apply when asked for, and
give way to the general strategies in parallel (serial = parallel).
"""

from __future__ import annotations

import math

from mpi4py import MPI

import numpy as np
import pytest

import tumorpde as tp
from tumorpde.errors import ConfigError
from tumorpde.model.config import load_dict
from tumorpde.solvers import tensor
from tumorpde.solvers.snes import StepSolver, step_solver

SERIAL = MPI.COMM_WORLD.size == 1
SHAPES = {1: ("interval", None), 2: ("rectangle", "quadrilateral"), 3: ("box", "hexahedron")}


def model(dims: int, strategy: str = "auto", scheme: str = "bdf2", adaptive: bool = False,
          **species) -> dict:
    """Three linear species with constant rates, sources in space and time, a flux boundary."""
    shape, cell = SHAPES[dims]
    mesh = {"shape": shape, "size": [1.0, 0.8, 0.6][:dims], "cells": [12, 10, 7][:dims]}
    if cell:
        mesh["cell"] = cell
    wave = "1 + cos(3*x)" + ("*sin(2*y)" if dims > 1 else "")
    sp = {"a": {"diffusion": 0.1, "reaction": "-k*a + 0.3", "initial": wave},
          "b": {"diffusion": "2*k", "reaction": "0.2*b + x*exp(-t)",
                "initial": "exp(-10*(x - 0.3)**2)", "boundary": {"left": {"flux": "0.5*t"}}},
          "c": {"diffuses": False, "reaction": "-c", "initial": "x"}}
    sp.update(species)
    return {"mesh": mesh, "parameters": {"k": {"value": 0.7}},
            "time": {"end": 0.2, "dt": 0.01, "scheme": scheme, "adaptive": adaptive,
                     "output_every": 0.1},
            "species": sp, "solver": {"strategy": strategy},
            "output": {"fields": [], "progress": False}}


def final_state(cfg: dict) -> tuple[np.ndarray, str, dict]:
    p = tp.Problem(cfg)
    kind = type(p._new_solver()).__name__
    res = p.solve()
    u = p.disc.u.x.array.copy()
    p.destroy()
    return u, kind, res.observables


@pytest.mark.skipif(not SERIAL, reason="the tensor strategy is serial; see the parallel test")
@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("scheme,adaptive", [("bdf2", False), ("backward-euler", False),
                                             ("bdf2", True)])
def test_same_discrete_solution_as_the_general_strategy(dims, scheme, adaptive):
    fast, kind, obs = final_state(model(dims, "auto", scheme, adaptive))
    ref, kind_ref, obs_ref = final_state(model(dims, "monolithic", scheme, adaptive))
    assert kind == "TensorSolver" and kind_ref == "StepSolver"
    scale = np.abs(ref).max()
    assert np.abs(fast - ref).max() <= 1e-10 * scale
    for key in ("total_a", "total_b", "total_c"):
        assert obs[key][-1] == pytest.approx(obs_ref[key][-1], rel=1e-10)
    # the flux boundary and the source drive b: the test sees them
    assert obs["total_b"][-1] != pytest.approx(obs["total_b"][0], rel=1e-3)


@pytest.mark.skipif(not SERIAL, reason="the tensor strategy is serial")
def test_a_cosine_mode_decays_at_the_rate_of_its_discrete_eigenvalue():
    """u = cos(pi x) cos(2 pi y): an eigenvector of the Q1 operator; backward Euler gives
    u_n = u_0 / (1 + dt (D Lambda + lambda))^n exactly, Lambda the discrete symbol."""
    N, dt, D, lam, steps = 16, 0.05, 0.3, 0.5, 8
    cfg = {"mesh": {"shape": "rectangle", "size": [1.0, 1.0], "cells": [N, N],
                    "cell": "quadrilateral"},
           "time": {"end": steps * dt, "dt": dt, "scheme": "backward-euler",
                    "output_every": steps * dt},
           "species": {"u": {"diffusion": D, "reaction": f"-{lam}*u",
                             "initial": "cos(pi*x)*cos(2*pi*y)", "nonnegative": False}},
           "output": {"fields": [], "progress": False}}
    p = tp.Problem(cfg)
    assert isinstance(p._new_solver(), tensor.TensorSolver)
    u0 = p.disc.u.x.array.copy()
    p.solve()
    h = 1.0 / N
    lx, ly = (4 / h**2 * math.sin(math.pi * j / (2 * N)) ** 2 for j in (1, 2))
    symbol = lx * (1 - h**2 * ly / 6) + ly * (1 - h**2 * lx / 6)
    factor = (1 + dt * (D * symbol + lam)) ** -steps
    assert np.abs(p.disc.u.x.array - factor * u0).max() <= 1e-12
    p.destroy()

    def error(n: int) -> float:  # of the discrete symbol against the continuous 5 pi^2
        h = 1.0 / n
        lx, ly = (4 / h**2 * math.sin(math.pi * j / (2 * n)) ** 2 for j in (1, 2))
        return abs(lx * (1 - h**2 * ly / 6) + ly * (1 - h**2 * lx / 6) - 5 * math.pi**2)

    assert math.log2(error(16) / error(32)) == pytest.approx(2.0, abs=0.05)


@pytest.mark.skipif(not SERIAL, reason="the tensor strategy is serial")
def test_parameters_changed_between_runs_reach_the_solver():
    """A kept solver reads the constants at every step (calibration changes them)."""
    cfg = model(2)
    p = tp.Problem(cfg)
    p.solve()
    first = p.disc.u.x.array.copy()
    p.destroy()
    cfg["parameters"]["k"]["value"] = 0.35
    ref, _, _ = final_state({**cfg, "solver": {"strategy": "monolithic"}})
    q = tp.Problem(model(2))
    q.disc.constants["k"].value = 0.35
    q.solve()
    assert np.abs(q.disc.u.x.array - ref).max() <= 1e-10 * np.abs(ref).max()
    assert np.abs(first - ref).max() > 1e-3
    q.destroy()


CASES = {
    "has taxis": {"a": {"diffusion": 0.1, "initial": 1.0,
                        "taxis": [{"toward": "b", "sensitivity": 0.1}]}},
    "nonlinear": {"a": {"diffusion": 0.1, "reaction": "a*(1 - a)", "initial": 0.5}},
    "Dirichlet": {"a": {"diffusion": 0.1, "initial": 0.5,
                        "boundary": {"left": {"value": 1.0}}}},
    "depends on": {"a": {"diffusion": 0.1, "reaction": "-a + 0.1*b", "initial": 0.5}},
    "not constant": {"a": {"diffusion": "0.1*(1 + x)", "initial": 0.5}},
    "state (only": {"a": {"diffusion": 0.1, "initial": 0.5,
                          "boundary": {"left": {"transfer": 1.0, "value": 0.0}}}},
}


@pytest.mark.skipif(not SERIAL, reason="the tensor strategy is serial")
@pytest.mark.parametrize("why", sorted(CASES))
def test_auto_falls_back_and_an_explicit_request_says_why(why):
    cfg = model(2, **CASES[why])
    if why == "has taxis":  # edge fluxes need simplices
        cfg["discretisation"] = {"taxis": "galerkin"}
    p = tp.Problem(cfg)
    reason = tensor.unsuitable(p.disc)
    assert reason is not None and why in reason
    assert isinstance(p._new_solver(), StepSolver)
    with pytest.raises(ConfigError, match="'tensor' does not apply: .*" + why.split()[0]):
        step_solver(p.disc, {"strategy": "tensor"})
    p.destroy()


def test_simplices_and_petsc_options_are_left_to_the_general_strategies():
    cfg = model(2)
    del cfg["mesh"]["cell"]  # triangles
    p = tp.Problem(cfg)
    assert "mesh.cell" in tensor.unsuitable(p.disc)
    p.destroy()
    if SERIAL:
        q = tp.Problem({**model(2), "solver": {"ksp_type": "cg", "pc_type": "gamg"}})
        assert isinstance(q._new_solver(), StepSolver)  # the user's PETSc options are used
        with pytest.raises(ConfigError, match="solver.ksp_type: the tensor strategy takes no"):
            step_solver(q.disc, {"strategy": "tensor", "ksp_type": "cg"})
        q.destroy()


def test_mesh_cell_is_checked():
    cfg = model(2, a={"diffusion": 0.1, "initial": 1.0,
                      "taxis": [{"toward": "b", "sensitivity": 0.1}]})
    with pytest.raises(ConfigError, match="discretisation.taxis: 'upwind' .* needs simplex"):
        tp.Problem(cfg)
    with pytest.raises(ConfigError, match="mesh.cell"):
        load_dict({**model(2), "mesh": {"shape": "rectangle", "cell": "hexahedron"}})
    with pytest.raises(ConfigError, match="mesh.cell: is for shape"):
        load_dict({**model(2), "mesh": {"shape": "disk", "cell": "quadrilateral"}})


def test_serial_equals_parallel_on_hexahedra():
    """The run on every rank count equals the serial one: the tensor path on one process, the
    general strategies on several (their Krylov tolerance bounds the difference)."""
    p = tp.Problem(model(3))
    assert isinstance(p._new_solver(), tensor.TensorSolver if SERIAL else StepSolver)
    obs = p.solve().observables
    p.destroy()
    if not SERIAL:
        q = tp.Problem(model(3))
        with pytest.raises(ConfigError, match="one process"):
            step_solver(q.disc, {"strategy": "tensor"})
        q.destroy()
    serial = tp.Problem(model(3), comm=MPI.COMM_SELF)  # on every rank alike
    assert isinstance(serial._new_solver(), tensor.TensorSolver)
    ref = serial.solve().observables
    serial.destroy()
    for key in ("total_a", "total_b", "total_c"):
        assert obs[key][-1] == pytest.approx(ref[key][-1], rel=1e-9)
