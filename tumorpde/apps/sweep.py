"""Parameter studies: ensembles of runs and sensitivity indices (``tumorpde sweep``).

``tumorpde sweep CONFIG --vary KEY=LOW:HIGH ... --samples N --method lhs|sobol|morris``
samples the varied config values with SALib, runs one simulation per sample (a
*member*), collects the final observables of all members into one table and
computes sensitivity indices:

========  =======================================  ===================  ==========================
method    design (SALib sampler)                   runs                 indices (SALib analyser)
========  =======================================  ===================  ==========================
lhs       Latin hypercube                          N                    first order S1 (RBD-FAST)
sobol     Saltelli/Sobol' sequence (N a power of 2) N (D + 2)           S1 and total ST (Sobol')
morris    N Morris trajectories, 4 levels          N (D + 1)            mu*, sigma (elementary effects)
========  =======================================  ===================  ==========================

(D: number of varied keys.)  A ``KEY`` is a dotted config path as for ``--set``; the
range ``LOW:HIGH`` is in the units of the key's current value (``"0.192 1/day"`` ->
1/day) unless a unit follows (``KEY=0.1:0.3 1/day``); a table-form parameter varies
its ``value``, and ``--vary KEY`` alone uses the parameter's literature ``range``.

Members run in parallel: under ``mpiexec -n P`` the ranks split into ``P/K``
sub-communicators of ``--ranks-per-member K`` ranks (``MPI_Comm_split``), each running
its share of the members; without MPI, ``--jobs J`` runs J members at a time as
``tumorpde run`` processes.  Every member writes its outputs into
``DIR/runs/NNNN/`` like ``tumorpde run``; ``DIR`` gets ``results.csv`` (one row per
member: varied values and final observables), ``sweep.json`` (the set-up and every
member's status), ``sensitivity.json`` and ``sensitivity.png``.
"""

from __future__ import annotations

import csv
import gc
import json
import logging
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpi4py import MPI

import numpy as np

from tumorpde.errors import ConfigError
from tumorpde.io.rundir import read_info
from tumorpde.io.runinfo import RunInfo
from tumorpde.model.config import check, find_config, load, parse_set, read_data

__all__ = ["Vary", "Member", "SweepResult", "METHODS", "parse_vary", "design", "sweep",
           "sensitivity"]

log = logging.getLogger("tumorpde")

METHODS = ("lhs", "sobol", "morris")
_NUMBER_UNIT = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(.*?)\s*$")


@dataclass
class Vary:
    """One varied config value.

    Attributes:
        key: The dotted key as given (``parameters.rho``).
        target: Dotted key that is set (``parameters.rho.value`` for table-form parameters).
        low: Lower bound.
        high: Upper bound.
        unit: Unit of the bounds ("" for plain numbers).
    """

    key: str
    target: str
    low: float
    high: float
    unit: str = ""

    def setting(self, value: float) -> str:
        """The ``--set`` override giving this key ``value``."""
        v = repr(float(value))
        return f"{self.target}={json.dumps(f'{v} {self.unit}') if self.unit else v}"


@dataclass
class Member:
    """One run of the ensemble."""

    index: int
    values: list[float]
    status: str = "pending"
    message: str = ""
    observables: dict[str, float] = field(default_factory=dict)


@dataclass
class SweepResult:
    """What :func:`sweep` did."""

    outdir: Path
    members: list[Member]
    indices: dict[str, Any] | None
    files: list[Path] = field(default_factory=list)

    @property
    def failed(self) -> list[Member]:
        """Members that did not complete (failed, interrupted or not run)."""
        return [m for m in self.members if m.status != "completed"]

    @property
    def interrupted(self) -> bool:
        """A signal stopped the sweep."""
        return any(m.status == "interrupted" for m in self.members)


def _number_and_unit(value: Any, where: str) -> tuple[float, str]:
    if isinstance(value, bool):
        raise ConfigError("--vary", f"{where} is a boolean, not a number")
    if isinstance(value, int | float):
        return float(value), ""
    if isinstance(value, str):
        m = _NUMBER_UNIT.match(value)
        if m and (not m.group(2) or re.fullmatch(r"[A-Za-z0-9_µ°%][A-Za-z0-9_ µ°%^*/.()-]*", m.group(2))):
            return float(m.group(1)), m.group(2)
        raise ConfigError("--vary", f"{where} is {value!r}, not a number (with a unit): vary a "
                                    "parameter that it uses instead")
    raise ConfigError("--vary", f"{where} is a {type(value).__name__}, not a number")


