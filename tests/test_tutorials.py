"""The tutorials of docs/tutorials run as scripts at their small size and pass their checks.

Each tutorial is a jupytext percent-format script ending with assertions; here it runs
in a child process with ``TUMORPDE_TUTORIAL_SIZE=ci`` and its outputs in a temporary
folder, must exit with status 0 and write its figures.  Two run under ``mpiexec -n 2``
too (collective solves, rank 0 printing and plotting).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.subprocess

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "docs" / "tutorials"
MPIEXEC = Path(sys.executable).parent / "mpiexec"
TIMEOUT = 600
# tutorial -> the files it must write under $TUMORPDE_TUTORIAL_OUT
EXPECTED = {
    "01_first_model": ["fronts.png"],
    "02_tme_knockout_therapy": ["arms.png"],
    "03_stepping": ["resection.png"],
    "04_results_and_plots": ["observables.png", "fields.png", "quickstart-run/observables.csv",
                             "quickstart-run/run.json", "quickstart-run/fields.xdmf",
                             "quickstart-run/fields.h5"],
    "05_calibration": ["fit.png", "measurements.csv", "cli/calibration.json",
                       "cli/predictions.csv"],
    "06_imaging": ["slices.png", "tissue.msh", "truth-nifti/cells_t0.nii.gz",
                   "fit/calibration.json", "fit-nifti/metrics.csv"],
}
HEADER = """\
# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
"""


def run_tutorial(name: str, out: Path, ranks: int = 0) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TUMORPDE_TUTORIAL_SIZE="ci", TUMORPDE_TUTORIAL_OUT=str(out),
               MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    cmd = [sys.executable, str(TUTORIALS / f"{name}.py")]
    if ranks:
        cmd = [str(MPIEXEC), "-n", str(ranks), *cmd]
    try:
        return subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True,
                              timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{name} did not finish within {TIMEOUT} s (stderr: {exc.stderr!r})")


def check_outputs(name: str, proc: subprocess.CompletedProcess[str], out: Path) -> None:
    assert proc.returncode == 0, (f"{name} exited with {proc.returncode}\n--- stdout\n"
                                  f"{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-8000:]}")
    assert proc.stdout.count("all checks passed") == 1, proc.stdout  # printed by rank 0 only
    for rel in EXPECTED[name]:
        path = out / name / rel
        assert path.is_file(), f"{name} did not write {rel}"
        if path.suffix == ".png":
            assert path.stat().st_size > 10_000, f"{rel} is nearly empty"


def test_every_tutorial_is_listed() -> None:
    assert sorted(p.stem for p in TUTORIALS.glob("[0-9][0-9]_*.py")) == sorted(EXPECTED)
    readme = (TUTORIALS / "README.md").read_text()
    for name in EXPECTED:
        assert f"({name}.py)" in readme, f"README.md does not link {name}.py"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_jupytext_percent_format(name: str) -> None:
    text = (TUTORIALS / f"{name}.py").read_text()
    assert text.startswith(HEADER), f"{name}.py lacks the jupytext percent header"
    header, sep, body = text.partition("\n# ---\n")
    assert sep and "format_version:" in header and "kernelspec:" in header
    cells = [line for line in body.splitlines() if line.startswith("# %%")]
    assert cells and cells[0] == "# %% [markdown]", "the first cell should say what it teaches"
    assert set(cells) <= {"# %%", "# %% [markdown]"}, set(cells)
    assert "# %%\n" in body + "\n", "no code cell"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_tutorial_runs(name: str, tmp_path: Path) -> None:
    check_outputs(name, run_tutorial(name, tmp_path), tmp_path)


@pytest.mark.skipif(not MPIEXEC.exists(), reason="no mpiexec next to the interpreter")
@pytest.mark.parametrize("name", ["03_stepping", "04_results_and_plots"])
def test_tutorial_runs_on_two_ranks(name: str, tmp_path: Path) -> None:
    check_outputs(name, run_tutorial(name, tmp_path, ranks=2), tmp_path)
