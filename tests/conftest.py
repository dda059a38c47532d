"""Shared fixtures: MPI-safe temporary directories and collective clean-up.

The same tests run serially and under ``mpiexec -n 2 python -m pytest``; tests
marked ``subprocess`` start their own (possibly parallel) child processes and
are deselected from the parallel session by the Makefile.
"""

from __future__ import annotations

import gc
from pathlib import Path

from mpi4py import MPI

import pytest

import tumorpde.compat

tumorpde.compat.import_dolfinx()


@pytest.fixture
def comm() -> MPI.Comm:
    return MPI.COMM_WORLD


@pytest.fixture
def mpi_tmp(request) -> Path:
    """A temporary directory shared by all ranks (created by rank 0)."""
    from helpers import shared_tmp_dir  # (after DOLFINx is imported, below)

    yield from shared_tmp_dir()


@pytest.fixture(autouse=True)
def _collective_cleanup():
    """Destroy PETSc objects collectively between tests (avoids hangs on 2 ranks)."""
    yield
    gc.collect()
    MPI.COMM_WORLD.Barrier()
