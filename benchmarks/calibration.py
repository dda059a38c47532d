"""Cost of calibration: a gradient against a forward run, and a whole 1-D fit.

    python -m benchmarks.calibration [--repeat N]

1. The Keller-Segel example (two species, edge-upwind taxis) on 24x24 cells, 20 BDF2 steps,
   field samples of both species at 4 times: seconds of one forward run, of one adjoint
   gradient (after its forward run) and of the tangent Jacobian for 4 parameters; the
   issue's target is a gradient at most about 3 forward runs.
2. The scratch-assay Fisher-KPP model (1-D, 76 cells, 96 BDF2 steps, PC-3 data of Jin
   et al. 2016 at 10,000 cells): wall time of fitting D and r (3 starts, the default), with the
   uncertainty and the predictions; the target is seconds, not minutes.

Medians of ``--repeat`` runs; writes ``benchmarks/calibration.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

import tumorpde as tp
from tumorpde.calibration.fit import FitParameter, calibrate
from tumorpde.calibration.objective import Objective
from tumorpde.io.data import Data, read_data

HERE = Path(__file__).resolve().parent
SCRATCH = HERE.parent / "experiments" / "scratch-assay"


def keller_segel(repeat: int) -> dict[str, float]:
    """Seconds of a forward run, an adjoint gradient and a 4-parameter tangent (medians)."""
    problem = tp.Problem(tp.load("keller-segel", ["mesh.cells=[24, 24]", "time.end=0.02",
                                                  "time.dt=0.001", "output.progress=false"]))
    rng = np.random.default_rng(0)
    pts = rng.uniform(0.05, 0.95, size=(20, 2))
    rows = [(t, f, p) for t in (0.005, 0.01, 0.015, 0.02) for f in ("cells", "chemokine")
            for p in pts]
    n = len(rows)
    data = Data(Path("bench"), "field", [], [], np.array([r[0] for r in rows]),
                [r[1] for r in rows], np.ones(n), np.ones(n), np.array([r[2] for r in rows]),
                np.arange(n))
    names = ["chi", "alpha", "Du", "beta"]
    obj = Objective(problem, data=[data], parameters=names)
    p0 = obj.start()
    fwd, adj, tan = [], [], []
    for k in range(repeat + 1):
        p = p0 * (1 + 1e-3 * (k + 1))  # a new point: no cached run
        t0 = time.perf_counter()
        obj.evaluate(p)
        t1 = time.perf_counter()
        obj.gradient(p)
        t2 = time.perf_counter()
        obj.jacobian(p)
        t3 = time.perf_counter()
        if k:  # the first round compiles the derivative forms
            fwd.append(t1 - t0)
            adj.append(t2 - t1)
            tan.append(t3 - t2)
    obj.destroy()
    problem.destroy()
    f, a, j = (statistics.median(v) for v in (fwd, adj, tan))
    return {"unknowns": int(problem.disc.V.dofmap.index_map.size_global * 2), "steps": 20,
            "forward_s": f, "adjoint_s": a, "tangent_4_parameters_s": j,
            "gradient_over_forward": (f + a) / f, "adjoint_over_forward": a / f}


def scratch_fit(repeat: int) -> dict[str, float]:
    """Wall time of fitting D and r of the 1-D Fisher-KPP model to real data (median)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        problem = tp.Problem(tp.load(SCRATCH / "fisher-kpp.toml", ["output.progress=false"]))
        fit = calibrate(problem, [read_data(SCRATCH / "data" / "jin2016-10.csv")],
                        [FitParameter("D", "D", 50, 5000), FitParameter("r", "r", 0.001, 0.2)],
                        until=24.0)
        problem.destroy()
        times.append(time.perf_counter() - t0)
    return {"wall_s": statistics.median(times), "evaluations": fit.evaluations,
            "D": float(fit.estimate[0]), "r": float(fit.estimate[1]), "status": fit.status}


def main() -> None:
    """Run both cases and write calibration.json."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    out = {"keller_segel_gradient": keller_segel(args.repeat),
           "scratch_assay_fit": scratch_fit(args.repeat)}
    (HERE / "calibration.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
