"""Reliability: checkpoints and exact resume, signals, crash-safe outputs, solver failures.

The resume tests run a coarse ``tme-2d`` (all 15 fields, BDF2, a checkpoint at
every output time) in child processes, stop it with SIGTERM, SIGINT (both
through ``mpiexec``) or ``kill -9`` at a random moment, check what is on disk,
resume it with ``tumorpde resume`` and compare ``observables.csv`` and every
field of ``fields.h5`` with an uninterrupted run: within 1e-8 (relative) on the
same number of ranks, 1e-6 when the number of ranks changes.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from mpi4py import MPI

import numpy as np
import pytest
from helpers import example, run_dict

from tumorpde.errors import ConfigError, SolverError
from tumorpde.io.rundir import read, read_observables

MPIEXEC = Path(sys.executable).parent / "mpiexec"
CLI = [sys.executable, "-m", "tumorpde"]
# 128 steps with a checkpoint every 4 days (16 steps): the interrupting tests wait for the
# first checkpoint and still have most of the run ahead of them on a fast machine
SMALL = ["--set", "mesh.cells=[10,10]", "--set", "time.end=32", "--set", "time.dt=0.25",
         "--set", "time.output_every=4", "--set", "output.checkpoint_every=4", "-q"]


def command(ranks: int, *args: str) -> list[str]:
    base = CLI + list(args)
    return [str(MPIEXEC), "-n", str(ranks)] + base if ranks > 1 else base


def start(ranks: int, *args: str) -> subprocess.Popen:
    return subprocess.Popen(command(ranks, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def rows(outdir: Path) -> int:
    try:
        return len(read_observables(outdir)["t"])
    except ConfigError:  # not there yet
        return 0


def wait_for(outdir: Path, min_rows: int, proc: subprocess.Popen, timeout: float = 120) -> float:
    """Until the run has a checkpoint and at least ``min_rows`` observable rows.

    Returns the time the last two rows took (seconds per row on this machine)."""
    t0 = time.time()
    seen: dict[int, float] = {}
    while not ((outdir / "checkpoint.h5").exists() and rows(outdir) >= min_rows):
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert time.time() - t0 < timeout
        seen.setdefault(rows(outdir), time.time())
        time.sleep(0.02)
    seen.setdefault(rows(outdir), time.time())
    k1, k2 = sorted(seen)[-2:] if len(seen) > 1 else (0, max(seen))
    return (seen[k2] - seen.get(k1, t0)) / max(k2 - k1, 1)


def readable(outdir: Path) -> int:
    """Every output named by fields.xdmf is readable and finite; every CSV row is complete."""
    run = read(outdir)
    assert np.all(np.isfinite(run.nodes)) and run.cells.shape[0] > 0
    for t in run.times:
        for name, values in run.fields(t).items():
            assert np.all(np.isfinite(values)), (name, t)
    # the text itself: the reader would leave out a half-written last row
    lines = (outdir / "observables.csv").read_text().splitlines()
    width = len(lines[0].split(","))
    for ln in lines[1:]:
        assert len([float(v) for v in ln.split(",")]) == width
    return len(run.times)


def compare(a: Path, b: Path, rtol: float) -> float:
    """Largest relative difference of observables and fields of two runs (asserted <= rtol)."""
    ra, rb = read(a), read(b)
    oa, ob = ra.observables, rb.observables
    assert len(oa["t"]) == len(ob["t"]) and oa.keys() == ob.keys()
    np.testing.assert_array_equal(oa["t"], ob["t"])  # same output times, no duplicated rows
    worst = 0.0
    for k in oa:
        scale = max(np.abs(oa[k]).max(), 1e-300)
        worst = max(worst, float(np.abs(oa[k] - ob[k]).max() / scale))
    assert ra.field_names == rb.field_names and ra.times == rb.times
    for t in ra.times:
        fa, fb = ra.fields(t), rb.fields(t)
        for name in fa:
            x, y = fa[name], fb[name]
            worst = max(worst, float(np.abs(x - y).max() / max(np.abs(x).max(), 1e-300)))
    assert (a / "fields.xdmf").read_text() == (b / "fields.xdmf").read_text()
    assert worst <= rtol, worst
    return worst


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[int, Path]:
    """Uninterrupted runs on 1 and 2 ranks."""
    root = tmp_path_factory.mktemp("reference")
    out = {}
    for ranks in (1, 2):
        out[ranks] = root / f"r{ranks}"
        p = subprocess.run(command(ranks, "run", "tme-2d", "-o", str(out[ranks]), *SMALL),
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
    return out


def interrupt_and_resume(tmp_path: Path, ranks: int, sig: int, resume_ranks: int) -> Path:
    outdir = tmp_path / "run"
    proc = start(ranks, "run", "tme-2d", "-o", str(outdir), *SMALL)
    per_row = wait_for(outdir, 4, proc)  # of 129 rows (one per step)
    t0 = time.time()
    if sig == signal.SIGKILL:
        # any moment, not just after a row, and long before the end on a fast machine too
        time.sleep(random.Random(ranks).uniform(0.0, 2.0 * per_row))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert read(outdir).status == "running"
    else:
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert time.time() - t0 < 60
        assert proc.returncode == 128 + sig, err
        rec = read(outdir).info
        assert rec.status == "interrupted" and "checkpoint written" in rec.message
        assert err.count("tumorpde: interrupted:") == 1
    assert readable(outdir) >= 1
    p = subprocess.run(command(resume_ranks, "resume", str(outdir), "-q"), capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    rec = read(outdir).info
    assert rec.status == "completed" and rec.resumed[-1].ranks == resume_ranks
    assert not (outdir / "checkpoint.h5").exists()
    return outdir


@pytest.mark.subprocess
@pytest.mark.parametrize("ranks,sig,resume_ranks", [
    (1, signal.SIGTERM, 1), (2, signal.SIGTERM, 2), (2, signal.SIGINT, 1),
    (1, signal.SIGKILL, 1), (2, signal.SIGKILL, 2)],
    ids=["sigterm-1", "sigterm-mpi2", "sigint-mpi2-resume1", "kill9-1", "kill9-mpi2"])
def test_resume_equals_uninterrupted_run(tmp_path, reference, ranks, sig, resume_ranks):
    outdir = interrupt_and_resume(tmp_path, ranks, sig, resume_ranks)
    rtol = 1e-8 if ranks == resume_ranks else 1e-6
    worst = compare(reference[ranks], outdir, rtol)
    print(f"resume {ranks}->{resume_ranks} ranks after signal {sig}: largest relative "
          f"difference {worst:.3g}")


@pytest.mark.subprocess
def test_resume_refuses_bad_directories(tmp_path, reference):
    cases = {
        str(tmp_path / "missing"): "is not a directory",
        str(tmp_path): "holds no run.json",
        str(reference[1]): "has already completed",
    }
    for path, text in cases.items():
        p = subprocess.run(CLI + ["resume", path], capture_output=True, text=True, timeout=60)
        assert p.returncode == 2 and p.stderr.count("\n") == 1 and text in p.stderr, p.stderr
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "run.json").write_text("{not json")
    p = subprocess.run(CLI + ["resume", str(bad)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "unreadable" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.subprocess
def test_exception_on_one_rank_ends_all_ranks(tmp_path):
    env = dict(os.environ, TUMORPDE_FAULT_INJECTION="1:3")
    t0 = time.time()
    p = subprocess.run(command(2, "run", "quickstart", "-o", str(tmp_path / "o"), "-q"),
                       capture_output=True, text=True, timeout=120, env=env)
    assert time.time() - t0 < 60
    assert p.returncode != 0
    assert "internal error on rank 1: RuntimeError: injected fault" in p.stderr, (p.stdout, p.stderr)
    assert "Traceback" not in p.stderr


def failing_config() -> dict:
    """u' = -u - 1 from u = 0.5: u reaches 0 at t = ln 1.5 ~ 0.405, then every step undershoots."""
    cfg = example("quickstart")
    cfg["species"] = {"u": {"diffusion": 0.01, "reaction": "-u - 1", "initial": 0.5}}
    cfg["mesh"]["cells"] = [8, 4]
    cfg["time"] = {"end": 1.0, "dt": 0.05, "output_every": 0.25, "max_failures": 4}
    cfg["output"] = {}
    for key in ("units", "parameters"):
        cfg.pop(key, None)
    return cfg


