"""``make bench``: every benchmark case side by side in one run; results.json and results.md.

``python -m benchmarks.run [--quick] [--only CASE ...] [--out benchmarks/results.json]``

Cases (ratios, not absolute times, are the result; each ratio is measured in this run):

* ``tme2d``: the tme-2d scenario with the ``split`` strategy against the monolithic
  strategy (one Newton over the blocked 15-component space, full Jacobian, direct LU: the
  naive DOLFINx approach), both against a fine-step reference, time per simulated day;
* ``roofline``: STREAM-like bandwidth and the bandwidth the linear-solve phase of the split
  tme-2d run reaches; whole step versus solve-only time;
* ``scaling``: the split 15-species 3D step on 1 and 2 ranks at 0.54 M unknowns;
* ``memory``: bytes per unknown of tme-2d and tme-3d (peak resident memory less imports);
* ``pypde``: the stiff tumour-oxygen system at equal accuracy against py-pde (``bench`` extra);
* ``fisher``: scalar nonlinear Fisher-KPP in 2-D against its exact travelling wave, whole
  process to 1e-3 and 1e-4 against py-pde (``bench`` extra; tumorpde with default settings);
* ``biofvm``: BioFVM's 10-substrate diffusion-decay benchmark (when built: ``BIOFVM_DIR``).

A case whose tool is missing is recorded as skipped with the reason.  The machine's load
average is recorded before and after every case (the numbers are only comparable within
one run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.scaling import ROOT, child_env, find_mpiexec

CASES = ("tme2d", "roofline", "scaling", "memory", "pypde", "fisher", "biofvm")


def _child(module: str, args: list[str], ranks: int = 1, timeout: float = 1800.0) -> dict:
    cmd = [sys.executable, "-m", module, *args]
    if ranks > 1:
        cmd = [find_mpiexec(), "-n", str(ranks), *cmd]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            out = json.loads(line)
            out["wall_s"] = time.perf_counter() - t0
            return out
    raise RuntimeError(f"no result from {' '.join(cmd)}")


def tme_run(config: str, sets: list[str], tmp: Path, name: str, ranks: int = 1) -> dict:
    """One tumorpde run through :mod:`benchmarks.tme_case`."""
    args = [config, "--outdir", str(tmp / name), "--state", str(tmp / f"{name}.npy")]
    for s in sets:
        args += ["--set", s]
    res = _child("benchmarks.tme_case", args, ranks)
    res["state_file"] = str(tmp / f"{name}.npy")
    return res


def rel_error(a: dict, ref: dict) -> float:
    """Relative l2 difference of two final states."""
    x, y = np.load(a["state_file"]), np.load(ref["state_file"])
    return float(np.linalg.norm(x - y) / np.linalg.norm(y))


def case_tme2d(tmp: Path, quick: bool) -> dict:
    """Split versus monolithic on tme-2d at the same time step, against a fine-step reference."""
    days = 2.0 if quick else 4.0
    common = [f"time.end={days}", "time.output_every=" + str(days),
              f"output.checkpoint_every={10 * days}", "output.fields=[]"]
    # warm the JIT caches of both strategies (form compilation is not part of the comparison)
    tme_run("tme-2d", common + ["time.end=0.01", "time.output_every=0.01"], tmp, "warm")
    tme_run("tme-2d", common + ["time.end=0.01", "time.output_every=0.01",
                                "solver.strategy='monolithic'"], tmp, "warm-mono")
    ref = tme_run("tme-2d", common + ["time.dt=0.125"], tmp, "reference")
    fast = tme_run("tme-2d", common, tmp, "split")
    mono = tme_run("tme-2d", common + ["solver.strategy='monolithic'"], tmp, "monolithic")
    for r in (fast, mono):
        r["error_vs_reference"] = rel_error(r, ref)
    return {
        "days": days, "dt": 1.0, "reference_dt": 0.125,
        "split": fast, "monolithic": mono, "reference": ref,
        "speedup": mono["solve_s_per_day"] / fast["solve_s_per_day"],
        "target": ">= 5x faster at equal error",
    }


def case_roofline(tmp: Path, quick: bool, tme2d: dict | None) -> dict:
    """STREAM bandwidth and the solve-phase bandwidth of the split tme-2d run."""
    from benchmarks.stream import measure

    st = measure(10_000_000 if quick else 20_000_000, 5)
    out: dict = {"stream": st}
    if tme2d is not None:
        fast = tme2d["split"]
        out["solve_modelled_GBs"] = fast["solve_modelled_GBs"]
        out["fraction_of_stream"] = (fast["solve_modelled_GBs"] or 0.0) / st["bandwidth_GBs"]
        out["step_over_solve"] = fast["solve_s"] / fast["ksp_solve_s"]
    kern = _child("benchmarks.scaling_step", ["--cells", "24" if quick else "32", "--steps", "2"])
    out["split_3d_step"] = {k: kern[k] for k in ("unknowns", "step_s", "ksp_solve_s",
                                                   "matmult_GBs", "solve_modelled_GBs")}
    out["split_3d_fraction_of_stream"] = kern["solve_modelled_GBs"] / st["bandwidth_GBs"]
    out["split_3d_step_over_solve"] = kern["step_s"] / kern["ksp_solve_s"]
    # the real tme-3d model through the engine (residuals, Jacobians, observables included)
    cells = "[12, 12, 12]" if quick else "[20, 20, 20]"
    t3 = tme_run("tme-3d", [f"mesh.cells={cells}", "time.end=3", "time.output_every=3",
                            "output.checkpoint_every=30", "output.fields=[]"], tmp, "tme3d")
    out["tme3d"] = {k: t3[k] for k in ("unknowns", "solve_s", "ksp_solve_s", "events_s",
                                       "solve_modelled_GBs")}
    out["tme3d_step_over_solve"] = t3["solve_s"] / t3["ksp_solve_s"]
    out["tme3d_fraction_of_stream"] = (t3["solve_modelled_GBs"] or 0.0) / st["bandwidth_GBs"]
    out["targets"] = "solve phase >= 30 % of STREAM; whole step <= 3x solve-only"
    return out


def case_scaling(tmp: Path, quick: bool) -> dict:
    """The split 3D step on 1 and 2 ranks (0.54 M unknowns; --quick: 0.23 M)."""
    from benchmarks.scaling import strong

    data = strong([1, 2], cells=24 if quick else 32, step_args=["--steps", "3"], timeout=900)
    cases = data["cases"]
    out = {"cases": cases, "target": "speed-up >= 1.6 on 2 ranks"}
    if len(cases) == 2 and all("error" not in c for c in cases):
        out["speedup"] = cases[1]["speedup"]
    return out


def case_memory(tmp: Path, quick: bool) -> dict:
    """Bytes per unknown of tme-2d and tme-3d: total, and marginal between two mesh sizes.

    The total (peak resident memory less the imports, over the unknowns) includes fixed costs
    that do not grow with the mesh (compiled forms, UFL and PETSc objects); the marginal
    figure ``(RSS_2 - RSS_1) / (N_2 - N_1)`` between two sizes is what a large run pays per
    unknown, and is the one compared with the target.
    """
    out: dict = {"target": "<= 2048 bytes per unknown (marginal)"}
    sets = ["time.end=1", "time.output_every=1", "output.checkpoint_every=10", "output.fields=[]"]
    sizes = {"tme-2d": ("[48, 48]", "[96, 96]"),
             "tme-3d": ("[12, 12, 12]", "[16, 16, 16]" if quick else "[20, 20, 20]")}
    for config, (small, large) in sizes.items():
        a = tme_run(config, sets + [f"mesh.cells={small}"], tmp, f"{config}-small")
        b = tme_run(config, sets + [f"mesh.cells={large}"], tmp, f"{config}-large")
        out[config] = {
            "unknowns": [a["unknowns"], b["unknowns"]],
            "bytes_per_unknown_total": [a["bytes_per_unknown"], b["bytes_per_unknown"]],
            "bytes_per_unknown": (b["peak_rss_bytes"] - a["peak_rss_bytes"])
            / (b["unknowns"] - a["unknowns"]),
            "step_s": [a["step_s"], b["step_s"]],
        }
    return out


def case_pypde(tmp: Path, quick: bool) -> dict:
    """Fisher-KPP against py-pde (see benchmarks/pypde_case.py)."""
    try:
        import pde  # noqa: F401
    except ImportError:
        return {"skipped": "py-pde is not installed (pip install -e '.[bench]')"}
    return _child("benchmarks.pypde_case", ["--quick"] if quick else [])


def case_fisher(tmp: Path, quick: bool) -> dict:
    """Fisher-KPP in 2-D against py-pde at two accuracies (see benchmarks/fisher_case.py)."""
    try:
        import pde  # noqa: F401
    except ImportError:
        return {"skipped": "py-pde is not installed (pip install -e '.[bench]')"}
    return _child("benchmarks.fisher_case", ["--quick"] if quick else [])


def case_biofvm(tmp: Path, quick: bool) -> dict:
    """BioFVM's diffusion-decay benchmark against the same problem in tumorpde."""
    d = os.environ.get("BIOFVM_DIR")
    if not d or not Path(d).is_dir():
        return {"skipped": "BioFVM is not built here: set BIOFVM_DIR to a BioFVM build "
                           "(see docs/performance.md)"}
    return _child("benchmarks.biofvm_case", [d] + (["--quick"] if quick else []))


