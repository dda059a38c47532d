"""(g) Virtual trial: control versus each monotherapy of the tme model and three rational
combinations, on the same virtual cohort of tumours (tme-metastasis: a primary tumour
seeding a lung section), with effect sizes on the primary burden, the metastatic burden,
the circulating cells and each drug's target.

    python experiments/virtual-trial/run.py [--size full|medium|small] [--samples 3] [--arms A,B]

Every tumour of the cohort (parameters drawn by Latin hypercube within the ranges of the
cohort experiment) is run once per arm; treatment starts on day 14 (day 4 at size small)
with each drug's standard regimen (docs/model.md).  Effect sizes are ratios treated /
control of the same tumour, summarised over the cohort by their geometric mean and range:
burdens and circulating cells at the end of follow-up, and each drug's pharmacodynamic
target (vessel density, CAF density, M2 share) as its mean over the drug's course, from
the first dose to one dosing interval after the last (on treatment).  ``--reuse`` redraws
figures and tables from the runs of a previous call.
"""

import json
import math

from mpi4py import MPI

import numpy as np
from scipy.stats import qmc

from tumorpde.apps.study import Variant, experiment_setup, read_series, run_variants
from tumorpde.model.config import check, find_config, load

SCENARIO = "tme-metastasis"
# resolution of each size for this scenario (two organs side by side: 7 mm x 4.5 mm, cells
# whose edges meet the lung's at y = 0 and 3)
MESH = {"full": [], "medium": ["mesh.cells=[36, 24]", "time.dt=2.0"],
        "small": ["mesh.cells=[28, 18]"]}
START = {"full": 14.0, "medium": 14.0, "small": 4.0}
# arm -> drugs given (each with its standard regimen)
ARMS = {
    "control": [],
    "anti_vegf": ["anti_vegf"],
    "tgfb_inhibitor": ["tgfb_inhibitor"],
    "csf1r_inhibitor": ["csf1r_inhibitor"],
    "checkpoint_inhibitor": ["checkpoint_inhibitor"],
    "chemotherapy": ["chemotherapy"],
    "radiotherapy": ["radiotherapy"],
    # vascular normalisation improves T-cell entry (atezolizumab + bevacizumab, Finn et al.,
    # N Engl J Med 382:1894, 2020)
    "anti_vegf+checkpoint_inhibitor": ["anti_vegf", "checkpoint_inhibitor"],
    # TGF-beta blockade of the stroma with a cytotoxic (galunisertib + gemcitabine, Melisi et
    # al., Br J Cancer 119:1208, 2018)
    "tgfb_inhibitor+chemotherapy": ["tgfb_inhibitor", "chemotherapy"],
    # depleting suppressive macrophages to release T cells (Zhu et al., Cancer Res 74:5057, 2014)
    "csf1r_inhibitor+checkpoint_inhibitor": ["csf1r_inhibitor", "checkpoint_inhibitor"],
}
# the quantity each drug acts on (all should fall); markers are averaged over the drug's
# course (on treatment), burdens taken at the end of follow-up
TARGETS = {
    "anti_vegf": "vessel_density_tumor",
    "tgfb_inhibitor": "caf_density_tumor",
    "csf1r_inhibitor": "m2_share",
    "checkpoint_inhibitor": "primary_burden",
    "chemotherapy": "primary_burden",
    "radiotherapy": "primary_burden",
}
MARKERS = {"vessel_density_tumor", "caf_density_tumor", "m2_share"}
# parameter: (low, high, unit), the ranges of experiments/cohort
RANGES = {
    "rho_tumor": (0.1, 0.3, "1/day"),
    "r_vessel": (0.1, 0.6, "1/day"),
    "activation_caf": (0.1, 1.0, "1/day"),
    "polarise_m2": (0.1, 1.5, "1/day"),
    "recruit_tcell": (0.02, 0.3, "1/day"),
}
OUTCOMES = ["primary_burden", "metastatic_burden", "ctc_released", "seeded_cells"]

args, out, runs = experiment_setup(__file__, __doc__, {
    "--samples": {"type": int, "default": 3, "help": "number of virtual tumours"},
    "--seed": {"type": int, "default": 2008, "help": "seed of the Latin hypercube"},
    "--arms": {"default": ",".join(ARMS), "help": "comma-separated arms (default: all)"},
    "--reuse": {"action": "store_true", "help": "use the runs of a previous call (same options)"}})
comm = MPI.COMM_WORLD
arms = [a for a in args.arms.split(",") if a]
unknown = [a for a in arms if a not in ARMS]
if unknown:
    raise SystemExit(f"unknown arms {unknown} (arms: {', '.join(ARMS)})")
if "control" not in arms:
    arms.insert(0, "control")