def parse_vary(item: str, data: dict[str, Any]) -> Vary:
    """Parse ``KEY=LOW:HIGH[ UNIT]`` or ``KEY`` against the resolved config ``data``.

    Raises:
        ConfigError: (key ``--vary``) bad syntax, unknown key, non-numeric value, bad range.
    """
    key, _, rng = item.partition("=")
    key = key.strip()
    try:
        parts, _ = parse_set(f"{key}=0")
    except ConfigError as exc:
        raise ConfigError("--vary", exc.message) from None
    node: Any = data
    for i, p in enumerate(parts):
        if not isinstance(node, dict) or p not in node:
            where = ".".join(parts[:i]) or "the config"
            have = sorted(node) if isinstance(node, dict) else []
            shown = ", ".join(have[:12]) + (", ..." if len(have) > 12 else "")
            raise ConfigError("--vary", f"{key}: no such key in {where}"
                                        + (f" (keys: {shown})" if have else "")
                                        + " (--set KEY=VALUE adds one)")
        node = node[p]
    target, value, default_range = key, node, None
    if isinstance(node, dict):
        if "value" not in node:
            raise ConfigError("--vary", f"{key} is a table, not a value")
        target, value, default_range = f"{key}.value", node["value"], node.get("range")
    _, unit = _number_and_unit(value, key)
    if rng.strip():
        lo_hi, _, given_unit = rng.strip().partition(" ")
        lo_s, sep, hi_s = lo_hi.partition(":")
        try:
            if not sep:
                raise ValueError
            low, high = float(lo_s), float(hi_s)
        except ValueError:
            raise ConfigError("--vary", f"{key}: expected a range LOW:HIGH, got {rng.strip()!r}") \
                from None
        if given_unit.strip():
            unit = given_unit.strip()
    else:
        if not (isinstance(default_range, list) and len(default_range) == 2):
            raise ConfigError("--vary", f"{key} has no range in the config: give one "
                                        f"({key}=LOW:HIGH)")
        low, high = (_number_and_unit(v, f"{key}.range")[0] for v in default_range)
    if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
        raise ConfigError("--vary", f"{key}: the range {low:g}:{high:g} must have LOW < HIGH "
                                    "(finite numbers)")
    return Vary(key, target, low, high, unit)


def design(method: str, varies: Sequence[Vary], samples: int, seed: int) -> np.ndarray:
    """The sample matrix (runs x keys) of a method, from SALib.

    Raises:
        ConfigError: Unknown method or unsuitable number of samples.
    """
    from SALib.sample import latin, morris, sobol

    if method not in METHODS:
        raise ConfigError("--method", f"unknown method {method!r} (use {', '.join(METHODS)})")
    problem = _problem(varies)
    if method == "lhs":
        if samples < 9:
            raise ConfigError("--samples", "lhs needs at least 9 samples (first-order indices "
                                           "by RBD-FAST)")
        return latin.sample(problem, samples, seed=seed)
    if method == "sobol":
        if samples < 2 or samples & (samples - 1):
            raise ConfigError("--samples", f"sobol needs a power of 2 (Sobol' sequence), got {samples}")
        return sobol.sample(problem, samples, calc_second_order=False, seed=seed)
    if samples < 2:
        raise ConfigError("--samples", "morris needs at least 2 trajectories")
    return morris.sample(problem, samples, num_levels=4, seed=seed)


def _problem(varies: Sequence[Vary]) -> dict[str, Any]:
    return {"num_vars": len(varies), "names": [v.key for v in varies],
            "bounds": [[v.low, v.high] for v in varies]}


