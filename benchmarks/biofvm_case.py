"""tumorpde versus BioFVM on BioFVM's 10-substrate diffusion-decay benchmark (prints JSON).

``python -m benchmarks.biofvm_case BIOFVM_DIR [--quick]``

``BIOFVM_DIR`` is a BioFVM source tree (MathCancer/BioFVM, never part of this repository)
in which this script builds BioFVM's own ``examples/performance_test_substrates.cpp``
(10 substrates, D = 75 000-125 000 um^2/min, decay 0.05-0.15 1/min, dt = 0.01 min, 200 steps
of its first-order LOD solver with the Thomas algorithm on a 1 mm cube), with the number of
OpenMP threads set to the number of cores and the voxel size as a parameter: 10 um
(10^6 voxels, the published benchmark) and 20 um (125 000 voxels).  Its printed wall time
per simulated minute gives the time per step.

tumorpde solves the same system, ``u_t = D_i lap u - lambda_i u`` for 10 substrates with
no-flux boundaries, with Q1 on a hexahedral mesh of the same box (``mesh.cell =
"hexahedron"``) with vertices at the voxel centres of the 20 um grid (50^3 cells,
132 651 vertices, 1.3 M unknowns), BDF2 (second order in time) and the DEFAULT solver
settings (no ``[solver]`` table: ``auto`` takes the exact tensor strategy there).  The
ratio is tumorpde's time per step (the whole step: solve, positivity check, totals) over
BioFVM's; the 10^6-voxel figures are reported per unknown and step.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ["BioFVM_vector.cpp", "BioFVM_matlab.cpp", "BioFVM_utilities.cpp", "BioFVM_mesh.cpp",
           "BioFVM_microenvironment.cpp", "BioFVM_solvers.cpp", "BioFVM_basic_agent.cpp",
           "BioFVM_agent_container.cpp", "BioFVM_MultiCellDS.cpp", "pugixml.cpp"]
SUBSTRATES = 10


def build(src: Path, resolution: float, threads: int, work: Path) -> Path:
    """Build BioFVM's substrates benchmark with a voxel size and thread count (in ``work``)."""
    exe = work / f"biofvm_substrates_{int(resolution)}um"
    if exe.exists():
        return exe
    text = (src / "examples" / "performance_test_substrates.cpp").read_text()
    text = re.sub(r"int omp_num_threads = \d+;", f"int omp_num_threads = {threads};", text)
    text = re.sub(r"double mesh_resolution=\d+(\.\d*)?;", f"double mesh_resolution={resolution};", text)
    text = text.replace('#include "../BioFVM.h"', f'#include "{src / "BioFVM.h"}"')
    main = work / f"substrates_{int(resolution)}.cpp"
    main.write_text(text)
    cmd = ["g++", "-march=native", "-O3", "-fomit-frame-pointer", "-fopenmp", "-std=c++11",
           "-o", str(exe), *[str(src / s) for s in SOURCES], str(main)]
    subprocess.run(cmd, check=True, capture_output=True, cwd=work)
    return exe


def run_biofvm(exe: Path, work: Path) -> dict:
    """Run the benchmark; time per step from its wall time per simulated minute (100 steps)."""
    t0 = time.perf_counter()
    proc = subprocess.run([str(exe), str(SUBSTRATES)], capture_output=True, cwd=work,
                          timeout=1800)
    wall = time.perf_counter() - t0
    text = proc.stdout.decode("latin-1")
    intervals = [float(m.group(1)) * 86400 + float(m.group(2)) * 3600 + float(m.group(3)) * 60
                 + float(m.group(4)) for m in re.finditer(
                     r"interval wall time: (\d+) days, (\d+) hours, (\d+) minutes, and ([\d.e+-]+) seconds",
                     text)]
    voxels = int(re.search(r"voxels: (\d+)", text).group(1))
    steps = [t / 100.0 for t in intervals[1:]]  # the first interval is the start (t = 0)
    return {"voxels": voxels, "unknowns": voxels * SUBSTRATES, "step_s": min(steps),
            "step_s_all": steps, "process_s": wall}


def coefficients() -> tuple[list[float], list[float]]:
    """The 10 substrates' diffusivities (um^2/min) and decay rates (1/min).

    Drawn as BioFVM's benchmark draws them (uniform in 75 000-125 000 and 0.05-0.15; the
    first 1e5 and 0.1).
    """
    import numpy as np

    rng = np.random.default_rng(2)
    D, lam = [], []
    for i in range(SUBSTRATES):
        D.append(1e5 if i == 0 else float(rng.uniform(75000.0, 125000.0)))
        lam.append(0.1 if i == 0 else float(rng.uniform(0.05, 0.15)))
    return D, lam


