"""(d) Stem-cell niche: removing CAF-derived or perivascular niche signals lowers the
CSC fraction.

    python experiments/stem-cell-niche/run.py [--size full|medium|small]
"""

from tumorpde.apps.study import Variant, experiment_setup, plot_variants, run_variants, write_results

args, out, runs = experiment_setup(__file__, __doc__)
res = run_variants("tme-2d", [
    Variant("full-niche"),
    Variant("no-caf-niche", set=['definitions.niche="min(1, vessel/(K_niche + vessel))"']),
    Variant("no-perivascular-niche", set=['definitions.niche="min(1, caf/(K_niche + caf))"']),
    Variant("no-niche", set=['definitions.niche="0"']),
], runs, args.size)
c = {k: v["final"]["csc_fraction"] for k, v in res.items()}
summary = {f"csc_fraction_{k.replace('-', '_')}": v for k, v in c.items()}
write_results(out / "results.json", summary, res)
plot_variants(res, ["csc_fraction", "tumor_burden"], out / "figure.png",
              "Stem-cell niche signals and the CSC fraction")
print(summary)
