"""The verification cases: run, measure, check, plot.

Each ``case_*`` function runs one group of verification problems at a level
(``"quick"``: coarse, seconds; ``"full"``: the report) and returns a
:class:`CaseResult` with tables, checks against theory or literature, figures and a
flat dictionary of metrics (compared between 1 and 2 MPI ranks).  All functions are
collective; figures are drawn on rank 0.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpi4py import MPI

import numpy as np

from tumorpde.errors import SolverError
from tumorpde.verification import analysis as an
from tumorpde.verification import configs as vc
from tumorpde.verification.mms import dump_toml
from tumorpde.verification.runner import Study, errors, read_fields, read_observables, run_config, study

__all__ = ["Table", "Check", "Figure", "CaseResult", "Ctx", "CASES", "run_case"]


@dataclass
class Table:
    """A results table."""

    title: str
    columns: list[str]
    rows: list[list[Any]]
    note: str = ""


@dataclass
class Check:
    """A comparison with theory or literature."""

    what: str
    expected: str
    observed: str
    ok: bool
    known_issue: bool = False


@dataclass
class Figure:
    """A figure file (in the figure directory) and its caption."""

    file: str
    caption: str


@dataclass
class CaseResult:
    """Everything the report shows about one case."""

    key: str
    title: str
    intro: str = ""
    tables: list[Table] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    listing: str = ""
    seconds: float = 0.0


@dataclass
class Ctx:
    """Where and how to run: level, working directory, communicator, figure directory."""

    level: str
    workdir: Path
    comm: MPI.Comm = field(default_factory=lambda: MPI.COMM_WORLD)
    figdir: Path | None = None

    @property
    def full(self) -> bool:
        """Whether this is the full (report) level."""
        return self.level == "full"

    def sub(self, *names: str) -> Path:
        """A working subdirectory."""
        return self.workdir.joinpath(*names)

    def plot(self) -> bool:
        """Whether this rank draws figures."""
        return self.figdir is not None and self.comm.rank == 0


def _f(v: float, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if v == 0:
        return "0"
    if abs(v) < 1e-3 or abs(v) >= 1e5:
        return f"{v:.{digits}e}"
    return f"{v:.{digits + 1}g}"


def _order_check(what: str, observed: float, expected: float, tol: float) -> Check:
    return Check(what, f"{expected:g} ± {tol:g}", f"{observed:.3f}",
                 abs(observed - expected) <= tol)


def _study_table(title: str, st: Study, hname: str = "h", extra: list[str] | None = None,
                 note: str = "") -> Table:
    r2, r1 = st.rates("L2"), st.rates("H1")
    cols = [hname, "L2 error", "order", "H1 error", "order"] + (extra or [])
    rows = []
    for i in range(len(st.hs)):
        row = [st.labels[i], _f(st.errs["L2"][i]), "" if i == 0 else f"{r2[i - 1]:.2f}",
               _f(st.errs["H1"][i]), "" if i == 0 else f"{r1[i - 1]:.2f}"]
        for e in extra or []:
            row.append(_f(st.extra[e][i]) if e in st.extra else "")
        rows.append(row)
    return Table(title, cols, rows, note)


def _study_metrics(prefix: str, st: Study) -> dict[str, float]:
    out = {}
    for i, lab in enumerate(st.labels):
        out[f"{prefix} L2 {lab}"] = st.errs["L2"][i]
        out[f"{prefix} H1 {lab}"] = st.errs["H1"][i]
    return out


def _mass_drift(total: np.ndarray) -> float:
    return float(np.max(np.abs(total - total[0])) / abs(total[0]))


def _collect() -> None:
    gc.collect()
    MPI.COMM_WORLD.Barrier()


# =========================================================================== 1. MMS space
def spatial_variants(full: bool) -> list[tuple[str, Callable[[int], tuple[dict, dict]], int,
                                               tuple[int, ...], int]]:
    """(label, builder(n), degree, mesh sizes, dimension) of the spatial MMS studies."""
    p1 = (8, 16, 32, 64) if full else (8, 16, 32)
    p2 = (4, 8, 16, 32) if full else (4, 8, 16)
    return [
        ("one species 2D, P1", lambda n: vc.mms_single(n, 1, 2), 1, p1, 2),
        ("one species 2D, P2", lambda n: vc.mms_single(n, 2, 2), 2, p2, 2),
        ("coupled taxis + diffusion jump, P1 upwind", lambda n: vc.mms_coupled(n, 1, "upwind"),
         1, p1, 2),
        ("coupled taxis + diffusion jump, P1 Galerkin", lambda n: vc.mms_coupled(n, 1, "galerkin"),
         1, p1, 2),
        ("coupled taxis + diffusion jump, P2", lambda n: vc.mms_coupled(n, 2, "galerkin"),
         2, p2, 2),
        ("one species 3D, P1", lambda n: vc.mms_single(n, 1, 3), 1,
         (4, 8, 16) if full else (4, 8), 3),
        ("one species 3D, P2", lambda n: vc.mms_single(n, 2, 3), 2,
         (2, 4, 8) if full else (4, 8), 3),
    ]


def spatial_study(builder: Callable[[int], tuple[dict, dict]], ns: tuple[int, ...], workdir: Path,
                  comm: MPI.Comm = MPI.COMM_WORLD) -> Study:
    """Errors of a manufactured problem on meshes of n x n (x n) cells."""
    exact = builder(ns[0])[1]
    return study([(1.0 / n, builder(n)[0]) for n in ns], exact, workdir, comm,
                 labels=[str(n) for n in ns])


def case_mms_space(ctx: Ctx) -> CaseResult:
    """Spatial orders of P1 and P2 for single species and the coupled taxis system."""
    res = CaseResult("mms-space", "Manufactured solutions: spatial orders")
    res.intro = (
        "Each problem is an ordinary config whose `reaction` is the model's reaction plus a "
        "source term in `x, y, z, t` generated by `tumorpde.verification.mms.manufacture` "
        "from the exact solution (sympy differentiates the config's own diffusion, taxis and "
        "reaction expressions). The exact solutions are linear in `t`, so BDF2 is exact in "
        "time and the errors at t = 0.1 are spatial. Errors are measured at the final time "
        "in L2 and in the H1 seminorm (root sum of squares over species), with quadrature "
        "degree 8.\n\n"
        "- *One species*: `u = (1 + t)(1 + cos(pi x) cos(pi y)/2)` (times `cos(pi z)` in 3D), "
        "diffusion `0.1 (1 + x y/2)` (`x y z` in 3D), reaction `u (1 - u/4)`, no flux.\n"
        "- *Coupled*: `u` diffuses with a per-region coefficient (`0.05` for x < 1/2, `0.2` "
        "elsewhere), moves up the gradient of `v` (`sensitivity = 0.05 u`) and grows "
        "logistically; `v` diffuses (`0.1`) with reaction `u - v`. The exact `u` has a kink at "
        "the interface, `u = (1 + t)(3 - 0.1 cos(pi x)/D(x) + cos(pi x)^3 cos(pi y)/2)`, so that "
        "`u` and its total flux are continuous; `v = (1 + t)(1 + cos(2 pi x) cos(pi y)/4)`.")
    series_l2, series_h1 = [], []
    for label, builder, degree, ns, dim in spatial_variants(ctx.full):
        st = spatial_study(builder, ns, ctx.sub("mms-space", label.replace(" ", "_")
                                                .replace(",", "").replace("+", "")), ctx.comm)
        res.tables.append(_study_table(label, st, "n"))
        res.checks.append(_order_check(f"{label}: L2 order", st.rates("L2")[-1], degree + 1, 0.15))
        res.checks.append(_order_check(f"{label}: H1 order", st.rates("H1")[-1], degree, 0.15))
        res.metrics.update(_study_metrics(label, st))
        if dim == 2:
            series_l2.append((label, st.hs, st.errs["L2"], degree + 1))
            series_h1.append((label, st.hs, st.errs["H1"], degree))
        _collect()
    if ctx.plot():
        from tumorpde.verification import figures

        figures.convergence(ctx.figdir / "mms-space-l2.png", series_l2, "h", "L2 error (2D)")
        figures.convergence(ctx.figdir / "mms-space-h1.png", series_h1, "h", "H1 error (2D)")
    res.figures += [Figure("mms-space-l2.png", "L2 errors of the 2D manufactured problems "
                                               "(dotted: theoretical slopes). P1 upwind and P1 "
                                               "Galerkin coincide: at these cell Péclet numbers "
                                               "(< 2) the edge scheme adds no diffusion."),
                    Figure("mms-space-h1.png", "H1-seminorm errors of the 2D problems.")]
    data, exact = vc.mms_coupled(8, 1, "upwind", error_observables=True)
    res.listing = dump_toml(data, "Manufactured coupled problem (P1, 8 x 8), generated by\n"
                                  "tumorpde.verification.configs.mms_coupled; exact solution:\n"
                            + "\n".join(f"  {k} = {v}" for k, v in exact.items()))
    return res


# =========================================================================== 1. MMS time
def temporal_variants() -> list[tuple[str, str, bool, int, int]]:
    """(label, scheme, variable steps, degree, order) of the temporal MMS studies."""
    return [("backward Euler, fixed steps", "backward-euler", False, 1, 1),
            ("backward Euler, variable steps", "backward-euler", True, 1, 1),
            ("BDF2, fixed steps", "bdf2", False, 1, 2),
            ("BDF2, variable steps", "bdf2", True, 1, 2),
            ("BDF2, variable steps, P2", "bdf2", True, 2, 2)]


def temporal_study(scheme: str, variable: bool, degree: int, dts: list[float], workdir: Path,
                   comm: MPI.Comm = MPI.COMM_WORLD) -> Study:
    """Errors at t = 1 of the space-exact manufactured problem for a sequence of steps."""
    exact = vc.mms_time(dts[0], scheme)[1]
    return study([(dt, vc.mms_time(dt, scheme, variable, degree)[0]) for dt in dts], exact,
                 workdir, comm, labels=[f"{dt:g}" for dt in dts])


def case_mms_time(ctx: Ctx) -> CaseResult:
    """Temporal orders of backward Euler and BDF2, with fixed and variable steps."""
    res = CaseResult("mms-time", "Manufactured solutions: temporal orders")
    res.intro = (
        "Three coupled species on 8 cells of [0, 1]: `u` moves up the gradient of `v` "
        "(`sensitivity = 0.1 u`, logistic reaction), `v` has reaction `u - v`, and `w` "
        "diffuses with a per-region coefficient (0.5 for x < 1/2, 0.25 elsewhere) with "
        "reaction `u v/4 - w`. The exact solutions are piecewise linear in x "
        "(`u = (2 + sin 2t)(1 + x/2)`, `v = (1 + cos(3t)/2)(1 + x)`, "
        "`w = (1 + sin(t)/2)(1 + 0.1 (x - 1/2)/D_w(x))` with a flux-continuous kink), so the "
        "P1 (lumped) and P2 discretisations are exact in space and the error at t = 1 is the "
        "time error alone; Dirichlet values are the exact solution. *Variable steps*: "
        "`output_every = 2.3 dt` makes the milestone logic take steps dt, dt, 0.3 dt, 0.6 dt, "
        "... (step ratios between 0.3 and 2), a pattern that scales with dt.")
    K = 6 if ctx.full else 4
    dts = [0.1 / 2 ** k for k in range(K)]
    series = []
    for label, scheme, variable, degree, order in temporal_variants():
        st = temporal_study(scheme, variable, degree, dts,
                            ctx.sub("mms-time", f"{scheme}-{variable}-{degree}"), ctx.comm)
        res.tables.append(_study_table(label, st, "dt", ["steps", "ratio_min", "ratio_max"]))
        res.checks.append(_order_check(f"{label}: L2 order", st.rates("L2")[-1], order, 0.1))
        res.metrics.update(_study_metrics(label, st))
        series.append((label, st.hs, st.errs["L2"], order))
        _collect()
    # adaptive BDF2: error against tolerance
    rows, errs_ad = [], []
    for rtol in ([1e-2, 1e-3, 1e-4, 1e-5] if ctx.full else [1e-2, 1e-3, 1e-4]):
        data, exact = vc.mms_time(0.01, "bdf2", adaptive=True, rtol=rtol)
        r = run_config(data, ctx.sub("mms-time", f"adaptive{rtol:g}"), ctx.comm)
        e = errors(r, data, exact)
        l2 = math.sqrt(sum(v[0] ** 2 for v in e.values()))
        errs_ad.append(l2)
        rows.append([f"{rtol:g}", str(r.steps), _f(l2)])
        res.metrics[f"adaptive rtol={rtol:g} L2"] = l2
        del r
        _collect()
    res.tables.append(Table("BDF2 with adaptive steps (atol = rtol/1000)", ["rtol", "steps", "L2 error"],
                            rows, "The error follows the tolerance (no order is claimed)."))
    res.checks.append(Check("adaptive BDF2: error decreases with rtol", "monotone",
                            " > ".join(_f(e) for e in errs_ad),
                            all(a > b for a, b in zip(errs_ad, errs_ad[1:], strict=False))))
    if ctx.plot():
        from tumorpde.verification import figures

        figures.convergence(ctx.figdir / "mms-time.png", series, "dt", "L2 error at t = 1")
    res.figures.append(Figure("mms-time.png", "Time-discretisation errors (dotted: slopes 1, 2)."))
    return res


# =========================================================================== 2. closed forms
def decay_study(dim: int, ns: tuple[int, ...], workdir: Path, comm: MPI.Comm = MPI.COMM_WORLD,
                degree: int = 1) -> Study:
    """Diffusion-decay against its closed form, refining h and dt = h together (BDF2)."""
    builds = [(1.0 / n, vc.diffusion_decay(dim, n, 1.0 / n, degree)[0]) for n in ns]
    return study(builds, {"u": vc.DECAY_EXACT[dim]}, workdir, comm, labels=[str(n) for n in ns])


def case_diffusion_decay(ctx: Ctx) -> CaseResult:
    """1D, 2D and 3D diffusion-decay against closed forms."""
    res = CaseResult("diffusion-decay", "Diffusion–decay against closed forms (1D, 2D, 3D)")
    res.intro = (
        "`du/dt = D lap u - k u` (D = 0.05, k = 0.5) with no flux on the unit interval, "
        "square and cube, from `u(0) = 1 + cos(pi x)` (1D), `1 + cos(pi x) cos(2 pi y)` (2D), "
        "`1 + cos(pi x) cos(pi y) cos(pi z)` (3D). Exact: `exp(-k t) + (mode) exp(-(D |k|^2 + k) t)`. "
        "Plain configs (no manufactured source); P1 with BDF2, refining h = 1/n and dt = h "
        "together, errors at t = 1.")
    sizes = {1: (16, 32, 64, 128), 2: (8, 16, 32, 64), 3: (4, 8, 16)} if ctx.full else \
        {1: (16, 32, 64), 2: (8, 16, 32), 3: (4, 8)}
    series = []
    for dim, ns in sizes.items():
        st = decay_study(dim, ns, ctx.sub("decay", f"{dim}d"), ctx.comm)
        res.tables.append(_study_table(f"{dim}D (dt = h)", st, "n"))
        res.checks.append(_order_check(f"{dim}D: L2 order", st.rates("L2")[-1], 2, 0.15))
        res.checks.append(_order_check(f"{dim}D: H1 order", st.rates("H1")[-1], 1, 0.15))
        res.metrics.update(_study_metrics(f"{dim}D", st))
        series.append((f"{dim}D", st.hs, st.errs["L2"], 2))
        _collect()
    if ctx.plot():
        from tumorpde.verification import figures

        figures.convergence(ctx.figdir / "diffusion-decay.png", series, "h (= dt)",
                            "Diffusion-decay: L2 error at t = 1")
    res.figures.append(Figure("diffusion-decay.png", "Diffusion–decay: L2 errors against the "
                                                     "closed forms."))
    return res


def fisher_wave_study(ns: tuple[int, ...], workdir: Path, comm: MPI.Comm = MPI.COMM_WORLD) -> Study:
    """Fisher-KPP against the Ablowitz-Zeppetella wave, dt = h/4."""
    builds = [(40.0 / n, vc.fisher_exact(n, 10.0 / n)[0]) for n in ns]
    return study(builds, vc.fisher_exact(ns[0], 1.0)[1], workdir, comm,
                 labels=[f"{40.0 / n:g}" for n in ns])


def fisher_front(h: float, dt: float, end: float, length: float, workdir: Path,
                 comm: MPI.Comm = MPI.COMM_WORLD) -> dict[str, Any]:
    """Front from a step: position ``integral(u) - 5`` against time, and the Bramson fits."""
    run_config(vc.fisher_front(h, dt, end, length), workdir, comm)
    obs = read_observables(workdir, comm)
    t, x = obs["t"], obs["front"] - 5.0
    vstar, lam = an.fisher_vstar(h, dt)
    fit = an.bramson_fit(t[1:], x[1:], end / 4.0, vstar)
    return {"t": t, "x": x, "vstar_h": vstar, "lambda_h": lam, **fit}


def case_fisher(ctx: Ctx) -> CaseResult:
    """Fisher-KPP: exact travelling wave, front speed and logarithmic delay, glioma example."""
    res = CaseResult("fisher-kpp", "Fisher–KPP: exact wave, front speed and Bramson delay")
    res.intro = (
        "`u_t = D u_xx + rho u (1 - u)` with D = rho = 1.\n\n"
        "*Exact wave.* `u = (1 + exp((x - 10 - c t)/sqrt 6))^-2`, `c = 5/sqrt 6` (Ablowitz & "
        "Zeppetella 1979) on [0, 40] with the exact values as (time-dependent) Dirichlet "
        "conditions; P1, BDF2, dt = h/4, errors at t = 4.\n\n"
        "*Front from a step.* `u(x, 0) = 1` for x < 5, else 0, on a long interval with no flux; "
        "the front position is `integral(u) - 5` (an `[observables]` integral). Bramson: "
        "`x(t) = 2 sqrt(D rho) t - (3/2) sqrt(D/rho) ln t + const + ...` (project notes). The "
        "discrete scheme has its own asymptotic speed v*_h (lumped P1 + BDF2 dispersion "
        "relation, `analysis.fisher_vstar`); the logarithmic coefficient is fitted with the "
        "speed fixed at v*_h and a free `t^-1/2` term (the next correction, Ebert & van "
        "Saarloos 2000), over t >= T/4.")
    ns = (100, 200, 400, 800) if ctx.full else (100, 200, 400)
    st = fisher_wave_study(ns, ctx.sub("fisher", "wave"), ctx.comm)
    res.tables.append(_study_table("Exact travelling wave (dt = h/4)", st, "h"))
    res.checks.append(_order_check("exact wave: L2 order", st.rates("L2")[-1], 2, 0.15))
    res.metrics.update(_study_metrics("wave", st))
    _collect()
    h, dt = 0.1, 0.05
    end, length = (200.0, 450.0) if ctx.full else (50.0, 120.0)
    fr = fisher_front(h, dt, end, length, ctx.sub("fisher", "front"), ctx.comm)
    rows = [["asymptotic speed (free fit)", _f(fr["speed"], 5), "2 (continuum); "
             f"v*_h = {fr['vstar_h']:.5f} (discrete)"],
            ["ln t coefficient, speed = v*_h: x - v*_h t = b ln t + c", _f(fr["log_coef_2"], 4),
             "-1.5"],
            ["ln t coefficient, speed = v*_h, with a t^-1/2 term", _f(fr["log_coef"], 4), "-1.5"],
            ["ln t coefficient, free fit", _f(fr["log_coef_free"], 4), "-1.5"],
            ["t^-1/2 coefficient (with speed = v*_h)", _f(fr["sqrt_coef"], 4), "(free)"]]
    res.tables.append(Table(f"Front from a step (h = {h}, dt = {dt}, T = {end:g}, "
                            f"L = {length:g}, fit over t >= {end / 4:g})",
                            ["quantity", "measured", "theory"], rows))
    res.checks.append(Check("front speed -> 2 sqrt(D rho)", "2 within 1%",
                            f"{fr['speed']:.4f}", abs(fr["speed"] - 2.0) < 0.02))
    if ctx.full:
        res.checks.append(Check("front speed = discrete v*_h", f"{fr['vstar_h']:.4f} ± 0.002",
                                f"{fr['speed']:.4f}", abs(fr["speed"] - fr["vstar_h"]) < 2e-3))
        res.checks.append(_order_check("Bramson ln t coefficient (speed fixed at v*_h)",
                                       fr["log_coef_2"], -1.5, 0.15))
    for k in ("speed", "log_coef", "log_coef_2", "sqrt_coef"):
        res.metrics[f"front {k}"] = fr[k]
    res.metrics["front x(T)"] = float(fr["x"][-1])
    if ctx.plot():
        from tumorpde.verification import figures

        t, x = fr["t"][1:], fr["x"][1:]
        fit = fr["log_coef"] * np.log(t) + fr["const"] + fr["sqrt_coef"] * t ** -0.5
        y = x - fr["vstar_h"] * t
        ref = -1.5 * np.log(t) + (y[-1] + 1.5 * np.log(t[-1]))
        figures.lines(ctx.figdir / "fisher-front.png",
                      [("measured x(t) - v*_h t", t, y, "-"),
                       (f"fit: {fr['log_coef']:.3f} ln t + c + d t^-1/2 (t >= {end / 4:g})", t,
                        fit, "--"),
                       ("slope -3/2 in ln t (Bramson)", t, ref, ":")],
                      "t", "x(t) - v*_h t", "Fisher-KPP front: logarithmic delay", logx=True)
        v = np.gradient(x, t)
        figures.lines(ctx.figdir / "fisher-speed.png",
                      [("measured dx/dt", t, v, "-"),
                       ("2 - 3/(2t) (Bramson)", t[t > 2], 2 - 1.5 / t[t > 2], "--"),
                       ("v*_h (discrete asymptotic speed)", t, np.full_like(t, fr["vstar_h"]), ":")],
                      "t", "front speed", "Fisher-KPP front speed", logx=True)
    res.figures += [Figure("fisher-front.png", "Front position minus v*_h t against ln t: the "
                           "Bramson delay."),
                    Figure("fisher-speed.png", "Front speed approaching the asymptotic speed "
                           "from below.")]
    _collect()
    if ctx.full:
        res.tables.append(_glioma(ctx, res))
    return res


def glioma_speed(workdir: Path, comm: MPI.Comm = MPI.COMM_WORLD) -> dict[str, float]:
    """Run the bundled ``fisher-kpp`` example; its final speed against 2 sqrt(D rho) and Bramson."""
    from tumorpde.model.config import find_config, load
    from tumorpde.simulation import run

    run(load(find_config("fisher-kpp"), ["output.progress=false"]), workdir, comm)
    obs = read_observables(workdir, comm)
    t, x = obs["t"], obs["front_position"]
    D, rho = 0.13, 0.012   # mm^2/day, 1/day (the example's parameters, Swanson et al.)
    m = t >= t[-1] - 50.0
    tm = float(np.mean(t[m]))
    c = 2 * math.sqrt(D * rho)
    return {"speed": float(np.polyfit(t[m], x[m], 1)[0]), "t_mid": tm, "fisher": c,
            "bramson": c - 1.5 * math.sqrt(D / rho) / tm}


def _glioma(ctx: Ctx, res: CaseResult) -> Table:
    """The bundled fisher-kpp example (mm, day units) against 2 sqrt(D rho) with Bramson's delay."""
    g = glioma_speed(ctx.sub("fisher", "glioma"), ctx.comm)
    speed, bram, c, tm = g["speed"], g["bramson"], g["fisher"], g["t_mid"]
    res.metrics["glioma speed"] = speed
    res.checks.append(Check("glioma example: speed at t = 550-600 d vs Bramson-corrected",
                            f"{bram:.4f} mm/day ± 5%", f"{speed:.4f} mm/day",
                            abs(speed - bram) < 0.05 * bram))
    return Table("Bundled example `fisher-kpp` (glioma, D = 0.13 mm²/day, rho = 0.012/day)",
                 ["quantity", "value"],
                 [["measured speed over the last 50 days", f"{speed:.4f} mm/day"],
                  ["2 sqrt(D rho)", f"{c:.4f} mm/day"],
                  [f"2 sqrt(D rho) - (3/2) sqrt(D/rho)/t at t = {tm:.0f} d", f"{bram:.4f} mm/day"]],
                 "rho t = 7.2 at the end: the front is still far from its asymptotic speed; the "
                 "Bramson correction accounts for most of the difference.")


