"""The schema of ``run.json``: :class:`RunInfo` and its sub-records.

``run.json`` is written by :class:`tumorpde.io.output.RunRecord` (through
:meth:`RunInfo.from_json` / :meth:`RunInfo.to_json`, so every write is checked
against this schema) and read by :func:`tumorpde.io.rundir.read`, the tools
(``plot``, ``report``, ``render``, ``sweep``) and ``tumorpde resume``.

Reading is tolerant of missing keys (run directories written by older versions,
or by a run that stopped early, lack some) and strict about types: a key of the
wrong type is a :class:`~tumorpde.errors.ConfigError` naming it.  Keys this
schema does not know are kept (in ``extra``) and written back, and the order of
the keys read is remembered, so ``RunInfo.from_json(d).to_json() == d`` and
:meth:`RunInfo.dumps` rewrites a ``run.json`` byte for byte.

This module imports neither DOLFINx nor MPI.
"""

from __future__ import annotations

import copy
import json
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Self

from tumorpde.errors import ConfigError

__all__ = ["RunInfo", "WallTime", "Counters", "MeshInfo", "Final", "Resumed", "STATUSES"]

#: values of ``status``: ``running`` while the run goes on (also after ``kill -9``)
STATUSES = ("running", "completed", "failed", "interrupted")

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _wrong(where: str, expected: str, value: Any) -> ConfigError:
    return ConfigError("run.json", f"{where} must be {expected}, not {_describe(value)}")


