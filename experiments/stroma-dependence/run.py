"""(a) Stroma dependence: in poorly vascularised stroma, without angiogenesis the tumour
stalls at the burden its diffusive oxygen supply sustains and stays hypoxic; with
angiogenesis it recruits vessels and grows.  In the well-vascularised tme-2d section
it grows along the pre-existing capillary bed even without angiogenesis (co-option).

Both tissues run with and without angiogenesis (no VEGF-driven endothelial
proliferation and chemotaxis: r_E = chi_E = 0), for 60 days at every size.  The poorly
vascularised stroma (`poorly-vascularised.toml`) is tme-2d with a capillary bed at
1/11 of its density (stroma at ~9.5 mmHg) and without the larger capillaries near the
seed.  The plateau metric is the late relative growth rate, ln(B(T)/B(2T/3))/(T/3)
of the burden B over the last third of the run; hypoxia and vessel density are
averaged over the cancer cells (a stalled tumour thins below the 0.1 threshold of the
area-based observables).

    python experiments/stroma-dependence/run.py [--size full|medium|small]
"""

import math
from pathlib import Path

import numpy as np

from tumorpde.apps.study import Variant, experiment_setup, plot_variants, ratio, run_variants, write_results

args, out, runs = experiment_setup(__file__, __doc__)
no_angiogenesis = ["parameters.r_vessel.value=0.0", "parameters.chi_vessel.value=0.0"]
extra = [
    "time.end=60.0",  # the claim is about a plateau: every size runs the 60 days
    'observables.hypoxic_cell_fraction={ integral = "cancer*where(oxygen < o2_hypoxic, 1, 0)", '
    'per = "cancer", description = "fraction of the cancer cells below 15 mmHg" }',
    'observables.vessel_density_cells={ integral = "vessel*cancer", per = "cancer", '
    'description = "vessel density averaged over the cancer cells" }',
]
res = run_variants(str(Path(__file__).with_name("poorly-vascularised.toml")), [
    Variant("sparse-angiogenesis"),
    Variant("sparse-no-angiogenesis", set=no_angiogenesis),
], runs, args.size, extra=extra)
res.update(run_variants("tme-2d", [
    Variant("vascularised-angiogenesis"),
    Variant("vascularised-no-angiogenesis", set=no_angiogenesis),
], runs, args.size, extra=extra))


def late_growth_rate(series: dict) -> float:
    """Mean relative growth rate of the burden over the last third of the run (1/day)."""
    t, b = np.asarray(series["t"]), np.asarray(series["tumor_burden"])
    t0 = t[0] + 2.0 * (t[-1] - t[0]) / 3.0
    return float(math.log(b[-1] / np.interp(t0, t, b)) / (t[-1] - t0))


summary = {}
for tissue in ("sparse", "vascularised"):
    a, n = res[f"{tissue}-angiogenesis"], res[f"{tissue}-no-angiogenesis"]
    pre = "" if tissue == "sparse" else "vascularised_"
    summary |= {
        f"{pre}late_growth_rate_angiogenesis": late_growth_rate(a["series"]),
        f"{pre}late_growth_rate_no_angiogenesis": late_growth_rate(n["series"]),
        f"{pre}burden_ratio_angiogenesis_over_none": ratio(a["final"]["tumor_burden"],
                                                           n["final"]["tumor_burden"]),
        f"{pre}burden_final_over_initial_no_angiogenesis": ratio(n["series"]["tumor_burden"][-1],
                                                                 n["series"]["tumor_burden"][0]),
        f"{pre}hypoxic_cell_fraction_angiogenesis": a["final"]["hypoxic_cell_fraction"],
        f"{pre}hypoxic_cell_fraction_no_angiogenesis": n["final"]["hypoxic_cell_fraction"],
        f"{pre}vessel_density_cells_angiogenesis": a["final"]["vessel_density_cells"],
        f"{pre}vessel_density_cells_no_angiogenesis": n["final"]["vessel_density_cells"],
    }
write_results(out / "results.json", summary, res)
plot_variants(res, ["tumor_burden", "hypoxic_cell_fraction", "vessel_density_cells"],
              out / "figure.png", "Stroma dependence: angiogenesis on vs off, sparse vs vascularised stroma",
              log=["tumor_burden"])
print(summary)
