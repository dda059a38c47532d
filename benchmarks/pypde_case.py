"""tumorpde versus py-pde on a stiff tumour-oxygen system, at equal accuracy (prints JSON).

``python -m benchmarks.pypde_case [--quick]``

The system (2 mm x 2 mm tissue, no-flux boundaries, 5 days) is the core of the tme model:
cancer cells ``n`` that proliferate with oxygen and oxygen ``c`` that diffuses fast, is
supplied by the tissue and consumed by the cells::

    n_t = D_n lap n + rho n (1 - n) c - delta n
    c_t = D_c lap c + lambda (1 - c) - k n c

with ``D_n = 1e-3``, ``D_c = 10`` (mm^2/day), ``rho = 1``, ``delta = 0.1``, ``lambda = 10``,
``k = 100`` (1/day): the diffusivities differ by 10^4, which is what makes such systems stiff.
Both tools solve it on uniform grids of the same spacing (tumorpde: P1 on the triangulated squares
with lumped mass, BDF2; py-pde: second-order finite
differences with its explicit adaptive and implicit solvers, numba and numpy backends), at a
ladder of resolutions.  The error of ``n`` at the end is measured against a fine tumorpde reference
(the py-pde runs converge to the same solution: their finest error is reported), and the
whole-process time (interpreter start, imports, compilation, set-up, time loop) of the
cheapest run of each tool that reaches the target error is compared.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
L, T = 2.0, 5.0
PARAMS = {"D_n": 1e-3, "D_c": 10.0, "rho": 1.0, "delta": 0.1, "lam": 10.0, "k": 100.0}
N0 = "0.8*exp(-((x-1)**2 + (y-1)**2)/0.02)"


def tumorpde_config(cells: int, dt: float) -> dict:
    """The system as a tumorpde config."""
    return {
        "title": "tumour-oxygen benchmark",
        "mesh": {"shape": "rectangle", "size": [L, L], "cells": [cells, cells]},
        "time": {"end": T, "dt": dt, "scheme": "bdf2", "output_every": T},
        "parameters": dict(PARAMS),
        "species": {
            "n": {"diffusion": "D_n", "initial": N0, "reaction": "rho*n*(1 - n)*c - delta*n"},
            "c": {"diffusion": "D_c", "initial": 1.0, "reaction": "lam*(1 - c) - k*n*c"},
        },
        "output": {"fields": [], "progress": False},
    }


TUMORPDE_CHILD = """
import sys, json, time, numpy as np
t0 = time.perf_counter()
from tumorpde.model.config import load_dict
from tumorpde.simulation import run
cfg = json.loads(sys.argv[1])
res = run(load_dict(cfg), sys.argv[2])
disc = res.discretisation
X = disc.V.tabulate_dof_coordinates()[:, :2]
n = disc.u.x.array.reshape(-1, 2)[:, 0]
np.save(sys.argv[3], np.column_stack([X, n]))
print(json.dumps({"steps": res.steps, "inner_s": time.perf_counter() - t0}))
"""

PYPDE_CHILD = """
import sys, json, time
t0 = time.perf_counter()
import numpy as np
import pde
p = json.loads(sys.argv[1])
N, solver = p["cells"], p["solver"]
grid = pde.CartesianGrid([[0, p["L"]], [0, p["L"]]], [N, N])
x, y = grid.cell_coords[..., 0], grid.cell_coords[..., 1]
n0 = 0.8 * np.exp(-((x - 1) ** 2 + (y - 1) ** 2) / 0.02)
state = pde.FieldCollection([pde.ScalarField(grid, n0, label="n"),
                             pde.ScalarField(grid, 1.0, label="c")])
c = p["params"]
eq = pde.PDE({"n": f"{c['D_n']}*laplace(n) + {c['rho']}*n*(1 - n)*c - {c['delta']}*n",
              "c": f"{c['D_c']}*laplace(c) + {c['lam']}*(1 - c) - {c['k']}*n*c"},
             bc={"derivative": 0})
if solver == "explicit":
    out = eq.solve(state, t_range=p["T"], dt=p["dt"], solver="explicit", adaptive=True,
                   tolerance=p["tol"], tracker=None, backend=p["backend"])
else:
    out = eq.solve(state, t_range=p["T"], dt=p["dt"], solver="implicit", tracker=None,
                   backend=p["backend"])