def sensitivity(method: str, varies: Sequence[Vary], X: np.ndarray, Y: np.ndarray,
                seed: int) -> dict[str, Any]:
    """Sensitivity indices of one output ``Y`` (one value per run) with SALib."""
    from SALib.analyze import morris, rbd_fast, sobol

    problem = _problem(varies)
    if not np.all(np.isfinite(Y)):
        raise ValueError("non-finite output")
    if np.ptp(Y) <= 1e-14 * max(1.0, float(np.max(np.abs(Y)))):  # a constant output
        zeros = [0.0] * len(varies)
        keys = {"lhs": ("S1", "S1_conf"), "sobol": ("S1", "S1_conf", "ST", "ST_conf"),
                "morris": ("mu", "mu_star", "sigma", "mu_star_conf")}[method]
        return {"constant": True, **{k: zeros for k in keys}}
    if method == "lhs":
        n = len(Y)
        res = rbd_fast.analyze(problem, X, Y, M=min(10, (n - 1) // 2), seed=seed)
        keys = ("S1", "S1_conf")
    elif method == "sobol":
        res = sobol.analyze(problem, Y, calc_second_order=False, seed=seed)
        keys = ("S1", "S1_conf", "ST", "ST_conf")
    else:
        res = morris.analyze(problem, X, Y, num_levels=4, seed=seed)
        keys = ("mu", "mu_star", "sigma", "mu_star_conf")
    return {"constant": False, **{k: [float(v) for v in np.asarray(res[k], dtype=float)]
                                  for k in keys}}


# ----------------------------------------------------------------------------- running members
def _run_inprocess(path: Path, sets: list[str], knockout: list[str], member: Member,
                   varies: Sequence[Vary], rundir: Path, comm: MPI.Comm) -> None:
    from tumorpde.errors import SolverError
    from tumorpde.signals import Interrupted
    from tumorpde.simulation import run

    try:
        cfg = load(path, [*sets, *(v.setting(x) for v, x in zip(varies, member.values, strict=True)),
                          "output.progress=false"])
        for name in knockout:
            if name not in cfg.knockout:
                cfg.knockout.append(name)
        res = run(cfg, rundir, comm)
        member.status, member.observables = "completed", dict(res.final)
    except Interrupted as exc:  # SIGINT/SIGTERM: the run wrote a checkpoint; stop the group
        member.status, member.message = "interrupted", str(exc)
    except (ConfigError, SolverError) as exc:
        member.status, member.message = "failed", str(exc)
    except Exception as exc:  # noqa: BLE001 - one member's crash must not end the ensemble
        member.status, member.message = "failed", f"internal error: {type(exc).__name__}: {exc}"
    finally:
        gc.collect()


def _run_process(path: Path, sets: list[str], knockout: list[str], member: Member,
                 varies: Sequence[Vary], rundir: Path) -> None:
    cmd = [sys.executable, "-m", "tumorpde", "run", str(path), "-o", str(rundir), "-q"]
    for s in [*sets, *(v.setting(x) for v, x in zip(varies, member.values, strict=True)),
              "output.progress=false"]:
        cmd += ["--set", s]
    for k in knockout:
        cmd += ["--knockout", k]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    try:
        info: RunInfo | None = read_info(rundir)
    except ConfigError:
        info = None
    final = info.final if info is not None else None
    if (proc.returncode == 0 and info is not None and info.status == "completed"
            and final is not None and final.observables is not None):
        member.status = "completed"
        member.observables = {k: float(v) for k, v in final.observables.items()}
    else:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        member.status = "failed"
        member.message = (lines[-1] if lines else f"exit status {proc.returncode}").removeprefix(
            "tumorpde: ")


def _execute(path: Path, sets: list[str], knockout: list[str], members: list[Member],
             varies: Sequence[Vary], outdir: Path, comm: MPI.Comm, ranks_per_member: int,
             jobs: int) -> list[Member]:
    """Run the members; return them (with results) on rank 0, [] elsewhere."""
    width = max(4, len(str(len(members) - 1)))

    def rundir(m: Member) -> Path:
        return outdir / "runs" / f"{m.index:0{width}d}"

    if comm.size == 1 and jobs > 1:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(_run_process, path, sets, knockout, m, varies, rundir(m))
                       for m in members]
            for future in futures:
                future.result()
        return members
    groups = comm.size // ranks_per_member
    color = comm.rank // ranks_per_member
    sub = comm.Split(color, comm.rank)
    try:
        from tumorpde.signals import StopRequest

        mine = members[color::groups]
        every = max(1, math.ceil(len(mine) / 10))
        # SIGINT/SIGTERM: within a run, the run stops with a checkpoint (status interrupted);
        # between runs, the group stops before its next member; members not run stay pending
        with StopRequest(sub) as stop:
            for i, m in enumerate(mine):
                _run_inprocess(path, sets, knockout, m, varies, rundir(m), sub)
                if m.status == "interrupted":
                    break
                if stop.requested():
                    m_next = mine[i + 1] if i + 1 < len(mine) else None
                    if m_next is not None:
                        m_next.status, m_next.message = "interrupted", "not started (signal)"
                    break
                if comm.rank == 0 and ((i + 1) % every == 0 or i + 1 == len(mine)):
                    log.info("sweep: %d of %d members of the first group done", i + 1, len(mine))
        local = mine if sub.rank == 0 else []
        gathered = comm.gather(local, root=0)
    finally:
        sub.Free()
    if comm.rank != 0:
        return []
    out = sorted((m for part in gathered for m in part), key=lambda m: m.index)
    return out


# ----------------------------------------------------------------------------- the sweep
def sweep(config: str, vary: Sequence[str], samples: int, method: str = "lhs",
          outdir: str | Path | None = None, sets: Sequence[str] = (), knockout: Sequence[str] = (),
          observables: Sequence[str] = (), seed: int = 0, jobs: int = 1,
          ranks_per_member: int = 1, comm: MPI.Comm = MPI.COMM_WORLD) -> SweepResult:
    """Run an ensemble over varied config values and compute sensitivity indices.

    Args:
        config: TOML file or bundled example name.
        vary: ``KEY=LOW:HIGH[ UNIT]`` or ``KEY`` (uses the parameter's ``range``).
        samples: N of the method (see the module documentation).
        method: ``lhs``, ``sobol`` or ``morris``.
        outdir: Output directory (default ``out/sweep-NAME``).
        sets: ``--set`` overrides applied to every member.
        knockout: Species knocked out in every member.
        observables: Observables shown in the figure (default: the config's
            ``[observables]``, else the species totals).
        seed: Seed of the sampler and of the bootstrap confidence intervals.
        jobs: Members run at a time as processes (without MPI).
        ranks_per_member: MPI ranks per member under ``mpiexec``.
        comm: Communicator.

    Returns:
        The members (on rank 0; other ranks get an empty list) and the indices.

    Raises:
        ConfigError: Bad input, raised on every rank before any member runs.
    """
    path = find_config(config)
    if not vary:
        raise ConfigError("--vary", "give at least one --vary KEY=LOW:HIGH")
    if samples < 1:
        raise ConfigError("--samples", f"must be positive, got {samples}")
    if jobs < 1:
        raise ConfigError("--jobs", f"must be positive, got {jobs}")
    if ranks_per_member < 1 or comm.size % ranks_per_member:
        raise ConfigError("--ranks-per-member", f"{ranks_per_member} does not divide the "
                                                f"{comm.size} MPI ranks")
    if jobs > 1 and comm.size > 1:
        raise ConfigError("--jobs", "use either mpiexec (members on sub-communicators) or --jobs "
                                    "(members as processes), not both")
    data = read_data(path, sets)
    varies = [parse_vary(v, data) for v in vary]
    keys = [v.key for v in varies]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ConfigError("--vary", f"{dup} is varied twice")
    # every member's config must be valid: check the corners of the box
    spec = None
    for corner in ("low", "high"):
        values = [getattr(v, corner) for v in varies]
        try:
            cfg = load(path, [*sets, *(v.setting(x) for v, x in zip(varies, values, strict=True))])
            for name in knockout:
                if name not in cfg.knockout:
                    cfg.knockout.append(name)
            spec = check(cfg)
        except ConfigError as exc:
            raise ConfigError("--vary", f"with every key at its {corner} end: {exc}") from None
    assert spec is not None
    names = [f"total_{n}" for n in spec.names] + list(spec.observables)
    shown = list(observables) or list(spec.observables) or [f"total_{n}" for n in spec.names]
    for name in shown:
        if name not in names:
            raise ConfigError("--observable", f"no observable {name!r} (observables: "
                                              f"{', '.join(names)})")
    X = design(method, varies, samples, seed)
    out = Path(outdir) if outdir is not None else Path("out") / f"sweep-{path.stem}"
    if comm.rank == 0:
        try:
            (out / "runs").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError("--output", f"cannot create {out}: {exc.strerror}") from None
    ok = comm.bcast((out / "runs").is_dir() if comm.rank == 0 else None, root=0)
    if not ok:
        raise ConfigError("--output", f"cannot create {out}")
    members = [Member(i, [float(x) for x in row]) for i, row in enumerate(X)]
    groups = comm.size // ranks_per_member
    if comm.rank == 0:
        how = (f"{groups} groups of {ranks_per_member} MPI rank(s)" if comm.size > 1
               else f"{jobs} processes" if jobs > 1 else "this process")
        log.info("sweep: %d members (%s, %d keys) on %s -> %s", len(members), method, len(varies),
                 how, out)
    t0 = time.perf_counter()
    members = _execute(path, list(sets), list(knockout), members, varies, out, comm,
                       ranks_per_member, jobs)
    result = SweepResult(out, members, None)
    if comm.rank != 0:
        return result
    wall = time.perf_counter() - t0
    result.files.append(_write_table(out / "results.csv", varies, members, names))
    if not result.failed:
        result.indices = {}
        for name in names:
            Y = np.array([m.observables.get(name, math.nan) for m in members])
            try:
                result.indices[name] = sensitivity(method, varies, X, Y, seed)
            except ValueError as exc:
                result.indices[name] = {"error": str(exc)}
        result.files.append(_write_json(out / "sensitivity.json", {
            "method": method, "samples": samples, "runs": len(members), "seed": seed,
            "keys": [{"key": v.key, "low": v.low, "high": v.high, "unit": v.unit} for v in varies],
            "analyser": {"lhs": "SALib.analyze.rbd_fast", "sobol": "SALib.analyze.sobol",
                         "morris": "SALib.analyze.morris"}[method],
            "indices": result.indices}))
        result.files.append(_figure(out / "sensitivity.png", method, varies, result.indices, shown,
                                    str(data.get("title", path.stem))))
    result.files.append(_write_json(out / "sweep.json", {
        "config": str(path.resolve()), "set": list(sets), "knockout": list(knockout),
        "vary": [v.__dict__ for v in varies], "method": method, "samples": samples,
        "seed": seed, "runs": len(members), "ranks": comm.size,
        "ranks_per_member": ranks_per_member, "jobs": jobs, "wall_time": wall,
        "failed": len(result.failed),
        "members": [{"index": m.index, "values": m.values, "status": m.status,
                     "message": m.message} for m in members]}))
    return result


def _write_table(path: Path, varies: Sequence[Vary], members: Sequence[Member],
                 names: Sequence[str]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["member", "status", *(v.key for v in varies), *names])
        for m in members:
            w.writerow([m.index, m.status, *(repr(x) for x in m.values),
                        *(repr(float(m.observables[n])) if n in m.observables else "nan"
                          for n in names)])
    return path


def _write_json(path: Path, data: dict[str, Any]) -> Path:
    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(clean(data), indent=2) + "\n")
    os.replace(tmp, path)
    return path


