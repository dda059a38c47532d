"""Figures of a run's observables over time (``tumorpde plot``).

Reads ``observables.csv`` and ``run.json`` of an output directory with
:mod:`tumorpde.io.rundir` (also while the run is still going) and draws, with matplotlib:

* ``species.png``: the integral of every species over the domain (``total_<name>``),
  one panel each;
* ``observables.png``: the config's ``[observables]``, one panel each, titled
  with their description.

Panels share the time axis (in the model's time unit) and mark the last value.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tumorpde.errors import ConfigError
from tumorpde.io.rundir import read_info, read_observables

__all__ = ["plot", "FORMATS"]

FORMATS = ("png", "svg", "pdf")


def observable_columns(rundir: Path) -> dict[str, list[float]]:
    """``observables.csv`` as columns of floats, with at least one row.

    Raises:
        ConfigError: The file is missing, empty or malformed.
    """
    cols = {k: v.tolist() for k, v in read_observables(rundir).items()}
    if not cols["t"]:
        raise ConfigError("", f"{rundir / 'observables.csv'} has no rows yet")
    return cols


def _panels(ax_list: Any, names: list[str], cols: dict[str, list[float]], titles: dict[str, str],
            ylabels: dict[str, str], tlabel: str, ncols: int) -> None:
    t = cols["t"]
    color = "#1f5f99"
    for i, (ax, name) in enumerate(zip(ax_list, names, strict=False)):
        y = cols[name]
        ax.plot(t, y, color=color, lw=1.8)
        finite = [(a, b) for a, b in zip(t, y, strict=True) if math.isfinite(b)]
        head = f"$\\bf{{{_tex(name)}}}$"
        if finite:
            ax.plot([finite[-1][0]], [finite[-1][1]], "o", color=color, ms=4)
            head += f"   (last: {finite[-1][1]:.4g})"
        sub = titles.get(name, "")
        ax.set_title(head + ("\n" + sub if sub else ""), fontsize=9, loc="left")
        if ylabels.get(name):
            ax.set_ylabel(ylabels[name], fontsize=8.5)
        ax.grid(alpha=0.3, lw=0.6)
        ax.tick_params(labelsize=8)
        ax.set_xlim(t[0], t[-1] if t[-1] > t[0] else t[0] + 1)
        if i + ncols >= len(names):  # the lowest panel of its column
            ax.set_xlabel(tlabel, fontsize=8.5)
    for ax in list(ax_list)[len(names):]:
        ax.set_visible(False)


def _tex(name: str) -> str:
    """A name for matplotlib's mathtext bold (underscores and braces escaped)."""
    return "".join("\\" + c if c in "_{}$#%&" else c for c in name)


def _figure(names: list[str], cols: dict[str, list[float]], titles: dict[str, str],
            ylabels: dict[str, str], suptitle: str, tlabel: str, path: Path, dpi: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = min(4, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.7 * nrows + 0.5),
                             squeeze=False, layout="constrained")
    _panels([a for row in axes for a in row], names, cols, titles, ylabels, tlabel, ncols)
    fig.suptitle(suptitle, fontsize=11)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot(rundir: str | Path, outdir: str | Path | None = None,
         columns: Sequence[str] | None = None, fmt: str = "png", dpi: int = 120) -> list[Path]:
    """Draw the observables of a run; return the files written.

    Args:
        rundir: Output directory of ``tumorpde run``.
        outdir: Where to write (default ``rundir/plots``).
        columns: Only these columns of ``observables.csv`` (default: all).
        fmt: ``png``, ``svg`` or ``pdf``.
        dpi: Resolution of PNG files.

    Raises:
        ConfigError: No run there, unknown column, bad format.
    """
    rundir = Path(rundir)
    if not rundir.is_dir():
        raise ConfigError("", f"run directory {str(rundir)!r} not found")
    if fmt not in FORMATS:
        raise ConfigError("--format", f"unknown format {fmt!r} (use {', '.join(FORMATS)})")
    if not (10 <= dpi <= 1200):
        raise ConfigError("--dpi", f"{dpi} must be between 10 and 1200")
    cols = observable_columns(rundir)
    try:
        info = read_info(rundir)
    except ConfigError:  # the observables alone are enough
        info = None
    cfg = info.config if info is not None else {}
    available = [c for c in cols if c != "t"]
    if columns:
        unknown = [c for c in columns if c not in cols or c == "t"]
        if unknown:
            raise ConfigError("--column", f"no column {unknown[0]!r} in observables.csv "
                                          f"(columns: {', '.join(available)})")
        chosen = list(dict.fromkeys(columns))
    else:
        chosen = available
    species = [c for c in chosen if c.startswith("total_") and c[6:] in cfg.get("species", {})]
    if not cfg.get("species"):
        species = [c for c in chosen if c.startswith("total_")]
    others = [c for c in chosen if c not in species]
    units = cfg.get("units", {}) if isinstance(cfg.get("units"), dict) else {}
    tunit = units.get("time", "")
    tlabel = f"t ({tunit})" if tunit else "t"
    title = str(cfg.get("title", "")) or rundir.name
    status = info.status if info is not None else None
    if status and status != "completed":
        title += f" ({status} at t = {cols['t'][-1]:.4g})"
    out = Path(outdir) if outdir is not None else rundir / "plots"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError("--output", f"cannot create {out}: {exc.strerror}") from None
    written = []
    if species:
        titles = {c: "" for c in species}
        ylabels = {c: f"∫ {c[6:]} dx" for c in species}
        written.append(_figure(species, cols, titles, ylabels,
                               f"{title}\nspecies integrated over the domain", tlabel,
                               out / f"species.{fmt}", dpi))
    if others:
        obs = cfg.get("observables", {}) if isinstance(cfg.get("observables"), dict) else {}
        titles = {}
        for c in others:
            desc = obs.get(c, {}).get("description") if isinstance(obs.get(c), dict) else None
            titles[c] = textwrap.fill(str(desc), 46) if desc else ""
        written.append(_figure(others, cols, titles, {}, f"{title}\nobservables", tlabel,
                               out / f"observables.{fmt}", dpi))
    return written
