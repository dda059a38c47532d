"""Strong and weak MPI scaling of the split time step, with the memory bandwidth of the machine.

Usage (from the repository root)::

    python benchmarks/scaling.py --ranks 1 2 4 8 16 --mode strong --out strong.json
    python benchmarks/scaling.py --ranks 1 2 4 8 16 --mode weak --out weak.json
    python benchmarks/scaling.py --ranks 1 2 4 8 16 --mode stream --out stream.json

Every case is a separate ``mpiexec -n P python -m benchmarks.scaling_step`` (or
``benchmarks.stream``) child with its own time limit; the results file is rewritten after
every case, so a case that fails or runs out of time leaves the others' results.

* ``strong``: a fixed mesh (``--cells``, default 64: 274 625 vertices x 15 species =
  4.1 million unknowns); efficiency ``E_P = T_1 / (P T_P)`` (relative to the fewest ranks run).
* ``weak``: about ``--unknowns-per-rank`` unknowns on every rank (mesh ``cells = c_1 P^(1/3)``);
  efficiency ``E_P = (T_1 / n_1) / (T_P / n_P)`` with ``n`` the unknowns per rank, which
  corrects for the integer mesh sizes.
* ``stream``: the STREAM-like kernels of :mod:`benchmarks.stream` on P ranks at once.

The library functions (:func:`strong`, :func:`weak`, :func:`stream`) are used by ``make bench``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["find_mpiexec", "run_case", "strong", "weak", "stream", "efficiency"]

ROOT = Path(__file__).resolve().parent.parent


def find_mpiexec() -> str:
    """``$MPIEXEC``, else ``mpiexec`` beside this Python, on ``PYTHONPATH``'s ``bin/`` or ``PATH``."""
    if os.environ.get("MPIEXEC"):
        return os.environ["MPIEXEC"]
    candidates = [Path(sys.executable).parent / "mpiexec"]
    for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        if entry:
            candidates.append(Path(entry) / "bin" / "mpiexec")
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    found = shutil.which("mpiexec")
    if found:
        return found
    raise SystemExit("scaling: no mpiexec found (set MPIEXEC)")