def _figure(path: Path, method: str, varies: Sequence[Vary], indices: dict[str, Any],
            shown: Sequence[str], title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(shown)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    labels = [v.key.removeprefix("parameters.") for v in varies]
    height = max(2.2, 0.42 * len(varies) + 1.2)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, height * nrows + 0.6),
                             squeeze=False, layout="constrained")
    y = np.arange(len(varies))
    series = {"lhs": [("S1", "S1_conf", "first order S1", "#1f5f99")],
              "sobol": [("S1", "S1_conf", "first order S1", "#1f5f99"),
                        ("ST", "ST_conf", "total ST", "#d9822b")],
              "morris": [("mu_star", "mu_star_conf", "mu* (mean |effect|)", "#1f5f99"),
                         ("sigma", None, "sigma (interactions, nonlinearity)", "#d9822b")]}[method]
    bar = 0.8 / len(series)
    for k, name in enumerate(shown):
        ax = axes[k // ncols][k % ncols]
        ind = indices.get(name, {})
        for j, (key, conf, label, color) in enumerate(series):
            if key not in ind:
                continue
            vals = np.nan_to_num(np.asarray(ind[key], dtype=float))
            err = np.nan_to_num(np.asarray(ind[conf], dtype=float)) if conf else None
            ax.barh(y + (j - (len(series) - 1) / 2) * bar, vals, height=bar, xerr=err,
                    color=color, label=label, capsize=2, error_kw={"lw": 0.8})
        ax.set_yticks(y, labels, fontsize=8)
        ax.invert_yaxis()
        ax.axvline(0, color="k", lw=0.6)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelsize=8)
        note = "  (constant)" if ind.get("constant") else ""
        ax.set_title(name + note, fontsize=9.5, loc="left")
        if method != "morris":
            ax.set_xlim(min(0.0, ax.get_xlim()[0]), max(1.0, ax.get_xlim()[1]))
    for k in range(n, nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    handles, leg = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, leg, loc="outside lower center", ncols=len(handles), fontsize=8.5)
    analyser = {"lhs": "RBD-FAST", "sobol": "Sobol'", "morris": "Morris"}[method]
    fig.suptitle(f"{title}\nsensitivity of the final observables ({analyser}, "
                 f"95% confidence intervals)", fontsize=10.5)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
