"""Run the verification cases and write ``docs/verification.md`` with its figures.

``python -m tumorpde.verification [--quick] [--out docs/verification.md]`` runs every
case (serially, in this process), repeats them at the quick level on 2 MPI ranks
(``mpiexec -n 2 python -m tumorpde.verification metrics ...``) to compare the numbers,
draws the figures into ``<out dir>/figures/verification/`` and writes the report.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mpi4py import MPI

from tumorpde.verification.cases import CASES, CaseResult, Ctx, run_case

__all__ = ["main", "compare_metrics", "parallel_metrics", "write_report"]

SECTIONS = [
    ("1. Manufactured solutions", ["mms-space", "mms-time"]),
    ("2. Analytic and semi-analytic cases", ["diffusion-decay", "fisher-kpp", "keller-segel"]),
    ("3. Positivity and conservation under strong taxis", ["ac98-positivity"]),
    ("4. Published model benchmarks", ["ac98", "ac2000", "gatenby-gawlinski"]),
]

REFERENCES = """\
- M. J. Ablowitz and A. Zeppetella (1979). Explicit solutions of Fisher's equation for a special
  wave speed. *Bull. Math. Biol.* 41, 835–840. (Exact wave with c = 5/sqrt 6.)
- A. R. A. Anderson and M. A. J. Chaplain (1998). Continuous and discrete mathematical models of
  tumor-induced angiogenesis. *Bull. Math. Biol.* 60, 857–899. Parameters D = 0.00035,
  chi0 = 0.38, alpha = 0.6, rho = 0.34, beta = 0.05, gamma = 0.1, eta = 0.1 — *provenance:* the
  project's literature notes, where two independent public codes agree; initial TAF
  `exp(-(1-x)^2/0.45)` (linear-source variant) and fibronectin `0.75 exp(-x^2/0.45)` from the
  same notes; vessel-tip arrival times are *not* available there and are not compared.
- A. R. A. Anderson, M. A. J. Chaplain, E. L. Newman, R. J. C. Steele and A. M. Thompson (2000).
  Mathematical modelling of tumour invasion and metastasis. *J. Theor. Med.* 2, 129–154.
  Parameters d_n = 0.001, gamma = 0.005, eta = 10, d_m = 0.001, alpha = 0.1, beta = 0 —
  *provenance:* project notes; initial data *assumed* (usual choice, not in the notes).
- M. Bramson (1983). Convergence of solutions of the Kolmogorov equation to travelling waves.
  *Mem. Amer. Math. Soc.* 44(285). (Logarithmic delay -(3/2) sqrt(D/rho) ln t; project notes.)
- U. Ebert and W. van Saarloos (2000). Front propagation into unstable states: universal
  algebraic convergence towards uniformly translating pulled fronts. *Physica D* 146, 1–99.
  (The t^-1/2 correction, used only as a free fit term.)
- R. A. Gatenby and E. T. Gawlinski (1996). A reaction-diffusion model of cancer invasion.
  *Cancer Res.* 56, 5745–5753. Nondimensional rho2 = 1, Delta2 = 4e-5, delta3 = 70 —
  *provenance:* project notes (PMC3005191 table; a public code uses delta3 = 110); the gap for
  delta1 > 1 and the Fisher speed of the front are the notes' qualitative checks.
- E. F. Keller and L. A. Segel (1970). Initiation of slime mold aggregation viewed as an
  instability. *J. Theor. Biol.* 26, 399–415. (Bundled example `keller-segel`.)
- K. R. Swanson, R. C. Rostomily and E. C. Alvord (2008). A mathematical modelling tool for
  predicting survival of individual patients following resection of glioblastoma. *Br. J.
  Cancer* 98, 113–119. (Parameters of the bundled `fisher-kpp` example.)
