"""Outputs of a run, all in one directory, written so that a crash never spoils them.

* ``fields.xdmf`` (+ ``fields.h5``): one P1 function per species, named as the
  species, at every output time (ParaView: Xdmf3 reader).  The mesh and the
  values are stored in the mesh's *input* numbering (the order of vertices and
  cells before partitioning), so the files are the same on any number of ranks
  and a run resumed on another number of ranks continues them seamlessly.
  Every output time gets its dataset in ``fields.h5`` when the run starts
  (space reserved, nothing written), so writing an output only fills reserved
  bytes; ``fields.xdmf`` is then replaced atomically and names only outputs
  whose data are complete.  A run killed at any moment leaves both files
  readable up to the last complete output.
* ``observables.csv``: ``t``, ``total_<species>`` (MPI-reduced integrals) and the
  ``[observables]`` of the config, one row per accepted time step, each row
  appended by a single ``write`` (never half a row).
* ``run.json``: resolved config, versions, ranks, wall times, counters and
  ``status`` (``running`` -> ``completed`` / ``failed`` / ``interrupted``),
  replaced atomically on rank 0; its schema is :class:`tumorpde.io.runinfo.RunInfo`.

:mod:`tumorpde.io.rundir` reads all of them back.
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from mpi4py import MPI

import numpy as np

from tumorpde.compat import geometry_dofmap
from tumorpde.errors import ConfigError
from tumorpde.io.runinfo import RunInfo

__all__ = ["FieldWriter", "ObservableWriter", "RunRecord", "NodeOrder", "RunLock",
           "write_json_atomic", "time_key"]


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON via a temporary file and rename (readers never see half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    """Replace a text file atomically (write a temporary file, then rename)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def time_key(t: float) -> str:
    """The HDF5 dataset name of output time ``t`` (as DOLFINx names them: '.' -> '_')."""
    return repr(float(t)).replace(".", "_")


