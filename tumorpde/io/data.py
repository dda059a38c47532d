"""Measurements for calibration: long-format CSV files read and checked.

Two kinds of file, told apart by their columns (in the model's units):

* **field samples** ``t, x[, y, z], field, value[, sigma]``: the model's field ``field``
  at the point ``(x, y, z)`` at time ``t``; several rows at the same place and time are
  replicates;
* **observable samples** ``t, observable, value[, sigma]``: an observable column of the
  run (``total_<species>`` or an integral ``[observables]`` entry) at time ``t``.

and a third, for images:

* **image manifests** ``t, field, image[, mask][, sigma]``: each row names a NIfTI image
  (:mod:`tumorpde.io.images`; paths relative to the manifest) that measures ``field`` at
  time ``t`` voxel by voxel, inside the non-zero voxels of ``mask`` (an image on the same
  grid) if given.  The manifest is read as field samples at the voxel centres (physical
  coordinates from the affine) with the columns ``t, x, y[, z], field, value, sigma,
  image, i, j[, k]``; samples whose voxel centre lies outside the mesh are left out when
  the data meet a mesh (:func:`tumorpde.calibration.operators.within_mesh`).

``sigma`` (the measurement's standard deviation) is 1 where it is absent or empty.  Other
columns are kept as they are (they come back in ``predictions.csv``).  Lines starting
with ``#`` are comments; a UTF-8 byte-order mark is ignored.

Everything here is plain numpy: the checks against a model (names, coordinates, times) are
:meth:`Data.check`; the checks against a mesh are made by the observation operators
(:mod:`tumorpde.calibration.operators`; the initial conditions of
:mod:`tumorpde.fem.datafields` read the same files).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tumorpde.errors import ConfigError

__all__ = ["Data", "read_data", "read_all", "KINDS", "COORDINATES", "MANIFEST_COLUMNS"]

#: the column that names what a row measures, per kind of file
KINDS = {"field": "field", "observable": "observable"}
COORDINATES = ("x", "y", "z")
#: the columns of an image manifest (``mask`` and ``sigma`` optional)
MANIFEST_COLUMNS = ("t", "field", "image", "mask", "sigma")


@dataclass
class Data:
    """The rows of one data file.

    Attributes:
        path: The file.
        kind: ``"field"`` or ``"observable"``.
        columns: The file's header (every column, in order).
        text: The rows as read (strings), for ``predictions.csv``.
        t: Time of each row.
        name: The field (species) or observable of each row.
        value: The measured value.
        sigma: Its standard deviation (1 where not given).
        points: ``(rows, d)`` coordinates of field samples (``d`` = 1..3; 0 columns for
            observables).
        line: The line number of each row in the file (for messages).
    """

    path: Path
    kind: str
    columns: list[str]
    text: list[list[str]]
    t: np.ndarray
    name: list[str]
    value: np.ndarray
    sigma: np.ndarray
    points: np.ndarray
    line: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    #: voxel samples from an image manifest: the rows outside a mesh are dropped, not errors
    voxels: bool = False

    def __len__(self) -> int:
        return len(self.t)

    @property
    def label(self) -> str:
        """The file's name as given (for messages)."""
        return str(self.path)

    def select(self, mask: np.ndarray) -> Data:
        """The rows where ``mask`` is true."""
        idx = np.nonzero(mask)[0]
        return Data(self.path, self.kind, self.columns, [self.text[i] for i in idx],
                    self.t[idx], [self.name[i] for i in idx], self.value[idx], self.sigma[idx],
                    self.points[idx], self.line[idx], self.voxels)

    def check(self, species: Iterable[str], observables: Iterable[str], gdim: int,
              start: float, end: float) -> None:
        """Check the rows against a model: names, coordinates, times.

        Args:
            species: The model's species (the fields a field sample may name).
            observables: The observable columns a sample may name (without ``t``).
            gdim: The mesh's geometric dimension (the coordinates a field sample needs).
            start: ``time.start``.
            end: ``time.end``.

        Raises:
            ConfigError: (key: the file) naming the first offending row.
        """
        allowed = list(species) if self.kind == "field" else list(observables)
        for i, n in enumerate(self.name):
            if n not in allowed:
                what = "field (species)" if self.kind == "field" else "observable"
                raise ConfigError(self.label, f"line {self.line[i]}: unknown {what} {n!r} "
                                  f"(the model has: {', '.join(allowed) or 'none'})")
        if self.kind == "field":
            d = self.points.shape[1]
            if d != gdim:
                need = ", ".join(COORDINATES[:gdim])
                raise ConfigError(self.label, f"has {d} coordinate column(s) "
                                  f"({', '.join(COORDINATES[:d])}) but the mesh is {gdim}-D: "
                                  f"give {need}")
        span = end - start
        tol = 1e-9 * span
        bad = np.nonzero((self.t < start - tol) | (self.t > end + tol))[0]
        if bad.size:
            i = int(bad[0])
            raise ConfigError(self.label, f"line {self.line[i]}: t={self.t[i]:g} lies outside "
                              f"the run's time interval [{start:g}, {end:g}] (set time.end)")


