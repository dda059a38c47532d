"""Exceptions with a user-facing meaning.

Every problem with user input is a :class:`ConfigError`: the CLI prints its
message as one line and exits with status 2.  Configuration errors are raised
identically on every MPI rank (validation is deterministic and happens before
collective code), so no rank is left waiting in a collective call.
"""

from __future__ import annotations

__all__ = ["ConfigError", "SolverError", "ToolError"]


class ConfigError(ValueError):
    """Bad input: a config key, expression, unit, mesh file or CLI argument.

    Args:
        key: Dotted path of the offending key (``species.cells.diffusion``), or ``""``.
        message: What is wrong, in one line.
    """

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}" if key else message)


class SolverError(RuntimeError):
    """A time step could not be completed even after cutting the step back."""


class ToolError(RuntimeError):
    """An external program (ParaView's pvbatch, gmsh) failed on valid input."""
