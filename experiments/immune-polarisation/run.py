"""(c) Immune polarisation: shifting macrophages from M1 to M2 turns the infiltrate from
tumour-suppressive to tumour-promoting; removing T cells increases the burden.

The effect of the macrophage infiltrate is the burden with macrophages divided by the
burden with both macrophage fields knocked out, in an M1-polarising and an
M2-polarising microenvironment.

    python experiments/immune-polarisation/run.py [--size full|medium|small]
"""

from tumorpde.apps.study import Variant, experiment_setup, plot_variants, ratio, run_variants, write_results

args, out, runs = experiment_setup(__file__, __doc__)
m1 = ["parameters.polarise_m2.value=0.0", "parameters.polarise_m1.value=2.0"]
m2 = ["parameters.polarise_m2.value=2.0", "parameters.polarise_m1.value=0.0"]
res = run_variants("tme-2d", [
    Variant("baseline"),
    Variant("no-tcell", knockout=["tcell"]),
    Variant("m1-polarised", set=m1),
    Variant("m1-polarised-no-macrophages", set=m1, knockout=["m1", "m2"]),
    Variant("m2-polarised", set=m2),
    Variant("m2-polarised-no-macrophages", set=m2, knockout=["m1", "m2"]),
], runs, args.size)
b = {k: v["final"]["tumor_burden"] for k, v in res.items()}
summary = {
    "macrophage_effect_m1_polarised": ratio(b["m1-polarised"], b["m1-polarised-no-macrophages"]),
    "macrophage_effect_m2_polarised": ratio(b["m2-polarised"], b["m2-polarised-no-macrophages"]),
    "burden_ratio_no_tcell_over_baseline": ratio(b["no-tcell"], b["baseline"]),
    "m1_m2_ratio_m1_polarised": res["m1-polarised"]["final"]["m1_m2_ratio"],
    "m1_m2_ratio_m2_polarised": res["m2-polarised"]["final"]["m1_m2_ratio"],
}
write_results(out / "results.json", summary, res)
plot_variants(res, ["tumor_burden", "m1_m2_ratio", "tcell_density_tumor"], out / "figure.png",
              "Immune polarisation (macrophage effect = burden / burden without macrophages)")
print(summary)