def child_env() -> dict[str, str]:
    """Environment of the children: one thread per rank, the repository importable."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "BLIS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        env[var] = "1"
    paths = [str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def run_case(ranks: int, module: str, args: list[str], timeout: float, log: Path | None = None,
             bind: bool = False) -> dict:
    """Run ``python -m module args`` on ``ranks`` ranks; the JSON it prints last, or an error."""
    cmd = [find_mpiexec(), "-n", str(ranks)]
    if bind:
        cmd += ["-bind-to", "core"]
    cmd += [sys.executable, "-m", module, *args]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=max(timeout, 1.0))
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        timed_out = True
    wall = time.perf_counter() - t0
    if log is not None:
        with open(log, "a") as f:
            f.write(f"$ {' '.join(cmd)}\n{out}\n[exit {proc.returncode}, {wall:.1f} s"
                    f"{', timed out' if timed_out else ''}]\n\n")
    result = None
    for line in reversed(out.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                result = json.loads(line)
                break
            except json.JSONDecodeError:
                continue
    if result is None or timed_out or proc.returncode != 0:
        return {"ranks": ranks, "error": "timed out" if timed_out else
                f"exit status {proc.returncode}", "wall_s": wall,
                "tail": out.splitlines()[-5:], **({"partial": result} if result else {})}
    result["wall_s"] = wall
    return result


def efficiency(cases: list[dict], mode: str) -> None:
    """Add speed-up and parallel efficiency to successful cases (relative to the fewest ranks)."""
    ok = [c for c in cases if "error" not in c]
    if not ok:
        return
    base = min(ok, key=lambda c: c["ranks"])
    for c in ok:
        p = c["ranks"] / base["ranks"]
        if mode == "strong":
            c["speedup"] = base["step_s"] / c["step_s"]
            c["efficiency"] = c["speedup"] / p
        else:
            per = base["step_s"] / base["unknowns_per_rank"]
            c["efficiency"] = per / (c["step_s"] / c["unknowns_per_rank"])


class Budget:
    """A deadline shared by the cases: each gets ``min(limit, time left - reserve)``."""

    def __init__(self, deadline: float | None, reserve: float = 5.0) -> None:
        self.deadline = deadline
        self.reserve = reserve

    def limit(self, want: float) -> float:
        if self.deadline is None:
            return want
        return min(want, self.deadline - time.time() - self.reserve)


def _write(out: Path | None, data: dict) -> None:
    if out is not None:
        tmp = out.with_suffix(out.suffix + ".tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        tmp.replace(out)


def _cases(mode: str, ranks: list[int], sizes: dict[int, int], step_args: list[str],
           out: Path | None, log: Path | None, timeout: float, budget: Budget,
           bind: bool, meta: dict) -> dict:
    data = {"mode": mode, **meta, "cases": []}
    for p in ranks:
        limit = budget.limit(timeout)
        if limit < 10:
            data["cases"].append({"ranks": p, "error": "skipped: out of time"})
            continue
        res = run_case(p, "benchmarks.scaling_step", ["--cells", str(sizes[p]), *step_args],
                       limit, log, bind)
        data["cases"].append(res)
        efficiency(data["cases"], mode)
        _write(out, data)
        print(f"{mode} P={p}: " + (f"step {res['step_s']:.3f} s, {res['unknowns']} unknowns"
              + (f", efficiency {res['efficiency']:.2f}" if "efficiency" in res else "")
              if "error" not in res else res["error"]), flush=True)
    return data


def strong(ranks: list[int], cells: int = 64, step_args: list[str] | None = None,
           out: Path | None = None, log: Path | None = None, timeout: float = 300.0,
           budget: Budget | None = None, bind: bool = False) -> dict:
    """Strong scaling on a fixed ``cells^3`` box."""
    return _cases("strong", ranks, {p: cells for p in ranks}, step_args or [], out, log,
                  timeout, budget or Budget(None), bind, {"cells": cells})


def weak_cells(p: int, unknowns_per_rank: float, species: int = 15) -> int:
    """Mesh size with about ``unknowns_per_rank`` unknowns on each of ``p`` ranks."""
    nodes = unknowns_per_rank * p / species
    return max(2, round(nodes ** (1.0 / 3.0)) - 1)


def weak(ranks: list[int], unknowns_per_rank: float = 5e5, step_args: list[str] | None = None,
         out: Path | None = None, log: Path | None = None, timeout: float = 300.0,
         budget: Budget | None = None, bind: bool = False) -> dict:
    """Weak scaling with about ``unknowns_per_rank`` unknowns per rank."""
    sizes = {p: weak_cells(p, unknowns_per_rank) for p in ranks}
    return _cases("weak", ranks, sizes, step_args or [], out, log, timeout,
                  budget or Budget(None), bind, {"unknowns_per_rank_target": unknowns_per_rank})


def stream(ranks: list[int], n: int = 20_000_000, out: Path | None = None,
           log: Path | None = None, timeout: float = 120.0, budget: Budget | None = None,
           bind: bool = False) -> dict:
    """STREAM-like bandwidth on each number of ranks (all ranks at once)."""
    budget = budget or Budget(None)
    data: dict = {"mode": "stream", "n_per_rank": n, "cases": []}
    for p in ranks:
        limit = budget.limit(timeout)
        if limit < 5:
            data["cases"].append({"ranks": p, "error": "skipped: out of time"})
            continue
        res = run_case(p, "benchmarks.stream", ["--mpi", "--n", str(n)], limit, log, bind)
        data["cases"].append(res)
        _write(out, data)
        print(f"stream P={p}: " + (f"{res['bandwidth_GBs']:.1f} GB/s" if "error" not in res
                                   else res["error"]), flush=True)
    return data


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    p = argparse.ArgumentParser(description="strong/weak scaling of the split step, STREAM bandwidth")
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    p.add_argument("--mode", choices=["strong", "weak", "stream"], required=True)
    p.add_argument("--out", type=Path, required=True, help="results JSON")
    p.add_argument("--log", type=Path, help="append the children's output here")
    p.add_argument("--cells", type=int, default=64, help="strong: cubes per direction (64: 4.1 M unknowns)")
    p.add_argument("--unknowns-per-rank", type=float, default=5e5, help="weak: target per rank")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--no-jit", action="store_true", help="assemble without FFCx (no C compiler)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per case")
    p.add_argument("--deadline", type=float, help="epoch seconds by which every case must end")
    p.add_argument("--stream-n", type=int, default=20_000_000, help="stream: doubles per array")
    p.add_argument("--bind", action="store_true", help="mpiexec -bind-to core")
    args = p.parse_args(argv)
    step_args = ["--steps", str(args.steps), "--warmup", str(args.warmup)]
    if args.no_jit:
        step_args.append("--no-jit")
    budget = Budget(args.deadline)
    kw = {"out": args.out, "log": args.log, "timeout": args.timeout, "budget": budget,
          "bind": args.bind}
    if args.mode == "strong":
        data = strong(args.ranks, args.cells, step_args, **kw)
    elif args.mode == "weak":
        data = weak(args.ranks, args.unknowns_per_rank, step_args, **kw)
    else:
        data = stream(args.ranks, args.stream_n, **kw)
    data["loadavg_end"] = list(os.getloadavg())
    data["cpus"] = os.cpu_count()
    _write(args.out, data)
    return 0 if all("error" not in c for c in data["cases"]) else 1


if __name__ == "__main__":
    if __package__ in (None, ""):  # run as a script: make the repository importable
        sys.path.insert(0, str(ROOT))
    sys.exit(main())