def case_keller_segel(ctx: Ctx) -> CaseResult:
    """Keller-Segel: the bundled example and a strongly aggregating variant."""
    res = CaseResult("keller-segel", "Keller–Segel chemotaxis: exact mass conservation and positivity")
    res.intro = (
        "The bundled example `keller-segel.toml` (cells moving up the gradient of a "
        "chemokine they secrete), and a strongly aggregating variant of it (chi = 5, initial "
        "cells `0.1 + 2 exp(-r^2/0.01)`, backward Euler) in which plain Galerkin taxis breaks "
        "down. Mass drift is `max_t |M(t) - M(0)|/M(0)` over every step; minima over every "
        "step and node.")
    rows = []
    cells, end = (None, None) if ctx.full else (24, 0.01)
    for label, data in [("bundled example (BDF2, upwind)", vc.keller_segel(cells, end)),
                        ("bundled example (BDF2, Galerkin)", vc.keller_segel(cells, end, "galerkin"))]:
        rows.append(_ks_run(ctx, label, data, res))
    strong_cells, strong_end = (48, 0.05) if ctx.full else (24, 0.02)
    for tx in ("upwind", "galerkin"):
        data = vc.keller_segel(strong_cells, strong_end, tx)
        data["parameters"]["chi"] = 5.0
        data["species"]["cells"]["initial"] = "0.1 + 2*exp(-((x-0.5)**2 + (y-0.5)**2)/0.01)"
        data["time"]["scheme"] = "backward-euler"
        rows.append(_ks_run(ctx, f"strong aggregation (chi = 5, BE, {tx})", data, res))
    res.tables.append(Table("Mass and positivity", ["run", "mesh", "status", "mass drift",
                                                    "min cells", "max cells (start → end)"], rows))
    return res


