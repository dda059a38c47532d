"""The command line, run as child processes: list, init, check, run, --set, and
serial = parallel (``mpiexec -n 2``) for the issue's example."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from tumorpde.io.rundir import read

pytestmark = pytest.mark.subprocess

MPIEXEC = str(Path(sys.executable).parent / "mpiexec")


def cli(*args: str, cwd: Path, np_: int = 1, timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "tumorpde", *args]
    if np_ > 1:
        cmd = [MPIEXEC, "-n", str(np_), *cmd]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_list_shows_the_bundled_examples(tmp_path):
    r = cli("list", cwd=tmp_path)
    assert r.returncode == 0
    names = [line.split()[0] for line in r.stdout.splitlines()]
    assert {"quickstart", "fisher-kpp", "keller-segel"} <= set(names)


def test_init_writes_an_example_that_checks(tmp_path):
    r = cli("init", "keller-segel", "ks.toml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    data = tomllib.loads((tmp_path / "ks.toml").read_text())
    assert set(data["species"]) == {"cells", "chemokine"}
    r = cli("check", "ks.toml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout and "2 species" in r.stdout
    assert not (tmp_path / "out").exists()  # check writes nothing


def test_run_with_set_overrides(tmp_path):
    r = cli("run", "quickstart", "-o", "o", "-q", "--set", "time.end=0.2",
            "--set", "time.scheme=backward-euler", "--set", "parameters.chi=0.0", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    run = read(tmp_path / "o").info
    assert run.status == "completed"
    assert run.config["time"]["end"] == 0.2
    assert run.config["time"]["scheme"] == "backward-euler"
    assert run.config["parameters"]["chi"] == 0.0
    obs = read(tmp_path / "o").observables
    assert obs["t"][-1] == pytest.approx(0.2)


def test_default_output_directory(tmp_path):
    r = cli("run", "quickstart", "-q", "--set", "time.end=0.1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "quickstart" / "fields.xdmf").exists()
    assert "completed" in r.stdout


def test_issue_example_serial_equals_two_ranks(tmp_path):
    """The issue's example, exactly as written, on 1 and 2 ranks: identical observables."""
    r1 = cli("run", "quickstart", "-o", "serial", "-q", cwd=tmp_path)
    r2 = cli("run", "quickstart", "-o", "parallel", "-q", cwd=tmp_path, np_=2)
    assert r1.returncode == 0, r1.stderr
    assert r2.returncode == 0, r2.stderr
    a = read(tmp_path / "serial").observables
    b = read(tmp_path / "parallel").observables
    assert list(a) == list(b) and len(a["t"]) == len(b["t"]) == 21
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-6, atol=1e-12)
    run = read(tmp_path / "parallel").info
    assert run.ranks == 2 and run.status == "completed"
    # progress and the summary line come from rank 0 only
    assert r2.stdout.count("tumorpde: completed") == 1


def test_keller_segel_two_ranks_conserves_mass(tmp_path):
    r = cli("run", "keller-segel", "-o", "ks", "-q", "--set", "time.end=0.01", cwd=tmp_path,
            np_=2)
    assert r.returncode == 0, r.stderr
    obs = read(tmp_path / "ks").observables
    np.testing.assert_allclose(obs["total_cells"], obs["total_cells"][0], rtol=1e-10)


def test_knockout_flag(tmp_path):
    r = cli("run", "quickstart", "-o", "ko", "-q", "--set", "time.end=0.2", "--knockout",
            "signal", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    run = read(tmp_path / "ko").info
    assert run.config["knockout"] == ["signal"]
    obs = read(tmp_path / "ko").observables
    assert np.all(obs["total_signal"] == 0.0)
    r = cli("run", "quickstart", "-o", "bad", "-q", "--knockout", "nosuch", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "tumorpde: error: knockout: unknown species 'nosuch' (species: cells, signal)"]