def markdown(res: dict) -> str:
    """The results table."""
    c = res["cases"]
    rows = ["| case | measured | target | met |", "|---|---|---|---|"]

    def row(name: str, value: str, target: str, ok: bool | None) -> None:
        rows.append(f"| {name} | {value} | {target} | {'yes' if ok else 'no' if ok is not None else '-'} |")

    t = c.get("tme2d")
    if t and "split" in t:
        row("tme-2d: split vs monolithic (time per simulated day)",
            f"{t['speedup']:.1f}x (errors {t['split']['error_vs_reference']:.2e} vs "
            f"{t['monolithic']['error_vs_reference']:.2e})", ">= 5x", t["speedup"] >= 5)
    r = c.get("roofline")
    if r and "stream" in r:
        if "fraction_of_stream" in r:
            row("tme-2d solve phase / STREAM", f"{100 * r['fraction_of_stream']:.0f} % "
                f"({r['solve_modelled_GBs']:.1f} of {r['stream']['bandwidth_GBs']:.1f} GB/s)",
                ">= 30 %", r["fraction_of_stream"] >= 0.3)
            row("tme-2d whole step / solve-only", f"{r['step_over_solve']:.1f}x", "<= 3x",
                r["step_over_solve"] <= 3)
        row("3D split step solve phase / STREAM", f"{100 * r['split_3d_fraction_of_stream']:.0f} %",
            ">= 30 %", r["split_3d_fraction_of_stream"] >= 0.3)
        row("3D split step whole step / solve-only", f"{r['split_3d_step_over_solve']:.1f}x",
            "<= 3x", r["split_3d_step_over_solve"] <= 3)
        if "tme3d_step_over_solve" in r:
            u = r["tme3d"]["unknowns"]
            row(f"tme-3d ({u / 1e3:.0f} k unknowns) solve phase / STREAM",
                f"{100 * r['tme3d_fraction_of_stream']:.0f} %", ">= 30 %",
                r["tme3d_fraction_of_stream"] >= 0.3)
            row(f"tme-3d ({u / 1e3:.0f} k unknowns) whole step / solve-only",
                f"{r['tme3d_step_over_solve']:.1f}x", "<= 3x", r["tme3d_step_over_solve"] <= 3)
    s = c.get("scaling")
    if s and "speedup" in s:
        u = s["cases"][0]["unknowns"]
        row(f"2 ranks vs 1 ({u / 1e6:.2f} M unknowns)", f"{s['speedup']:.2f}x", ">= 1.6x",
            s["speedup"] >= 1.6)
    m = c.get("memory")
    if m:
        for k in ("tme-2d", "tme-3d"):
            if k in m:
                row(f"memory {k}, marginal between {m[k]['unknowns'][0]} and {m[k]['unknowns'][1]} "
                    f"unknowns (total per unknown at the larger size)",
                    f"{m[k]['bytes_per_unknown']:.0f} B/unknown "
                    f"({m[k]['bytes_per_unknown_total'][1]:.0f})", "<= 2048",
                    m[k]["bytes_per_unknown"] <= 2048)
    p = c.get("pypde")
    if p:
        if "skipped" in p:
            row("py-pde", "skipped: " + p["skipped"], ">= 5x", None)
        elif "speedup" in p:
            row("py-pde, stiff tumour-oxygen system, whole process at equal error",
                f"{p['speedup']:.1f}x", ">= 5x", p["speedup"] >= 5)
    f = c.get("fisher")
    if f:
        if "skipped" in f:
            row("py-pde, Fisher-KPP 2-D", "skipped: " + f["skipped"], ">= 5x", None)
        for target, at in f.get("at", {}).items():
            if "speedup" in at:
                tp_, pp = at["tumorpde"], at["py-pde"]
                row(f"py-pde, Fisher-KPP 2-D exact wave, whole process to error {target} "
                    f"(tumorpde defaults {tp_['cells'][0]}x{tp_['cells'][1]}, dt {tp_['dt']:g}; "
                    f"py-pde {pp['scheme']}/{pp['backend']} {pp['cells'][0]}x{pp['cells'][1]})",
                    f"{at['speedup']:.1f}x ({tp_['process_s']:.1f} s vs {pp['process_s']:.1f} s)",
                    ">= 5x", at["speedup"] >= 5)
            elif "at" in f:
                row(f"py-pde, Fisher-KPP 2-D, error {target}", "a tool reached no run within "
                    "it (see results.json)", ">= 5x", None)
    b = c.get("biofvm")
    if b:
        if "skipped" in b:
            row("BioFVM", "skipped: " + b["skipped"], "within 2x", None)
        elif "ratio" in b:
            row("BioFVM 10 substrates, per step", f"{b['ratio']:.2f}x BioFVM's time", "<= 2x",
                b["ratio"] <= 2)
        acc = b.get("equal_accuracy", {}).get("at_biofvm_accuracy")
        if acc:
            row("BioFVM 10 substrates, exact solution: time to BioFVM's error at its dt "
                f"({acc['biofvm_rel_l2_error']:.2e}; tumorpde dt {acc['tumorpde_dt']:g} vs "
                f"{acc['biofvm_dt']:g} min)", f"{acc['speedup']:.1f}x faster", "> 1x",
                acc["speedup"] > 1)
    for name, val in c.items():
        if isinstance(val, dict) and "error" in val:
            row(name, "failed: " + val["error"].splitlines()[0][:100], "", False)
    m = res["machine"]
    head = (f"Machine: {m['cpu']}, {m['cpus']} CPUs, Python {m['python']}; load average "
            f"{m['loadavg_start'][0]:.2f} at the start, {m['loadavg_end'][0]:.2f} at the end.\n\n")
    for u in res.get("updates", []):
        head += (f"Rerun on {u['date']} (`--update`): {', '.join(u['cases'])}, load average "
                 f"{u['machine']['loadavg_start'][0]:.2f} at its start.\n\n")
    return head + "\n".join(rows) + "\n"


