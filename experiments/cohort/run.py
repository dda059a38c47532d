"""(f) Virtual cohort: tumours with parameters sampled by Latin hypercube within the
literature (or stated, assumed) ranges; Spearman correlations of early angiogenesis,
CAF density and inflammatory infiltrate (day 10) with outcome (final burden and
cells released into the circulation), drawn like a clinical correlation panel.

    python experiments/cohort/run.py [--size full|medium|small] [--samples 32]
"""

import json

from mpi4py import MPI

import numpy as np
from scipy.stats import qmc, spearmanr

from tumorpde.apps.study import Variant, experiment_setup, run_variants

# parameter: (low, high, unit, provenance of the range)
RANGES = {
    "rho_tumor": (0.1, 0.3, "1/day", "around Hahnfeldt et al. 1999 lambda_1 = 0.192/day"),
    "r_vessel": (0.1, 0.6, "1/day", "assumed: 0.3/day +- factor 2"),
    "activation_caf": (0.1, 1.0, "1/day", "assumed: 0.5/day within a factor 5"),
    "recruit_macrophage": (0.05, 0.5, "1/day", "assumed"),
    "polarise_m2": (0.1, 1.5, "1/day", "assumed"),
    "recruit_tcell": (0.02, 0.3, "1/day", "assumed"),
}
PREDICTORS = {"early angiogenesis": "vessel_density_tumor", "CAF density": "caf_density_tumor",
              "inflammatory infiltrate": "infiltrate_density_tumor"}
OUTCOMES = {"final burden": "tumor_burden", "CTCs released": "ctc_released"}
EARLY_DAY = 10.0

args, out, _ = experiment_setup(__file__, __doc__, {
    "--samples": {"type": int, "default": 32, "help": "number of virtual tumours"},
    "--seed": {"type": int, "default": 2008, "help": "seed of the Latin hypercube"}})
comm = MPI.COMM_WORLD

names = list(RANGES)
unit = qmc.LatinHypercube(d=len(names), seed=args.seed).random(args.samples)
lo = np.array([RANGES[n][0] for n in names])
hi = np.array([RANGES[n][1] for n in names])
samples = lo + unit * (hi - lo)
variants = [Variant(f"tumour-{i:03d}", set=[f'parameters.{n}.value="{v:.6g} {RANGES[n][2]}"'
                                            for n, v in zip(names, row, strict=True)])
            for i, row in enumerate(samples)]
res = run_variants("tme-2d", variants, out / "runs", args.size)

if comm.rank == 0:
    def at(series, col, t):
        ts = np.asarray(series["t"])
        return float(np.interp(t, ts, np.asarray(series[col])))

    table = []
    for v, row in zip(variants, samples, strict=True):
        s = res[v.name]["series"]
        rec = {n: float(x) for n, x in zip(names, row, strict=True)}
        rec.update({k: at(s, c, EARLY_DAY) for k, c in PREDICTORS.items()})
        rec.update({k: res[v.name]["final"][c] for k, c in OUTCOMES.items()})
        table.append(rec)
    corr = {}
    for pk in PREDICTORS:
        for ok in OUTCOMES:
            rho, pval = spearmanr([r[pk] for r in table], [r[ok] for r in table])
            corr[f"{pk} vs {ok}"] = {"spearman_rho": float(rho), "p_value": float(pval)}

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(OUTCOMES), len(PREDICTORS), figsize=(12, 7))
    for i, ok in enumerate(OUTCOMES):
        for j, pk in enumerate(PREDICTORS):
            ax = axes[i][j]
            ax.scatter([r[pk] for r in table], [r[ok] for r in table], s=22, alpha=0.8)
            c = corr[f"{pk} vs {ok}"]
            ax.set_title(f"Spearman rho = {c['spearman_rho']:.2f} (p = {c['p_value']:.2g})",
                         fontsize=9)
            ax.set_xlabel(f"{pk} (day {EARLY_DAY:g})")
            ax.set_ylabel(ok)
            ax.grid(alpha=0.3)
    fig.suptitle(f"Virtual cohort of {args.samples} tumours: microenvironment vs outcome")
    fig.tight_layout()
    fig.savefig(out / "figure.png", dpi=110)
    plt.close(fig)
    (out / "results.json").write_text(json.dumps(
        {"summary": corr, "samples": args.samples, "ranges": {k: list(v) for k, v in RANGES.items()},
         "early_day": EARLY_DAY, "cohort": table}, indent=2) + "\n")
    print(json.dumps(corr, indent=1))