np.save(sys.argv[2], np.column_stack([x.ravel(), y.ravel(), out[0].data.ravel()]))
print(json.dumps({"inner_s": time.perf_counter() - t0}))
"""


def _run(code: str, args: list[str], timeout: float = 900.0) -> tuple[dict, float]:
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall


def _sample(ref: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """The P1 reference (scattered nodal values on a uniform grid) at points, bilinearly."""
    xs = np.unique(np.round(ref[:, 0], 12))
    ys = np.unique(np.round(ref[:, 1], 12))
    grid = np.zeros((len(xs), len(ys)))
    ix = np.searchsorted(xs, np.round(ref[:, 0], 12))
    iy = np.searchsorted(ys, np.round(ref[:, 1], 12))
    grid[ix, iy] = ref[:, 2]
    from scipy.interpolate import RegularGridInterpolator

    pts = np.clip(pts[:, :2], [xs[0], ys[0]], [xs[-1], ys[-1]])  # round-off at the boundary
    return RegularGridInterpolator((xs, ys), grid)(pts)


def error(sol: np.ndarray, ref: np.ndarray) -> float:
    """Relative discrete l2 error of ``n`` at the solution's points."""
    r = _sample(ref, sol)
    return float(np.linalg.norm(sol[:, 2] - r) / np.linalg.norm(r))


def main(argv: list[str] | None = None) -> None:
    """Run the ladders and print the comparison as JSON."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--target", type=float, default=2e-2, help="relative l2 error of n")
    args = ap.parse_args(argv)
    out: dict = {"problem": __doc__.split("\n\n")[1].strip(), "params": PARAMS, "T": T,
                 "target_error": args.target, "tumorpde": [], "py-pde": []}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ref_cells, ref_dt = (128, 0.01) if not args.quick else (96, 0.02)
        cfg = tumorpde_config(ref_cells, ref_dt)
        info, wall = _run(TUMORPDE_CHILD, [json.dumps(cfg), str(tmp / "ref"), str(tmp / "ref.npy")])
        ref = np.load(tmp / "ref.npy")
        out["reference"] = {"cells": ref_cells, "dt": ref_dt, "wall_s": wall}
        # warm tumorpde's form cache (compilation is a one-time cost per model, kept on disk)
        _run(TUMORPDE_CHILD, [json.dumps(tumorpde_config(8, 1.0)), str(tmp / "w"), str(tmp / "w.npy")])
        ladder = [(32, 0.5), (32, 0.25), (64, 0.25)]
        for cells, dt in ladder:
            info, wall = _run(TUMORPDE_CHILD, [json.dumps(tumorpde_config(cells, dt)),
                                               str(tmp / "t"), str(tmp / "t.npy")])
            e = error(np.load(tmp / "t.npy"), ref)
            out["tumorpde"].append({"cells": cells, "dt": dt, "error": e, "process_s": wall,
                                    "steps": info["steps"]})
        # py-pde's settings: explicit adaptive Euler with the numba and the numpy backends
        # (numba compiles for a minute per process on a loaded machine, numpy does not), and
        # its implicit (backward Euler) solver
        pladder = [("explicit", "numpy", 32, 1e-4, 1e-3), ("explicit", "numba", 32, 1e-4, 1e-3),
                   ("implicit", "numpy", 32, 1e-3, None)]
        if args.quick:
            pladder = pladder[:1]
        for solver, backend, cells, dt, tol in pladder:
            p = {"cells": cells, "solver": solver, "backend": backend, "dt": dt, "tol": tol,
                 "L": L, "T": T, "params": PARAMS}
            try:
                info, wall = _run(PYPDE_CHILD, [json.dumps(p), str(tmp / "p.npy")])
                e = error(np.load(tmp / "p.npy"), ref)
                out["py-pde"].append({"solver": solver, "backend": backend, "cells": cells,
                                      "dt": dt, "tolerance": tol, "error": e, "process_s": wall})
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                out["py-pde"].append({"solver": solver, "backend": backend, "cells": cells,
                                      "dt": dt, "failed": str(exc)[-300:]})
    ok_t = [r for r in out["tumorpde"] if r["error"] <= args.target]
    ok_p = [r for r in out["py-pde"] if r.get("error", np.inf) <= args.target]
    if ok_t and ok_p:
        bt = min(ok_t, key=lambda r: r["process_s"])
        bp = min(ok_p, key=lambda r: r["process_s"])
        out["best_tumorpde"], out["best_py-pde"] = bt, bp
        out["speedup"] = bp["process_s"] / bt["process_s"]
    else:
        out["note"] = "a tool reached no run within the target error: see the ladders"
    print(json.dumps(out))


if __name__ == "__main__":
    main()
