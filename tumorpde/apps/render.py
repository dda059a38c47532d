"""ParaView snapshots, animations and a state file of a run (``tumorpde render``).

ParaView's Python is a program of its own (``pvbatch``, with its own Python and
MPI), so tumorpde does not import it: :func:`render` checks the request against
``fields.xdmf``, writes a job file, runs :mod:`tumorpde.apps.pvrender` under ``pvbatch``
in a clean environment (no ``PYTHONPATH``/``PYTHONHOME``/virtual environment and
no MPI launcher variables of ours) and reads back what ParaView saw and wrote.

``pvbatch`` is found as, in this order: the ``pvbatch`` argument (``--pvbatch``),
the ``TUMORPDE_PVBATCH`` environment variable, ``pvbatch`` on ``PATH``.  Without a
display (no ``DISPLAY``), a ParaView built for X11 needs a virtual one: a private
``Xvfb`` server is started for the render when ``Xvfb`` is installed.

Outputs (in ``DIR/render`` unless told otherwise):

* ``FIELD_tT.png`` for each field and each requested output time;
* ``FIELD.gif`` with ``--animate``: every output time, one frame each;
* ``fields.pvsm``: a ParaView state with the same pipeline and colour maps
  (``paraview --state=DIR/render/fields.pvsm``);
* ``render.json``: the arrays and times ParaView found, colour ranges and files.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import select
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tumorpde.errors import ConfigError, ToolError
from tumorpde.io.rundir import read_info, read_xdmf

__all__ = ["FieldsInfo", "RenderResult", "read_fields_xdmf", "find_pvbatch", "clean_environment",
           "virtual_display", "render", "colormap", "PVBATCH_ENV"]

#: environment variable naming the pvbatch executable
PVBATCH_ENV = "TUMORPDE_PVBATCH"

#: ParaView colour-map presets for fields of the bundled models (all others: viridis)
COLORMAPS: dict[str, str] = {
    "tumor": "Inferno (matplotlib)",
    "csc": "Inferno (matplotlib)",
    "cells": "Inferno (matplotlib)",
    "oxygen": "Cividis",
    "vessel": "Plasma (matplotlib)",
    "lymphatic": "Plasma (matplotlib)",
}
DEFAULT_COLORMAP = "Viridis (matplotlib)"
DIVERGING_COLORMAP = "Cool to Warm"

# environment of ours that must not reach ParaView's own Python and MPI
_DROP_EXACT = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV",
               "PYTHONEXECUTABLE", "MPI4PY_LIBMPI", "MPI4PY_MPIABI"}
_DROP_PREFIX = ("PMI_", "PMIX_", "HYDRA_", "HYDI_", "MPIR_", "MPICH_", "OMPI_", "I_MPI_",
                "SLURM_STEP_")


@dataclass
class FieldsInfo:
    """What ``fields.xdmf`` holds.

    Attributes:
        fields: Field names in file order.
        times: Output times (those of the first field).
        tdim: Topological dimension of the mesh (1, 2 or 3).
        cells: Number of cells.
    """

    fields: list[str]
    times: list[float]
    tdim: int
    cells: int


@dataclass
class RenderResult:
    """What :func:`render` wrote.

    Attributes:
        outdir: Output directory.
        images: Snapshot PNG files.
        animations: GIF file per field (``--animate``).
        state: ParaView state file (or None).
        arrays: Point arrays ParaView found in ``fields.xdmf``.
        times: Output times ParaView found.
        ranges: Colour range of each rendered field (min, max over all times).
    """

    outdir: Path
    images: list[Path] = field(default_factory=list)
    animations: dict[str, Path] = field(default_factory=dict)
    state: Path | None = None
    arrays: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    ranges: dict[str, list[float]] = field(default_factory=dict)


def read_fields_xdmf(path: Path) -> FieldsInfo:
    """Fields, times and mesh dimension of a tumorpde ``fields.xdmf`` (no ParaView needed).

    Raises:
        ConfigError: The file is missing, is not an XDMF file of a run or names no fields.
    """
    info = read_xdmf(path)
    if not info.fields:
        raise ConfigError("", f"{path} holds no fields (did the run write any output?)")
    return FieldsInfo(info.fields, info.times, info.tdim or 2, info.cells)


def colormap(name: str) -> str:
    """ParaView colour-map preset used for a field."""
    return COLORMAPS.get(name, DEFAULT_COLORMAP)


def find_pvbatch(pvbatch: str | None = None) -> list[str]:
    """The command that starts ParaView's ``pvbatch``.

    Args:
        pvbatch: Executable given by the user (``--pvbatch``); otherwise
            ``$TUMORPDE_PVBATCH``, then ``pvbatch`` on ``PATH``.

    Raises:
        ConfigError: pvbatch is not found.
    """
    if pvbatch:
        where = "--pvbatch"
    elif os.environ.get(PVBATCH_ENV):
        pvbatch, where = os.environ[PVBATCH_ENV], PVBATCH_ENV
    else:
        pvbatch, where = "pvbatch", ""
    exe = shutil.which(pvbatch)
    if exe is None:
        if where:
            raise ConfigError(where, f"ParaView's pvbatch {pvbatch!r} not found or not executable")
        raise ConfigError("", "ParaView's pvbatch not found: install ParaView (e.g. `apt install "
                              "paraview python3-paraview`), or give its path with --pvbatch or "
                              f"{PVBATCH_ENV}")
    return [exe]


def _xauthority(path: Path) -> None:
    """Write an X authority file with one random cookie valid for any display number."""
    def field(b: bytes) -> bytes:
        return struct.pack(">H", len(b)) + b

    entry = (struct.pack(">H", 0xFFFF) + field(b"") + field(b"") + field(b"MIT-MAGIC-COOKIE-1")
             + field(secrets.token_bytes(16)))
    path.write_bytes(entry)
    path.chmod(0o600)


@contextlib.contextmanager
def virtual_display(tmp: Path, timeout: float = 30.0) -> Iterator[dict[str, str]]:
    """Environment for ParaView: the current display, or a private ``Xvfb`` server.

    Without ``DISPLAY``, and with ``Xvfb`` installed, starts ``Xvfb`` on a free display
    (``-displayfd``: no race for display numbers) with its own cookie, and stops it
    afterwards.  Without either, ParaView is started as it is (an EGL or OSMesa build
    renders without a display).
    """
    env = clean_environment()
    xvfb = shutil.which("Xvfb")
    if env.get("DISPLAY") or env.get("WAYLAND_DISPLAY") or xvfb is None:
        yield env
        return
    auth = tmp / "Xauthority"
    _xauthority(auth)
    rfd, wfd = os.pipe()
    proc = subprocess.Popen([xvfb, "-displayfd", str(wfd), "-auth", str(auth), "-nolisten", "tcp",
                             "-screen", "0", "1600x1200x24"], pass_fds=(wfd,),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.close(wfd)
    try:
        number = b""
        deadline = time.monotonic() + timeout
        while not number.endswith(b"\n"):
            ready, _, _ = select.select([rfd], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(rfd, 64) if ready else b""
            if not chunk:
                err = proc.stderr.read().decode(errors="replace") if proc.poll() is not None else ""
                raise ToolError(f"cannot start a virtual display (Xvfb): {_last_error(err)}")
            number += chunk
        env["DISPLAY"] = f":{int(number)}"
        env["XAUTHORITY"] = str(auth)
        yield env
    finally:
        os.close(rfd)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def clean_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of the environment without our Python and MPI settings (for ParaView)."""
    env = dict(os.environ if env is None else env)
    return {k: v for k, v in env.items()
            if k not in _DROP_EXACT and not k.startswith(_DROP_PREFIX)}