"""


# ------------------------------------------------------------------ metrics and ranks
def run_metrics(keys: list[str], level: str, workdir: Path,
                comm: MPI.Comm = MPI.COMM_WORLD) -> dict[str, dict[str, Any]]:
    """Run cases without figures; ``{case: {"metrics": ..., "seconds": ...}}`` (collective)."""
    out = {}
    for key in keys:
        r = run_case(key, Ctx(level, workdir / key, comm, None))
        out[key] = {"metrics": r.metrics, "seconds": r.seconds,
                    "checks_failed": [c.what for c in r.checks if not c.ok and not c.known_issue]}
    return out


def _mpiexec() -> str:
    here = Path(sys.executable).parent / "mpiexec"
    return str(here) if here.exists() else (shutil.which("mpiexec") or "mpiexec")


def parallel_metrics(keys: list[str], level: str, workdir: Path, nprocs: int = 2,
                     timeout: float = 3600) -> tuple[dict[str, dict[str, Any]], float]:
    """Run cases on ``nprocs`` ranks in a child ``mpiexec``; their metrics and the wall time."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"metrics-np{nprocs}.json"
    cmd = [_mpiexec(), "-n", str(nprocs), sys.executable, "-m", "tumorpde.verification", "metrics",
           "--level", level, "--cases", ",".join(keys), "--workdir", str(workdir),
           "--json", str(path)]
    t0 = time.perf_counter()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(path.read_text()), time.perf_counter() - t0


def compare_metrics(a: dict[str, float], b: dict[str, float], rtol: float = 1e-6,
                    atol: float = 1e-10) -> dict[str, Any]:
    """Compare two metric dictionaries.

    Keys starting with ``~`` are round-off-level quantities (mass drifts, minima near 0),
    compared absolutely (``atol``); the others relatively (``rtol``).
    """
    keys = sorted(set(a) | set(b))
    missing = [k for k in keys if k not in a or k not in b]
    rel, absd, worst = 0.0, 0.0, ""
    nrel = nabs = 0
    for k in keys:
        if k in missing:
            continue
        x, y = a[k], b[k]
        if k.startswith("~"):
            nabs += 1
            absd = max(absd, abs(x - y))
        else:
            nrel += 1
            d = abs(x - y) / max(abs(x), abs(y), 1e-300)
            if d > rel:
                rel, worst = d, k
    ok = not missing and rel <= rtol and absd <= atol
    return {"relative": rel, "absolute": absd, "n_rel": nrel, "n_abs": nabs, "worst": worst,
            "missing": missing, "ok": ok}


