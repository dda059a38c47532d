"""``tumorpde sweep``: ensembles over MPI sub-communicators or processes, SALib indices."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tumorpde.apps.sweep import Vary, design, parse_vary, sensitivity
from tumorpde.io.rundir import read

MPIEXEC = str(Path(sys.executable).with_name("mpiexec"))
# quickstart, tiny: cells (logistic growth rho, taxis chi) and signal
TINY = ["quickstart", "--set", "mesh.cells=[10,5]", "--set", "time.end=0.2", "--set", "time.dt=0.05"]
VARY = ["--vary", "parameters.rho=0.5:1.0", "--vary", "parameters.chi=0.01:0.03"]


def tumorpde(*args: str, mpi: int = 0, cwd: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "tumorpde", *args]
    if mpi:
        cmd = [MPIEXEC, "-n", str(mpi), *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=600)


def table(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ----------------------------------------------------------------------------- library level
@pytest.mark.parametrize("method, n, runs", [("lhs", 256, 256), ("sobol", 256, 256 * 4),
                                             ("morris", 64, 64 * 3)])
def test_indices_of_a_linear_model(method, n, runs):
    """Y = 4 x0 + x1 on [0,1]^2: first-order indices 16/17 and 1/17, no interactions."""
    varies = [Vary("a", "a", 0.0, 1.0), Vary("b", "b", 0.0, 1.0)]
    X = design(method, varies, n, seed=1)
    assert X.shape == (runs, 2)
    assert X.min() >= 0.0 and X.max() <= 1.0
    res = sensitivity(method, varies, X, 4 * X[:, 0] + X[:, 1], seed=1)
    if method == "morris":  # elementary effects are the slopes
        assert res["mu_star"] == pytest.approx([4.0, 1.0], rel=1e-9)
        assert res["sigma"] == pytest.approx([0.0, 0.0], abs=1e-9)
    else:
        assert res["S1"] == pytest.approx([16 / 17, 1 / 17], abs=0.06)
    if method == "sobol":
        assert res["ST"] == pytest.approx([16 / 17, 1 / 17], abs=0.06)


def test_constant_output_has_zero_indices():
    varies = [Vary("a", "a", 0.0, 1.0)]
    X = design("lhs", varies, 16, seed=0)
    assert sensitivity("lhs", varies, X, np.full(16, 2.5), seed=0) == {
        "constant": True, "S1": [0.0], "S1_conf": [0.0]}


def test_parse_vary_units_and_ranges():
    data = {"parameters": {"rho": "0.8 1/day", "chi": 0.02,
                           "D": {"value": "2e-10 cm^2/s", "range": [1e-10, 4e-10]}},
            "time": {"end": 1.0}}
    assert parse_vary("parameters.rho=0.5:1", data) == Vary("parameters.rho", "parameters.rho",
                                                            0.5, 1.0, "1/day")
    assert parse_vary("parameters.rho=12:24 1/week", data).unit == "1/week"
    assert parse_vary("parameters.chi=0.01:0.03", data).unit == ""
    d = parse_vary("parameters.D", data)  # the parameter's own range, in its units
    assert (d.target, d.low, d.high, d.unit) == ("parameters.D.value", 1e-10, 4e-10, "cm^2/s")
    assert d.setting(3e-10) == 'parameters.D.value="3e-10 cm^2/s"'
    assert parse_vary("parameters.chi=0.01:0.03", data).setting(0.02) == "parameters.chi=0.02"


# ----------------------------------------------------------------------------- the command
@pytest.mark.subprocess
def test_sweep_sobol_finds_that_taxis_conserves_cells(tmp_path):
    out = tmp_path / "sw"
    r = tumorpde("sweep", *TINY, *VARY, "--samples", "4", "--method", "sobol", "-o", str(out))
    assert r.returncode == 0, r.stderr
    rows = table(out / "results.csv")
    assert len(rows) == 4 * (2 + 2)
    assert list(rows[0])[:4] == ["member", "status", "parameters.rho", "parameters.chi"]
    for row in rows:  # the table holds each member's final observables, from its own run
        run = read(out / "runs" / f"{int(row['member']):04d}").info
        assert run.status == "completed"
        assert float(row["total_cells"]) == run.final.observables["total_cells"]
        assert run.config["parameters"]["rho"] == f"{float(row['parameters.rho'])!r} 1/day"
        assert 0.5 <= float(row["parameters.rho"]) <= 1.0
    ind = json.loads((out / "sensitivity.json").read_text())["indices"]["total_cells"]
    # the upwind taxis conserves mass: total cells depend on growth (rho), hardly on chi
    st_rho, st_chi = ind["ST"]
    assert st_rho > 0.3 and abs(st_chi) < 1e-3 * st_rho
    assert (out / "sensitivity.png").stat().st_size > 10_000
    setup = json.loads((out / "sweep.json").read_text())
    assert setup["runs"] == 16 and setup["failed"] == 0 and setup["method"] == "sobol"


@pytest.mark.subprocess
def test_sweep_mpi_subcommunicators_equal_processes(tmp_path):
    args = ["sweep", *TINY, "--vary", "parameters.rho=0.5:1.0", "--samples", "2", "--method",
            "morris", "--seed", "3"]
    r = tumorpde(*args, "-o", str(tmp_path / "mpi"), mpi=2)
    assert r.returncode == 0, r.stderr
    assert "on 2 groups of 1 MPI rank(s)" in r.stderr
    r = tumorpde(*args, "-o", str(tmp_path / "proc"), "--jobs", "2")
    assert r.returncode == 0, r.stderr
    a, b = table(tmp_path / "mpi" / "results.csv"), table(tmp_path / "proc" / "results.csv")
    assert len(a) == 2 * (1 + 1)
    assert a == b
    ranks = {read(p).info.ranks
             for p in (tmp_path / "mpi" / "runs").iterdir()}
    assert ranks == {1}
    r = tumorpde(*args, "-o", str(tmp_path / "x"), "--ranks-per-member", "2", mpi=2)
    assert r.returncode == 0, r.stderr
    assert {read(p).info.ranks
            for p in (tmp_path / "x" / "runs").iterdir()} == {2}
    c = table(tmp_path / "x" / "results.csv")  # 2 ranks per member: equal to round-off
    assert [float(row["total_cells"]) for row in c] == pytest.approx(
        [float(row["total_cells"]) for row in a], rel=1e-10)


@pytest.mark.subprocess
def test_sweep_failed_members_exit_1(tmp_path):
    # one Newton iteration per step cannot converge, and dt_min forbids halving the step
    r = tumorpde("sweep", *TINY, "--set", "solver.snes_max_it=1", "--set", "time.dt_min=0.04",
                 "--vary", "parameters.rho=0.5:1.0", "--samples", "2", "--method", "morris",
                 "-o", str(tmp_path))
    assert r.returncode == 1, r.stderr
    assert r.stderr.splitlines()[-1].startswith("tumorpde: sweep failed: 4 of 4 members failed")
    assert {row["status"] for row in table(tmp_path / "results.csv")} == {"failed"}
    assert not (tmp_path / "sensitivity.json").exists()


@pytest.mark.parametrize("args, message", [
    (["--vary", "parameters.rhoo=1:2"], "--vary: parameters.rhoo: no such key in parameters"),
    (["--vary", "parameters.rho=2:1"], "--vary: parameters.rho: the range 2:1 must have LOW < HIGH"),
    (["--vary", "parameters.rho=1-2"], "expected a range LOW:HIGH, got '1-2'"),
    (["--vary", "parameters.rho"], "--vary: parameters.rho has no range in the config"),
    (["--vary", "species.cells.reaction=0:1"], "is 'rho*cells*(1 - cells)', not a number"),
    (["--vary", "parameters.chi=0:1", "--vary", "parameters.chi=1:2"], "parameters.chi is varied twice"),
    (["--vary", "time.end=-1:0.5"], "--vary: with every key at its low end: time.end"),
    (["--vary", "parameters.chi=0:1", "--method", "sobol", "--samples", "6"], "power of 2"),
    (["--vary", "parameters.chi=0:1", "--samples", "5"], "lhs needs at least 9 samples"),
    (["--vary", "parameters.chi=0:1", "--observable", "total_cels"], "no observable 'total_cels'"),
    (["--vary", "parameters.chi=0:1", "--ranks-per-member", "2"],
     "--ranks-per-member: 2 does not divide the 1 MPI ranks"),
])
def test_sweep_bad_input(tmp_path, args, message):
    """Every input error is found before any member runs (in-process, on one rank)."""
    from mpi4py import MPI

    from tumorpde.apps.cli import build_parser
    from tumorpde.apps.sweep import sweep
    from tumorpde.errors import ConfigError

    if "--samples" not in args:
        args = [*args, "--samples", "16"]
    a = build_parser().parse_args(["sweep", *TINY, *args, "-o", str(tmp_path / "o")])
    with pytest.raises(ConfigError) as err:
        sweep(a.config, a.vary, a.samples, a.method, a.output, a.set, a.knockout, a.observable,
              a.seed, a.jobs, a.ranks_per_member, comm=MPI.COMM_SELF)
    assert message in f"{err.value.key}: {err.value.message}"
    assert not (tmp_path / "o").exists()


@pytest.mark.subprocess
def test_sweep_bad_input_is_one_line(tmp_path):
    r = tumorpde("sweep", *TINY, "--vary", "parameters.rho=2:1", "--samples", "9")
    assert r.returncode == 2
    assert r.stderr == ("tumorpde: error: --vary: parameters.rho: the range 2:1 must have "
                        "LOW < HIGH (finite numbers)\n")


@pytest.mark.subprocess
def test_sweep_of_invalid_toml_is_one_line(tmp_path):
    (tmp_path / "bad.toml").write_text("[mesh\ncells = [4, 4]\n")
    r = tumorpde("sweep", str(tmp_path / "bad.toml"), "--vary", "parameters.rho=0.5:1.0",
                 "--samples", "4", "-o", str(tmp_path / "out"))
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("tumorpde: error: bad.toml is not valid TOML")
    assert len(r.stderr.splitlines()) == 1


@pytest.mark.subprocess
def test_sweep_stops_on_sigint_with_its_table(tmp_path):
    import signal
    import time

    cmd = [sys.executable, "-m", "tumorpde", "sweep", *TINY, "--vary", "parameters.rho=0.5:1.0",
           "--samples", "16", "--method", "sobol", "-o", str(tmp_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "runs" / "0002" / "run.json").exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "tumorpde: interrupted: sweep stopped with" in err.splitlines()[-1]
    status = [row["status"] for row in table(tmp_path / "results.csv")]
    assert len(status) == 48 and status[:2] == ["completed", "completed"]
    assert status.count("interrupted") == 1 and status[-1] == "pending"
    assert not (tmp_path / "sensitivity.json").exists()
