"""Reading a run directory (the output of ``tumorpde run``) from Python.

>>> import tumorpde as tp
>>> run = tp.read("out/quickstart")
>>> run.status, run.info.counters.steps
('completed', 20)
>>> run.observables["total_cells"][-1]         # a column of observables.csv
>>> run.times                                  # output times of the fields
[0.0, 0.25, 0.5, 0.75, 1.0]
>>> run.field("cells", 0.5)                    # values at the nodes of run.nodes

What a run directory holds (see :mod:`tumorpde.io.output`): ``run.json``
(:class:`~tumorpde.io.runinfo.RunInfo`), ``observables.csv``, ``fields.xdmf`` +
``fields.h5`` and, while the run is unfinished, ``checkpoint.h5``.  Every file
may be read while the run is still writing it: a row of ``observables.csv``
being written is left out, and only the outputs that ``fields.xdmf`` names
(those complete) are read from ``fields.h5``.

This module imports neither DOLFINx nor MPI (numpy, and h5py for fields).
"""

from __future__ import annotations

import csv
import math
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tumorpde.errors import ConfigError
from tumorpde.io.runinfo import RunInfo

__all__ = ["read", "Run", "Snapshot", "XdmfInfo", "read_info", "read_observables", "read_xdmf",
           "RUN_JSON", "OBSERVABLES_CSV", "FIELDS_XDMF", "FIELDS_H5"]

RUN_JSON = "run.json"
OBSERVABLES_CSV = "observables.csv"
FIELDS_XDMF = "fields.xdmf"
FIELDS_H5 = "fields.h5"


def read_info(run_dir: str | Path) -> RunInfo:
    """``run.json`` of a run directory.

    Raises:
        ConfigError: No directory there, no ``run.json`` in it, or one that is not a run record.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError("", f"{run_dir} is not a directory")
    return RunInfo.read(run_dir / RUN_JSON)


def read_observables(run_dir: str | Path) -> dict[str, np.ndarray]:
    """``observables.csv`` of a run directory: column -> float array, in file order.

    A last line without its newline (a row a running job is writing) is left out;
    a file with only its header gives empty columns.

    Raises:
        ConfigError: The file is missing or malformed (the message names the line).
    """
    run_dir = Path(run_dir)
    path = run_dir / OBSERVABLES_CSV
    if not path.is_file():
        raise ConfigError("", f"{run_dir} has no {OBSERVABLES_CSV} (not the output directory of "
                              "`tumorpde run`?)")
    try:
        text = path.read_text(encoding="utf-8")
        if text and not text.endswith("\n"):  # a row still being written by a running job
            text = text[:text.rfind("\n") + 1]
        rows = [r for r in csv.reader(text.splitlines()) if r]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError("", f"cannot read {path}: {exc}") from None
    if not rows or rows[0][:1] != ["t"]:
        raise ConfigError("", f"{path} is not an observables table (no 't' column)")
    header, body = rows[0], rows[1:]
    values = np.empty((len(body), len(header)))
    for i, r in enumerate(body):
        if len(r) != len(header):
            raise ConfigError("", f"{path}, line {i + 2}: {len(r)} values for {len(header)} "
                                  "columns")
        try:
            values[i] = [float(v) for v in r]
        except ValueError:
            raise ConfigError("", f"{path}, line {i + 2}: not a number") from None
    return {h: values[:, j].copy() for j, h in enumerate(header)}


_TOPOLOGY_DIM = {"polyvertex": 0, "polyline": 1, "triangle": 2, "quadrilateral": 2,
                 "triangle_6": 2, "quadrilateral_9": 2, "tetrahedron": 3, "hexahedron": 3,
                 "tetrahedron_10": 3, "hexahedron_27": 3}


@dataclass
class XdmfInfo:
    """What ``fields.xdmf`` names.

    Attributes:
        fields: Field names in file order.
        times: Output times (those of the first field).
        tdim: Topological dimension of the mesh (0 when not given).
        cells: Number of cells.
        datasets: Field -> output time -> HDF5 path of its values in ``fields.h5``.
    """

    fields: list[str]
    times: list[float]
    tdim: int
    cells: int
    datasets: dict[str, dict[float, str]] = field(default_factory=dict)


def read_xdmf(path: str | Path) -> XdmfInfo:
    """Fields, output times and mesh of a tumorpde ``fields.xdmf``.

    Raises:
        ConfigError: The file is missing or is not an XDMF file.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError("", f"{path.parent} has no {path.name} (not the output directory of "
                              "`tumorpde run`?)")
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise ConfigError("", f"cannot read {path}: {exc}") from None
    domain = root.find("Domain")
    if domain is None:
        raise ConfigError("", f"{path} is not an XDMF file (no Domain)")
    info = XdmfInfo([], [], 0, 0)
    for grid in domain.findall("Grid"):
        if grid.get("CollectionType") == "Temporal":
            name = grid.get("Name", "")
            if name not in info.fields:
                info.fields.append(name)
            sets = info.datasets.setdefault(name, {})
            for sub in grid.findall("Grid"):
                t = sub.find("Time")
                if t is None:
                    continue
                value = float(t.get("Value", "nan"))
                if len(info.fields) == 1:
                    info.times.append(value)
                item = sub.find("Attribute/DataItem")
                if item is not None and item.text and ":" in item.text:
                    sets[value] = item.text.strip().split(":", 1)[1]
        elif grid.get("GridType", "Uniform") == "Uniform" and info.tdim == 0:
            topo = grid.find("Topology")
            if topo is not None:
                info.tdim = _TOPOLOGY_DIM.get(topo.get("TopologyType", "").lower(), 0)
                info.cells = int(topo.get("NumberOfElements", "0") or 0)
    return info