def _ks_run(ctx: Ctx, label: str, data: dict[str, Any], res: CaseResult) -> list[str]:
    out = ctx.sub("keller-segel", label.replace(" ", "_").replace(",", "").replace("(", "")
                  .replace(")", "").replace("=", ""))
    status = "completed"
    try:
        run_config(data, out, ctx.comm)
    except SolverError:
        status = "failed (Newton)"
    obs = read_observables(out, ctx.comm)
    drift, mn = _mass_drift(obs["total_cells"]), float(np.min(obs["min_cells"]))
    n = data["mesh"]["cells"][0]
    if status == "completed":  # a failed run's last step is not comparable between partitions
        res.metrics[f"~{label} mass drift"] = drift
        res.metrics[f"{label} max end"] = float(obs["max_cells"][-1])
    if "upwind" in label:
        res.checks.append(Check(f"{label}: mass conserved", "drift < 1e-10", _f(drift),
                                drift < 1e-10))
        res.checks.append(Check(f"{label}: non-negative", "min >= -1e-12", _f(mn), mn >= -1e-12))
        res.metrics[f"~{label} min"] = mn
    elif "strong" in label:
        res.checks.append(Check(f"{label}: plain Galerkin breaks down", "min < 0 or failure",
                                f"{status}, min {_f(mn)}", mn < 0 or status != "completed"))
    _collect()
    return [label, f"{n} x {n}", status, _f(drift), _f(mn),
            f"{_f(float(obs['max_cells'][0]))} → {_f(float(obs['max_cells'][-1]))}"]


