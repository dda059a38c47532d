"""Default PETSc options of the nonlinear solver (no PETSc, no DOLFINx).

The solver (:mod:`tumorpde.solvers.snes`) passes these, then the ``[solver]`` table, as
PETSc options under :data:`PREFIX`; each strategy has its defaults:
:func:`monolithic_options` (Newton with LU in 1D/2D, GMRES with block-Jacobi/ILU(0)
in 3D) and :func:`split_options` (GMRES, preconditioned as
:meth:`tumorpde.solvers.splitting.SplitJacobian.preconditioner_options` chooses).
"""

from __future__ import annotations

from typing import Any

__all__ = ["PREFIX", "STRATEGIES", "NEWTON_OPTIONS", "monolithic_options", "split_options"]

#: option prefix of the solver's SNES (``-tumorpde_ksp_type``)
PREFIX = "tumorpde_"

#: values of ``solver.strategy``
STRATEGIES = ("auto", "split", "monolithic", "tensor")

# Newton's defaults, shared by every strategy
NEWTON_OPTIONS: dict[str, Any] = {
    "snes_type": "newtonls",
    "snes_linesearch_type": "basic",
    "snes_rtol": 1e-9,
    "snes_atol": 1e-11,
    "snes_stol": 0.0,
    "snes_max_it": 25,
    "snes_divergence_tolerance": 1e8,
}


def monolithic_options(gdim: int) -> dict[str, Any]:
    """Default PETSc options (without prefix) for a problem of geometric dimension ``gdim``."""
    opts: dict[str, Any] = dict(NEWTON_OPTIONS)
    if gdim <= 2:
        opts.update({"ksp_type": "preonly", "pc_type": "lu",
                     "pc_factor_mat_solver_type": "mumps"})
    else:
        opts.update({"ksp_type": "gmres", "ksp_rtol": 1e-10, "ksp_atol": 1e-14,
                     "ksp_max_it": 1000, "ksp_gmres_restart": 100, "pc_type": "bjacobi",
                     "sub_pc_type": "ilu"})
    return opts


def split_options(gdim: int) -> dict[str, Any]:
    """Default PETSc options (without prefix) of the split strategy."""
    return {
        **NEWTON_OPTIONS,
        "ksp_type": "gmres",
        "ksp_rtol": 1e-12,  # iterative error far below the values that positivity tests see
        "ksp_atol": 1e-14,
        "ksp_max_it": 2000,
        "ksp_gmres_restart": 100,
    }