def tumorpde_config(cells: int, steps: int) -> dict:
    """The same problem in tumorpde (um, min); coefficients as BioFVM draws them."""
    species = {}
    for i, (D, lam) in enumerate(zip(*coefficients(), strict=True)):
        species[f"s{i}"] = {"diffusion": D, "reaction": f"-{lam}*s{i}",
                            "initial": f"1 + 0.5*sin(0.01*x + {i})*cos(0.01*y)*cos(0.01*z)"}
    h = 1000.0 / cells
    return {
        "title": "BioFVM substrates benchmark",
        "mesh": {"shape": "box", "size": [1000.0 + h, 1000.0 + h, 1000.0 + h],
                 "cells": [cells, cells, cells], "cell": "hexahedron"},
        "time": {"end": 0.01 * steps, "dt": 0.01, "scheme": "bdf2", "output_every": 0.01 * steps},
        "species": species,
        "output": {"fields": [], "progress": False},
    }


CHILD = """
import sys, json, time
from tumorpde.model.config import load_dict
from tumorpde.io.rundir import read_info
from tumorpde.simulation import run
res = run(load_dict(json.loads(sys.argv[1])), sys.argv[2])
info = read_info(sys.argv[2])
print(json.dumps({"steps": res.steps, "solve_s": info.wall_time.solve,
                  "unknowns": info.mesh.dofs}))
"""


def run_tumorpde(cells: int, steps: int, work: Path) -> dict:
    """Time per step of tumorpde (the first step, with the Jacobian and preconditioner, apart)."""
    out = {}
    for n in (1, steps + 1):
        # as many threads as BioFVM's OpenMP (the tensor strategy's transforms use them)
        env = dict(os.environ, OMP_NUM_THREADS=str(os.cpu_count() or 1),
                   PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(tumorpde_config(cells, n)),
                               str(work / f"t{n}")], capture_output=True, text=True, env=env,
                              timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        out[n] = json.loads(proc.stdout.strip().splitlines()[-1])
        out[n]["process_s"] = time.perf_counter() - t0
    first, total = out[1], out[steps + 1]
    return {"unknowns": total["unknowns"], "first_step_s": first["solve_s"],
            "step_s": (total["solve_s"] - first["solve_s"]) / steps, "steps_timed": steps,
            "process_s": total["process_s"]}


# ---------------------------------------------------------------- equal accuracy
#: the exact solution: every substrate from 1 + 0.5 cos(pi x/L) cos(pi y/L) cos(pi z/L) on the
#: cube [0, L]^3 with no-flux faces, u_i = exp(-lambda_i t) (1 + 0.5 mode exp(-3 D_i pi^2 t/L^2))
SIDE = 1000.0
T_END = 2.0  # minutes
STEPS_TUMORPDE = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
STEPS_BIOFVM = (0.01, 0.02, 0.05, 0.1, 0.2)


def accuracy_config(cells: int, dt: float) -> dict:
    """The exact-solution case in tumorpde, with default settings (Q1 on hexahedra, BDF2)."""
    mode = f"cos(pi*x/{SIDE})*cos(pi*y/{SIDE})*cos(pi*z/{SIDE})"
    species = {f"s{i}": {"diffusion": D, "reaction": f"-{lam}*s{i}", "initial": f"1 + 0.5*{mode}"}
               for i, (D, lam) in enumerate(zip(*coefficients(), strict=True))}
    return {"title": "BioFVM substrates, exact solution",
            "mesh": {"shape": "box", "size": [SIDE] * 3, "cells": [cells] * 3,
                     "cell": "hexahedron"},
            "time": {"end": T_END, "dt": dt, "scheme": "bdf2", "output_every": T_END},
            "species": species, "output": {"fields": [], "progress": False}}


CHILD_ACCURACY = """
import sys, json, time
t0 = time.perf_counter()
import numpy as np
import tumorpde as tp
cfg, D, lam = json.loads(sys.argv[1])
p = tp.Problem(cfg)
t1 = time.perf_counter()
p.solve()
t2 = time.perf_counter()
x = p.disc.V0.tabulate_dof_coordinates()
T, L = cfg["time"]["end"], cfg["mesh"]["size"][0]
mode = np.prod(np.cos(np.pi * x / L), axis=1)
exact = np.stack([np.exp(-l * T) * (1 + 0.5 * mode * np.exp(-3 * d * np.pi**2 * T / L**2))
                  for d, l in zip(D, lam)], axis=1)
err = p.disc.u.x.array.reshape(exact.shape) - exact
print(json.dumps({"steps": p.state.steps, "loop_s": t2 - t1, "process_s": time.perf_counter() - t0,
                  "max_abs_error": float(np.abs(err).max()),
                  "rel_l2_error": float(np.sqrt((err**2).sum() / (exact**2).sum()))}))
"""


