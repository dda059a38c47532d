"""Shared helpers of the experiment scripts (paths, output directory)."""

from __future__ import annotations

from pathlib import Path

from tumorpde.study import experiment_args


def setup(script: str, description: str):  # noqa: ANN201
    """Parse arguments; return (args, directory for outputs, runs directory)."""
    args = experiment_args(description)
    here = Path(script).resolve().parent
    out = args.output or here
    out.mkdir(parents=True, exist_ok=True)
    return args, out, out / "runs"
