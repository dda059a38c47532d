"""The outcome of one step's solve, shared by every solver strategy."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["StepResult"]


@dataclass
class StepResult:
    """Outcome of one step's solve (a nonlinear solve, or the tensor strategy's exact one)."""

    converged: bool
    reason: int
    iterations: int
    linear_iterations: int