def test_repeated_failure_stops_with_checkpoint_and_failed_status(mpi_tmp):
    with pytest.raises(SolverError, match="failed 4 times"):
        run_dict(failing_config(), mpi_tmp / "f")
    MPI.COMM_WORLD.Barrier()
    rec = read(mpi_tmp / "f").info
    assert rec.status == "failed" and "u fell to" in rec.message
    assert rec.counters.failed_solves >= 4
    assert (mpi_tmp / "f" / "checkpoint.h5").exists()
    t_last = read(mpi_tmp / "f").observables["t"][-1]
    assert 0.35 < t_last < 0.45  # u = 0 at ln 1.5 = 0.405 (up to the time error and tolerance)


def test_nan_is_detected_and_stops_the_run(mpi_tmp):
    cfg = failing_config()
    cfg["species"]["u"]["reaction"] = "-u + sqrt(0.3 - t)"  # NaN from t = 0.3
    with pytest.raises(SolverError, match="failed 4 times"):
        run_dict(cfg, mpi_tmp / "n")
    MPI.COMM_WORLD.Barrier()
    rec = read(mpi_tmp / "n").info
    assert rec.status == "failed"
    assert read(mpi_tmp / "n").observables["t"][-1] == pytest.approx(0.3, abs=0.05)


def test_negative_undershoot_is_rejected_and_recovered(mpi_tmp):
    """Stiff decay: a large BDF2 step undershoots below zero; smaller steps do not."""
    cfg = failing_config()
    cfg["species"]["u"]["reaction"] = "-50*u"
    cfg["species"]["u"]["initial"] = 1.0
    cfg["time"] = {"end": 1.0, "dt": 0.1, "output_every": 0.5}
    cfg["observables"] = {"umin": {"minimum": "u"}, "umax": {"maximum": "u"}}
    run_dict(cfg, mpi_tmp / "s")
    MPI.COMM_WORLD.Barrier()
    rec = read(mpi_tmp / "s").info
    assert rec.status == "completed" and rec.counters.failed_solves >= 1
    obs = read(mpi_tmp / "s").observables
    assert np.all(obs["umin"] >= -(1e-3 * obs["umax"] + 1e-6))  # relative, atol as a floor
    # the same model with the check off shows the undershoot it prevents
    cfg["species"]["u"]["nonnegative"] = False
    run_dict(cfg, mpi_tmp / "s2")
    MPI.COMM_WORLD.Barrier()
    obs = read(mpi_tmp / "s2").observables
    assert np.any(obs["umin"] < -(1e-3 * obs["umax"] + 1e-6))