def _number(text: str, label: str, line: int, column: str, positive: bool = False) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ConfigError(label, f"line {line}: {column} is {text!r}, not a number") from None
    if not math.isfinite(v):
        raise ConfigError(label, f"line {line}: {column} is {text!r}, not a finite number")
    if positive and v <= 0:
        raise ConfigError(label, f"line {line}: {column} must be positive, got {text}")
    return v


def _header(path: Path, rows: list[list[str]]) -> tuple[list[str], str]:
    if not rows:
        raise ConfigError(str(path), "is empty (expected a header: t, x[, y, z], field, value"
                                     "[, sigma] or t, observable, value[, sigma])")
    columns = [c.strip() for c in rows[0]]
    kinds = [k for k, c in KINDS.items() if c in columns]
    if len(kinds) != 1:
        raise ConfigError(str(path), "needs exactly one of the columns 'field' (field samples: "
                                     "t, x[, y, z], field, value[, sigma]) or 'observable' "
                                     "(t, observable, value[, sigma]); the header is "
                                     f"{', '.join(columns)}")
    kind = kinds[0]
    need = ["t", "value"] + (["x"] if kind == "field" else [])
    missing = [c for c in need if c not in columns]
    if missing:
        raise ConfigError(str(path), f"misses the column(s) {', '.join(missing)} "
                                     f"(header: {', '.join(columns)})")
    dup = sorted({c for c in columns if columns.count(c) > 1})
    if dup:
        raise ConfigError(str(path), f"has the column(s) {', '.join(dup)} more than once")
    if kind == "field":
        for i, c in enumerate(COORDINATES[1:], start=1):
            if c in columns and COORDINATES[i - 1] not in columns:
                raise ConfigError(str(path), f"has the coordinate {c} without "
                                             f"{COORDINATES[i - 1]}")
    return columns, kind


