"""(b) CAFs accelerate growth and invasion: the full model versus `--knockout caf`.

python experiments/cafs/run.py [--size full|medium|small]
"""

from tumorpde.apps.study import Variant, experiment_setup, plot_variants, ratio, run_variants, write_results

args, out, runs = experiment_setup(__file__, __doc__)
res = run_variants("tme-2d", [Variant("full"), Variant("no-caf", knockout=["caf"])], runs, args.size)
f, k = res["full"]["final"], res["no-caf"]["final"]
summary = {
    "burden_ratio_full_over_no_caf": ratio(f["tumor_burden"], k["tumor_burden"]),
    "invasion_distance_full": f["invasion_distance"],
    "invasion_distance_no_caf": k["invasion_distance"],
    "tumor_area_ratio": ratio(f["tumor_area"], k["tumor_area"]),
}
write_results(out / "results.json", summary, res)
plot_variants(res, ["tumor_burden", "invasion_distance", "caf_density_tumor"], out / "figure.png",
              "CAFs: full model vs CAF knockout")
print(summary)
