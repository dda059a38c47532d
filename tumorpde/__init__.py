"""tumorpde: reaction-diffusion-taxis models of the tumour microenvironment.

Declare species, parameters and terms in TOML (or with the equivalent Python objects
of :mod:`tumorpde.model.objects`), and run them with DOLFINx/PETSc over MPI::

    import tumorpde as tp

    config = tp.load("quickstart", ["time.end=0.5"])   # a TOML file, an example, a dict
    problem = tp.Problem(config)                        # validated, mesh, forms, solver
    result = problem.solve()                            # in memory (output=DIR writes files)
    result.observables["total_cells"]                   # numpy array per observable column
    run = tp.read("out/model")                          # a run directory read back

Names are imported lazily, so ``import tumorpde`` does not load DOLFINx.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tumorpde.errors import ConfigError, SolverError
from tumorpde.version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from tumorpde.io.rundir import Run, read
    from tumorpde.model.objects import Config
    from tumorpde.problem import Problem, Result
    from tumorpde.trackers import Callback, Progress, Tracker

__all__ = ["__version__", "ConfigError", "SolverError", "load", "Problem", "Result", "Config",
           "Tracker", "Callback", "Progress", "trackers", "read", "Run"]

_LAZY = {
    "Problem": ("tumorpde.problem", "Problem"),
    "Result": ("tumorpde.problem", "Result"),
    "Config": ("tumorpde.model.objects", "Config"),
    "Tracker": ("tumorpde.trackers", "Tracker"),
    "Callback": ("tumorpde.trackers", "Callback"),
    "Progress": ("tumorpde.trackers", "Progress"),
    "read": ("tumorpde.io.rundir", "read"),
    "Run": ("tumorpde.io.rundir", "Run"),
}


def load(source: Any, overrides: list[str] | None = None) -> Config:
    """A validated config from a TOML path, a bundled example's name or a dict.

    Args:
        source: A TOML file, the name of a bundled example (``tumorpde list``), a dict of
            the TOML tables, or a :class:`~tumorpde.model.objects.Config` (returned as it is).
        overrides: ``--set`` strings such as ``"time.end=5"`` or ``"parameters.rho=0.2"``.

    Raises:
        ConfigError: naming the offending key, with the TOML loader's message.
    """
    from tumorpde.problem import load_config

    return load_config(source, overrides)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    if name == "trackers":
        import importlib

        return importlib.import_module("tumorpde.trackers")
    raise AttributeError(f"module 'tumorpde' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