def read_data(path: str | Path) -> Data:
    """Read and check one data file (columns, numbers, sigma > 0).

    Raises:
        ConfigError: (key: the file) a missing file, missing columns, a non-numeric or
            non-finite value, a non-positive sigma, a row of the wrong length, no rows.
    """
    path = Path(path)
    label = str(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            raw = [(i + 1, r) for i, r in enumerate(csv.reader(f))]
    except FileNotFoundError:
        raise ConfigError(label, "no such data file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(label, f"cannot be read as CSV ({exc})") from None
    raw = [(i, r) for i, r in raw if r and any(c.strip() for c in r)
           and not r[0].lstrip().startswith("#")]
    if raw and "image" in [c.strip() for c in raw[0][1]]:
        return _read_manifest(path, raw)
    columns, kind = _header(path, [r for _, r in raw[:1]])
    body = raw[1:]
    if not body:
        raise ConfigError(label, "has a header but no rows")
    col = {c: j for j, c in enumerate(columns)}
    coords = [c for c in COORDINATES if c in col]
    t, name, value, sigma, pts, text, lines = [], [], [], [], [], [], []
    for line, r in body:
        if len(r) != len(columns):
            raise ConfigError(label, f"line {line}: {len(r)} values for {len(columns)} columns")
        r = [c.strip() for c in r]
        t.append(_number(r[col["t"]], label, line, "t"))
        nm = r[col[KINDS[kind]]]
        if not nm:
            raise ConfigError(label, f"line {line}: the {KINDS[kind]} is empty")
        name.append(nm)
        value.append(_number(r[col["value"]], label, line, "value"))
        s = r[col["sigma"]] if "sigma" in col else ""
        sigma.append(_number(s, label, line, "sigma", positive=True) if s else 1.0)
        pts.append([_number(r[col[c]], label, line, c) for c in coords])
        text.append(r)
        lines.append(line)
    return Data(path, kind, columns, text, np.array(t), name, np.array(value), np.array(sigma),
                np.array(pts, dtype=float).reshape(len(t), len(coords)), np.array(lines))


def _read_manifest(path: Path, raw: list[tuple[int, list[str]]]) -> Data:
    """An image manifest read as voxel samples (see the module docstring)."""
    from tumorpde.io.images import read_image

    label = str(path)
    columns = [c.strip() for c in raw[0][1]]
    unknown = [c for c in columns if c not in MANIFEST_COLUMNS]
    missing = [c for c in ("t", "field", "image") if c not in columns]
    if missing or unknown:
        raise ConfigError(label, "an image manifest has the columns t, field, image[, mask]"
                                 f"[, sigma]; the header is {', '.join(columns)}")
    if len(set(columns)) != len(columns):
        raise ConfigError(label, "has a column more than once")
    body = raw[1:]
    if not body:
        raise ConfigError(label, "has a header but no rows")
    col = {c: j for j, c in enumerate(columns)}
    parts: list[dict[str, Any]] = []
    dim = None
    for line, r in body:
        if len(r) != len(columns):
            raise ConfigError(label, f"line {line}: {len(r)} values for {len(columns)} columns")
        r = [c.strip() for c in r]
        t = _number(r[col["t"]], label, line, "t")
        name = r[col["field"]]
        if not name or not r[col["image"]]:
            raise ConfigError(label, f"line {line}: the field or the image is empty")
        s = r[col["sigma"]] if "sigma" in col else ""
        sigma = _number(s, label, line, "sigma", positive=True) if s else 1.0
        where = f"{label}: line {line}"
        img = read_image(path.parent / r[col["image"]], where)
        keep = np.ones(img.data.shape, dtype=bool)
        if "mask" in col and r[col["mask"]]:
            mask = read_image(path.parent / r[col["mask"]], where)
            if mask.data.shape != img.data.shape or \
                    not np.allclose(mask.affine, img.affine, rtol=1e-5, atol=1e-5 * max(
                        float(np.abs(img.affine[:3, :3]).max()), 1.0)):
                raise ConfigError(where, f"the mask {r[col['mask']]} is not on the grid of the "
                                         f"image {r[col['image']]} (shape and affine differ)")
            keep = mask.data != 0
            if not keep.any():
                raise ConfigError(where, f"the mask {r[col['mask']]} is empty")
        if dim is not None and img.dim != dim:
            raise ConfigError(where, "mixes 2-D and 3-D images")
        dim = img.dim
        idx, pts = img.centres(keep)
        parts.append({"t": t, "name": name, "sigma": sigma, "image": r[col["image"]],
                      "line": line, "idx": idx, "pts": pts, "value": img.data[keep]})
    assert dim is not None
    coords = list(COORDINATES[:dim])
    out_cols = ["t", *coords, "field", "value", "sigma", "image", *"ijk"[:dim]]
    n = sum(len(p["value"]) for p in parts)
    t = np.concatenate([np.full(len(p["value"]), p["t"]) for p in parts])
    names = [p["name"] for p in parts for _ in range(len(p["value"]))]
    value = np.concatenate([p["value"] for p in parts]).astype(float)
    sigma = np.concatenate([np.full(len(p["value"]), p["sigma"]) for p in parts])
    pts = np.concatenate([p["pts"] for p in parts]).reshape(n, dim)
    lines = np.concatenate([np.full(len(p["value"]), p["line"]) for p in parts])
    text = [[repr(p["t"]), *(repr(float(c)) for c in x), p["name"], repr(float(v)),
             repr(p["sigma"]), p["image"], *(str(int(k)) for k in ijk)]
            for p in parts for x, v, ijk in zip(p["pts"], p["value"], p["idx"], strict=True)]
    return Data(path, "field", out_cols, text, t, names, value, sigma, pts, lines, voxels=True)


def read_all(paths: Sequence[str | Path]) -> list[Data]:
    """:func:`read_data` of each path (at least one)."""
    if not paths:
        raise ConfigError("--data", "give at least one data file (--data FILE)")
    return [read_data(p) for p in paths]
