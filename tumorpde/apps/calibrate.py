"""``tumorpde calibrate CONFIG --data FILE ... --fit KEY[=LOW:HIGH] ...``: fit, then predict.

Writes into the output directory (``out/calibrate-NAME`` by default):

* ``calibration.json``: ``status``, ``objective``, ``n_data``, ``parameters``
  (``{KEY: {estimate, ci95: [lo, hi], std, bounds}}``), ``gradient`` (at the estimate,
  or at the config's values with ``--evaluate``), ``aic``, ``bic``, ``noise``,
  ``evaluations``, ``timings``, ``starts`` (every least-squares start);
* ``predictions.csv``: every data row (fitted and forecast) with its columns, ``fitted``
  (1 or 0), ``model``, ``lo``, ``hi`` (95 % confidence band);
* ``fit/``: the run at the estimate (a run directory: ``tumorpde plot``, ``report``);
* ``fit.png``: data against the model over time (fitted and forecast rows);
* ``parameter-fields.xdmf``: fitted field parameters (``field = true``), for ParaView;
* ``profiles.png`` (with ``--profile N``): profile likelihoods of the parameters;
* with ``--method mcmc``: ``posterior.csv`` (samples after burn-in), ``corner.png`` and
  ``chains.npz`` (every chain; a second call in the same directory continues from it).

``calibration.json`` is written last, so a directory without it is not a finished
calibration.  Bad input (data, keys, bounds) ends before anything is written.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mpi4py import MPI

import numpy as np

from tumorpde.calibration.fit import Fit, FitParameter, calibrate, write_json, write_predictions
from tumorpde.calibration.operators import within_mesh
from tumorpde.errors import ConfigError
from tumorpde.io.data import Data, read_all

__all__ = ["parse_fit", "run_calibration", "CalibrationRun"]


@dataclass
class CalibrationRun:
    """What :func:`run_calibration` did."""

    outdir: Path
    fit: Fit
    files: list[Path]


def _bounds(text: str, key: str) -> list[float]:
    lo_s, sep, hi_s = text.strip().partition(":")
    try:
        if not sep:
            raise ValueError
        lo, hi = float(lo_s), float(hi_s)
    except ValueError:
        raise ConfigError(f"--fit {key}", f"expected bounds LOW:HIGH, got {text.strip()!r}") \
            from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or not lo < hi:
        raise ConfigError(f"--fit {key}", f"the bounds {text.strip()} must have LOW < HIGH "
                                          "(finite numbers)")
    return [lo, hi]


def _name(key: str, parameters: Any) -> str:
    name = key[len("parameters."):] if key.startswith("parameters.") else key
    if name not in parameters:
        shown = ", ".join(sorted(parameters)) or "none"
        raise ConfigError(f"--fit {key}", f"is not a parameter of the model (parameters: "
                                          f"{shown})")
    return name


def parse_fit(items: Sequence[str], config: Any) -> list[FitParameter]:
    """The fitted parameters: the ``[calibration] fit`` table, then ``--fit`` items.

    A ``--fit KEY`` adds a parameter (or overrides the table's bounds with ``=LOW:HIGH``);
    without bounds anywhere, the parameter's ``range`` is used.

    Raises:
        ConfigError: (key ``--fit KEY``) not a parameter, bad or missing bounds, nothing to fit.
    """
    table = dict(config.calibration.fit) if config.calibration is not None else {}
    chosen: dict[str, tuple[str, list[float]]] = {}
    for key, bounds in table.items():
        chosen[_name(key, config.parameters)] = (key, list(bounds))
    for item in items:
        key, eq, rng = item.partition("=")
        key = key.strip()
        name = _name(key, config.parameters)
        given = _bounds(rng, key) if eq else None
        old = chosen.get(name)
        chosen[name] = (key, given if given is not None else (old[1] if old else []))
    if not chosen:
        raise ConfigError("--fit", "nothing to fit: give --fit KEY[=LOW:HIGH] (or a "
                                   "[calibration] fit table)")
    out = []
    for name, (key, bounds) in chosen.items():
        if not bounds:
            p = config.parameters[name]
            rng = getattr(p, "range", None)
            if not rng:
                raise ConfigError(f"--fit {key}", "has no bounds: give --fit "
                                                  f"{key}=LOW:HIGH (or a range in [parameters])")
            bounds = [float(rng[0]), float(rng[1])]
        unit, scale = _unit(config, name)
        out.append(FitParameter(key, name, float(bounds[0]), float(bounds[1]), unit, scale))
    return out


def _unit(config: Any, name: str) -> tuple[str, float]:
    """The unit a parameter's value is written in, and model units per that unit."""
    from tumorpde.model import units as un
    from tumorpde.model.objects import Parameter

    v = config.parameters[name]
    value = v.value if isinstance(v, Parameter) else v
    if not isinstance(value, str) or config.units is None:
        return "", 1.0
    _, unit = un.parse_quantity(value, f"parameters.{name}", True)
    if unit is None:
        return "", 1.0
    ureg = un.registry()
    model = un.canonical(1.0, unit, ureg.Unit(config.units.length), ureg.Unit(config.units.time))
    return str(value.strip().split(None, 1)[1]) if " " in value.strip() else f"{unit:~}", \
        float(model[0])


def parse_regularise(items: Sequence[str], config: Any,
                     params: Sequence[FitParameter]) -> dict[str, float]:
    """Field name -> alpha: the ``[calibration] regularise`` table, then ``--regularise``."""
    table = dict(config.calibration.regularise) if config.calibration is not None else {}
    out = {_name(k, config.parameters): float(v) for k, v in table.items()}
    for item in items:
        key, eq, value = item.partition("=")
        key = key.strip()
        try:
            alpha = float(value)
            if not eq or not math.isfinite(alpha) or alpha < 0:
                raise ValueError
        except ValueError:
            raise ConfigError(f"--regularise {key}", "expected KEY=ALPHA with ALPHA >= 0") \
                from None
        out[_name(key, config.parameters)] = alpha
    fitted = {p.name for p in params}
    for name in out:
        if name not in fitted:
            raise ConfigError(f"--regularise {name}", "is not a fitted parameter (--fit)")
    return out


def write_fields(path: Path, problem: Any, names: Sequence[str]) -> Path:
    """The fitted parameter fields in one XDMF file (P1, for ParaView; collective)."""
    from dolfinx import fem, io

    disc = problem.disc
    with io.XDMFFile(problem.comm, str(path), "w") as xdmf:
        xdmf.write_mesh(disc.domain.mesh)
        for name in names:
            f = disc.parameter_fields[name]
            out = fem.Function(disc.V1, name=name)
            out.interpolate(f)
            xdmf.write_function(out, 0.0)
    return path


def _check_mcmc(k: int, walkers: int | None, steps: int | None, burn: int | None) -> None:
    """The sampler's settings, checked before anything runs."""
    if walkers is not None and walkers < 2 * k:
        raise ConfigError("--walkers", f"needs at least {2 * k} walkers for {k} parameters, "
                                       f"got {walkers}")
    n = 200 if steps is None else steps
    if n < 2:
        raise ConfigError("--steps", f"must be at least 2, got {n}")
    if burn is not None and not 0 <= burn < n:
        raise ConfigError("--burn", f"must lie in [0, steps={n}), got {burn}")


def _data_files(items: Sequence[str], config: Any) -> list[str]:
    """``--data`` files, or else the ``[calibration] data`` of the config (its default)."""
    if items:
        return list(dict.fromkeys(items))
    return list(config.calibration.data) if config.calibration is not None else []


def run_calibration(config_arg: str, data: Sequence[str], fit: Sequence[str], *,
                    until: float | None = None, method: str | None = None,
                    evaluate: bool = False, output: str | Path | None = None,
                    overrides: Sequence[str] = (), starts: int | None = None, seed: int = 0,
                    progress: bool | None = None, regularise: Sequence[str] = (),
                    profile: int = 0, walkers: int | None = None, steps: int | None = None,
                    burn: int | None = None, ranks_per_chain: int = 1,
                    comm: MPI.Comm = MPI.COMM_WORLD) -> CalibrationRun:
    """Calibrate a config against data files and write the results (collective).

    Raises:
        ConfigError: Bad input; nothing is written.
    """
    from tumorpde.model.config import find_config
    from tumorpde.problem import Problem, load_config

    path = find_config(config_arg)
    config = load_config(path, list(overrides))
    cal = config.calibration
    method = method or (cal.method if cal is not None else "lsq")
    if method not in ("lsq", "mcmc"):
        raise ConfigError("--method", f"{method!r} is not a method (lsq, mcmc)")
    if ranks_per_chain < 1 or comm.size % ranks_per_chain:
        raise ConfigError("--ranks-per-chain", f"must divide the {comm.size} MPI ranks, got "
                                               f"{ranks_per_chain}")
    params = parse_fit(fit, config)
    alpha = parse_regularise(regularise, config, params)
    if method == "mcmc":
        _check_mcmc(len(params), walkers, steps, burn)
    files = _data_files(data, config)
    datasets = read_all(files)
    until = until if until is not None else (cal.until if cal is not None else None)
    starts = starts or (cal.starts if cal is not None else 3)
    outdir = Path(output) if output else Path("out") / f"calibrate-{path.stem}"
    if outdir.exists() and not outdir.is_dir():
        raise ConfigError("--output", f"{outdir} exists and is not a directory")
    groups = comm.size // ranks_per_chain if method == "mcmc" else 1
    sub = comm.Split(comm.rank // ranks_per_chain) if groups > 1 else comm
    first = comm.rank < sub.size  # the ranks of group 0
    problem = Problem(config, sub)
    datasets = [within_mesh(problem, d) for d in datasets]  # image voxels inside the mesh
    opts = {"walkers": walkers, "steps": steps, "burn": burn,
            "checkpoint": outdir / "chains.npz"}
    result = calibrate(problem, datasets, params, until=until, starts=starts, seed=seed,
                       evaluate_only=evaluate, regularisation=alpha, profile=profile,
                       max_evaluations=cal.max_evaluations if cal is not None else 200,
                       method=method, mcmc=opts, world=comm)
    if comm.rank == 0:
        outdir.mkdir(parents=True, exist_ok=True)
        stale = outdir / "calibration.json"
        if stale.exists():
            stale.unlink()
    comm.Barrier()
    written: list[Path] = []
    if math.isfinite(result.objective) and first:  # group 0 only: one fit/ run
        problem.solve(output=outdir / "fit", progress=progress)
        written.append(outdir / "fit")
        if result.fields:
            written.append(write_fields(outdir / "parameter-fields.xdmf", problem,
                                        list(result.fields)))
    comm.Barrier()
    if comm.rank == 0:
        if result.predictions:
            written.append(write_predictions(outdir / "predictions.csv", datasets, result))
            written.append(_figure(outdir / "fit.png", datasets, result))
        if result.profiles:
            written.append(_profile_figure(outdir / "profiles.png", result))
        if result.posterior is not None:
            written.append(_write_posterior(outdir / "posterior.csv", result))
            written.append(_corner(outdir / "corner.png", result))
        record = result.to_json(method=method, until=until, config=str(path),
                                data=[str(d.path) for d in datasets],
                                ranks=comm.size)
        written.append(write_json(outdir / "calibration.json", record))
    problem.destroy()
    if sub is not comm:
        sub.Free()
    return CalibrationRun(outdir, result, written)


def _figure(path: Path, data: Sequence[Data], fit: Fit) -> Path:
    """Data and model over time, one panel per measured quantity (points: fitted / forecast)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pred = fit.predictions
    panels: dict[str, list[int]] = {}
    i = 0
    for d in data:
        for name in d.name:
            panels.setdefault(f"{d.kind} {name}", []).append(i)
            i += 1
    t = np.concatenate([d.t for d in data])
    value = np.concatenate([d.value for d in data])
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.4), squeeze=False)
    for ax, (label, idx) in zip(axes[0], panels.items(), strict=True):
        idx_a = np.array(idx)
        fitted = fit.fitted[idx_a]
        ax.plot(t[idx_a][fitted], value[idx_a][fitted], "o", ms=3, color="0.3", label="data (fitted)")
        if (~fitted).any():
            ax.plot(t[idx_a][~fitted], value[idx_a][~fitted], "s", ms=3, mfc="none", color="0.3",
                    label="data (forecast)")
        ax.plot(t[idx_a], pred["model"][idx_a], "x", ms=4, color="C3", label="model")
        if "lo" in pred:
            ax.vlines(t[idx_a], pred["lo"][idx_a], pred["hi"][idx_a], color="C3", alpha=0.4,
                      lw=1, label="95 % band")
        ax.set_title(label)
        ax.set_xlabel("t")
    axes[0][0].legend(fontsize=7)
    return _save(fig, path, 120)


def _profile_figure(path: Path, fit: Fit) -> Path:
    """One panel per parameter: the profile likelihood and its 95 % threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tumorpde.calibration.fit import CHI2_95_HALF

    n = len(fit.profiles)
    fig, axes = plt.subplots(1, n, figsize=(3.8 * n, 3.2), squeeze=False)
    for ax, (key, prof) in zip(axes[0], fit.profiles.items(), strict=True):
        vals = np.array(prof["values"])
        pl = np.array([np.nan if v is None else v for v in prof["profile"]], dtype=float)
        ax.plot(vals, pl, "o-", ms=3)
        ax.axhline(CHI2_95_HALF, color="C3", lw=0.8, ls="--", label="95 % threshold")
        for end in prof["ci95"]:
            if end is not None:
                ax.axvline(end, color="C3", lw=0.6)
        ax.set_xlabel(key)
        ax.set_ylabel("profile - minimum")
    axes[0][0].legend(fontsize=7)
    return _save(fig, path, 120)


def _write_posterior(path: Path, fit: Fit) -> Path:
    """``posterior.csv``: every sample after burn-in (walker-major) with its log-probability."""
    import csv

    post = fit.posterior
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([p.key for p in fit.parameters] + ["log_prob"])
        for x, lp in zip(post.samples, post.log_prob, strict=True):
            w.writerow([repr(float(v)) for v in x] + [repr(float(lp))])
    tmp.replace(path)
    return path


def _corner(path: Path, fit: Fit) -> Path:
    """Pairwise scatter plots and histograms of the posterior samples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = fit.posterior.samples
    k = x.shape[1]
    keys = [p.key for p in fit.parameters]
    fig, axes = plt.subplots(k, k, figsize=(2.6 * k, 2.6 * k), squeeze=False)
    for i in range(k):
        for j in range(k):
            ax = axes[i][j]
            if j > i:
                ax.axis("off")
            elif i == j:
                ax.hist(x[:, i], bins=30, color="C0", alpha=0.8)
                for q in np.percentile(x[:, i], [2.5, 50, 97.5]):
                    ax.axvline(q, color="C3", lw=0.8)
            else:
                ax.plot(x[:, j], x[:, i], ".", ms=1, alpha=0.3)
            if i == k - 1:
                ax.set_xlabel(keys[j])
            if j == 0 and i > 0:
                ax.set_ylabel(keys[i])
    return _save(fig, path, 110)


def _save(fig: Any, path: Path, dpi: int) -> Path:
    """Lay out, write and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path