names = list(RANGES)
unit = qmc.LatinHypercube(d=len(names), seed=args.seed).random(args.samples)
lo = np.array([RANGES[n][0] for n in names])
hi = np.array([RANGES[n][1] for n in names])
cohort = lo + unit * (hi - lo)
start = START[args.size]
variants = []
for arm in arms:
    therapy = ", ".join(f'{{drug = "{d}", start = {start}}}' for d in ARMS[arm])
    for i, row in enumerate(cohort):
        sets = [f'parameters.{n}.value="{v:.6g} {RANGES[n][2]}"'
                for n, v in zip(names, row, strict=True)]
        variants.append(Variant(f"{arm}/tumour-{i}", set=[*sets, f"therapy=[{therapy}]"]))
if args.reuse:
    res = {}
    for v in variants:
        series = comm.bcast(read_series(runs / v.name) if comm.rank == 0 else None, root=0)
        res[v.name] = {"series": series, "final": {k: c[-1] for k, c in series.items()}}
else:
    res = run_variants(SCENARIO, variants, runs, args.size, MESH[args.size])
t_end = res["control/tumour-0"]["series"]["t"][-1]


def course(drug: str) -> tuple[float, float]:
    """From the first dose to one dosing interval after the last (within follow-up)."""
    cfg = load(find_config(SCENARIO), [f'therapy=[{{drug = "{drug}", start = {start}}}]'])
    times = check(cfg).plan.drugs[drug].times
    gap = float(times[-1] - times[-2]) if times.size > 1 else 1.0
    return float(times[0]), min(float(times[-1]) + gap, t_end)