# =========================================================================== 3. positivity
def ac98_min_and_mass(data: dict[str, Any], out: Path, comm: MPI.Comm = MPI.COMM_WORLD,
                      fields: bool | list[str] = False) -> dict[str, Any]:
    """Run an AC98 config; minimum of n over all steps, mass drift, observables."""
    r = run_config(data, out, comm, fields=fields)
    obs = read_observables(out, comm)
    out_d = {"min": float(np.min(obs["min_n"])), "drift": _mass_drift(obs["total_n"]),
             "steps": r.steps, "obs": obs}
    del r
    _collect()
    return out_d


def ac98_peclet(h: float) -> float:
    """Largest cell Peclet number chi(c) |grad c| h / D of the AC98 initial TAF on a mesh of size h."""
    x = np.linspace(0.0, 1.0, 20001)
    c = np.exp(-(1.0 - x) ** 2 / 0.45)
    return float(np.max(0.38 / (1.0 + 0.6 * c) * np.abs(np.gradient(c, x))) * h / 0.00035)


def ac98_self_convergence(ns: tuple[int, ...], end: float, dt: float, workdir: Path,
                          comm: MPI.Comm = MPI.COMM_WORLD, dim: int = 2) -> dict[str, list[float]]:
    """AC98 on nested meshes (fixed dt): L1/max errors of n(T) against the finest mesh.

    The errors are measured at the nodes of each coarse mesh; the last entry of ``ns`` is
    the reference.  ``pe`` is the largest cell Peclet number of each mesh.
    """
    flds, mins, drifts = [], [], []
    for n in ns:
        data = vc.ac98(n, end, dt, output_every=end, dim=dim)
        r = ac98_min_and_mass(data, workdir / f"n{n}", comm, fields=["n"])
        mins.append(r["min"])
        drifts.append(r["drift"])
        f = read_fields(workdir / f"n{n}", ["n"], comm)
        flds.append((f.x[:, :dim], f.values["n"][-1]))
    l1, mx = [], []
    xr, ur = flds[-1]
    for xc, uc in flds[:-1]:
        a, b = an.nodal_difference(xc, uc, xr, ur, float(ns[-1]), 1.0)
        l1.append(a)
        mx.append(b)
    return {"l1": l1, "max": mx, "rates": [math.log2(l1[i] / l1[i + 1]) for i in range(len(l1) - 1)],
            "min": mins, "drift": drifts, "pe": [ac98_peclet(1.0 / n) for n in ns]}


