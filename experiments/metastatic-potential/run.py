"""(e) Metastatic potential: intravasation rises with blood and lymphatic vessel density
and with M2 and CAF activity.

    python experiments/metastatic-potential/run.py [--size full|medium|small]
"""

import numpy as np

from tumorpde.apps.study import Variant, experiment_setup, plot_variants, ratio, run_variants, write_results

args, out, runs = experiment_setup(__file__, __doc__)
res = run_variants("tme-2d", [
    Variant("baseline"),
    Variant("more-blood-vessels", set=["parameters.vessel_background.value=0.03"]),
    Variant("more-lymphatics", set=['definitions.normal_lymphatics="0.4*exp(-(y-2.2)**2/0.002) + 0.4*exp(-(y-1.0)**2/0.002)"']),
    Variant("more-m2", set=["parameters.polarise_m2.value=2.0"]),
    Variant("more-caf", set=["parameters.activation_caf.value=2.0"]),
], runs, args.size)

def released(r: dict, column: str) -> float:
    """Cells released through one channel up to the end (trapezoidal rule)."""
    s = r["series"]
    return float(np.trapezoid(s[column], s["t"]))

base = res["baseline"]
summary = {}
for k, v in res.items():
    if k == "baseline":
        continue
    key = k.replace("-", "_")
    summary[f"ctc_ratio_{key}"] = ratio(v["final"]["ctc_released"], base["final"]["ctc_released"])
    summary[f"blood_ratio_{key}"] = ratio(released(v, "intravasation_blood"),
                                          released(base, "intravasation_blood"))
    summary[f"lymph_ratio_{key}"] = ratio(released(v, "intravasation_lymph"),
                                          released(base, "intravasation_lymph"))
summary["ctc_released_baseline"] = base["final"]["ctc_released"]
write_results(out / "results.json", summary, res)
plot_variants(res, ["ctc_released", "intravasation_blood", "intravasation_lymph"],
              out / "figure.png", "Metastatic potential: cells released into the circulation")
print(summary)
