"""tumorpde: reaction-diffusion-taxis models of the tumour microenvironment.

Declare species, parameters and terms in TOML (or with the equivalent Python
objects of :mod:`tumorpde.model`), and run them with DOLFINx/PETSc over MPI.
"""

from __future__ import annotations

__version__ = "0.1.0"

from tumorpde.errors import ConfigError, SolverError

__all__ = ["__version__", "ConfigError", "SolverError"]