def accuracy_tumorpde(cells: int, dt: float, threads: int) -> dict:
    """The errors and times of tumorpde on the exact-solution case (a fresh process)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    arg = json.dumps([accuracy_config(cells, dt), *coefficients()])
    proc = subprocess.run([sys.executable, "-c", CHILD_ACCURACY, arg], capture_output=True,
                          text=True, env=env, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return {"dt": dt, **json.loads(proc.stdout.strip().splitlines()[-1])}


def accuracy_biofvm(exe: Path, voxel: float, dt: float, threads: int, work: Path) -> dict:
    """BioFVM's errors and times on the exact-solution case (benchmarks/biofvm_accuracy.cpp)."""
    D, lam = coefficients()
    proc = subprocess.run([str(exe), f"{voxel:g}", f"{dt:g}", f"{T_END:g}", str(threads),
                           ",".join(f"{v:.17g}" for v in D), ",".join(f"{v:.17g}" for v in lam)],
                          capture_output=True, cwd=work, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode("latin-1")[-2000:])
    return json.loads(proc.stdout.decode("latin-1").strip().splitlines()[-1])


def build_accuracy(src: Path, work: Path) -> Path:
    """Build the exact-solution driver against BioFVM's sources."""
    exe = work / "biofvm_accuracy"
    if not exe.exists():
        cmd = ["g++", "-march=native", "-O3", "-fomit-frame-pointer", "-fopenmp", "-std=c++11",
               f"-I{src}", "-o", str(exe), *[str(src / s) for s in SOURCES],
               str(ROOT / "benchmarks" / "biofvm_accuracy.cpp")]
        subprocess.run(cmd, check=True, capture_output=True, cwd=work)
    return exe


def equal_accuracy(src: Path, threads: int, work: Path, quick: bool) -> dict:
    """Both tools on the exact solution at the 20 um grid over a range of steps.

    Then the time tumorpde needs to be at least as accurate as BioFVM at its own dt
    (0.01 min).
    """
    exe = build_accuracy(src, work)
    bio = [accuracy_biofvm(exe, 20.0, dt, threads, work)
           for dt in (STEPS_BIOFVM[:1] if quick else STEPS_BIOFVM)]
    tum = [accuracy_tumorpde(50, dt, threads) for dt in STEPS_TUMORPDE]
    ref = bio[0]
    good = [r for r in tum if r["rel_l2_error"] <= ref["rel_l2_error"]]
    out: dict = {"biofvm": bio, "tumorpde": tum, "T_min": T_END}
    if good:
        best = min(good, key=lambda r: r["loop_s"])
        out["at_biofvm_accuracy"] = {
            "biofvm_dt": ref["dt"], "biofvm_rel_l2_error": ref["rel_l2_error"],
            "biofvm_loop_s": ref["loop_s"], "tumorpde_dt": best["dt"],
            "tumorpde_rel_l2_error": best["rel_l2_error"], "tumorpde_loop_s": best["loop_s"],
            "tumorpde_process_s": best["process_s"],
            "speedup": ref["loop_s"] / best["loop_s"]}
    return out


def main(argv: list[str] | None = None) -> None:
    """Build, run both, print JSON."""
    ap = argparse.ArgumentParser()
    ap.add_argument("biofvm_dir", type=Path)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    threads = os.cpu_count() or 1
    out: dict = {"threads": threads, "problem": __doc__.split("\n\n")[1].strip()}
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        small = run_biofvm(build(args.biofvm_dir, 20.0, threads, work), work)
        out["biofvm_125k_voxels"] = small
        if not args.quick:
            out["biofvm_1M_voxels"] = run_biofvm(build(args.biofvm_dir, 10.0, threads, work), work)
        tp = run_tumorpde(50, 5 if args.quick else 20, work)
        out["tumorpde_50_cubed"] = tp
        out["equal_accuracy"] = equal_accuracy(args.biofvm_dir, threads, work, args.quick)
    out["ratio"] = tp["step_s"] / small["step_s"]
    if "biofvm_1M_voxels" in out:
        big = out["biofvm_1M_voxels"]
        out["ratio_per_unknown_vs_1M"] = (tp["step_s"] / tp["unknowns"]) / (big["step_s"] / big["unknowns"])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