class RunLock:
    """An exclusive lock on an output directory, held by rank 0 while a run writes there.

    Released by the operating system when the process ends, however it ends, so a
    killed run never leaves a stale lock behind.
    """

    def __init__(self, comm: MPI.Comm, outdir: Path) -> None:
        self.comm = comm
        self.fd: int | None = None
        busy = False
        if comm.rank == 0:
            self.fd = os.open(outdir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(self.fd)
                self.fd = None
                busy = True
        if comm.bcast(busy, root=0):
            raise ConfigError("--output", f"another run is writing to {outdir} right now")

    def release(self) -> None:
        """Release the lock (rank 0)."""
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


class NodeOrder:
    """Gather P1 nodal values to rank 0 in the mesh's input numbering.

    The P1 nodes of a degree-1 mesh are its vertices; their input indices (the
    numbering of the mesh before it was partitioned) do not depend on the number
    of ranks, so neither does anything written in this order.
    """

    def __init__(self, V1: Any) -> None:
        mesh = V1.mesh
        self.comm = comm = mesh.comm
        imap = V1.dofmap.index_map
        self.n_owned = n_owned = imap.size_local
        geom = mesh.geometry
        gdofs = np.asarray(geometry_dofmap(mesh))
        dof2geom = np.empty(imap.size_local + imap.num_ghosts, dtype=np.int64)
        dof2geom[np.asarray(V1.dofmap.list).ravel()] = gdofs.ravel()
        inputs = np.asarray(geom.input_global_indices, dtype=np.int64)
        self.local_ids = inputs[dof2geom[:n_owned]]
        tdim = mesh.topology.dim
        n_cells = mesh.topology.index_map(tdim).size_local
        cells_in = inputs[gdofs[:n_cells]]
        cell_ids = np.asarray(mesh.topology.original_cell_index[:n_cells], dtype=np.int64)
        x_own = geom.x[dof2geom[:n_owned]]
        ids = comm.gather(self.local_ids, root=0)
        cells = comm.gather(cells_in, root=0)
        corder = comm.gather(cell_ids, root=0)
        xs = comm.gather(x_own, root=0)
        self.counts = comm.gather(n_owned, root=0)
        self.num_nodes = imap.size_global
        self.perm = self.x = self.cells = None
        if comm.rank == 0:
            all_ids = np.concatenate(ids)
            order = np.argsort(all_ids, kind="stable")
            self.perm = order  # position in the gathered array of the k-th output node
            sorted_ids = all_ids[order]
            self.x = np.concatenate(xs)[order]
            allc = np.concatenate(cells)
            allc = allc[np.argsort(np.concatenate(corder), kind="stable")]
            self.cells = np.searchsorted(sorted_ids, allc).astype(np.int64)

    def gather(self, owned: np.ndarray) -> np.ndarray | None:
        """Values at the owned nodes -> all values in output order on rank 0 (else None)."""
        parts = self.comm.gather(np.ascontiguousarray(owned[: self.n_owned]), root=0)
        if self.comm.rank != 0:
            return None
        return np.concatenate(parts)[self.perm]


_TOPOLOGY = {1: "PolyLine", 2: "Triangle", 3: "Tetrahedron"}


class FieldWriter:
    """``fields.xdmf`` + ``fields.h5`` (species interpolated to P1 when the space is P2).

    Args:
        disc: The discretisation.
        outdir: Output directory.
        names: Species to write.
        times: Every output time of the run, known in advance (their datasets are
            reserved when the file is created).
        resume: Number of outputs already written by an earlier part of this run
            (``fields.h5`` is reused; ``0`` creates the files afresh).
    """

    def __init__(self, disc: Any, outdir: Path, names: list[str], times: list[float],
                 resume: int | None = None) -> None:
        from dolfinx import fem

        self.disc = disc
        self.names = names
        self.times = list(times)
        self.path = outdir / "fields.xdmf"
        self.h5path = outdir / "fields.h5"
        self.order = NodeOrder(disc.V1)
        self.tmp = fem.Function(disc.V1) if disc.degree != 1 else None
        self.count = 0
        self._grids: dict[str, list[str]] = {n: [] for n in names}
        comm = disc.comm
        mesh = disc.domain.mesh
        self.tdim = mesh.topology.dim
        self.gdim = mesh.geometry.dim
        error = None
        if comm.rank == 0:
            try:
                if resume:
                    self._check_existing()
                else:
                    self._create()
            except (OSError, KeyError, ValueError) as exc:
                error = f"{self.h5path.name} cannot be {'reused' if resume else 'written'}: {exc}"
        error = comm.bcast(error, root=0)
        if error:
            raise ConfigError("output", error)
        for k in range(resume or 0):
            self._add_grids(k)
        self.count = resume or 0

    # -- rank 0 file handling
    def _open(self, mode: str) -> Any:
        import h5py

        return h5py.File(self.h5path, mode, locking=False)

    def _create(self) -> None:
        import h5py

        o = self.order
        ncol = max(self.gdim, 2)
        x = np.zeros((o.num_nodes, ncol))
        x[:, : self.gdim] = o.x[:, : self.gdim]
        with self._open("w") as f:
            f.create_dataset("Mesh/mesh/geometry", data=x)
            f.create_dataset("Mesh/mesh/topology", data=o.cells)
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
            dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
            dcpl.set_obj_track_times(False)
            space = h5py.h5s.create_simple((o.num_nodes, 1))
            for name in self.names:
                g = f.require_group(f"Function/{name}")
                for t in self.times:
                    h5py.h5d.create(g.id, time_key(t).encode(), h5py.h5t.IEEE_F64LE, space,
                                    dcpl=dcpl)

    def _check_existing(self) -> None:
        with self._open("r") as f:
            n = f["Mesh/mesh/geometry"].shape[0]
            if n != self.order.num_nodes:
                raise ValueError(f"it holds a mesh of {n} nodes, the run has "
                                 f"{self.order.num_nodes}")
            for name in self.names:
                for t in self.times:
                    f[f"Function/{name}/{time_key(t)}"]  # noqa: B018 - KeyError if absent

    def _add_grids(self, k: int) -> None:
        t = self.times[k]
        n = self.order.num_nodes
        h5 = self.h5path.name
        for name in self.names:
            self._grids[name].append(
                f'      <Grid Name="{name}" GridType="Uniform">\n'
                '        <xi:include xpointer="xpointer(/Xdmf/Domain/Grid[@GridType=\'Uniform\']'
                '[1]/*[self::Topology or self::Geometry])" />\n'
                f'        <Time Value="{t!r}" />\n'
                f'        <Attribute Name="{name}" AttributeType="Scalar" Center="Node">\n'
                f'          <DataItem Dimensions="{n} 1" Format="HDF">'
                f"{h5}:/Function/{name}/{time_key(t)}</DataItem>\n"
                "        </Attribute>\n"
                "      </Grid>\n")

    def _xdmf(self) -> str:
        o = self.order
        ncells, nv = o.cells.shape
        geo = "XYZ" if self.gdim == 3 else "XY"
        h5 = self.h5path.name
        parts = [
            '<?xml version="1.0"?>\n<!DOCTYPE Xdmf SYSTEM "Xdmf.dtd" []>\n'
            '<Xdmf Version="3.0" xmlns:xi="https://www.w3.org/2001/XInclude">\n  <Domain>\n'
            '    <Grid Name="mesh" GridType="Uniform">\n'
            f'      <Topology TopologyType="{_TOPOLOGY[self.tdim]}" NumberOfElements="{ncells}" '
            f'NodesPerElement="{nv}">\n'
            f'        <DataItem Dimensions="{ncells} {nv}" NumberType="Int" Format="HDF">'
            f"{h5}:/Mesh/mesh/topology</DataItem>\n      </Topology>\n"
            f'      <Geometry GeometryType="{geo}">\n'
            f'        <DataItem Dimensions="{o.num_nodes} {max(self.gdim, 2)}" Format="HDF">'
            f"{h5}:/Mesh/mesh/geometry</DataItem>\n      </Geometry>\n    </Grid>\n"]
        for name in self.names:
            parts.append(f'    <Grid Name="{name}" GridType="Collection" '
                         'CollectionType="Temporal">\n')
            parts.extend(self._grids[name])
            parts.append("    </Grid>\n")
        parts.append("  </Domain>\n</Xdmf>\n")
        return "".join(parts)

    def write(self, t: float) -> None:
        """Write every selected species at output time ``t`` (the next one planned)."""
        disc = self.disc
        k = self.count
        if k >= len(self.times) or abs(self.times[k] - t) > 1e-9 * max(1.0, abs(t)):
            raise RuntimeError(f"output at t={t!r} was not planned (next planned: "
                               f"{self.times[k] if k < len(self.times) else None})")
        values = {}
        for name in self.names:
            i = disc.spec.species[name].index
            if self.tmp is None:
                owned = disc.u.x.array[i::disc.n]
            else:
                self.tmp.interpolate(disc.u.sub(i) if disc.n > 1 else disc.u)
                owned = self.tmp.x.array
            values[name] = self.order.gather(owned)
        error = None
        if disc.comm.rank == 0:
            try:
                with self._open("r+") as f:
                    for name, v in values.items():
                        f[f"Function/{name}/{time_key(self.times[k])}"][:, 0] = v
                self._add_grids(k)
                write_text_atomic(self.path, self._xdmf())
            except OSError as exc:  # disk full, directory removed, ...
                error = f"cannot write {self.h5path}: {exc}"
        error = disc.comm.bcast(error, root=0)
        if error:
            raise OSError(error)
        self.count = k + 1

    def close(self) -> None:
        """Nothing is held open between outputs."""


class ObservableWriter:
    """``observables.csv`` written on rank 0, one row per call, each by a single write.

    With ``resume`` (a number of data rows), an existing file is cut back to its
    header and that many rows, and continued.
    """

    def __init__(self, comm: MPI.Comm, outdir: Path, columns: list[str],
                 resume: int | None = None) -> None:
        self.comm = comm
        self.columns = columns
        self.rows = 0
        self.path = outdir / "observables.csv"
        self._fd: int | None = None
        error = None
        if comm.rank == 0:
            try:
                if resume is not None:
                    self._truncate(resume)
                    self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
                else:
                    self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    self._line(columns)
            except (OSError, ValueError) as exc:
                error = f"cannot {'continue' if resume is not None else 'write'} " \
                        f"{self.path}: {exc}"
        error = comm.bcast(error, root=0)
        if error:
            raise ConfigError("output", error)
        self.rows = resume or 0

    def _truncate(self, rows: int) -> None:
        with open(self.path, "rb") as f:
            lines = f.read().split(b"\n")
        header = next(csv.reader([lines[0].decode()]))
        if header != self.columns:
            raise ValueError("its columns differ from the run's")
        if len(lines) - 1 < rows + 1:  # complete lines end with a newline
            raise ValueError(f"it has fewer than {rows} complete rows")
        keep = b"\n".join(lines[: rows + 1]) + b"\n"
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(keep)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def _line(self, values: list[str]) -> None:
        assert self._fd is not None
        os.write(self._fd, (",".join(values) + "\n").encode())

    def write(self, values: list[float]) -> None:
        """Append a row (values in column order)."""
        self.rows += 1
        if self._fd is not None:
            self._line([repr(float(v)) for v in values])

    def close(self) -> None:
        """Close the file."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class RunRecord:
    """The contents of ``run.json``, rewritten atomically on rank 0 as the run progresses.

    ``data`` is the record as a plain dict (the run updates it as it goes); every
    :meth:`save` writes it through :class:`tumorpde.io.runinfo.RunInfo`, so what is
    written always follows the schema (a key of the wrong type is an error).

    With ``previous`` (the record of an interrupted run being resumed), its
    counters and wall times are kept and a ``resumed`` entry is added.
    """

    def __init__(self, comm: MPI.Comm, outdir: Path, config: dict[str, Any],
                 versions: dict[str, str], argv: list[str] | None = None,
                 previous: dict[str, Any] | None = None) -> None:
        self.comm = comm
        self.path = outdir / "run.json"
        self.t0 = time.perf_counter()
        self.elapsed = 0.0
        if previous is not None:
            self.data = previous
            self.elapsed = float(previous.get("wall_time", {}).get("total", 0.0))
            self.data.update(status="running", ranks=comm.size, host=platform.node())
            self.data.pop("message", None)
            self.data.pop("finished", None)
            self.data.setdefault("resumed", []).append(
                {"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "ranks": comm.size,
                 "argv": argv or []})
        else:
            self.data: dict[str, Any] = {
                "status": "running",
                "config": config,
                "versions": versions,
                "ranks": comm.size,
                "host": platform.node(),
                "argv": argv or [],
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "wall_time": {},
                "counters": {},
            }
        self.save()

    def update(self, **kw: Any) -> None:
        """Merge keys into the record (no write)."""
        self.data.update(kw)

    @property
    def info(self) -> RunInfo:
        """The record as a :class:`~tumorpde.io.runinfo.RunInfo` (a copy)."""
        return RunInfo.from_json(self.data)

    def save(self) -> None:
        """Write the record (rank 0; every rank checks it against the schema)."""
        self.data.setdefault("wall_time", {})["total"] = self.elapsed + time.perf_counter() - self.t0
        text = self.info.dumps()
        if self.comm.rank == 0:
            write_text_atomic(self.path, text)

    def finish(self, status: str, message: str | None = None) -> None:
        """Set the final status and write."""
        self.data["status"] = status
        self.data["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        if message:
            self.data["message"] = message
        self.save()