def _conv_table(title: str, ns: tuple[int, ...], sc: dict[str, list[float]], dim: int,
                note: str) -> Table:
    rows = []
    for i, m in enumerate(ns):
        rows.append([f"{m} x {m}" if dim == 2 else str(m), f"{sc['pe'][i]:.2g}", _f(sc["min"][i]),
                     _f(sc["drift"][i]), _f(sc["l1"][i]) if i < len(sc["l1"]) else "reference",
                     _f(sc["max"][i]) if i < len(sc["max"]) else "",
                     f"{sc['rates'][i - 1]:.2f}" if 0 < i < len(sc["l1"]) else ""])
    return Table(title, ["mesh", "cell Péclet", "min n", "mass drift", "L1 error", "max error",
                         "order"], rows, note)


def case_ac98_positivity(ctx: Ctx) -> CaseResult:
    """Positivity, conservation and convergence under strong taxis (AC98 parameters)."""
    res = CaseResult("ac98-positivity", "Positivity and conservation under strong taxis "
                                        "(Anderson & Chaplain 1998 parameters)")
    res.intro = (
        "The Anderson–Chaplain (1998) endothelial-cell model (section 4) with backward Euler, "
        "dt = 0.05: random motility D = 3.5e-4 against chemotaxis chi0 = 0.38 and haptotaxis "
        "rho = 0.34, so the mesh Péclet number `chi |grad c| h / D` is about 10 on a 100 x 100 "
        "mesh. n has no reaction: its mass must stay constant. Minima are over every step "
        "and node.")
    n, end = (100, 1.0) if ctx.full else (32, 0.5)
    rows = []
    for tx in ("galerkin", "upwind"):
        r = ac98_min_and_mass(vc.ac98(n, end, 0.05, taxis=tx), ctx.sub("ac98pos", tx), ctx.comm)
        rows.append([tx, f"{n} x {n}", f"{end:g}", _f(r["min"]), _f(r["drift"])])
        res.metrics[f"{'' if tx == 'galerkin' else '~'}{tx} min n"] = r["min"]
        res.metrics[f"~{tx} mass drift"] = r["drift"]
        if tx == "galerkin":
            res.checks.append(Check(f"plain Galerkin on {n} x {n} goes negative", "min < 0",
                                    _f(r["min"]), r["min"] < 0))
        else:
            res.checks.append(Check(f"edge upwind on {n} x {n}: n >= 0", "min >= -1e-12",
                                    _f(r["min"]), r["min"] >= -1e-12))
            res.checks.append(Check(f"edge upwind on {n} x {n}: mass conserved", "drift < 1e-10",
                                    _f(r["drift"]), r["drift"] < 1e-10))
    res.tables.append(Table("Galerkin and edge-upwind taxis", ["taxis", "mesh", "T", "min n",
                                                               "mass drift"], rows))
    ns1, end1, dt1 = ((100, 200, 400, 800, 1600, 3200), 1.0, 0.005) if ctx.full else \
        ((100, 200, 400, 800), 0.5, 0.01)
    sc1 = ac98_self_convergence(ns1, end1, dt1, ctx.sub("ac98conv1d"), ctx.comm, dim=1)
    res.tables.append(_conv_table(
        f"Convergence of the 1D reduction (same model on [0, 1], n(x, 0) = exp(-x^2/0.001); "
        f"BE, dt = {dt1}, T = {end1:g})", ns1, sc1, 1,
        "Errors of n(T) at the nodes of each mesh against the finest mesh (same dt, so the "
        "error is spatial). Where the cell Péclet number exceeds 2 the edge scheme upwinds "
        "(first order); once the mesh resolves the taxis (Péclet < 2) no artificial "
        "diffusion is added and the scheme is the second-order edge form of Galerkin — the "
        "large ratio across the switch is that transition, not an order."))
    for i, v in enumerate(sc1["l1"]):
        res.metrics[f"conv1d L1 {ns1[i]}"] = v
    for i, m in enumerate(ns1):
        res.metrics[f"~conv1d min n {m}"] = sc1["min"][i]
    up = [r for i, r in enumerate(sc1["rates"]) if sc1["pe"][i + 1] > 2.5]
    res.checks.append(Check("1D: converges monotonically", "L1 errors decrease",
                            " > ".join(_f(v) for v in sc1["l1"]),
                            all(a > b for a, b in zip(sc1["l1"], sc1["l1"][1:], strict=False))))
    if up:
        res.checks.append(_order_check("1D: order while upwinding (Péclet > 2)", up[0], 1.0, 0.2))
    if ctx.full:
        res.checks.append(_order_check("1D: order once resolved (Péclet < 2)", sc1["rates"][-1],
                                       2.0, 0.4))
    ns, end, dt = ((25, 50, 100, 200), 0.5, 0.02) if ctx.full else ((16, 32, 64), 0.25, 0.025)
    sc = ac98_self_convergence(ns, end, dt, ctx.sub("ac98conv"), ctx.comm)
    res.tables.append(_conv_table(
        f"Convergence in 2D (AC98 as in section 4; BE, dt = {dt}, T = {end})", ns, sc, 2,
        "Errors against the finest mesh at the coarse nodes. All these meshes upwind "
        "(Péclet > 2) and the initial sprouts `exp(-x^2/0.001)` are only a few cells wide, so "
        "the errors decrease but are still pre-asymptotic; the 1D reduction above reaches the "
        "asymptotic regime."))
    for i, v in enumerate(sc["l1"]):
        res.metrics[f"conv L1 {ns[i]}"] = v
    for i, m in enumerate(ns):
        res.metrics[f"~conv min n {m}"] = sc["min"][i]
    res.checks.append(Check("2D: errors decrease under refinement", "L1 errors decrease",
                            " > ".join(_f(v) for v in sc["l1"]),
                            all(a > b for a, b in zip(sc["l1"], sc["l1"][1:], strict=False))))
    res.checks.append(Check("non-negative and conservative on every mesh (1D and 2D)",
                            "min >= -1e-12, drift < 1e-10",
                            f"min {_f(min(sc['min'] + sc1['min']))}, "
                            f"drift {_f(max(sc['drift'] + sc1['drift']))}",
                            min(sc["min"] + sc1["min"]) >= -1e-12
                            and max(sc["drift"] + sc1["drift"]) < 1e-10))
    # chemotaxis + haptotaxis with a uniform initial fibronectin: the regression case of the
    # shared edge limiter (each term subtracting the whole diffusion went negative here)
    n2, end2 = (100, 1.0) if ctx.full else (64, 0.6)
    r = ac98_min_and_mass(vc.ac98(n2, end2, 0.05, fibronectin="0.4"), ctx.sub("ac98walup"),
                          ctx.comm)
    res.metrics["~walup min n"] = r["min"]
    res.metrics["~walup mass drift"] = r["drift"]
    res.checks.append(Check(f"chemotaxis + haptotaxis, uniform initial f = 0.4, {n2} x {n2}: "
                            "n >= 0", "min >= -1e-12", _f(r["min"]), r["min"] >= -1e-12))
    res.tables.append(Table("Chemotaxis and haptotaxis together", ["initial f", "mesh",
                            "T", "min n", "mass drift"],
                            [["0.4 (walup/Angiogenesis-Model)", f"{n2} x {n2}", f"{end2:g}",
                              _f(r["min"]), _f(r["drift"])]],
                            "With a uniform initial fibronectin the chemotactic and haptotactic "
                            "velocities add up on many edges; this case went negative (min n "
                            "about -5e-4 on 64 x 64 and 100 x 100) before the edge limiter was "
                            "shared between the taxis terms of a species (section 6)."))
    return res