def machine() -> dict:
    """A description of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    return {"cpu": cpu, "cpus": os.cpu_count(), "memory_bytes": mem, "python": platform.python_version(),
            "platform": platform.platform(), "loadavg_start": list(os.getloadavg())}


def _ok(case: dict | None) -> dict | None:
    return case if case is not None and "error" not in case else None


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    p = argparse.ArgumentParser(description="tumorpde benchmarks")
    p.add_argument("--quick", action="store_true", help="smaller problems (a few minutes)")
    p.add_argument("--only", nargs="+", choices=CASES)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results.json")
    p.add_argument("--update", action="store_true",
                   help="replace only the cases run (--only) in an existing results file; "
                        "the file records which cases were rerun when")
    args = p.parse_args(argv)
    todo = args.only or list(CASES)
    res: dict = {"machine": machine(), "quick": args.quick, "cases": {}}
    if args.update and args.out.exists():
        previous = json.loads(args.out.read_text())
        if previous.get("quick") != args.quick:
            p.error(f"--update: {args.out} was written {'with' if previous.get('quick') else 'without'}"
                    " --quick; rerun it the same way")
        res = {**previous, "cases": dict(previous["cases"])}
        res.setdefault("updates", []).append({"cases": todo, "date": time.strftime("%Y-%m-%d %H:%M"),
                                              "machine": machine()})
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tumorpde-bench-") as d:
        tmp = Path(d)
        os.environ.setdefault("XDG_CACHE_HOME", str(Path.home() / ".cache"))
        for name in todo:
            print(f"== {name}", flush=True)
            t1 = time.perf_counter()
            load0 = os.getloadavg()[0]
            try:
                if name == "tme2d":
                    out = case_tme2d(tmp, args.quick)
                elif name == "roofline":
                    out = case_roofline(tmp, args.quick, _ok(res["cases"].get("tme2d")))
                elif name == "scaling":
                    out = case_scaling(tmp, args.quick)
                elif name == "memory":
                    out = case_memory(tmp, args.quick)
                elif name == "pypde":
                    out = case_pypde(tmp, args.quick)
                elif name == "fisher":
                    out = case_fisher(tmp, args.quick)
                else:
                    out = case_biofvm(tmp, args.quick)
            except Exception as exc:  # keep the other cases
                out = {"error": f"{type(exc).__name__}: {exc}"}
            out["loadavg_before_after"] = [load0, os.getloadavg()[0]]
            out["case_wall_s"] = time.perf_counter() - t1
            res["cases"][name] = out
            print(json.dumps(out, default=str)[:600], flush=True)
    if args.update and res.get("updates"):
        res["updates"][-1]["wall_s"] = time.perf_counter() - t0
    else:
        res["machine"]["loadavg_end"] = list(os.getloadavg())
        res["wall_s"] = time.perf_counter() - t0
    args.out.write_text(json.dumps(res, indent=1, default=str) + "\n")
    md = markdown(res)
    args.out.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