def _check(value: Any, tp: Any, where: str) -> Any:
    """``value`` checked against the annotation ``tp`` (records built, others as they are)."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):  # X | None: None means "absent", never null
        (tp,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return _check(value, tp, where)
    if origin is list:
        if not isinstance(value, list):
            raise _wrong(where, "a list", value)
        (item,) = typing.get_args(tp)
        return [_check(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _wrong(where, "an object", value)
        item = typing.get_args(tp)[1]
        return {k: _check(v, item, f"{where}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, _Record):
        return tp._from(value, where)
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, tp)
    if not ok:
        raise _wrong(where, _TYPE_NAMES.get(tp, tp.__name__), value)
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, _Record):
        return value._to()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class _Record:
    """A JSON object: known keys (the dataclass fields), unknown ones (``extra``), key order.

    The order of the keys read is kept, so that writing back reproduces the file.
    """

    #: keys that must be present when reading
    REQUIRED: ClassVar[tuple[str, ...]] = ()
    extra: dict[str, Any]
    _keys: tuple[str, ...]

    @classmethod
    def _known(cls) -> dict[str, Any]:
        hints = typing.get_type_hints(cls)
        return {f.name: hints[f.name] for f in fields(cls)  # type: ignore[arg-type]
                if f.name not in ("extra", "_keys")}

    @classmethod
    def _from(cls, data: Any, where: str) -> Self:
        if not isinstance(data, dict):
            raise _wrong(where or "run.json", "an object", data)
        known = cls._known()
        kw: dict[str, Any] = {}
        for name, tp in known.items():
            sub = f"{where}.{name}" if where else name
            if name in data:
                kw[name] = _check(data[name], tp, sub)
            elif name in cls.REQUIRED:
                raise ConfigError("run.json", f"{sub} is missing")
        extra = {k: v for k, v in data.items() if k not in known}
        obj = cls(**kw, extra=extra)  # type: ignore[call-arg]
        obj._keys = tuple(data)
        return obj

    def _to(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in self._known():
            v = getattr(self, name)
            # an empty sub-record is written when it was read (or is required), else left out
            if v is None or (isinstance(v, _Record) and not v._to() and name not in self._keys
                             and name not in self.REQUIRED):
                continue
            values[name] = _plain(v)
        for k, v in self.extra.items():
            if k in values:
                raise ConfigError("run.json", f"extra key {k!r} is a field of {type(self).__name__}")
            values[k] = v
        order = [k for k in self._keys if k in values]
        order += [k for k in values if k not in order]
        return {k: values[k] for k in order}


def _keys_field() -> Any:
    return field(default=(), repr=False, compare=False)


@dataclass
class WallTime(_Record):
    """``wall_time``: seconds (``total`` over every part of a resumed run)."""

    total: float | None = None
    setup: float | None = None
    solve: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    _keys: tuple[str, ...] = _keys_field()


@dataclass
class Counters(_Record):
    """``counters``: work done so far (``doses`` etc. only with therapy or scalars)."""

    steps: int | None = None
    rejected_steps: int | None = None
    failed_solves: int | None = None
    newton_iterations: int | None = None
    linear_iterations: int | None = None
    outputs: int | None = None
    observable_rows: int | None = None
    doses: dict[str, int] | None = None
    fractions_applied: int | None = None
    scalar_newton_iterations: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    _keys: tuple[str, ...] = _keys_field()


@dataclass
class MeshInfo(_Record):
    """``mesh``: global number of cells and unknowns, polynomial degree."""

    cells: int | None = None
    dofs: int | None = None
    degree: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    _keys: tuple[str, ...] = _keys_field()


@dataclass
class Final(_Record):
    """``final``: the time reached, the last row of observables, species minima."""

    t: float | None = None
    observables: dict[str, float] | None = None
    minima: dict[str, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    _keys: tuple[str, ...] = _keys_field()


@dataclass
class Resumed(_Record):
    """An entry of ``resumed``: when, on how many ranks and with which command line."""

    at: str | None = None
    ranks: int | None = None
    argv: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    _keys: tuple[str, ...] = _keys_field()


@dataclass
class RunInfo(_Record):
    """The contents of ``run.json``.

    Only ``status`` and ``config`` are required; a key absent from the file is
    ``None`` here (``wall_time`` and ``counters``: empty records) and is not
    written back.

    Attributes:
        status: One of :data:`STATUSES`.
        config: The resolved config (the TOML tables as a dict; ``tumorpde resume``
            runs it again).
        versions: Versions of tumorpde and of the numerical stack.
        ranks: MPI ranks (of the latest part of a resumed run).
        host: Host name.
        argv: Command line.
        started: Start time (``%Y-%m-%dT%H:%M:%S%z``).
        wall_time: Wall-clock seconds.
        counters: Steps, iterations, outputs, rows.
        mesh: Cells, unknowns and degree (once the mesh is built).
        t: Time of the latest checkpoint (written with each checkpoint).
        final: Time reached, final observables and minima (once the time loop ends).
        finished: End time (once the run ends).
        message: Why the run failed or stopped.
        resumed: One entry per ``tumorpde resume`` of the run.
        extra: Keys this schema does not know (kept and written back).
    """

    REQUIRED: ClassVar[tuple[str, ...]] = ("status", "config")
    status: str
    config: dict[str, Any]
    versions: dict[str, str] | None = None
    ranks: int | None = None
    host: str | None = None
    argv: list[str] | None = None
    started: str | None = None
    wall_time: WallTime = field(default_factory=WallTime)
    counters: Counters = field(default_factory=Counters)
    mesh: MeshInfo | None = None
    t: float | None = None
    final: Final | None = None
    finished: str | None = None
    message: str | None = None
    resumed: list[Resumed] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    _keys: tuple[str, ...] = _keys_field()

    @classmethod
    def from_json(cls, data: Any) -> RunInfo:
        """A record from the parsed JSON of ``run.json`` (``data`` is copied).

        Raises:
            ConfigError: ``status`` or ``config`` missing, or a key of the wrong type.
        """
        return cls._from(copy.deepcopy(data), "")

    def to_json(self) -> dict[str, Any]:
        """The JSON object of ``run.json`` (a new one: changing it leaves the record alone)."""
        return copy.deepcopy(self._to())

    def dumps(self) -> str:
        """The text of ``run.json``, exactly as :class:`tumorpde.io.output.RunRecord` writes it."""
        return json.dumps(self.to_json(), indent=2, default=str) + "\n"

    @classmethod
    def read(cls, path: str | Path) -> RunInfo:
        """Read a ``run.json`` file.

        Raises:
            ConfigError: The file is missing, not JSON, or not a run record.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError("", f"{path.parent} holds no run.json: not the output directory "
                                  "of a run") from None
        except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError included
            raise ConfigError("", f"{path} is unreadable ({exc})") from None
        try:
            return cls.from_json(data)
        except ConfigError as exc:
            raise ConfigError("", f"{path} is unreadable: {exc.message}") from None