# =========================================================================== 4. benchmarks
def case_ac98(ctx: Ctx) -> CaseResult:
    """Anderson & Chaplain (1998) angiogenesis: sprouts migrating towards the tumour."""
    res = CaseResult("ac98", "Anderson & Chaplain (1998): tumour-induced angiogenesis")
    n, end, dt = (100, 8.0, 0.05) if ctx.full else (40, 2.0, 0.05)
    res.intro = (
        "`dn/dt = D lap n - div(chi0/(1 + alpha c) n grad c) - div(rho n grad f)`, "
        "`df/dt = beta n - gamma n f`, `dc/dt = -eta n c` on the unit square with no flux "
        "(Anderson & Chaplain 1998, Bull Math Biol 60:857). Parameters D = 0.00035, chi0 = 0.38, "
        "alpha = 0.6, rho = 0.34, beta = 0.05, gamma = 0.1, eta = 0.1 (project notes: two "
        "independent public codes agree). Initial data used here: the *linear-source* TAF "
        "`c = exp(-(1 - x)^2/0.45)` (tumour along x = 1), fibronectin "
        "`f = 0.75 exp(-x^2/0.45)`, and six sprouts at the parent vessel "
        f"`n = exp(-x^2/0.001) sin^2(6 pi y)`. Edge-upwind taxis, backward Euler, {n} x {n}, "
        f"dt = {dt}, T = {end:g}. `front_x` is the largest x with n > 0.01 (a `maximum` "
        "observable), `centroid_x` the mean x of n.")
    out = ctx.sub("ac98")
    r = ac98_min_and_mass(vc.ac98(n, end, dt, output_every=end / 4), out, ctx.comm, fields=True)
    obs = r["obs"]
    t = obs["t"]
    res.checks.append(Check(f"{n} x {n}: n >= 0 at every step", "min >= -1e-12", _f(r["min"]),
                            r["min"] >= -1e-12))
    res.checks.append(Check(f"{n} x {n}: mass of n conserved", "drift < 1e-10", _f(r["drift"]),
                            r["drift"] < 1e-10))
    res.metrics["~min n"] = r["min"]
    res.metrics["~mass drift"] = r["drift"]
    rows = []
    marks = [end * k / 8 for k in range(9)]
    prev = None
    for tm in marks:
        i = int(np.argmin(np.abs(t - tm)))
        sp = "" if prev is None else _f((obs["centroid_x"][i] - obs["centroid_x"][prev])
                                        / (t[i] - t[prev]))
        rows.append([f"{t[i]:.3g}", _f(obs["front_x"][i]), _f(obs["centroid_x"][i]), sp,
                     _f(obs["max_n"][i])])
        res.metrics[f"front t={tm:g}"] = float(obs["front_x"][i])
        res.metrics[f"centroid t={tm:g}"] = float(obs["centroid_x"][i])
        prev = i
    res.tables.append(Table("Migration towards the tumour", ["t", "front_x", "centroid_x",
                            "centroid speed", "max n"], rows))
    mono = bool(np.all(np.diff(obs["centroid_x"]) > -1e-12))
    res.checks.append(Check("cells migrate towards the tumour (x = 1)", "centroid increases",
                            f"{_f(obs['centroid_x'][0])} → {_f(obs['centroid_x'][-1])}", mono
                            and obs["centroid_x"][-1] > obs["centroid_x"][0] + 0.1))
    fl = read_fields(out, ["f", "c"], ctx.comm)
    df = float(np.max(np.abs(fl.values["f"][-1] - fl.values["f"][0])))
    dc = float(np.max(np.abs(fl.values["c"][-1] - fl.values["c"][0])))
    res.metrics["max change f"] = df
    res.metrics["max change c"] = dc
    res.tables.append(Table("ECM and TAF", ["quantity", "value"],
                            [["max |f(T) - f(0)|", _f(df)], ["max |c(T) - c(0)|", _f(dc)],
                             ["total TAF consumed, 1 - C(T)/C(0)",
                              _f(1.0 - float(obs["total_c"][-1] / obs["total_c"][0]))]]))
    half = len(t) // 2
    v1 = (obs["centroid_x"][half] - obs["centroid_x"][0]) / (t[half] - t[0])
    v2 = (obs["centroid_x"][-1] - obs["centroid_x"][half]) / (t[-1] - t[half])
    res.metrics["speed first half"] = float(v1)
    res.metrics["speed second half"] = float(v2)
    if ctx.plot():
        from tumorpde.verification import figures

        f = read_fields(out, ["n", "f", "c"], ctx.comm, bcast=False)
        figures.snapshots_2d(ctx.figdir / "ac98-n.png", f, "n",
                             title="AC98: endothelial-cell density n")
        figures.x_profiles(ctx.figdir / "ac98-profiles.png", f,
                           [("n averaged over y", ["n"], f.times),
                            ("f and c averaged over y (dashed: t = 0)", ["f", "c"],
                             [f.times[0], f.times[-1]])],
                           title="AC98: profiles along x")
        figures.lines(ctx.figdir / "ac98-front.png",
                      [("front_x (n > 0.01)", t, obs["front_x"], "-"),
                       ("centroid_x", t, obs["centroid_x"], "--")], "t", "x",
                      "AC98: migration towards the tumour at x = 1")
    else:
        ctx.comm.Barrier()
    res.figures += [Figure("ac98-n.png", "Endothelial-cell density: the six sprouts leave the "
                           "parent vessel (x = 0), merge laterally and migrate towards the "
                           "tumour (x = 1)."),
                    Figure("ac98-front.png", "Front and centroid of n against time."),
                    Figure("ac98-profiles.png", "Averages over y: the cell density moving "
                           "towards x = 1 (left); fibronectin and TAF at the start and the end "
                           "(right).")]
    res.notes.append(
        "**Compared with the paper.** *Matched:* the endothelial cells leave the parent vessel "
        "and migrate up the TAF gradient towards the tumour against the haptotactic pull of "
        "the fibronectin gradient (AC98's continuous simulations), and the sprouts of the "
        "initial condition spread laterally and merge into one front — the behaviour of the "
        "continuous model that led AC98 to introduce their discrete (branching, anastomosing) "
        "model, which tumorpde does not implement. Because n falls to a few per cent of its "
        "initial peak as it spreads, the uptake and production terms change f and c only "
        f"slightly (max |f(T) - f(0)| = {df:.3g}, max |c(T) - c(0)| = {dc:.3g}). "
        f"*Did not match:* the front does not accelerate near the tumour: the centroid speed "
        f"falls from {v1:.3f} (first half) to {v2:.3f} (second half). With the linear-source "
        "TAF profile `exp(-(1 - x)^2/0.45)` the gradient vanishes at x = 1 and chi(c) "
        "saturates, so deceleration is what this PDE predicts; the acceleration reported for "
        "vessel tips refers to the discrete model / circular tumour source. *Not compared:* "
        "vessel-tip arrival times (not retrievable from the project's notes; no number is "
        "claimed).")
    return res


