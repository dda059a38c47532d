"""Scratch assay (PC-3, Jin et al. 2016): Fisher-KPP and Porous-Fisher fitted to the density profiles up to 24 h, then forecast at 36 and 48 h, for each initial density.

Prediction, stated before the run (the finding of Jin et al. 2016 and of the Simpson group's
later re-analyses): the Fisher-KPP estimates of D and r drift with the initial density (cells
seeded per well), those of the Porous-Fisher model less, measured by the coefficient of
variation of D across the densities (it holds where Porous-Fisher's is at least 10 % smaller;
the 10 % margin was set after a first run showed the two within 5 %).  The fits are bounded least squares
with exact derivatives of the discrete runs (`tumorpde calibrate`), noise variance estimated,
Wald and profile-likelihood 95 % intervals;
the carrying capacity K = 1.7e-3 cells/um^2 is fixed (Jin et al. 2016).  Data: 3 replicates per
50 um bin at 12, 24 (fitted), 36 and 48 h (forecast).  Two starts of the model: from the
replicates' mean profile at 0 h (fitted to 12 and 24 h), and from the 12 h profile (fitted to
24 h), which leaves out the first 12 h after scratching.

python experiments/scratch-assay/run.py [--size full|medium|small]
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from tumorpde.apps.calibrate import run_calibration
from tumorpde.apps.study import experiment_setup

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parents[1].parent / "shared" / "data" / "jin2016"
MODELS = {"fisher-kpp": "Fisher-KPP", "porous-fisher": "Porous-Fisher"}
DENSITIES = {"small": [10, 16], "medium": [10, 12, 14, 16], "full": [10, 12, 14, 16]}
STARTS = {"small": 1, "medium": 3, "full": 5}
PROFILE = {"small": 0, "medium": 9, "full": 15}  # points of each profile likelihood
#: where the model starts (h): the initial profile is the replicates' mean at that time
VARIANTS = {"from-0h": 0.0, "from-12h": 12.0}
HEADER = ("# PC-3 scratch assay, {n},000 cells seeded per well: Jin W, Shah ET, Penington CJ, "
          "McCue SW,\n# Chopin LK, Simpson MJ. J Theor Biol 390:136-145 (2016); MIT licence "
          "(EquationLearning.jl,\n# VandenHeuvel et al. 2022). Converted by "
          "experiments/scratch-assay/run.py: one row per bin\n# and replicate, density in 1e-3 "
          "cells/um^2, x = bin centre (um), t in h.\n")


def source_dir() -> Path:
    """``shared/data/jin2016`` beside the checkout (or $TUMORPDE_DATA/jin2016)."""
    import os

    env = os.environ.get("TUMORPDE_DATA")
    return Path(env) / "jin2016" if env else SOURCE


def _rows(n: int) -> list[dict[str, str]]:
    """The rows of ``CellDensity_N.csv``; without the original files (a clone on its own),
    rebuilt from the converted copies committed in ``data/`` (same numbers)."""
    src = source_dir() / f"CellDensity_{n}.csv"
    if src.exists():
        with open(src, newline="", encoding="utf-8-sig") as f:
            return list(csv.DictReader(f))
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for name in (f"jin2016-{n}-initial.csv", f"jin2016-{n}.csv"):
        with open(HERE / "data" / name, newline="") as f:
            lines = [line for line in f if not line.startswith("#")]
        for r in csv.DictReader(lines):
            row = rows.setdefault((r["t"], r["x"]), {"Time": r["t"], "Position": r["x"]})
            k = sum(key.startswith("Dens") for key in row) + 1
            row[f"Dens{k}"] = repr(float(r["value"]) / 1e3)
    return list(rows.values())


def convert(n: int, folder: Path) -> tuple[Path, Path, Path]:
    """The long-format files of one density: the 0 h rows, the later rows, those after 12 h."""
    rows = _rows(n)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, keep in ((f"jin2016-{n}-initial.csv", lambda t: t == 0),
                       (f"jin2016-{n}.csv", lambda t: t > 0),
                       (f"jin2016-{n}-after12.csv", lambda t: t > 12)):
        path = folder / name
        with open(path, "w", newline="") as f:
            f.write(HEADER.format(n=n))
            w = csv.writer(f)
            w.writerow(["t", "x", "field", "value"])
            for r in rows:
                if keep(float(r["Time"])):
                    for k in (1, 2, 3):
                        w.writerow([r["Time"], r["Position"], "cells",
                                    repr(float(r[f"Dens{k}"]) * 1e3)])
        out.append(path)
    return out[0], out[1], out[2]


def predictions(path: Path) -> dict[str, np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([float(r[k]) for r in rows]) for k in ("t", "x", "value", "fitted",
                                                               "model", "lo", "hi")}


def main() -> None:
    args, out, runs = experiment_setup(__file__, __doc__)
    densities = DENSITIES[args.size]
    data_dir = HERE / "data" if args.output is None else out / "data"
    cells = {"small": 38, "medium": 76, "full": 152}[args.size]
    dt = {"small": 1.0, "medium": 0.5, "full": 0.25}[args.size]
    summary: dict[str, float | str] = {}
    table: dict[str, dict] = {}
    fits: dict[str, dict] = {}
    for variant, start in VARIANTS.items():
        results: dict[str, dict[str, dict]] = {m: {} for m in MODELS}
        for n in densities:
            initial, later, after12 = convert(n, data_dir)
            init, data = (initial, later) if start == 0 else (later, after12)
            for model in MODELS:
                res = run_calibration(
                    str(HERE / f"{model}.toml"), [str(data)], [], until=24.0,
                    output=runs / variant / f"{model}-{n}", starts=STARTS[args.size],
                    progress=False, profile=PROFILE[args.size],
                    # only this density's data (not the 10,000-cell set of [calibration])
                    overrides=["calibration.data=[]", f'species.cells.initial.data="{init}"',
                               f"species.cells.initial.time={start}", f"time.start={start}",
                               f"mesh.cells=[{cells}]", f"time.dt={dt}", "output.progress=false"])
                rec = json.loads((res.outdir / "calibration.json").read_text())
                pred = predictions(res.outdir / "predictions.csv")
                errors = {}
                for t in (36.0, 48.0):
                    sel = pred["t"] == t
                    rmse = float(np.sqrt(np.mean((pred["model"][sel] - pred["value"][sel]) ** 2)))
                    errors[f"{t:g}h"] = {"rmse": rmse,
                                         "relative": rmse / float(np.mean(pred["value"][sel]))}
                results[model][str(n)] = {"calibration": rec, "forecast": errors, "pred": pred}
                est = {k: v["estimate"] for k, v in rec["parameters"].items()}
                print(f"{variant} {MODELS[model]:<14} {n}k: D={est['D']:.4g} r={est['r']:.4g} "
                      f"AIC={rec['aic']:.1f} forecast 48 h rel RMSE "
                      f"{errors['48h']['relative']:.3f}", flush=True)
        summary.update({f"{variant}_{k}": v for k, v in summarise(results, densities).items()})
        table[variant] = {
            m: {n: {"parameters": r["calibration"]["parameters"], "aic": r["calibration"]["aic"],
                    "bic": r["calibration"]["bic"], "objective": r["calibration"]["objective"],
                    "n_data": r["calibration"]["n_data"], "forecast": r["forecast"],
                    "seconds": r["calibration"]["timings"]["total"]}
                for n, r in per.items()} for m, per in results.items()}
        fits[variant] = results
    (out / "results.json").write_text(json.dumps({"summary": summary, "fits": table,
                                                  "conclusion": conclusion(summary, densities)},
                                                 indent=2) + "\n")
    figure(fits, densities, out / "figure.png")
    print(json.dumps(summary, indent=1))


def summarise(results: dict, densities: list[int]) -> dict[str, float | str]:
    """Estimates per density and model, their spread across densities, and the verdict."""
    s: dict[str, float | str] = {}
    cv: dict[str, dict[str, float]] = {}
    for model, per in results.items():
        cv[model] = {}
        for key in ("D", "r"):
            vals = np.array([per[str(n)]["calibration"]["parameters"][key]["estimate"]
                             for n in densities])
            for n, v in zip(densities, vals, strict=True):
                ci = per[str(n)]["calibration"]["parameters"][key]["ci95"]
                s[f"{model}_{key}_{n}k"] = float(v)
                s[f"{model}_{key}_{n}k_ci95"] = f"[{ci[0]:.3g}, {ci[1]:.3g}]"
                prof = per[str(n)]["calibration"].get("profiles", {}).get(key)
                if prof:
                    ends = ["-" if e is None else f"{e:.3g}" for e in prof["ci95"]]
                    s[f"{model}_{key}_{n}k_profile_ci95"] = f"[{ends[0]}, {ends[1]}]"
            cv[model][key] = float(np.std(vals) / np.mean(vals))
            s[f"{model}_{key}_cv_across_densities"] = cv[model][key]
        s[f"{model}_mean_forecast_rel_rmse_48h"] = float(np.mean(
            [per[str(n)]["forecast"]["48h"]["relative"] for n in densities]))
        bias = [np.mean((per[str(n)]["pred"]["model"] - per[str(n)]["pred"]["value"])
                        [per[str(n)]["pred"]["t"] == 48.0]) for n in densities]
        s[f"{model}_mean_forecast_bias_48h"] = float(np.mean(bias))
        s[f"{model}_mean_aic"] = float(np.mean([per[str(n)]["calibration"]["aic"]
                                               for n in densities]))
    fk, pf = cv["fisher-kpp"]["D"], cv["porous-fisher"]["D"]
    s["prediction_D_drifts_less_with_porous_fisher"] = (
        "holds" if pf < 0.9 * fk else "is reversed" if fk < 0.9 * pf else
        "is not supported (the spreads are within 10 % of each other)")
    better = sum(results["porous-fisher"][str(n)]["calibration"]["aic"] <
                 results["fisher-kpp"][str(n)]["calibration"]["aic"] for n in densities)
    s["densities_where_porous_fisher_has_lower_aic"] = f"{better} of {len(densities)}"
    return s


def conclusion(s: dict[str, float | str], densities: list[int]) -> str:
    """What the numbers say, in words (written from the numbers, for RESULTS.md)."""
    lo, hi = densities[0], densities[-1]
    parts = []
    for v in VARIANTS:
        fk, pf = s[f"{v}_fisher-kpp_D_cv_across_densities"], s[f"{v}_porous-fisher_D_cv_across_densities"]
        parts.append(
            f"Starting {v[5:]}: the prediction {s[f'{v}_prediction_D_drifts_less_with_porous_fisher']} "
            f"for D (coefficient of variation across densities {fk:.3f} for Fisher-KPP, {pf:.3f} "
            f"for Porous-Fisher: {_margin(float(fk), float(pf))}); r goes from {s[f'{v}_fisher-kpp_r_{lo}k']:.3g} to "
            f"{s[f'{v}_fisher-kpp_r_{hi}k']:.3g} /h (Fisher-KPP) and from "
            f"{s[f'{v}_porous-fisher_r_{lo}k']:.3g} to {s[f'{v}_porous-fisher_r_{hi}k']:.3g} /h "
            f"(Porous-Fisher) between {lo},000 and {hi},000 cells (coefficients of variation "
            f"{float(s[f'{v}_fisher-kpp_r_cv_across_densities']):.2f} and "
            f"{float(s[f'{v}_porous-fisher_r_cv_across_densities']):.2f}). The 48 h forecasts "
            f"miss by "
            f"{100 * float(s[f'{v}_fisher-kpp_mean_forecast_rel_rmse_48h']):.0f} % and "
            f"{100 * float(s[f'{v}_porous-fisher_mean_forecast_rel_rmse_48h']):.0f} % "
            f"(RMSE over the mean density){_open_profiles(s, v, densities)}; the mean error "
            f"at 48 h is "
            f"{float(s[f'{v}_fisher-kpp_mean_forecast_bias_48h']):+.3g} and "
            f"{float(s[f'{v}_porous-fisher_mean_forecast_bias_48h']):+.3g} (1e-3 cells/um^2: "
            f"{_sign([float(s[f'{v}_{m}_mean_forecast_bias_48h']) for m in MODELS])}); AIC "
            f"prefers Porous-Fisher at {s[f'{v}_densities_where_porous_fisher_has_lower_aic']} "
            f"densities.")
    return " ".join(parts)


def _margin(fk: float, pf: float) -> str:
    """How far apart the two spreads are, in words."""
    diff = (fk - pf) / max(fk, pf)
    size = "a marginal" if abs(diff) < 0.1 else "a clear"
    return f"{size} difference of {100 * abs(diff):.0f} %"


def _sign(bias: list[float]) -> str:
    """What the mean forecast errors of the two models say about the growth after 24 h."""
    if all(b < 0 for b in bias):
        return "both under-predict the growth after 24 h"
    if all(b > 0 for b in bias):
        return "both over-predict the growth after 24 h"
    return "one under-, one over-predicts the growth after 24 h"


def _open_profiles(s: dict[str, float | str], variant: str, densities: list[int]) -> str:
    """A note on the profile intervals of D that the grid did not close (identifiability)."""
    notes = []
    for model in MODELS:
        keys = [f"{variant}_{model}_D_{n}k_profile_ci95" for n in densities]
        if not all(k in s for k in keys):
            return ""
        n_open = sum("-" in str(s[k]).replace("e-", "e") for k in keys)
        if n_open:
            notes.append(f"{MODELS[model]}'s D at {n_open} of {len(densities)} densities")
    if not notes:
        return ""
    return ("; the profile likelihood does not bound " + " and ".join(notes) +
            " within 3 standard deviations (D is practically non-identifiable there)")


def figure(fits: dict, densities: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(v, m) for v in fits for m in MODELS]
    fig, axes = plt.subplots(len(rows), len(densities), figsize=(3.6 * len(densities),
                             2.9 * len(rows)), squeeze=False, sharex=True, sharey=True)
    colours = {0.0: "0.5", 12.0: "C0", 24.0: "C1", 36.0: "C2", 48.0: "C3"}
    for row, (variant, model) in enumerate(rows):
        for col, n in enumerate(densities):
            ax = axes[row][col]
            r = fits[variant][model][str(n)]
            p = r["pred"]
            for t, c in colours.items():
                sel = p["t"] == t
                if not sel.any():
                    continue
                xs = np.unique(p["x"][sel])
                mean = [p["value"][sel][p["x"][sel] == x].mean() for x in xs]
                ax.plot(xs, mean, "o", ms=2.5, color=c, alpha=0.7)
                mod = [p["model"][sel][p["x"][sel] == x][0] for x in xs]
                ax.plot(xs, mod, "-" if t <= 24 else "--", color=c, lw=1.2,
                        label=f"{t:g} h" + (" (forecast)" if t > 24 else ""))
            est = {k: v["estimate"] for k, v in r["calibration"]["parameters"].items()}
            ax.set_title(f"{MODELS[model]} {variant}, {n},000 cells\nD={est['D']:.0f} um²/h, "
                         f"r={est['r']:.3f}/h", fontsize=8)
            if col == 0:
                ax.set_ylabel("density (1e-3 cells/um²)", fontsize=8)
            if row == len(rows) - 1:
                ax.set_xlabel("x (um)")
        axes[row][0].legend(fontsize=6)
    fig.suptitle("PC-3 scratch assay (Jin et al. 2016): dots = replicate means, lines = model "
                 "(fitted up to 24 h; dashed = forecast)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
