"""WM983b tumour spheroids (Browning et al. 2021): the `spheroid` scenario calibrated to the outer, inhibited and necrotic radii at each seeding density, against Greenspan's model fitted to the same data.

Prediction, stated before the first calibration (from the model's structure, not from a fit):
(1) the calibrated scenario fits the outer radius with an RMSE of at most 25 um (about the
spread between spheroids of one day, 10-30 um) at every seeding density; (2) the inhibited
and necrotic radii with an RMSE of at most 35 um each; (3) its RMSE is at most 1.25 times
Greenspan's on every radius and density (it has one parameter more, the mobility, but its
thresholds are smooth and its front has a width); (4) its Greenspan-scale parameters,
R_d = sqrt(6 D_O (c_medium - c_n) / q_max) and Q = sqrt((c_medium - c_i)/(c_medium - c_n)),
lie within 25 % of the Greenspan fit's at each density.

Data: Browning AP, Sharp JA, Murphy RJ, Gunasingh G, Lawson B, Burrage K, Haass NK, Simpson MJ,
eLife 10:e73020 (2021), confocal sections of WM983b spheroids seeded with 2,500, 5,000 and
10,000 cells, days 3-21 (CC BY 4.0).  Each spheroid gives three rows: R, phi*R and eta*R.
The model starts at day 3 with `initial_radius` = that density's mean day-3 radius; the rows
after day 3 are fitted (bounded least squares with exact derivatives of the discrete runs,
`tumorpde calibrate`, the noise variance estimated, Wald 95 % intervals).  Fitted: `lam`,
`k_pressure`, `q_max`, `c_i`, `mu` (the `[calibration]` fit set of the scenario); fixed:
D_O, c_medium, c_n (literature), the rest assumed (see `tumorpde doc spheroid`).  The
fitted runs are repeated on a mesh and step 1.5 times finer (the resolution check).

python experiments/spheroid/run.py [--size full|medium|small]
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

from tumorpde.apps.calibrate import run_calibration
from tumorpde.apps.study import experiment_setup

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import greenspan  # noqa: E402

SOURCE = HERE.parents[1].parent / "shared" / "data" / "spheroids-browning2021"
RADII = {"outer_radius": 0, "inhibited_radius": 1, "necrotic_radius": 2}
DENSITIES = {"small": [5000], "medium": [2500, 5000, 10000], "full": [2500, 5000, 10000]}
CELLS = {"small": 70, "medium": 100, "full": 140}
DT = {"small": 0.1, "medium": 0.1, "full": 0.05}
STARTS = {"small": 1, "medium": 2, "full": 3}
END = {"small": 10.0, "medium": 21.0, "full": 21.0}  # the small size fits days 4-10 only
T0 = 3.0
HEADER = ("# WM983b spheroids seeded with {n} cells: Browning AP, Sharp JA, Murphy RJ, Gunasingh G,\n"
          "# Lawson B, Burrage K, Haass NK, Simpson MJ. eLife 10:e73020 (2021); CC BY 4.0\n"
          "# (ap-browning/Spheroids, Data/AllConfocalData.csv). Converted by\n"
          "# experiments/spheroid/run.py: one row per spheroid and radius, R, phi*R and eta*R\n"
          "# in um, t in days after seeding.\n")
# Browning et al.'s own Greenspan estimates (the steady-state model fitted to one day's
# spheroids per density, profile-likelihood 95 % intervals), as published with their code:
# ap-browning/Spheroids, Figures/Fig4/fig4.html (R_c is their name for R_d). Values are
# [estimate, lower, upper]; for comparison only, not fitted here.
BROWNING = {
    "2500": {"day": 21, "Q": [0.750, 0.669, 0.854], "R_c": [149.2, 111.6, 184.6],
             "gamma": [0.737, 0.536, 1.046]},
    "5000": {"day": 18, "Q": [0.758, 0.731, 0.783], "R_c": [156.0, 150.6, 161.4],
             "gamma": [0.768, 0.700, 0.838]},
    "10000": {"day": 18, "Q": [0.771, 0.736, 0.803], "R_c": [144.7, 133.9, 155.8],
              "gamma": [0.657, 0.567, 0.753]},
}
CONFIG = HERE.parents[1] / "tumorpde" / "examples" / "spheroid.toml"


def source_dir() -> Path:
    """``shared/data/spheroids-browning2021`` beside the checkout (or under $TUMORPDE_DATA)."""
    env = os.environ.get("TUMORPDE_DATA")
    return Path(env) / "spheroids-browning2021" if env else SOURCE


def spheroids(n: int) -> list[tuple[float, float, float, float]]:
    """``(day, R, phi, eta)`` of every WM983b spheroid seeded with ``n`` cells; without the
    original file (a clone on its own), rebuilt from the converted copy in ``data/``."""
    src = source_dir() / "AllConfocalData.csv"
    if src.exists():
        with open(src, newline="", encoding="utf-8-sig") as f:
            return [(float(r["Day"]), float(r["R"]), float(r["ϕ"]), float(r["η"]))
                    for r in csv.DictReader(f)
                    if r["CellLine"] == "983b" and int(r["InitialCondition"]) == n]
    with open(HERE / "data" / f"wm983b-{n}-all.csv", newline="") as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    out = []
    for k in range(0, len(rows), 3):
        R = float(rows[k]["value"])
        out.append((float(rows[k]["t"]), R, float(rows[k + 1]["value"]) / R,
                    float(rows[k + 2]["value"]) / R))
    return out


def convert(n: int, folder: Path, end: float) -> tuple[Path, float]:
    """The long-format data after day 3 up to ``end``, and the mean radius at day 3."""
    rows = spheroids(n)
    folder.mkdir(parents=True, exist_ok=True)
    for name, keep in ((f"wm983b-{n}-all.csv", lambda t: True),
                       (f"wm983b-{n}.csv", lambda t: T0 < t <= end)):
        with open(folder / name, "w", newline="") as f:
            f.write(HEADER.format(n=f"{n:,}"))
            w = csv.writer(f)
            w.writerow(["t", "observable", "value"])
            for day, R, phi, eta in rows:
                if keep(day):
                    for ob, v in zip(RADII, (R, phi * R, eta * R), strict=True):
                        w.writerow([repr(day), ob, repr(v)])
    r0 = float(np.mean([R for day, R, _, _ in rows if day == T0]))
    return folder / f"wm983b-{n}.csv", r0


def read_predictions(path: Path) -> dict[str, np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = {k: np.array([float(r[k]) for r in rows]) for k in ("t", "value", "model")}
    out["kind"] = np.array([RADII[r["observable"]] for r in rows])
    return out


def greenspan_scale(q_max: float, c_i: float) -> tuple[float, float]:
    """``(R_d, Q)`` of the scenario's oxygen parameters (D_O, c_medium and c_n fixed, as
    the scenario states them, in um^2/day and mmHg)."""
    from tumorpde.model.config import check, load

    par = check(load(str(CONFIG))).parameters
    d_o, c_m, c_n = (float(par[k][0]) for k in ("D_O", "c_medium", "c_n"))
    return (math.sqrt(6 * d_o * (c_m - c_n) / q_max),
            math.sqrt(max(c_m - c_i, 0.0) / (c_m - c_n)))


def rmse(model: np.ndarray, value: np.ndarray, kind: np.ndarray) -> dict[str, float]:
    return {ob: float(np.sqrt(np.mean((model[kind == k] - value[kind == k]) ** 2)))
            for ob, k in RADII.items()}


def refined(config: str, estimates: dict[str, float], r0: float, size: str,
            times: np.ndarray, run_dir: Path) -> dict[str, float]:
    """Largest change of each radius at the data times on a 1.5x finer mesh and step,
    relative to the outer radius at that time (the spheroid's own scale: a necrotic core
    that is just appearing has a radius near 0, and a change relative to it means little)."""
    import tumorpde as tp

    out: dict[str, np.ndarray] = {}
    for factor in (1.0, 1.5):
        sets = [f"parameters.{k}={v!r}" for k, v in estimates.items()] + [
            f"parameters.initial_radius={r0!r}", f"mesh.cells=[{round(CELLS[size] * factor)}]",
            f"time.dt={DT[size] / factor!r}", f"time.end={END[size]!r}",
            "output.progress=false"]
        p = tp.Problem(tp.load(config, sets))
        p.reset({}, times=list(times))
        obs = p.solve().observables
        p.destroy()
        t = np.asarray(obs["t"])
        idx = [int(np.argmin(abs(t - s))) for s in times]
        out[str(factor)] = np.array([[obs[ob][i] for ob in RADII] for i in idx])
    a, b = out["1.0"], out["1.5"]
    change = np.abs(b - a) / np.abs(b[:, :1])
    return {ob: float(change[:, k].max()) for ob, k in RADII.items()}


def main() -> None:
    args, out, runs = experiment_setup(__file__, __doc__)
    size = args.size
    data_dir = HERE / "data" if args.output is None else out / "data"
    config = str(CONFIG)
    per: dict[str, dict] = {}
    for n in DENSITIES[size]:
        data, r0 = convert(n, data_dir, END[size])
        res = run_calibration(
            config, [str(data)], [], output=runs / f"wm983b-{n}", starts=STARTS[size],
            progress=False,
            overrides=["calibration.data=[]", f"parameters.initial_radius={r0!r}",
                       f"mesh.cells=[{CELLS[size]}]", f"time.dt={DT[size]!r}",
                       f"time.end={END[size]!r}", "output.progress=false"])
        rec = json.loads((res.outdir / "calibration.json").read_text())
        if not (res.outdir / "predictions.csv").exists():  # every start failed: say so
            per[str(n)] = {"initial_radius": r0, "n_data": rec["n_data"],
                           "status": rec.get("status") or "failed", "failed": True}
            print(f"{n} cells: the calibration failed ({rec.get('status')}); "
                  f"see {res.outdir}", flush=True)
            continue
        pred = read_predictions(res.outdir / "predictions.csv")
        est = {k: v["estimate"] for k, v in rec["parameters"].items()}
        Rd, Q = greenspan_scale(est["q_max"], est["c_i"])
        theta, gmodel = greenspan.fit(pred["t"], pred["value"], pred["kind"], r0, T0)
        ours, theirs = rmse(pred["model"], pred["value"], pred["kind"]), \
            rmse(gmodel, pred["value"], pred["kind"])
        conv = refined(config, est, r0, size, np.unique(pred["t"]), runs)
        per[str(n)] = {
            "initial_radius": r0, "n_data": rec["n_data"], "status": rec.get("status"),
            "parameters": rec["parameters"], "R_d": Rd, "Q": Q, "rmse": ours,
            "greenspan": {"parameters": dict(zip(greenspan.NAMES, map(float, theta),
                                                 strict=True)), "rmse": theirs},
            "finer_mesh_max_relative_change": conv,
            "seconds": rec["timings"]["total"], "pred": pred, "gmodel": gmodel}
        print(f"{n} cells: R0={r0:.1f} um, " +
              ", ".join(f"{k}={v:.4g}" for k, v in est.items()) +
              f"; R_d={Rd:.0f} Q={Q:.3f}; RMSE ours " +
              "/".join(f"{v:.1f}" for v in ours.values()) + " um, Greenspan " +
              "/".join(f"{v:.1f}" for v in theirs.values()) +
              f" um (R_d={theta[1]:.0f}, Q={theta[2]:.3f}); finer mesh " +
              "/".join(f"{100 * v:.1f}" for v in conv.values()) + " %", flush=True)
    summary = summarise(per)
    table = {n: {k: v for k, v in r.items() if k not in ("pred", "gmodel")}
             for n, r in per.items()}
    (out / "results.json").write_text(json.dumps(
        {"summary": summary, "fits": table, "browning2021": BROWNING,
         "conclusion": conclusion(summary, per)}, indent=2) + "\n")
    figure({n: r for n, r in per.items() if not r.get("failed")}, out / "figure.png")
    print(json.dumps(summary, indent=1))


def summarise(per: dict[str, dict]) -> dict[str, float | str]:
    s: dict[str, float | str] = {}
    holds = {1: True, 2: True, 3: True, 4: True}
    for n, r in per.items():
        s[f"status_{n}"] = r["status"]
        if r.get("failed"):  # a density without a fit fails every prediction
            holds = dict.fromkeys(holds, False)
            continue
        for ob in RADII:
            s[f"rmse_{ob}_{n}"] = r["rmse"][ob]
            s[f"greenspan_rmse_{ob}_{n}"] = r["greenspan"]["rmse"][ob]
            s[f"finer_mesh_change_{ob}_{n}"] = r["finer_mesh_max_relative_change"][ob]
            if r["rmse"][ob] > 1.25 * r["greenspan"]["rmse"][ob]:
                holds[3] = False
        for k, v in r["parameters"].items():
            s[f"{k}_{n}"] = v["estimate"]
            if v.get("ci95") is not None:
                s[f"{k}_{n}_ci95"] = f"[{v['ci95'][0]:.4g}, {v['ci95'][1]:.4g}]"
        s[f"R_d_{n}"], s[f"Q_{n}"] = r["R_d"], r["Q"]
        if n in BROWNING:  # their steady-state Greenspan fit, for comparison (not a prediction)
            s[f"browning_R_c_{n}"], s[f"browning_Q_{n}"] = (BROWNING[n]["R_c"][0],
                                                            BROWNING[n]["Q"][0])
        for k, v in r["greenspan"]["parameters"].items():
            s[f"greenspan_{k}_{n}"] = v
        holds[1] &= r["rmse"]["outer_radius"] <= 25.0
        holds[2] &= max(r["rmse"]["inhibited_radius"], r["rmse"]["necrotic_radius"]) <= 35.0
        g = r["greenspan"]["parameters"]
        holds[4] &= abs(r["R_d"] / g["R_d"] - 1) <= 0.25 and (
            abs(r["Q"] - g["Q"]) <= 0.25 * max(g["Q"], 1e-9))
    words = {1: "outer radius RMSE <= 25 um at every density",
             2: "inhibited and necrotic radius RMSE <= 35 um",
             3: "RMSE at most 1.25x Greenspan's on every radius and density",
             4: "R_d and Q within 25 % of Greenspan's"}
    for k, w in words.items():
        s[f"prediction_{k}"] = f"{w}: {'holds' if holds[k] else 'fails'}"
    return s


def conclusion(s: dict[str, float | str], per: dict[str, dict]) -> str:
    parts = []
    for n, r in per.items():
        if r.get("failed"):
            parts.append(f"{int(n):,} cells: the calibration failed ({r['status']}).")
            continue
        g = r["greenspan"]
        b = BROWNING.get(n)
        parts.append(
            f"{int(n):,} cells: RMSE outer/inhibited/necrotic "
            + "/".join(f"{v:.0f}" for v in r["rmse"].values()) + " um (Greenspan "
            + "/".join(f"{v:.0f}" for v in g["rmse"].values()) + " um); R_d "
            f"{r['R_d']:.0f} vs {g['parameters']['R_d']:.0f} um, Q {r['Q']:.2f} vs "
            f"{g['parameters']['Q']:.2f}"
            + (f" (Browning et al.'s steady-state fit at day {b['day']}: R_c {b['R_c'][0]:.0f} um, "
               f"Q {b['Q'][0]:.2f})." if b else "."))
    preds = "; ".join(str(s[f"prediction_{k}"]) for k in (1, 2, 3, 4))
    return " ".join(parts) + " Predictions: " + preds + "."


def figure(per: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(per), figsize=(4.2 * len(per), 3.6), squeeze=False,
                             sharey=True)
    for ax, (n, r) in zip(axes[0], per.items(), strict=True):
        p = r["pred"]
        for ob, k in RADII.items():
            sel = p["kind"] == k
            ts = np.unique(p["t"][sel])
            mean = [p["value"][sel][p["t"][sel] == t].mean() for t in ts]
            sd = [p["value"][sel][p["t"][sel] == t].std() for t in ts]
            ax.errorbar(ts, mean, yerr=sd, fmt="o", ms=3, color=f"C{k}", alpha=0.7)
            ax.plot(ts, [p["model"][sel][p["t"][sel] == t][0] for t in ts], "-",
                    color=f"C{k}", label=f"{ob.replace('_', ' ')} (tumorpde)")
            ax.plot(ts, [r["gmodel"][sel][p["t"][sel] == t][0] for t in ts], "--",
                    color=f"C{k}", lw=1, label="Greenspan" if k == 0 else None)
        ax.set_title(f"WM983b, {int(n):,} cells seeded", fontsize=9)
        ax.set_xlabel("day after seeding")
    axes[0][0].set_ylabel("radius (um)")
    axes[0][0].legend(fontsize=6)
    fig.suptitle("Spheroid radii (Browning et al. 2021): dots = mean +- SD, lines = tumorpde "
                 "spheroid fitted, dashed = Greenspan fitted", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