def test_lock_refuses_a_second_run_in_the_same_directory(mpi_tmp):
    from tumorpde.errors import ConfigError
    from tumorpde.io.output import RunLock

    comm = MPI.COMM_WORLD
    if comm.rank == 0:
        (mpi_tmp / "busy").mkdir()
    comm.Barrier()
    lock = RunLock(comm, mpi_tmp / "busy")
    try:
        with pytest.raises(ConfigError, match="another run is writing"):
            run_dict(example("quickstart"), mpi_tmp / "busy")
    finally:
        lock.release()


def test_checkpoint_round_trip_across_spaces(mpi_tmp):
    """A checkpoint maps back onto the dofs by coordinates (P2, any partition)."""
    from tumorpde.io import checkpoint
    from tumorpde.model.config import load_dict
    from tumorpde.simulation import prepare

    cfg = example("quickstart")
    cfg["discretisation"] = {"degree": 2}
    cfg["mesh"]["cells"] = [6, 3]
    _, _, disc = prepare(load_dict(cfg))
    disc.set_initial()
    n = disc.V.dofmap.index_map.size_local * disc.n
    rng = np.random.default_rng(MPI.COMM_WORLD.rank)
    values = rng.random(n)
    checkpoint.save(mpi_tmp, disc.comm, disc.V, {"a": values}, {"t": 1.5})
    state, x, vals = checkpoint.load(mpi_tmp, disc.comm)
    back = checkpoint.restore_arrays(disc.comm, disc.V, x, vals)["a"]
    np.testing.assert_array_equal(back, values)
    if disc.comm.rank == 0:
        assert state == {"t": 1.5}


@pytest.mark.subprocess
def test_cli_failed_run_exits_1_with_one_line(tmp_path):
    from tumorpde.io.tomlio import dumps

    cfg = tmp_path / "fail.toml"
    cfg.write_text(dumps(failing_config()))
    p = subprocess.run(CLI + ["run", str(cfg), "-o", str(tmp_path / "o"), "-q"],
                       capture_output=True, text=True, timeout=120)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 1 and len(lines) == 1, p.stderr
    assert lines[0].startswith("tumorpde: run failed: step from t=") and "checkpoint" in lines[0]
    rec = read(tmp_path / "o").info
    assert rec.status == "failed" and (tmp_path / "o" / "checkpoint.h5").exists()