def _pick_times(info: FieldsInfo, time: float | None) -> list[float]:
    if not info.times:
        raise ConfigError("", "fields.xdmf has no output times")
    if time is None:
        return [info.times[-1]]
    if not math.isfinite(time):
        raise ConfigError("--time", f"{time} is not a finite time")
    span = max(abs(info.times[-1] - info.times[0]), abs(info.times[-1]), 1e-300)
    nearest = min(info.times, key=lambda t: abs(t - time))
    if abs(nearest - time) > 1e-6 * span:
        shown = ", ".join(f"{t:g}" for t in info.times[:12])
        more = f", ... ({len(info.times)} in all)" if len(info.times) > 12 else ""
        raise ConfigError("--time", f"{time:g} is not an output time of this run "
                                    f"(output times: {shown}{more})")
    return [nearest]


def _units(rundir: Path) -> tuple[str, str]:
    try:
        cfg = read_info(rundir).config
        return str(cfg["units"]["time"]), str(cfg["units"]["length"])
    except (ConfigError, KeyError, TypeError):
        return "", ""


def _last_error(text: str) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errs = [ln for ln in lines if "error" in ln.lower() or "ERR|" in ln]
    return (errs or lines or ["no output"])[-1][:300]


def render(rundir: str | Path, fields: Sequence[str] | None = None, time: float | None = None,
           animate: bool = False, outdir: str | Path | None = None, pvbatch: str | None = None,
           size: tuple[int, int] = (800, 640), state: bool = True, fps: float = 4.0,
           timeout: float | None = None) -> RenderResult:
    """Render fields of a run with ParaView.

    Args:
        rundir: Output directory of ``tumorpde run`` (holds ``fields.xdmf``).
        fields: Fields to render (default: all in the file).
        time: Output time of the snapshots (default: the last); ignored with ``animate``.
        animate: Write one GIF per field over all output times instead of snapshots.
        outdir: Where to write (default ``rundir/render``).
        pvbatch: pvbatch executable (see :func:`find_pvbatch`).
        size: Image width and height in pixels.
        state: Also write the ParaView state file ``fields.pvsm``.
        fps: Frames per second of the animations.
        timeout: Seconds before pvbatch is stopped (None: no limit).

    Raises:
        ConfigError: Bad request (no run there, unknown field or time, no pvbatch).
        ToolError: ParaView failed.
    """
    rundir = Path(rundir)
    if not rundir.is_dir():
        raise ConfigError("", f"run directory {str(rundir)!r} not found")
    info = read_fields_xdmf(rundir / "fields.xdmf")
    wanted = list(dict.fromkeys(fields)) if fields else list(info.fields)
    unknown = [f for f in wanted if f not in info.fields]
    if unknown:
        raise ConfigError("--field", f"no field {unknown[0]!r} in {rundir / 'fields.xdmf'} "
                                     f"(fields: {', '.join(info.fields)})")
    if any(w <= 0 or w > 8192 for w in size):
        raise ConfigError("--size", f"image size {size[0]}x{size[1]} must be 1..8192 pixels")
    if not (0 < fps <= 60):
        raise ConfigError("--fps", f"{fps} must be in (0, 60]")
    times = [] if animate else _pick_times(info, time)
    if animate and len(info.times) < 2:
        raise ConfigError("--animate", "the run has a single output time: nothing to animate")
    cmd = find_pvbatch(pvbatch)
    out = Path(outdir) if outdir is not None else rundir / "render"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError("--output", f"cannot create {out}: {exc.strerror}") from None
    time_unit, length_unit = _units(rundir)
    script = Path(__file__).with_name("pvrender.py")
    with tempfile.TemporaryDirectory(prefix="tumorpde-render-") as tmp:
        job = {
            "xdmf": str((rundir / "fields.xdmf").resolve()),
            "fields": wanted,
            "times": times,
            "animate": animate,
            "outdir": str(out.resolve()),
            "frames_dir": str(Path(tmp) / "frames"),
            "state": str((out / "fields.pvsm").resolve()) if state else None,
            "size": [int(size[0]), int(size[1])],
            "tdim": info.tdim,
            "cells": info.cells,
            "time_unit": time_unit,
            "length_unit": length_unit,
            "colormaps": {f: colormap(f) for f in wanted},
            "default_colormap": DEFAULT_COLORMAP,
            "diverging_colormap": DIVERGING_COLORMAP,
            "from_zero": True,
        }
        job_path = Path(tmp) / "job.json"
        job_path.write_text(json.dumps(job))
        try:
            with virtual_display(Path(tmp)) as env:
                proc = subprocess.run(cmd + [str(script), str(job_path)], capture_output=True,
                                      text=True, env=env, timeout=timeout, cwd=tmp)
        except subprocess.TimeoutExpired:
            raise ToolError(f"pvbatch did not finish within {timeout:g} s") from None
        except OSError as exc:
            raise ToolError(f"cannot start {cmd[-1]}: {exc.strerror}") from None
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("TUMORPDE-RESULT ")]
        if not lines:
            raise ToolError(f"pvbatch exited with status {proc.returncode}: "
                            f"{_last_error(proc.stderr + proc.stdout)}")
        data: dict[str, Any] = json.loads(lines[-1][len("TUMORPDE-RESULT "):])
        if data.get("missing"):
            raise ToolError(f"ParaView does not see the field(s) {', '.join(data['missing'])} in "
                            f"fields.xdmf (it found: {', '.join(data['arrays']) or 'none'})")
        if proc.returncode != 0:
            raise ToolError(f"pvbatch exited with status {proc.returncode}: "
                            f"{_last_error(proc.stderr)}")
        result = RenderResult(out, [Path(p) for p in data["images"]], {},
                              Path(data["state"]) if data.get("state") else None,
                              list(data["arrays"]), [float(t) for t in data["times"]],
                              data["ranges"])
        for f, frames in data.get("frames", {}).items():
            result.animations[f] = _gif([Path(p) for p in frames], out / f"{f}.gif", fps)
    manifest = {"fields.xdmf": str((rundir / "fields.xdmf").resolve()), "arrays": result.arrays,
                "times": result.times, "ranges": result.ranges,
                "colormaps": data.get("colormaps", {}),
                "images": [p.name for p in result.images],
                "animations": {f: p.name for f, p in result.animations.items()},
                "state": result.state.name if result.state else None}
    (out / "render.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return result


def _gif(frames: list[Path], path: Path, fps: float) -> Path:
    """Assemble PNG frames into an animated GIF (Pillow, installed with matplotlib)."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with the plot extra
        raise ConfigError("--animate", "animations need Pillow: pip install "
                                       "'tumorpde[plot]'") from None
    images = [Image.open(p).convert("RGB") for p in frames]
    first = images[0].quantize(colors=255, method=Image.Quantize.MEDIANCUT)
    rest = [im.quantize(palette=first) for im in images[1:]]
    first.save(path, save_all=True, append_images=rest, duration=int(1000 / fps), loop=0,
               optimize=False)
    return path