class Snapshot(Mapping[str, np.ndarray]):
    """The fields at one output time: a mapping field -> nodal values, with the mesh.

    Attributes:
        t: The output time.
        nodes: Node coordinates, one row per node (2 columns for 1-D and 2-D meshes,
            ``y = 0`` in 1-D; 3 in 3-D).
        cells: Node indices of every cell.
    """

    def __init__(self, t: float, nodes: np.ndarray, cells: np.ndarray,
                 values: dict[str, np.ndarray]) -> None:
        self.t = t
        self.nodes = nodes
        self.cells = cells
        self._values = values

    def __getitem__(self, name: str) -> np.ndarray:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Snapshot(t={self.t!r}, fields={list(self._values)}, nodes={len(self.nodes)})"


class Run:
    """A run directory, read.

    ``info`` is read when the run is opened; observables and fields when first
    used (and then kept: :func:`read` the directory again for newer data of a
    running job).

    Attributes:
        path: The directory.
        info: ``run.json``.
    """

    def __init__(self, path: Path, info: RunInfo) -> None:
        self.path = path
        self.info = info
        self._observables: dict[str, np.ndarray] | None = None
        self._xdmf: XdmfInfo | None = None
        self._mesh: tuple[np.ndarray, np.ndarray] | None = None

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, status={self.status!r})"

    @property
    def status(self) -> str:
        """``running``, ``completed``, ``failed`` or ``interrupted``."""
        return self.info.status

    @property
    def config(self) -> dict[str, Any]:
        """The resolved config recorded in ``run.json`` (its TOML tables as a dict)."""
        return self.info.config

    @property
    def observables(self) -> dict[str, np.ndarray]:
        """``observables.csv``: column (``t`` first) -> float array, in file order."""
        if self._observables is None:
            self._observables = read_observables(self.path)
        return self._observables

    def to_pandas(self) -> Any:
        """The observables as a ``pandas.DataFrame`` (pandas is not a dependency of tumorpde).

        Raises:
            ImportError: pandas is not installed (as for ``Result.to_pandas``).
        """
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("Run.to_pandas needs pandas (pip install pandas)") from None
        return pd.DataFrame(self.observables)

    # -- fields
    def _fields_info(self) -> XdmfInfo:
        if self._xdmf is None:
            path = self.path / FIELDS_XDMF
            # no fields.xdmf: the run has not written its first output (or writes no fields)
            self._xdmf = read_xdmf(path) if path.is_file() else XdmfInfo([], [], 0, 0)
        return self._xdmf

    @property
    def times(self) -> list[float]:
        """Output times of the fields (those complete in ``fields.h5``)."""
        return list(self._fields_info().times)

    @property
    def field_names(self) -> list[str]:
        """Fields written (species names)."""
        return list(self._fields_info().fields)

    def _h5(self) -> Any:
        path = self.path / FIELDS_H5
        if not path.is_file():
            raise ConfigError("", f"{self.path} has no {FIELDS_H5}")
        import h5py

        try:
            # no lock, as the writer (it may be writing the next output meanwhile)
            return h5py.File(path, "r", locking=False)
        except OSError as exc:
            if "locking" in str(exc):  # open in this process already, with HDF5's default locking
                try:
                    return h5py.File(path, "r")
                except OSError as exc2:
                    exc = exc2
            raise ConfigError("", f"cannot read {path}: {exc}") from None

    def _read_mesh(self) -> tuple[np.ndarray, np.ndarray]:
        if self._mesh is None:
            with self._h5() as f:
                self._mesh = (np.asarray(f["Mesh/mesh/geometry"][...]),
                              np.asarray(f["Mesh/mesh/topology"][...]))
        return self._mesh

    @property
    def nodes(self) -> np.ndarray:
        """Node coordinates of the fields (rows in the order of the field values)."""
        return self._read_mesh()[0]

    @property
    def cells(self) -> np.ndarray:
        """Cells of the fields' mesh, as node indices."""
        return self._read_mesh()[1]

    def output_time(self, t: float | None = None, nearest: bool = False) -> float:
        """The output time ``t`` denotes.

        Args:
            t: A time (default: the last output).
            nearest: Take the nearest output time; otherwise ``t`` must be one (to within
                1e-6 of the span of output times).

        Raises:
            ConfigError: No outputs yet, or ``t`` is not an output time.
        """
        times = self.times
        if not times:
            raise ConfigError("", f"{self.path} holds no fields (the run has written no output "
                                  "of its fields)")
        if t is None:
            return times[-1]
        if not math.isfinite(t):
            raise ConfigError("", f"{t} is not a finite time")
        best = min(times, key=lambda s: abs(s - t))
        span = max(abs(times[-1] - times[0]), abs(times[-1]), 1e-300)
        if not nearest and abs(best - t) > 1e-6 * span:
            shown = ", ".join(f"{s:g}" for s in times[:12])
            more = f", ... ({len(times)} in all)" if len(times) > 12 else ""
            raise ConfigError("", f"{t:g} is not an output time of {self.path} "
                                  f"(output times: {shown}{more})")
        return best

    def fields(self, t: float | None = None, nearest: bool = False,
               names: list[str] | None = None) -> Snapshot:
        """Every field (or ``names``) at an output time (see :meth:`output_time`)."""
        t = self.output_time(t, nearest)
        info = self._fields_info()
        wanted = list(names) if names is not None else info.fields
        for name in wanted:
            if name not in info.fields:
                raise ConfigError("", f"no field {name!r} in {self.path / FIELDS_XDMF} "
                                      f"(fields: {', '.join(info.fields) or 'none'})")
        nodes, cells = self._read_mesh()
        values = {}
        with self._h5() as f:
            for name in wanted:
                key = info.datasets[name].get(t)
                if key is None:
                    raise ConfigError("", f"{self.path / FIELDS_XDMF} names no output of "
                                          f"{name!r} at t = {t:g}")
                try:
                    values[name] = np.asarray(f[key][...]).ravel()
                except KeyError:
                    raise ConfigError("", f"{self.path / FIELDS_H5} has no dataset {key}") from None
        return Snapshot(t, nodes, cells, values)

    def field(self, name: str, t: float | None = None, nearest: bool = False) -> np.ndarray:
        """Nodal values of one field at an output time (see :meth:`output_time`)."""
        return self.fields(t, nearest, [name])[name]


def read(run_dir: str | Path) -> Run:
    """Open a run directory written by ``tumorpde run`` (also one still being written).

    Raises:
        ConfigError: ``run_dir`` is not a directory, or holds no readable ``run.json``
            (the message says which, in one line).
    """
    run_dir = Path(run_dir)
    return Run(run_dir, read_info(run_dir))
