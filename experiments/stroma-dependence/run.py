"""(a) Stroma dependence: without angiogenesis the tumour stalls at a diffusion-limited
size and becomes hypoxic; with it, it grows.

    python experiments/stroma-dependence/run.py [--size full|medium|small]
"""

from tumorpde.study import Variant, experiment_setup, plot_variants, ratio, run_variants, write_results

args, out, runs = experiment_setup(__file__, __doc__)
variants = [
    Variant("angiogenesis"),
    Variant("no-angiogenesis", set=["parameters.r_vessel.value=0.0",
                                    "parameters.chi_vessel.value=0.0"]),
]
res = run_variants("tme-2d", variants, runs, args.size)
a, n = res["angiogenesis"]["final"], res["no-angiogenesis"]["final"]
summary = {
    "burden_ratio_angiogenesis_over_none": ratio(a["tumor_burden"], n["tumor_burden"]),
    "hypoxic_fraction_angiogenesis": a["hypoxic_fraction"],
    "hypoxic_fraction_no_angiogenesis": n["hypoxic_fraction"],
    "vessel_density_tumor_angiogenesis": a["vessel_density_tumor"],
    "vessel_density_tumor_no_angiogenesis": n["vessel_density_tumor"],
}
write_results(out / "results.json", summary, res)
plot_variants(res, ["tumor_burden", "hypoxic_fraction", "vessel_density_tumor"],
              out / "figure.png", "Stroma dependence: angiogenesis on vs off")
print(summary)