# ------------------------------------------------------------------ markdown
def _table_md(columns: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|")

    out = ["| " + " | ".join(cell(c) for c in columns) + " |",
           "|" + "|".join("---" for _ in columns) + "|"]
    out += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(out)


def _status(c: Any) -> str:
    if c.ok:
        return "✅ matched" if not c.known_issue else "✅ matched (fixed)"
    return "⚠️ known issue" if c.known_issue else "❌ did not match"


def _case_md(r: CaseResult, figrel: str) -> str:
    out = [f"### {r.title}", "", f"Case `{r.key}` ({r.seconds:.0f} s).", ""]
    if r.intro:
        out += [r.intro, ""]
    for t in r.tables:
        out += [f"**{t.title}**", "", _table_md(t.columns, t.rows), ""]
        if t.note:
            out += [f"*{t.note}*", ""]
    if r.checks:
        out += ["**Checks**", "", _table_md(["check", "expected", "observed", "result"],
                                            [[c.what, c.expected, c.observed, _status(c)]
                                             for c in r.checks]), ""]
    for note in r.notes:
        out += [note, ""]
    for f in r.figures:
        out += [f"![{f.caption}]({figrel}/{f.file})", "", f"*{f.caption}*", ""]
    if r.listing:
        out += ["<details><summary>The generated config (TOML)</summary>", "", "```toml",
                r.listing.rstrip(), "```", "", "</details>", ""]
    return "\n".join(out)


def write_report(path: Path, results: dict[str, CaseResult], parallel: dict[str, Any] | None,
                 level: str, seconds: float, figrel: str) -> None:
    """Write the Markdown report."""
    from tumorpde.compat import versions

    v = versions()
    checks = [c for r in results.values() for c in r.checks]
    passed = sum(c.ok for c in checks)
    known = [c for c in checks if c.known_issue and not c.ok]
    failed = [c for c in checks if not c.ok and not c.known_issue]
    lines = [
        "# Verification and validation",
        "",
        "<!-- Generated by `python -m tumorpde.verification` (`make verify`); do not edit. -->",
        "",
        f"Generated on {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} by "
        f"`python -m tumorpde.verification{' --quick' if level == 'quick' else ''}` "
        f"(`make verify`) in {seconds / 60:.1f} min on {platform.node() or 'unknown host'} "
        f"({os.cpu_count()} cores); tumorpde {v.get('tumorpde')}, DOLFINx {v.get('dolfinx')}, "
        f"PETSc {v.get('petsc')}, {v.get('mpi', '').split(chr(10))[0]}. Level: **{level}**.",
        "",
        "Every case is an ordinary tumorpde config (a dictionary of the TOML file, built by "
        "`tumorpde/verification/configs.py`) run through `tumorpde.simulation.run` — the same "
        "path as `tumorpde run`; errors are measured on the returned solution, observables "
        "come from `observables.csv`, fields from `fields.h5`. The fast subset runs in "
        "`make test` (`tests/test_verification.py`), the long studies under the "
        "`convergence` marker.",
        "",
        f"**{passed} of {len(checks)} checks matched**"
        + (f", {len(known)} known engine issue(s)" if known else "")
        + (f", **{len(failed)} did not match**" if failed else "") + ".",
        "",
        _table_md(["case", "checks matched", "time"],
                  [[f"[{r.title}](#{_anchor(r.title)})",
                    f"{sum(c.ok for c in r.checks)}/{len(r.checks)}"
                    + (" (" + ", ".join("known issue" for c in r.checks if c.known_issue and not c.ok)
                       + ")" if any(c.known_issue and not c.ok for c in r.checks) else ""),
                    f"{r.seconds:.0f} s"] for r in results.values()]),
        "",
    ]
    if parallel is not None:
        lines += [f"Parallel invariance (section 5): "
                  f"{'all cases agree' if parallel['ok'] else 'DIFFERENCES FOUND'} on 1 and 2 ranks.", ""]
    for title, keys in SECTIONS:
        present = [k for k in keys if k in results]
        if not present:
            continue
        lines += [f"## {title}", ""]
        for k in present:
            lines += [_case_md(results[k], figrel), ""]
    lines += ["## 5. Parallel invariance", ""]
    if parallel is None:
        lines += ["Not run (`--no-parallel`).", ""]
    else:
        lines += [
            f"Every case was run again at the *quick* level, serially and with `mpiexec -n "
            f"{parallel['nprocs']}` (a child process running `python -m tumorpde.verification "
            f"metrics`), and all of its numbers (errors, fronts, speeds, minima, drifts: the "
            f"`metrics` of each case) compared. Relative differences for ordinary numbers; "
            f"absolute differences for round-off-level ones (mass drifts, minima near zero). 2D "
            f"and 1D problems use a direct solver (MUMPS), 3D ones GMRES with block Jacobi, "
            f"whose iterates depend on the partition (tolerance 1e-10). Pass: relative ≤ "
            f"{parallel['rtol']:g} and absolute ≤ {parallel['atol']:g}. 2-rank wall time: "
            f"{parallel['seconds']:.0f} s.", "",
            _table_md(["case", "numbers compared", "max relative difference", "largest at",
                       "max absolute difference (round-off quantities)", "result"],
                      [[k, f"{c['n_rel']} + {c['n_abs']}", f"{c['relative']:.2e}",
                        c["worst"] or "–", f"{c['absolute']:.2e}",
                        "✅ same" if c["ok"] else "❌ differ" + (f" (missing {c['missing']})"
                                                               if c["missing"] else "")]
                       for k, c in parallel["cases"].items()]), ""]
    lines += ["## 6. Engine issues found", "", ENGINE_ISSUES, ""]
    open_issues = [c for c in checks if c.known_issue and not c.ok]
    if open_issues:
        lines += ["Open (checks marked as known issues): "
                  + "; ".join(f"{c.what}: {c.observed}" for c in open_issues) + ".", ""]
    lines += [USER_MMS, "", "## References and provenance", "", REFERENCES]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def _anchor(title: str) -> str:
    out = []
    for ch in title.lower():
        if ch.isalnum() or ch in "-_":
            out.append(ch)
        elif ch == " ":
            out.append("-")
    return "".join(out)


ENGINE_ISSUES = """\
- **Two taxis terms on one species were not positivity-preserving (fixed).** The edge-upwind
  stabilisation (`tumorpde/fem/taxis.py`) was computed per taxis term, each term subtracting the
  species' *whole* physical diffusion from its own Péclet number, so with chemotaxis and
  haptotaxis together (AC98) the diffusion was counted twice and edges where each term alone
  needed no artificial diffusion, but their sum did, kept a positive off-diagonal entry. AC98
  with a uniform initial fibronectin f = 0.4 gave min n ≈ -4e-4 (64 x 64) and -5e-4
  (100 x 100) with backward Euler, while each term alone stayed ≥ 0. Fixed in the engine by one
  limiter per species from the *sum* of the terms' Péclet numbers (`EdgeTaxis` now holds all
  terms of a species); the case is kept in section 3 as a regression check (min n = 0 now).
- No other discrepancy with theory was found: every order, closed form, conservation and
  parallel-invariance check above matches."""

USER_MMS = """\
## Running your own manufactured solution

Any config without `[units]` can be manufactured: give an exact solution per species (an
expression in parameters, `x, y, z, t`) and get a config whose reactions carry the source terms
(and whose initial values, and optionally Dirichlet values, are the exact solution); the
squared L2 error of each species is recorded in `observables.csv` as `sq_error_NAME`:

```sh
python -m tumorpde.verification manufacture model.toml \\
    --exact cells="(1 + t)*(1 + 0.5*cos(pi*x)*cos(pi*y))" \\
    --exact signal="(1 + t)*(1 + 0.25*cos(2*pi*x))" -o mms.toml
tumorpde run mms.toml -o out/mms
```

The exact solution must satisfy the config's boundary conditions (no flux unless
`--dirichlet NAME` sets the exact values on a boundary) and, at region interfaces, the
continuity of `u` and of the normal flux. In Python, `tumorpde.verification.mms.manufacture`
does the same on a dictionary, and `tumorpde.verification.runner.errors` measures L2/H1 errors
of a run against the exact solution."""


# ------------------------------------------------------------------ command line
def _cases(arg: str | None) -> list[str]:
    if not arg or arg == "all":
        return list(CASES)
    keys = [k.strip() for k in arg.split(",") if k.strip()]
    bad = [k for k in keys if k not in CASES]
    if bad:
        raise SystemExit(f"unknown case(s) {bad}; known: {', '.join(CASES)}")
    return keys


def _manufacture(argv: list[str]) -> int:
    import tomllib

    from tumorpde.verification.mms import dump_toml, manufacture

    p = argparse.ArgumentParser(prog="python -m tumorpde.verification manufacture",
                                description="Add manufactured source terms to a config.")
    p.add_argument("config")
    p.add_argument("--exact", action="append", default=[], metavar="SPECIES=EXPR", required=True)
    p.add_argument("--dirichlet", action="append", default=[], metavar="BOUNDARY")
    p.add_argument("-o", "--output", metavar="FILE")
    a = p.parse_args(argv)
    data = tomllib.loads(Path(a.config).read_text())
    exact = dict(e.split("=", 1) for e in a.exact)
    out = manufacture(data, exact, a.dirichlet or None, error_observables=True)
    text = dump_toml(out, "Manufactured from " + a.config + "; exact solution:\n"
                     + "\n".join(f"  {k} = {v}" for k, v in exact.items()))
    if a.output:
        Path(a.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def _metrics(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m tumorpde.verification metrics")
    p.add_argument("--level", default="quick", choices=["quick", "full"])
    p.add_argument("--cases", default="all")
    p.add_argument("--workdir", default="out/verification/metrics")
    p.add_argument("--json", required=True)
    a = p.parse_args(argv)
    comm = MPI.COMM_WORLD
    wd = Path(a.workdir) / f"np{comm.size}"
    out = run_metrics(_cases(a.cases), a.level, wd, comm)
    if comm.rank == 0:
        Path(a.json).write_text(json.dumps({"ranks": comm.size, "cases": out}, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line of ``python -m tumorpde.verification``."""
    import logging

    from tumorpde.compat import import_dolfinx

    import_dolfinx()
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.getLogger("tumorpde").setLevel(logging.ERROR)
    if argv and argv[0] == "manufacture":
        return _manufacture(argv[1:])
    if argv and argv[0] == "metrics":
        return _metrics(argv[1:])
    p = argparse.ArgumentParser(prog="python -m tumorpde.verification",
                                description="Rerun the verification cases and write the report. "
                                "Subcommands: 'manufacture' (add MMS sources to a config), "
                                "'metrics' (numbers only, JSON; used for the MPI comparison).")
    p.add_argument("--quick", action="store_true", help="coarse meshes and short runs (minutes)")
    p.add_argument("--out", default="docs/verification.md", help="report path")
    p.add_argument("--cases", default="all", help=f"comma-separated subset of: {', '.join(CASES)}")
    p.add_argument("--workdir", default="out/verification", help="directory for the runs")
    p.add_argument("--np", type=int, default=2, help="ranks of the parallel comparison")
    p.add_argument("--no-parallel", action="store_true", help="skip the 1-vs-2-rank comparison")
    a = p.parse_args(argv)
    comm = MPI.COMM_WORLD
    if comm.size > 1:
        raise SystemExit("run the report serially; it starts its own mpiexec for section 5")
    level = "quick" if a.quick else "full"
    keys = _cases(a.cases)
    out = Path(a.out)
    figdir = out.parent / "figures" / "verification"
    figrel = os.path.relpath(figdir, out.parent)
    work = Path(a.workdir)
    t0 = time.perf_counter()
    results: dict[str, CaseResult] = {}
    for key in keys:
        print(f"[verification] {key} ({level}) ...", flush=True)
        results[key] = run_case(key, Ctx(level, work / level / key, comm, figdir))
        r = results[key]
        bad = [c.what for c in r.checks if not c.ok]
        print(f"[verification] {key}: {sum(c.ok for c in r.checks)}/{len(r.checks)} checks "
              f"matched in {r.seconds:.0f} s" + (f"; not matched: {bad}" if bad else ""), flush=True)
    parallel = None
    if not a.no_parallel:
        print(f"[verification] parallel invariance: quick level on 1 and {a.np} ranks ...",
              flush=True)
        if level == "quick":
            serial = {k: results[k].metrics for k in keys}
        else:
            serial = {k: v["metrics"] for k, v in
                      run_metrics(keys, "quick", work / "parallel" / "np1", comm).items()}
        par, secs = parallel_metrics(keys, "quick", work / "parallel", a.np)
        cmp = {k: compare_metrics(serial[k], par["cases"][k]["metrics"]) for k in keys}
        parallel = {"cases": cmp, "ok": all(c["ok"] for c in cmp.values()), "nprocs": a.np,
                    "rtol": 1e-6, "atol": 1e-10, "seconds": secs}
        for k, c in cmp.items():
            print(f"[verification] {k}: 1 vs {a.np} ranks: max rel {c['relative']:.2e}, "
                  f"max abs {c['absolute']:.2e} {'ok' if c['ok'] else 'DIFFER'}", flush=True)
    seconds = time.perf_counter() - t0
    write_report(out, results, parallel, level, seconds, figrel)
    failed = [c.what for r in results.values() for c in r.checks if not c.ok and not c.known_issue]
    print(f"[verification] wrote {out} ({seconds / 60:.1f} min); "
          f"{'all checks matched' if not failed else f'{len(failed)} checks did not match'}",
          flush=True)
    return 1 if failed or (parallel is not None and not parallel["ok"]) else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