def case_ac2000(ctx: Ctx) -> CaseResult:
    """Anderson et al. (2000) haptotactic invasion with ECM and MDE (1D)."""
    res = CaseResult("ac2000", "Anderson et al. (2000): invasion by haptotaxis (ECM/MDE)")
    n, end, dt = (400, 20.0, 0.01) if ctx.full else (200, 10.0, 0.02)
    res.intro = (
        "`dn/dt = d_n n'' - gamma (n f')'`, `df/dt = -eta m f` (`diffuses = false`), "
        "`dm/dt = d_m m'' + alpha n - beta m` on [0, 1], no flux (Anderson et al. 2000, J Theor "
        "Med 2:129); d_n = 0.001, gamma = 0.005, eta = 10, d_m = 0.001, alpha = 0.1, beta = 0 "
        "(project notes). Initial data (assumed: the usual choice for the paper's 1D runs, not "
        "in the project notes): `n = exp(-x^2/0.01)`, `f = 1 - n/2`, `m = n/2`. Edge-upwind "
        f"taxis, backward Euler, {n} cells, dt = {dt}, T = {end:g}.")
    out = ctx.sub("ac2000", "main")
    r = run_config(vc.ac2000(n, end, dt), out, ctx.comm, fields=True)
    del r
    _collect()
    obs = read_observables(out, ctx.comm)
    flds = read_fields(out, ["n", "f", "m"], ctx.comm)
    drift, mn = _mass_drift(obs["total_n"]), float(np.min(obs["min_n"]))
    res.metrics["~mass drift"] = drift
    res.metrics["~min n"] = mn
    res.checks.append(Check("tumour-cell mass conserved", "drift < 1e-10", _f(drift), drift < 1e-10))
    res.checks.append(Check("tumour cells non-negative", "min >= -1e-12", _f(mn), mn >= -1e-12))
    rows, fronts, clusters = [], [], []
    for tm in flds.times:
        x, nn = an.profile(flds.x, flds.at("n", tm))
        _, ff = an.profile(flds.x, flds.at("f", tm))
        _, mm = an.profile(flds.x, flds.at("m", tm))
        front = an.crossing(x, ff, 0.5, downward=False)
        peaks = an.local_maxima(x, nn, 0.05)
        cl = max(peaks, key=lambda p: p[0]) if peaks else (float("nan"), float("nan"))
        fronts.append(front)
        clusters.append(cl[0])
        rows.append([f"{tm:g}", _f(front), _f(cl[0]), _f(cl[1]), _f(float(nn[0])),
                     _f(float(np.max(mm)))])
        res.metrics[f"ECM front t={tm:g}"] = front
        if peaks:
            res.metrics[f"cluster x t={tm:g}"] = cl[0]
    res.tables.append(Table("Invasion front and the detached cluster",
                            ["t", "ECM front (f = 1/2)", "cluster position", "cluster density",
                             "n(0)", "max m"], rows,
                            "cluster = the right-most interior local maximum of n (x > 0.05)."))
    later = [c for c in clusters[1:] if not math.isnan(c)]
    res.checks.append(Check("a cluster of cells detaches and invades ahead of the main mass",
                            "interior maximum of n moving right",
                            ", ".join(_f(c) for c in clusters[1:]),
                            len(later) >= 2 and all(b > a for a, b in zip(later, later[1:],
                                                                          strict=False))))
    res.checks.append(Check("ECM degraded behind an advancing front", "f = 1/2 moves right",
                            ", ".join(_f(v) for v in fronts),
                            all(b > a for a, b in zip(fronts[1:], fronts[2:], strict=False))))
    ns, tend = ((100, 200, 400, 800), 10.0) if ctx.full else ((50, 100, 200), 5.0)
    flist = []
    for m in ns:
        o = ctx.sub("ac2000", f"conv{m}")
        d = vc.ac2000(m, tend, 0.01 if ctx.full else 0.02)
        d["time"]["output_every"] = tend
        run_config(d, o, ctx.comm, fields=["n"])
        _collect()
        f = read_fields(o, ["n"], ctx.comm)
        flist.append((f.x[:, 0], f.values["n"][-1]))
    l1 = [an.nodal_difference(flist[i][0], flist[i][1], flist[i + 1][0], flist[i + 1][1],
                              float(ns[-1]), 1.0)[0] for i in range(len(ns) - 1)]
    rts = [math.log2(l1[i] / l1[i + 1]) for i in range(len(l1) - 1)]
    res.tables.append(Table(f"Self-convergence of n(T = {tend:g})", ["cells", "L1 |n_h - n_h/2|",
                                                                  "order"],
                            [[str(m), _f(l1[i]) if i < len(l1) else "",
                              f"{rts[i - 1]:.2f}" if 0 < i < len(l1) else ""]
                             for i, m in enumerate(ns)]))
    for i, v in enumerate(l1):
        res.metrics[f"conv L1 {ns[i]}"] = v
    res.checks.append(Check("self-convergence", "order > 0.7", ", ".join(f"{r:.2f}" for r in rts),
                            all(r > 0.7 for r in rts)))
    if ctx.plot():
        from tumorpde.verification import figures

        figures.profiles_1d(ctx.figdir / "ac2000.png", flds, ["n", "f", "m"],
                            title="AC2000: tumour cells n, ECM f, MDE m")
    res.figures.append(Figure("ac2000.png", "Tumour cells (n), ECM (f) and MDE (m)."))
    res.notes.append(
        "**Compared with the paper** (from recollection of AC2000's 1D figures; the project "
        "notes give only the parameters, so this comparison is qualitative). *Matched:* the "
        "tumour cells invade the ECM by haptotaxis up the gradients created by MDE "
        "degradation; the ECM is removed behind an advancing front; a small cluster of cells "
        "separates from the main body and moves ahead of it, while the main mass at x = 0 "
        "decays only by spreading (no proliferation in this model, and the cell mass is "
        "conserved to round-off). *Not compared:* positions or times of the paper's figures "
        "(not available in the project's notes).")
    return res


def gg_run(delta1: float, n: int, length: float, end: float, dt: float, workdir: Path,
           comm: MPI.Comm = MPI.COMM_WORLD) -> dict[str, Any]:
    """One Gatenby-Gawlinski run: speed, front, normal tissue behind it, gap width."""
    run_config(vc.gatenby_gawlinski(delta1, n, length, end, dt), workdir, comm, fields=True)
    _collect()
    obs = read_observables(workdir, comm)
    f = read_fields(workdir, ["normal", "tumour", "acid"], comm)
    t = obs["t"]
    m = t >= end / 2
    speed = float(np.polyfit(t[m], obs["tumour_front"][m], 1)[0])
    x, tu = an.profile(f.x, f.at("tumour", end))
    _, no = an.profile(f.x, f.at("normal", end))
    _, ac = an.profile(f.x, f.at("acid", end))
    front = an.crossing(x, tu, 0.5)
    i0 = int(np.searchsorted(x, front))
    normal_front = an.crossing(x, no, 0.5, start=i0, downward=False)
    if no[min(i0, len(no) - 1)] >= 0.5:
        normal_front = front  # normal tissue present at the tumour front: no separation
    xb = front - 0.15 * min(1.0, length)
    normal_behind = float(np.interp(xb, x, no))
    acid_behind = float(np.interp(xb, x, ac))
    return {"speed": speed, "front": front, "normal_behind": normal_behind,
            "acid_behind": acid_behind, "predicted": max(0.0, 1.0 - delta1 * acid_behind),
            "gap": an.gap_width(x, tu, no, front), "separation": normal_front - front,
            "min_tumour": float(np.min(obs["min_tumour"])),
            "fields": f}


