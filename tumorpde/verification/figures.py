"""Figures of the verification report (matplotlib, Agg backend; call on one rank only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["convergence", "snapshots_2d", "profiles_1d", "lines", "panels_1d", "x_profiles"]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    _plt().close(fig)


def convergence(path: Path, series: list[tuple[str, list[float], list[float], float]],
                xlabel: str = "h", title: str = "") -> None:
    """Log-log error plot: (label, hs, errors, theoretical order) with reference slopes."""
    from matplotlib.ticker import NullFormatter

    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.0, 4.2))
    shown: set[float] = set()
    for label, hs, errs, order in series:
        line, = ax.loglog(hs, errs, "o-", label=label)
        h0, e0 = hs[-1], errs[-1]
        ref = [e0 * (h / h0) ** order for h in hs]
        ax.loglog(hs, ref, ":", color=line.get_color(), alpha=0.8,
                  label=f"slope {order:g} (dotted)" if order not in shown else None)
        shown.add(order)
    ticks = sorted({h for _, hs, _, _ in series for h in hs})
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{h:.3g}" for h in ticks], fontsize=8)
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel("error")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    if title:
        ax.set_title(title, fontsize=10)
    _save(fig, path)


def x_profiles(path: Path, fields: Any, panels: list[tuple[str, list[str], list[float]]],
               title: str = "", bins: int | None = None) -> None:
    """Averages over y of 2D fields against x: (panel title, species, times) per panel.

    Solid lines at the last time of a panel, dashed at the first when a panel has two times.
    """
    plt = _plt()
    x = fields.x[:, 0]
    keys = np.rint(x * 1e8).astype(np.int64)
    ux, inv = np.unique(keys, return_inverse=True)
    xs = ux / 1e8
    count = np.bincount(inv)
    fig, axs = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 3.4))
    axs = np.atleast_1d(axs)
    for ax, (label, names, times) in zip(axs, panels, strict=True):
        for name in names:
            for k, t in enumerate(times):
                mean = np.bincount(inv, weights=fields.at(name, t)) / count
                style = "--" if (len(times) == 2 and k == 0) else "-"
                ax.plot(xs, mean, style, label=f"{name}, t = {t:g}")
        ax.set_xlabel("x")
        ax.set_title(label, fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    _save(fig, path)


def snapshots_2d(path: Path, fields: Any, name: str, times: list[float] | None = None,
                 title: str = "", cmap: str = "viridis") -> None:
    """One species of a 2D run at several output times (shared colour scale per panel)."""
    import matplotlib.tri as mtri

    plt = _plt()
    times = times if times is not None else fields.times
    tri = mtri.Triangulation(fields.x[:, 0], fields.x[:, 1], fields.cells)
    fig, axs = plt.subplots(1, len(times), figsize=(3.4 * len(times), 3.0),
                            constrained_layout=True)
    axs = np.atleast_1d(axs)
    for k, (ax, t) in enumerate(zip(axs, times, strict=True)):
        tp = ax.tripcolor(tri, fields.at(name, t), shading="gouraud", cmap=cmap)
        ax.set_aspect("equal")
        ax.set_title(f"{name}, t = {t:g}", fontsize=9)
        ax.set_xticks([0, 0.5, 1])
        ax.set_yticks([0, 0.5, 1] if k == 0 else [])
        cb = fig.colorbar(tp, ax=ax, fraction=0.046, pad=0.02)
        cb.ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    _save(fig, path)


def profiles_1d(path: Path, fields: Any, names: list[str], times: list[float] | None = None,
                title: str = "", xlim: tuple[float, float] | None = None) -> None:
    """Profiles of several species of a 1D run, one panel per output time."""
    plt = _plt()
    times = times if times is not None else fields.times
    x = fields.x[:, 0]
    order = np.argsort(x)
    fig, axs = plt.subplots(1, len(times), figsize=(3.3 * len(times), 2.8), sharey=True)
    axs = np.atleast_1d(axs)
    for ax, t in zip(axs, times, strict=True):
        for name in names:
            ax.plot(x[order], fields.at(name, t)[order], label=name)
        ax.set_title(f"t = {t:g}", fontsize=9)
        ax.set_xlabel("x")
        if xlim:
            ax.set_xlim(*xlim)
        ax.grid(True, alpha=0.3)
    axs[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    _save(fig, path)


def panels_1d(path: Path, panels: list[tuple[str, Any, float]], names: list[str],
              title: str = "", xlim: tuple[float, float] | None = None) -> None:
    """Final profiles of several 1D runs: (panel title, fields, time) per panel."""
    plt = _plt()
    fig, axs = plt.subplots(len(panels), 1, figsize=(7.0, 2.1 * len(panels)), sharex=True)
    axs = np.atleast_1d(axs)
    for ax, (label, fields, t) in zip(axs, panels, strict=True):
        x = fields.x[:, 0]
        order = np.argsort(x)
        for name in names:
            ax.plot(x[order], fields.at(name, t)[order], label=name)
        ax.set_title(label, fontsize=9)
        ax.grid(True, alpha=0.3)
        if xlim:
            ax.set_xlim(*xlim)
    axs[0].legend(fontsize=8, loc="upper right")
    axs[-1].set_xlabel("x")
    if title:
        fig.suptitle(title, fontsize=10)
    _save(fig, path)


def lines(path: Path, series: list[tuple[str, Any, Any, str]], xlabel: str, ylabel: str,
          title: str = "", logx: bool = False, logy: bool = False) -> None:
    """Plain line plot: (label, x, y, style) per series."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for label, x, y, style in series:
        ax.plot(x, y, style, label=label)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    _save(fig, path)
