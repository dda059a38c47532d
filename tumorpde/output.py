"""Outputs of a run, all in one directory.

* ``fields.xdmf`` (+ ``fields.h5``): one P1 function per species, named as the
  species, at every output time (ParaView: Xdmf3 reader);
* ``observables.csv``: ``t``, ``total_<species>`` (MPI-reduced integrals) and the
  ``[observables]`` of the config, one row per accepted time step, flushed;
* ``run.json``: resolved config, versions, ranks, wall times, counters and
  ``status`` (``running`` -> ``completed`` / ``failed`` / ``interrupted``),
  replaced atomically on rank 0.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from mpi4py import MPI

from tumorpde.compat import import_dolfinx

__all__ = ["FieldWriter", "ObservableWriter", "RunRecord", "write_json_atomic"]


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON via a temporary file and rename (readers never see half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class FieldWriter:
    """XDMF output of species fields (interpolated to P1 when the space is P2)."""

    def __init__(self, disc: Any, outdir: Path, names: list[str]) -> None:
        import_dolfinx()
        from dolfinx import fem, io

        self.disc = disc
        self.names = names
        self.path = outdir / "fields.xdmf"
        self.file = io.XDMFFile(disc.comm, str(self.path), "w")
        self.file.write_mesh(disc.domain.mesh)
        self.funcs = {}
        for name in names:
            self.funcs[name] = fem.Function(disc.V1, name=name)
        self.count = 0

    def write(self, t: float) -> None:
        """Write every selected species at time ``t``."""
        disc = self.disc
        for name, f in self.funcs.items():
            k = disc.spec.species[name].index
            if disc.degree == 1:
                f.x.array[:] = disc.u.x.array[k::disc.n]
            else:
                f.interpolate(disc.u.sub(k) if disc.n > 1 else disc.u)
            f.x.scatter_forward()
            self.file.write_function(f, t)
        self.count += 1

    def close(self) -> None:
        """Close the file (collective)."""
        self.file.close()


class ObservableWriter:
    """``observables.csv`` written on rank 0, one flushed row per call."""

    def __init__(self, comm: MPI.Comm, outdir: Path, columns: list[str]) -> None:
        self.comm = comm
        self.columns = columns
        self.rows = 0
        self._f = None
        if comm.rank == 0:
            self._f = open(outdir / "observables.csv", "w", newline="", encoding="utf-8")
            self._w = csv.writer(self._f)
            self._w.writerow(columns)
            self._f.flush()

    def write(self, values: list[float]) -> None:
        """Append a row (values in column order)."""
        self.rows += 1
        if self._f is not None:
            self._w.writerow([repr(float(v)) for v in values])
            self._f.flush()

    def close(self) -> None:
        """Close the file."""
        if self._f is not None:
            self._f.close()
            self._f = None


class RunRecord:
    """The contents of ``run.json``, rewritten atomically on rank 0 as the run progresses."""

    def __init__(self, comm: MPI.Comm, outdir: Path, config: dict[str, Any],
                 versions: dict[str, str], argv: list[str] | None = None) -> None:
        self.comm = comm
        self.path = outdir / "run.json"
        self.t0 = time.perf_counter()
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

    def save(self) -> None:
        """Write the record (rank 0)."""
        self.data["wall_time"]["total"] = time.perf_counter() - self.t0
        if self.comm.rank == 0:
            write_json_atomic(self.path, self.data)

    def finish(self, status: str, message: str | None = None) -> None:
        """Set the final status and write."""
        self.data["status"] = status
        self.data["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        if message:
            self.data["message"] = message
        self.save()
