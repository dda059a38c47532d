"""``tumorpde calibrate`` as child processes: outputs, serial = 2 ranks, bad input."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.subprocess

MPIEXEC = str(Path(sys.executable).parent / "mpiexec")
SETS = ["mesh.cells=[8, 8]", "time.end=0.03", "time.dt=0.0025", "solver.snes_rtol=1e-12",
        "solver.snes_atol=1e-14", "parameters.chi=0.3"]


def cli(*args: str, cwd: Path, np_: int = 1) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "tumorpde", *args]
    if np_ > 1:
        cmd = [MPIEXEC, "-n", str(np_), *cmd]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)


def calibrate(*args: str, cwd: Path, np_: int = 1) -> subprocess.CompletedProcess:
    sets = [a for s in SETS for a in ("--set", s)]
    return cli("calibrate", "keller-segel", *sets, "-q", *args, cwd=cwd, np_=np_)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    """Field samples of the model with chi = 0.5 (2 % noise) and total cells (exact)."""
    import tumorpde as tp
    from tumorpde.calibration.objective import Objective
    from tumorpde.io.data import Data

    folder = tmp_path_factory.mktemp("data")
    problem = tp.Problem(tp.load("keller-segel", [*SETS[:-1], "output.progress=false"]))
    rng = np.random.default_rng(4)
    pts = rng.uniform(0.05, 0.95, size=(12, 2))
    rows = [(t, f, p) for t in (0.01, 0.02, 0.03) for f in ("cells", "chemokine") for p in pts]
    n = len(rows)
    d = Data(Path("x"), "field", [], [], np.array([r[0] for r in rows]), [r[1] for r in rows],
             np.zeros(n), np.ones(n), np.array([r[2] for r in rows]), np.arange(n))
    model = Objective(problem, [d], ["chi"]).evaluate([0.5]).model
    problem.destroy()
    value = model * (1 + 0.02 * rng.standard_normal(n))
    path = folder / "fields.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t", "x", "y", "field", "value", "sigma", "replicate"])
        for (t, fld, p), v, m in zip(rows, value, model, strict=True):
            w.writerow([t, p[0], p[1], fld, v, 0.02 * abs(m), "r1"])
    return path


def test_calibrate_fits_forecasts_and_writes_its_outputs(tmp_path, data_file):
    r = calibrate("--data", str(data_file), "--fit", "parameters.chi=0.05:2", "--until", "0.02",
                  "-o", "cal", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "calibration converged" in r.stdout
    out = tmp_path / "cal"
    rec = json.loads((out / "calibration.json").read_text())
    assert rec["status"] == "converged"
    assert rec["n_data"] == 48  # rows with t <= 0.02
    est = rec["parameters"]["parameters.chi"]
    assert est["ci95"][0] <= 0.5 <= est["ci95"][1] and est["std"] > 0
    assert set(rec) >= {"objective", "gradient", "aic", "bic", "evaluations", "timings"}
    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 72  # every row, fitted and forecast
    assert list(rows[0])[:7] == ["t", "x", "y", "field", "value", "sigma", "replicate"]
    assert {"fitted", "model", "lo", "hi"} <= set(rows[0])
    assert {r["fitted"] for r in rows if float(r["t"]) > 0.02} == {"0"}
    for row in rows:
        assert float(row["lo"]) <= float(row["model"]) <= float(row["hi"])
    assert (out / "fit" / "observables.csv").exists() and (out / "fit.png").exists()
    # tumorpde report of the calibration directory: the run at the estimate and the fit
    rep = cli("report", "cal", "--no-snapshots", "-o", "cal.md", cwd=tmp_path)
    assert rep.returncode == 0, rep.stderr
    text = (tmp_path / "cal.md").read_text()
    assert "## Calibration" in text and "| `parameters.chi` |" in text
    assert "cal_files/calibration/fit.png" in text


def test_the_gradient_on_two_ranks_equals_one_rank(tmp_path, data_file):
    args = ("--data", str(data_file), "--fit", "chi=0.05:2", "--fit", "alpha=1:30",
            "--fit", "Du=0.001:0.1", "--evaluate")
    one = calibrate(*args, "-o", "one", cwd=tmp_path)
    two = calibrate(*args, "-o", "two", cwd=tmp_path, np_=2)
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    g1 = json.loads((tmp_path / "one" / "calibration.json").read_text())
    g2 = json.loads((tmp_path / "two" / "calibration.json").read_text())
    assert g1["status"] == "evaluated"
    for key, v in g1["gradient"].items():
        assert abs(g2["gradient"][key] - v) <= 1e-9 * abs(v), key
    assert g2["objective"] == pytest.approx(g1["objective"], rel=1e-12)


@pytest.mark.parametrize("edit, args, message", [
    ("fields,tumour", (), "unknown field (species) 'tumour'"),
    ("0.5,0.5,cells->1.5,0.5,cells", (), "lies outside the mesh"),
    ("value->nan", (), "not a finite number"),
    ("drop-value", (), "misses the column(s) value"),
    ("", ("--fit", "chi=0.6:2"), "do not contain the config's value 0.3"),
    ("", ("--fit", "mesh.cells"), "is not a parameter of the model"),
    ("", ("--fit", "chi=2:1"), "must have LOW < HIGH"),
    ("", ("--method", "mcmc", "--walkers", "1"), "needs at least 2 walkers"),
    ("", ("--method", "mcmc", "--steps", "10", "--burn", "10"), "must lie in [0, steps=10)"),
    ("", ("--profile", "1"), "at least 2 points"),
])
def test_bad_input_ends_with_status_2_and_one_line(tmp_path, data_file, edit, args, message):
    text = data_file.read_text().splitlines()
    if edit == "fields,tumour":
        text[1] = text[1].replace(",cells,", ",tumour,")
    elif edit.startswith("0.5"):
        parts = text[1].split(",")
        parts[1] = "1.5"
        text[1] = ",".join(parts)
    elif edit == "value->nan":
        parts = text[2].split(",")
        parts[4] = "nan"
        text[2] = ",".join(parts)
    elif edit == "drop-value":
        text = [",".join(c for i, c in enumerate(line.split(",")) if i != 4) for line in text]
    f = tmp_path / "data.csv"
    f.write_text("\n".join(text) + "\n")
    fit = () if any(a == "--fit" for a in args) else ("--fit", "chi=0.05:2")
    r = calibrate("--data", str(f), *fit, *args, "-o", "bad", cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tumorpde: error:"), r.stderr
    assert message in lines[0]
    assert not (tmp_path / "bad").exists()


def test_a_field_parameter_is_fitted_node_by_node(tmp_path, data_file):
    r = calibrate("--data", str(data_file), "--set", "parameters.alpha={value=10.0, field=true}",
                  "--fit", "alpha=1:40", "--regularise", "alpha=1e-4", "-o", "field", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rec = json.loads((tmp_path / "field" / "calibration.json").read_text())
    a = rec["parameters"]["alpha"]
    assert a["field"] is True and a["nodes"] == 81 and a["regularisation"] == 1e-4
    assert 1 <= a["min"] <= a["estimate"] <= a["max"] <= 40
    assert (tmp_path / "field" / "parameter-fields.xdmf").exists()
    bad = calibrate("--data", str(data_file), "--fit", "chi=0.05:2", "--regularise", "alpha=1",
                    "-o", "bad", cwd=tmp_path)
    assert bad.returncode == 2 and "is not a fitted parameter" in bad.stderr


SCRATCH = Path(__file__).resolve().parents[1] / "experiments" / "scratch-assay" / "fisher-kpp.toml"
FAST = ["--set", "mesh.cells=[38]", "--set", "time.dt=1.0", "-q"]


def mcmc(*args: str, cwd: Path, np_: int = 1) -> subprocess.CompletedProcess:
    return cli("calibrate", str(SCRATCH), "--method", "mcmc", "--burn", "5", *FAST, *args,
               cwd=cwd, np_=np_)


def chains(path: Path) -> np.ndarray:
    with np.load(path, allow_pickle=True) as z:
        return z["chain"]


def test_mcmc_samples_a_posterior_and_resumes_exactly_after_a_kill(tmp_path):
    import os
    import signal
    import time

    whole = mcmc("--steps", "24", "-o", "whole", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    rec = json.loads((tmp_path / "whole" / "calibration.json").read_text())
    assert rec["status"] == "sampled" and rec["mcmc"]["samples"] == 8 * 19
    for key in ("D", "r"):
        p = rec["parameters"][key]
        assert p["ci95"][0] < p["estimate"] < p["ci95"][1] and p["std"] > 0
    assert 0.1 < rec["mcmc"]["acceptance"] < 0.95
    with open(tmp_path / "whole" / "posterior.csv") as f:
        assert f.readline().strip() == "D,r,log_prob" and len(f.readlines()) == 8 * 19
    assert (tmp_path / "whole" / "corner.png").stat().st_size > 10_000
    # kill -9 once the first checkpoint exists, then the same command again
    cmd = [sys.executable, "-m", "tumorpde", "calibrate", str(SCRATCH), "--method", "mcmc",
           "--burn", "5", *FAST, "--steps", "24", "-o", "killed"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while not (tmp_path / "killed" / "chains.npz").exists() and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "calibration.json").exists()
    again = mcmc("--steps", "24", "-o", "killed", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    resumed = json.loads((tmp_path / "killed" / "calibration.json").read_text())
    assert 0 < resumed["mcmc"]["resumed_from_step"] < 24
    np.testing.assert_array_equal(chains(tmp_path / "killed" / "chains.npz"),
                                  chains(tmp_path / "whole" / "chains.npz"))
    # another calibration in the same directory is refused
    other = mcmc("--steps", "24", "--walkers", "10", "-o", "killed", cwd=tmp_path)
    assert other.returncode == 2 and "different calibration" in other.stderr


def test_mcmc_walkers_spread_over_mpi_groups_give_the_serial_chain(tmp_path):
    one = mcmc("--steps", "12", "-o", "one", cwd=tmp_path)
    two = mcmc("--steps", "12", "-o", "two", cwd=tmp_path, np_=2)
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    np.testing.assert_allclose(chains(tmp_path / "two" / "chains.npz"),
                               chains(tmp_path / "one" / "chains.npz"), rtol=1e-10)


def test_data_given_on_the_command_line_replace_the_configs_own(tmp_path):
    own = cli("calibrate", str(SCRATCH), "--evaluate", *FAST, "-o", "own", cwd=tmp_path)
    other = SCRATCH.parent / "data" / "jin2016-16.csv"
    given = cli("calibrate", str(SCRATCH), "--evaluate", "--data", str(other), *FAST,
                "-o", "given", cwd=tmp_path)
    assert own.returncode == 0 and given.returncode == 0, own.stderr + given.stderr
    a = json.loads((tmp_path / "own" / "calibration.json").read_text())
    b = json.loads((tmp_path / "given" / "calibration.json").read_text())
    assert [Path(f).name for f in a["data"]] == ["jin2016-10.csv"]
    assert b["data"] == [str(other)] and b["n_data"] == a["n_data"] == 2 * 38 * 3


def test_the_bundled_spheroid_calibrates_against_its_bundled_data(tmp_path):
    # `tumorpde calibrate spheroid` from any folder: the [calibration] table's data file
    # (the 2,500-cell WM983b radii) resolves beside the bundled config
    r = cli("calibrate", "spheroid", "--evaluate", "-o", "out", "--set", "mesh.cells=[70]",
            "--set", "time.dt=0.2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rec = json.loads((tmp_path / "out" / "calibration.json").read_text())
    assert rec["status"] == "evaluated" and rec["n_data"] == 435
    assert Path(rec["data"][0]).name == "wm983b-2500.csv" and Path(rec["data"][0]).is_file()
    assert set(rec["parameters"]) == {"lam", "k_pressure", "q_max", "c_i", "mu"}
    # the mobility is not identified by radii (its interval reaches below 0): said so
    assert rec["parameters"]["lam"]["identified"] and rec["parameters"]["c_i"]["identified"]
    assert not rec["parameters"]["k_pressure"]["identified"]
    assert "intervals of k_pressure" in r.stdout + r.stderr and "--profile" in r.stdout + r.stderr
    with open(tmp_path / "out" / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["observable"] for r in rows} == {"outer_radius", "inhibited_radius",
                                               "necrotic_radius"}
    outer = [abs(float(r["model"]) - float(r["value"])) for r in rows
             if r["observable"] == "outer_radius"]
    assert np.sqrt(np.mean(np.square(outer))) < 40.0  # the calibrated defaults: ~30 um


def test_max_evaluations_stops_each_start_where_it_is(tmp_path):
    r = cli("calibrate", str(SCRATCH), *FAST, "--starts", "1", "--set",
            "calibration.max_evaluations=3", "-o", "out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rec = json.loads((tmp_path / "out" / "calibration.json").read_text())
    assert rec["status"] == "stopped" and "maximum number of function evaluations" in \
        rec["starts"][0]["status"]
    assert rec["evaluations"] <= 3 + 2  # the start's runs and the final evaluation
