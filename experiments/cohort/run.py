"""(f) Virtual cohort: tumours with parameters sampled by Latin hypercube within the
literature (or stated, assumed) ranges; Spearman correlations of early angiogenesis,
CAF density, M2-macrophage density, CD8 T-cell density and the whole inflammatory
infiltrate (day 10) with outcome (final burden and cells released into the circulation),
drawn like a clinical correlation panel, and the same correlations controlling for the
tumour's proliferation rate (partial rank correlations: the ranks of predictor and outcome
each regressed on the rank of `rho_tumor`, then correlated).  A faster-dividing tumour is
larger, more hypoxic and more vascularised at day 10 and larger at the end, so the raw
correlations mix every predictor with proliferation (the first version of this cohort
found rho = 0.93 between proliferation and final burden); the partial ones ask whether the
microenvironment adds anything beyond it.

Prediction, stated before this version's first run, from the biology the model encodes
(Lorusso & Rueegg 2008: angiogenesis, CAFs and M2 macrophages promote growth and
dissemination, cytotoxic T cells restrain it), each controlling for proliferation:
(1) early angiogenesis goes with a larger final burden and more CTCs released (partial
rho > 0, p < 0.05 for both); (2) CAF density with a larger final burden (partial rho > 0,
p < 0.05); (3) M2 density with a larger final burden (partial rho > 0, p < 0.05); (4) CD8
T-cell density with a smaller final burden (partial rho < 0, p < 0.05).

    python experiments/cohort/run.py [--size full|medium|small] [--samples 32]
"""

import json

from mpi4py import MPI

import numpy as np
from scipy.stats import qmc, rankdata, spearmanr, t as student_t

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
              "M2 density": "m2_density_tumor", "CD8 T-cell density": "tcell_density_tumor",
              "inflammatory infiltrate": "infiltrate_density_tumor"}
OUTCOMES = {"final burden": "tumor_burden", "CTCs released": "ctc_released"}
CONTROL = "rho_tumor"  # proliferation: the confounder the partial correlations remove
EARLY_DAY = 10.0
# (prediction, predictor, outcome, expected sign of the partial correlation)
PREDICTIONS = [
    (1, "early angiogenesis", "final burden", 1), (1, "early angiogenesis", "CTCs released", 1),
    (2, "CAF density", "final burden", 1), (3, "M2 density", "final burden", 1),
    (4, "CD8 T-cell density", "final burden", -1)]


def partial_spearman(x, y, z) -> tuple[float, float]:
    """Spearman correlation of ``x`` and ``y`` controlling for ``z``, and its two-sided p.

    The ranks of ``x`` and ``y`` are each regressed on the ranks of ``z`` (least squares with
    an intercept); the Pearson correlation of the residuals is the partial rank correlation,
    tested with ``n - 3`` degrees of freedom.
    """
    rx, ry, rz = (rankdata(np.asarray(v, dtype=float)) for v in (x, y, z))
    A = np.column_stack([np.ones_like(rz), rz])
    ex = rx - A @ np.linalg.lstsq(A, rx, rcond=None)[0]
    ey = ry - A @ np.linalg.lstsq(A, ry, rcond=None)[0]
    den = float(np.sqrt(np.dot(ex, ex) * np.dot(ey, ey)))
    if den == 0.0:
        return float("nan"), float("nan")
    r = float(np.clip(np.dot(ex, ey) / den, -1.0, 1.0))
    dof = len(rx) - 3
    if dof < 1:
        return r, float("nan")
    tstat = r * np.sqrt(dof / max(1.0 - r * r, 1e-300))
    return r, float(2.0 * student_t.sf(abs(tstat), dof))

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
    control = [r[CONTROL] for r in table]
    for pk in PREDICTORS:
        for ok in OUTCOMES:
            x, y = [r[pk] for r in table], [r[ok] for r in table]
            rho, pval = spearmanr(x, y)
            prho, ppval = partial_spearman(x, y, control)
            corr[f"{pk} vs {ok}"] = {"spearman_rho": float(rho), "p_value": float(pval),
                                     "partial_rho": prho, "partial_p_value": ppval}
    for ok in OUTCOMES:  # the confounder itself
        rho, pval = spearmanr(control, [r[ok] for r in table])
        corr[f"proliferation vs {ok}"] = {"spearman_rho": float(rho), "p_value": float(pval)}
    verdicts = {}
    for k, pk, ok, sign in PREDICTIONS:
        c = corr[f"{pk} vs {ok}"]
        holds = bool(np.sign(c["partial_rho"]) == sign and c["partial_p_value"] < 0.05)
        verdicts[k] = verdicts.get(k, True) and holds
    words = {1: "early angiogenesis: larger burden and more CTCs (partial rho > 0, p < 0.05)",
             2: "CAF density: larger burden (partial rho > 0, p < 0.05)",
             3: "M2 density: larger burden (partial rho > 0, p < 0.05)",
             4: "CD8 T-cell density: smaller burden (partial rho < 0, p < 0.05)"}
    predictions = {f"prediction_{k}": f"{w}: {'holds' if verdicts[k] else 'fails'}"
                   for k, w in words.items()}

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(OUTCOMES), len(PREDICTORS), figsize=(4 * len(PREDICTORS), 7))
    for i, ok in enumerate(OUTCOMES):
        for j, pk in enumerate(PREDICTORS):
            ax = axes[i][j]
            ax.scatter([r[pk] for r in table], [r[ok] for r in table], s=22, alpha=0.8)
            c = corr[f"{pk} vs {ok}"]
            ax.set_title(f"rho = {c['spearman_rho']:.2f} (p = {c['p_value']:.2g}); partial "
                         f"{c['partial_rho']:.2f} (p = {c['partial_p_value']:.2g})", fontsize=8)
            ax.set_xlabel(f"{pk} (day {EARLY_DAY:g})")
            ax.set_ylabel(ok)
            ax.grid(alpha=0.3)
    fig.suptitle(f"Virtual cohort of {args.samples} tumours: microenvironment vs outcome "
                 "(partial: controlling for proliferation)")
    fig.tight_layout()
    fig.savefig(out / "figure.png", dpi=110)
    plt.close(fig)
    (out / "results.json").write_text(json.dumps(
        {"summary": {**corr, **predictions}, "samples": args.samples, "control": CONTROL, "ranges": {k: list(v) for k, v in RANGES.items()},
         "early_day": EARLY_DAY, "cohort": table}, indent=2) + "\n")
    print(json.dumps({**corr, **predictions}, indent=1))
