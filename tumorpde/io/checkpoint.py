"""Checkpoints: everything an exact continuation of a run needs, in one HDF5 file.

``checkpoint.h5`` in the output directory holds the solution at the last
accepted step and the history the time scheme and the error controller use
(the two previous solutions), each with the coordinates of its nodes, and the
loop state as JSON: time, step sizes, the controller's step and counters,
cumulative-observable accumulators, and how many outputs and observable rows
were written.  Nodes are matched by coordinates when a checkpoint is read, so a
run can resume on a different number of ranks (and with P1 or P2).

A checkpoint is written to ``checkpoint.h5.tmp`` and renamed over the previous
one only once complete, so a crash while writing leaves the previous checkpoint
intact.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mpi4py import MPI

import numpy as np

__all__ = ["FORMAT", "save", "load", "restore_arrays", "node_coordinates"]

FORMAT = 1
FILENAME = "checkpoint.h5"


def node_coordinates(V: Any) -> np.ndarray:
    """Coordinates of the owned nodes of a (blocked) space."""
    n = V.dofmap.index_map.size_local
    return np.ascontiguousarray(V.tabulate_dof_coordinates()[:n])


def save(outdir: Path, comm: MPI.Comm, V: Any, arrays: dict[str, np.ndarray],
         state: dict[str, Any]) -> Path:
    """Write a checkpoint (collective).

    Args:
        outdir: Output directory of the run.
        comm: The run's communicator.
        V: The solution space; ``arrays`` hold its owned dofs (block size ``bs``).
        arrays: Name -> owned dof values (length ``size_local * bs``).
        state: JSON-serialisable loop state.
    """
    bs = V.dofmap.index_map_bs
    x = comm.gather(node_coordinates(V), root=0)
    vals = {k: comm.gather(np.ascontiguousarray(v).reshape(-1, bs), root=0)
            for k, v in arrays.items()}
    path = outdir / FILENAME
    error = None
    if comm.rank == 0:
        import h5py

        tmp = path.with_name(path.name + ".tmp")
        try:
            with h5py.File(tmp, "w", locking=False) as f:
                f.attrs["format"] = FORMAT
                f.attrs["state"] = json.dumps(state)
                f.create_dataset("x", data=np.concatenate(x))
                for k, parts in vals.items():
                    f.create_dataset(f"values/{k}", data=np.concatenate(parts))
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            error = f"cannot write {path}: {exc}"
    error = comm.bcast(error, root=0)
    if error:
        raise OSError(error)
    return path


def load(outdir: Path, comm: MPI.Comm) -> tuple[dict[str, Any], np.ndarray, dict[str, np.ndarray]]:
    """Read a checkpoint on rank 0: (state, node coordinates, values); other ranks get empties.

    Raises:
        FileNotFoundError: No checkpoint in ``outdir`` (on every rank).
        ValueError: The file is unreadable or of another format (on every rank).
    """
    path = outdir / FILENAME
    out = None
    error = None
    if comm.rank == 0:
        if not path.is_file():
            error = "missing"
        else:
            import h5py

            try:
                with h5py.File(path, "r", locking=False) as f:
                    if int(f.attrs.get("format", 0)) != FORMAT:
                        raise ValueError(f"format {f.attrs.get('format')} (expected {FORMAT})")
                    state = json.loads(f.attrs["state"])
                    x = np.asarray(f["x"][...])
                    vals = {k: np.asarray(d[...]) for k, d in f["values"].items()}
                out = (state, x, vals)
            except (OSError, KeyError, ValueError) as exc:
                error = f"{path} is unreadable ({exc})"
    error = comm.bcast(error, root=0)
    if error == "missing":
        raise FileNotFoundError(path)
    if error:
        raise ValueError(error)
    if comm.rank == 0:
        return out  # type: ignore[return-value]
    return {}, np.empty((0, 3)), {}


def restore_arrays(comm: MPI.Comm, V: Any, x: np.ndarray,
                   vals: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Map checkpointed nodal values (rank 0) onto this rank's owned dofs, by coordinates.

    Returns name -> owned dof values (length ``size_local * bs``) on every rank.

    Raises:
        ValueError: The nodes do not match (another mesh), on every rank.
    """
    mine = node_coordinates(V)
    allx = comm.gather(mine, root=0)
    names = comm.bcast(sorted(vals) if comm.rank == 0 else None, root=0)
    parts: list[dict[str, np.ndarray]] | None = None
    error = None
    if comm.rank == 0:
        from scipy.spatial import cKDTree

        span = float(np.ptp(x, axis=0).max()) if len(x) else 1.0
        tol = 1e-8 * max(span, 1e-300)
        tree = cKDTree(x)
        parts = []
        for xr in allx:
            d, idx = tree.query(xr, k=1) if len(xr) else (np.zeros(0), np.zeros(0, int))
            if len(xr) != 0 and (len(x) != sum(len(a) for a in allx) or float(d.max()) > tol):
                error = ("the checkpoint's nodes do not match this mesh "
                         f"({len(x)} nodes in the checkpoint, {sum(len(a) for a in allx)} here)")
                break
            parts.append({k: vals[k][idx] for k in names})
    error = comm.bcast(error, root=0)
    if error:
        raise ValueError(error)
    got = comm.scatter(parts, root=0)
    return {k: np.ascontiguousarray(v).ravel() for k, v in got.items()}