def case_gatenby(ctx: Ctx) -> CaseResult:
    """Gatenby & Gawlinski (1996): acid-mediated invasion and the interstitial gap."""
    res = CaseResult("gatenby-gawlinski", "Gatenby & Gawlinski (1996): acid-mediated invasion")
    deltas = (0.5, 0.9, 1.5, 3.0, 12.5) if ctx.full else (0.5, 12.5)
    n, length, end, dt = (1500, 1.5, 60.0, 0.05) if ctx.full else (500, 1.0, 30.0, 0.1)
    c = 2 * math.sqrt(1.0 * 4e-5)
    res.intro = (
        "`normal' = normal (1 - normal) - delta1 acid normal` (`diffuses = false`), "
        "`tumour' = rho2 tumour (1 - tumour) + (Delta2 (1 - normal) tumour')'`, "
        "`acid' = delta3 (tumour - acid) + acid''` on [0, L] with no flux (Gatenby & Gawlinski "
        "1996, nondimensional); rho2 = 1, Delta2 = 4e-5, delta3 = 70 (PMC3005191 table; a "
        "public code uses 110), delta1 varied. Tumour initially on x < 0.1 "
        f"(tanh profile), normal tissue elsewhere, no acid. P1, BDF2, {n} cells, L = {length:g}, "
        f"dt = {dt}, T = {end:g}. Speed: slope of `integral(tumour)` over t >= T/2. "
        "'Normal behind' is the normal density 0.15 behind the tumour front (tumour = 1/2), "
        "where the theory of the travelling wave gives `max(0, 1 - delta1 acid)`. Gap: the "
        "length ahead of the front where both tumour and normal densities are below 0.1.")
    rows, panels, seps = [], [], []
    for d1 in deltas:
        g = gg_run(d1, n, length, end, dt, ctx.sub("gg", f"d{d1:g}"), ctx.comm)
        rows.append([f"{d1:g}", _f(g["speed"]), f"{g['speed'] / c:.3f}", _f(g["front"]),
                     _f(g["normal_behind"]), _f(g["predicted"]), _f(g["separation"]),
                     _f(g["gap"]), _f(g["min_tumour"])])
        seps.append(g["separation"])
        for k in ("speed", "front", "normal_behind", "gap", "separation"):
            res.metrics[f"delta1={d1:g} {k}"] = g[k]
        res.checks.append(Check(f"delta1 = {d1:g}: normal tissue behind the front",
                                f"max(0, 1 - delta1 acid) = {g['predicted']:.3f} ± 0.05",
                                f"{g['normal_behind']:.3f}",
                                abs(g["normal_behind"] - g["predicted"]) < 0.05))
        if d1 < 1:
            res.checks.append(Check(f"delta1 = {d1:g} < 1: no interstitial gap", "gap = 0",
                                    _f(g["gap"]), g["gap"] == 0.0))
        if d1 >= 10:
            res.checks.append(Check(f"delta1 = {d1:g} >> 1: acellular interstitial gap", "gap > 0",
                                    _f(g["gap"]), g["gap"] > 0.0))
        if d1 >= 12:
            res.checks.append(Check(f"delta1 = {d1:g}: front speed ≈ Fisher speed 2 sqrt(rho2 Delta2)",
                                    f"{c:.5f} ± 5%", _f(g["speed"]),
                                    abs(g["speed"] - c) < 0.05 * c))
        panels.append((f"delta1 = {d1:g}", g["fields"], end))
    res.checks.append(Check("separation of the normal-tissue front from the tumour front grows "
                            "with delta1", "non-decreasing, > 0 for the largest",
                            ", ".join(_f(v) for v in seps),
                            all(b >= a for a, b in zip(seps, seps[1:], strict=False))
                            and seps[-1] > 0))
    res.tables.append(Table(f"Invasion fronts at T = {end:g} (Fisher speed 2 sqrt(rho2 Delta2) = "
                            f"{c:.5f})", ["delta1", "speed", "speed / Fisher", "front",
                                          "normal behind", "max(0, 1 - delta1 acid)",
                                          "separation", "gap", "min tumour"], rows,
                            "front: tumour = 1/2; separation: distance from the tumour front to "
                            "where the normal tissue ahead of it recovers to 1/2 (0 when normal "
                            "tissue is present at the front); gap: length ahead of the front "
                            "where both densities are below 0.1."))
    if ctx.plot():
        from tumorpde.verification import figures

        figures.panels_1d(ctx.figdir / "gatenby-gawlinski.png", panels,
                          ["normal", "tumour", "acid"],
                          title=f"Gatenby-Gawlinski at T = {end:g}", xlim=(0, length))
    res.figures.append(Figure("gatenby-gawlinski.png", "Normal tissue, tumour and acid at the "
                              "final time for each delta1: coexistence behind the front for "
                              "delta1 < 1, a hypocellular gap ahead of the front for large "
                              "delta1."))
    res.notes.append(
        "**Compared with the paper** (GG 1996 as summarised in the project notes). *Matched:* "
        "the transition at delta1 = 1 — normal tissue survives behind the tumour front at "
        "`1 - delta1` (acid ≈ 1 there) for delta1 < 1 and is destroyed for delta1 > 1; for large "
        "delta1 an acellular interstitial gap separates the advancing tumour from the retreating "
        "normal tissue; the front then advances at close to the Fisher–KPP speed of the "
        "tumour, 2 sqrt(rho2 Delta2). *Partly matched:* for delta1 just above 1 (1.5 and 3 "
        "here) the normal tissue ahead of the front dies only slowly (rate delta1 acid - 1 "
        "with acid < 1 ahead of the front), so the retreating normal-tissue front stays close "
        "to the tumour front (separation in the table) and no region with both densities below "
        "0.1 forms; an acellular gap appears for delta1 well above 1 (12.5). Below "
        "delta1 = 1 the tumour still invades, but more slowly, because its diffusivity "
        "Delta2 (1 - normal) is reduced by the surviving tissue.")
    return res


CASES: dict[str, Callable[[Ctx], CaseResult]] = {
    "mms-space": case_mms_space,
    "mms-time": case_mms_time,
    "diffusion-decay": case_diffusion_decay,
    "fisher-kpp": case_fisher,
    "keller-segel": case_keller_segel,
    "ac98-positivity": case_ac98_positivity,
    "ac98": case_ac98,
    "ac2000": case_ac2000,
    "gatenby-gawlinski": case_gatenby,
}


def run_case(key: str, ctx: Ctx) -> CaseResult:
    """Run one case and time it (collective)."""
    ctx.comm.Barrier()
    t0 = time.perf_counter()
    res = CASES[key](ctx)
    res.seconds = time.perf_counter() - t0
    _collect()
    return res