def _distinct(t: list[float], v: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Rows with distinct times (the last of rows that share one)."""
    t, v = np.asarray(t), np.asarray(v)
    keep = np.r_[t[1:] != t[:-1], True]
    return t[keep], v[keep]


def window_mean(series: dict, col: str, t0: float, t1: float) -> float:
    """Time average of a column over [t0, t1] (trapezoidal rule, linear in between rows)."""
    t = np.asarray(series["t"])
    v = np.asarray(series[col])
    inside = (t >= t0) & (t <= t1)
    ts, vs = t[inside], v[inside]  # rows in the window (a fraction's two rows: a jump)
    if ts.size == 0 or ts[0] > t0:
        ts, vs = np.r_[t0, ts], np.r_[np.interp(t0, *_distinct(t, v)), vs]
    if ts[-1] < t1:
        ts, vs = np.r_[ts, t1], np.r_[vs, np.interp(t1, *_distinct(t, v))]
    return float(np.trapezoid(vs, ts) / (t1 - t0))


def gmean_range(values: list[float]) -> dict[str, float]:
    """Geometric mean, minimum and maximum of positive ratios."""
    v = np.asarray(values, dtype=float)
    pos = v[v > 0]
    g = float(np.exp(np.mean(np.log(pos)))) if pos.size == v.size else float(np.mean(v))
    return {"ratio": g, "min": float(v.min()), "max": float(v.max())}


def ratio(a: float, b: float) -> float:
    """a/b (1 when both vanish, inf when only b does)."""
    if b == 0:
        return 1.0 if a == 0 else math.inf
    return a / b


summary: dict = {}
for arm in arms:
    if arm == "control":
        continue
    entry = {}
    outcomes = list(OUTCOMES)
    for col in outcomes:
        entry[col] = gmean_range([ratio(res[f"{arm}/tumour-{i}"]["final"][col],
                                        res[f"control/tumour-{i}"]["final"][col])
                                  for i in range(args.samples)])
    for d in ARMS[arm]:
        col = TARGETS[d]
        if col in MARKERS:
            t0, t1 = course(d)
            entry[col] = gmean_range([
                ratio(window_mean(res[f"{arm}/tumour-{i}"]["series"], col, t0, t1),
                      window_mean(res[f"control/tumour-{i}"]["series"], col, t0, t1))
                for i in range(args.samples)])
            entry[col]["window"] = [t0, t1]
    entry["targets"] = {d: TARGETS[d] for d in ARMS[arm]}
    summary[arm] = entry

if comm.rank == 0:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10")
    colours = {a: cmap(i % 10) for i, a in enumerate(arms)}
    panels = [("primary_burden", "primary tumour burden (mm$^2$)", None),
              ("metastatic_burden", "metastatic burden in the lung (mm$^2$)", 1e-5),
              ("ctc_count", "circulating tumour cells (cells)", 1e-2)]
    fig, axes = plt.subplots(1, len(panels), figsize=(15, 4.6))
    for ax, (col, label, floor) in zip(axes, panels, strict=True):
        for arm in arms:
            series = [res[f"{arm}/tumour-{i}"]["series"] for i in range(args.samples)]
            t = np.asarray(series[0]["t"])
            if all(np.array_equal(s["t"], t) for s in series):  # the same steps: rows match
                mean = np.mean([s[col] for s in series], axis=0)
            else:  # (a fraction's two rows share a time: interpolate between distinct times)
                mean = np.mean([np.interp(t, *_distinct(s["t"], s[col])) for s in series], axis=0)
            ax.plot(t, mean, lw=2.2 if "+" in arm or arm == "control" else 1.6,
                    ls="--" if "+" in arm else "-", color=colours[arm], label=arm)
        ax.axvline(start, color="0.6", lw=0.8, ls=":")
        if floor is not None:  # log scale from a floor (the curves start at 0)
            ax.set_yscale("log")
            ax.set_ylim(bottom=floor)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("time (day)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"Virtual trial on {args.samples} virtual tumours ({SCENARIO}, cohort mean; "
                 f"treatment from day {start:g})")
    fig.tight_layout()
    fig.savefig(out / "figure.png", dpi=110)
    plt.close(fig)

    # effect sizes: log2 of the geometric-mean ratio, with the cohort range
    treated = [a for a in arms if a != "control"]
    fig, ax = plt.subplots(figsize=(10, 4.8))
    width = 0.2
    x = np.arange(len(treated))
    for j, col in enumerate(["primary_burden", "metastatic_burden", "ctc_released"]):
        g = np.array([summary[a][col]["ratio"] for a in treated])
        lo_ = np.array([summary[a][col]["min"] for a in treated])
        hi_ = np.array([summary[a][col]["max"] for a in treated])
        y = np.log2(np.maximum(g, 1e-6))
        err = np.maximum([y - np.log2(np.maximum(lo_, 1e-6)),
                          np.log2(np.maximum(hi_, 1e-6)) - y], 0.0)  # (rounding)
        ax.bar(x + (j - 1) * width, y, width, yerr=err, capsize=2, label=col.replace("_", " "))
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(x, [a.replace("+", "+\n") for a in treated], fontsize=7, rotation=30,
                  ha="right")
    ax.set_ylabel("log2(treated / control)")
    ax.set_title("Effect sizes at the end of follow-up (geometric mean over the cohort, "
                 "bars: range)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "effects.png", dpi=110)
    plt.close(fig)

    lines = ["# Virtual trial: effect sizes", "",
             "<!-- generated by experiments/virtual-trial/run.py -->", "",
             f"Scenario `{SCENARIO}` at size `{args.size}`, {args.samples} virtual tumours, "
             f"treatment from day {start:g}, follow-up to day "
             f"{t_end:g}. Each entry is the geometric mean over the cohort of treated / control "
             "for the same tumour (range in brackets); below 1 means lower than without "
             "treatment. Burdens, circulating cells released and cells seeded in the lung are "
             "taken at the end of follow-up; the markers a drug targets (vessel density in the "
             "tumour, CAF density in the tumour, M2 share of macrophages) are averaged over the "
             "drug's course (days in brackets), i.e. measured on treatment.", "",
             "| arm | primary burden | metastatic burden | CTCs released | cells seeded | "
             "target: ratio |", "|---|---|---|---|---|---|"]

    def cell(e: dict) -> str:
        return f"{e['ratio']:.3g} [{e['min']:.3g}-{e['max']:.3g}]"

    for arm in treated:
        e = summary[arm]
        tgt = "; ".join(f"{d} -> {c}: {e[c]['ratio']:.3g}" +
                        (" (days {:g}-{:g})".format(*e[c]["window"]) if "window" in e[c] else "")
                        for d, c in e["targets"].items())
        lines.append(f"| {arm} | {cell(e['primary_burden'])} | {cell(e['metastatic_burden'])} | "
                     f"{cell(e['ctc_released'])} | {cell(e['seeded_cells'])} | {tgt} |")
    control = [res[f"control/tumour-{i}"]["final"] for i in range(args.samples)]
    lines += ["", "Control arm at the end of follow-up (cohort mean): " + ", ".join(
        f"{c} = {np.mean([r[c] for r in control]):.3g}"
        for c in ["primary_burden", "metastatic_burden", "ctc_count", "seeded_cells",
                  "niche_strength"]) + ".", ""]
    (out / "effects.md").write_text("\n".join(lines))
    (out / "results.json").write_text(json.dumps(
        {"summary": summary, "size": args.size, "samples": args.samples, "start": start,
         "ranges": {k: list(v) for k, v in RANGES.items()},
         "cohort": [dict(zip(names, map(float, row), strict=True)) for row in cohort],
         "final": {v.name: res[v.name]["final"] for v in variants}}, indent=2) + "\n")
    print("\n".join(lines))
