"""The Python API: tp.load, tp.Problem, step(), solve(), trackers, validation on both paths.

Every test runs serially and under ``mpiexec -n 2`` (the in-memory runs are collective).
"""

from __future__ import annotations

import copy
import gc
import tomllib
from pathlib import Path

from mpi4py import MPI

import numpy as np
import pytest

import tumorpde as tp
from tumorpde.model.config import EXAMPLES_DIR, load_dict
from tumorpde.model.objects import Config, Discretisation, Mesh, Species, Taxis, Time

QUICK = ["time.end=0.3", "output.progress=false"]


def quickstart_data() -> dict:
    data = tomllib.loads((EXAMPLES_DIR / "quickstart.toml").read_text())
    data["time"]["end"] = 0.3
    data["output"]["progress"] = False
    return data


def test_load_sources_agree(tmp_path: Path) -> None:
    """A bundled name, its file, its dict and --set overrides load the same Config."""
    by_name = tp.load("quickstart", QUICK)
    by_path = tp.load(EXAMPLES_DIR / "quickstart.toml", QUICK)
    by_dict = tp.load(quickstart_data())
    assert by_name == by_path == by_dict
    assert by_name.time.end == 0.3
    assert tp.load(by_name) is by_name
    with pytest.raises(tp.ConfigError, match="not found"):
        tp.load("no-such-example")
    with pytest.raises(tp.ConfigError, match="time.ned: unknown key"):
        tp.load("quickstart", ["time.ned=1"])


def test_solve_in_memory_equals_run_directory(mpi_tmp: Path, monkeypatch) -> None:
    """solve() gives the observables of `tumorpde run` and writes nothing without output=."""
    comm = MPI.COMM_WORLD
    here = mpi_tmp / "cwd"
    if comm.rank == 0:
        here.mkdir()
    comm.Barrier()
    monkeypatch.chdir(here)
    mem = tp.Problem(tp.load("quickstart", QUICK)).solve()
    comm.Barrier()
    assert list(here.iterdir()) == [], "solve() without output wrote files"
    disk = tp.Problem(tp.load("quickstart", QUICK)).solve(output=mpi_tmp / "run")
    assert mem.status == disk.status == "completed"
    assert mem.steps == disk.steps == 6 and mem.t == pytest.approx(0.3)
    csv = tp.read(mpi_tmp / "run").observables
    assert list(mem.observables) == list(csv) == mem.columns
    for col, values in csv.items():
        np.testing.assert_allclose(mem.observables[col], values, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(disk.observables[col], values, rtol=0, atol=0)
    assert mem.final == pytest.approx({k: v[-1] for k, v in csv.items() if k != "t"}, rel=1e-12)
    assert set(mem.minima) == {"cells", "signal"}


def test_step_loop_equals_solve() -> None:
    """Stepping by hand gives the rows of solve(), one accepted step per call."""
    a = tp.Problem(tp.load("quickstart", QUICK))
    times = []
    while not a.done:
        times.append(a.step())
    assert times == pytest.approx([0.05 * k for k in range(1, 7)])
    with pytest.raises(RuntimeError, match="reached time.end"):
        a.step()
    b = tp.Problem(tp.load("quickstart", QUICK)).solve()
    np.testing.assert_allclose(np.array(a.rows), np.array(b.rows), rtol=1e-12, atol=1e-14)
    assert a.state.steps == b.steps


def test_fields_are_the_state_and_can_be_changed() -> None:
    """problem.fields[name] is the species' Function; a change between steps is taken."""
    p = tp.Problem(tp.load("quickstart", QUICK))
    p.step()
    cells = p.fields["cells"]
    total_before = p.observe()["total_cells"]
    assert total_before > 0
    # the function holds the state: its integral is the species total
    import ufl
    from dolfinx import fem

    integral = p.comm.allreduce(fem.assemble_scalar(fem.form(cells * ufl.dx)), op=MPI.SUM)
    assert integral == pytest.approx(total_before, rel=1e-2)  # consistent vs lumped mass
    cells.x.array[:] = 0.0  # kill every cancer cell
    p.step()
    row = dict(zip(p.columns, p.rows[-1], strict=True))
    assert abs(row["total_cells"]) < 1e-15 * total_before  # growth from zero stays zero
    assert p.state.dts == [0.05]  # the history restarted at the change (one step since)
    # a problem that is not touched keeps its history
    q = tp.Problem(tp.load("quickstart", QUICK))
    q.step()
    _ = q.fields["cells"].x.array.sum()  # reading is not changing
    q.step()
    assert q.state.dts == [0.05, 0.05]


def test_trackers_on_their_schedules() -> None:
    """Callbacks every step, at output times, on a model-time interval, and a finalize."""
    seen: dict[str, list[float]] = {"step": [], "output": [], "0.1": []}

    class Final(tp.Tracker):
        interval = "end"

        def __init__(self) -> None:
            self.status = None

        def finalize(self, problem, result, collective):  # noqa: D102
            self.status = result.status

    final = Final()
    tp.Problem(tp.load("quickstart", QUICK + ["time.output_every=0.1"])).solve(trackers=[
        lambda p, t: seen["step"].append(t),
        tp.Callback(lambda p, t: seen["output"].append(t), "output"),
        tp.Callback(lambda p, t: seen["0.1"].append(t), 0.1),
        final,
    ])
    assert seen["step"] == pytest.approx([0.05 * k for k in range(0, 7)])
    assert seen["output"] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert seen["0.1"] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert final.status == "completed"
    # begin() alone (to see the initial rows) leaves the start to the trackers
    p = tp.Problem(tp.load("quickstart", QUICK))
    p.begin()
    starts: list[float] = []
    p.solve(trackers=[tp.Callback(lambda q, t: starts.append(t), "output")])
    assert starts[0] == 0.0
    with pytest.raises(RuntimeError, match="already taken steps"):
        p.solve(output="never-written")
    with pytest.raises(ValueError, match="interval"):
        tp.Callback(print, "sometimes")
    with pytest.raises(TypeError, match="Tracker or a callable"):
        tp.Problem(tp.load("quickstart", QUICK)).solve(trackers=[42])


def test_existing_dolfinx_mesh() -> None:
    """Problem(mesh=...) on the mesh that [mesh] would build gives the same numbers."""
    from dolfinx import mesh as dmesh

    cfg = tp.load("quickstart", QUICK)
    m = dmesh.create_rectangle(MPI.COMM_WORLD, [[0.0, 0.0], [2.0, 1.0]], [40, 20],
                               dmesh.CellType.triangle, diagonal=dmesh.DiagonalType.right)
    a = tp.Problem(cfg, mesh=m).solve()
    b = tp.Problem(cfg).solve()
    np.testing.assert_allclose(np.array(a.rows), np.array(b.rows), rtol=1e-10, atol=1e-14)
    # regions from meshtags, named by the caller, used by a per-region coefficient
    tdim = m.topology.dim
    ncells = m.topology.index_map(tdim).size_local
    mid = dmesh.compute_midpoints(m, tdim, np.arange(ncells, dtype=np.int32))
    values = np.where(mid[:, 0] < 1.0, 1, 2).astype(np.int32)
    tags = dmesh.meshtags(m, tdim, np.arange(ncells, dtype=np.int32), values)
    data = quickstart_data()
    data["species"]["signal"]["diffusion"] = {"left_half": 0.05, "default": 0.01}
    p = tp.Problem(tp.load(data), mesh=m, cell_tags=tags, regions={"left_half": 1, "rest": 2})
    assert p.domain.regions == {"left_half": 1, "rest": 2}
    with pytest.raises(tp.ConfigError, match="unknown region 'left_half'"):
        tp.Problem(tp.load(data), mesh=m)
    with pytest.raises(tp.ConfigError, match="dolfinx.mesh.Mesh"):
        tp.Problem(cfg, mesh="mesh.msh")


# -------------------------------------------------- one validation on both paths
def _base() -> dict:
    return {"species": {"u": Species(diffusion=1.0, initial=1.0), "v": Species()},
            "time": Time(end=1.0, dt=0.1), "mesh": Mesh(shape="interval", size=[1.0], cells=[8])}


def _toml_base() -> dict:
    return {"species": {"u": {"diffusion": 1.0, "initial": 1.0}, "v": {}},
            "time": {"end": 1.0, "dt": 0.1},
            "mesh": {"shape": "interval", "size": [1.0], "cells": [8]}}


BAD = {
    # name: (change to the Python objects, the same change to the TOML tables)
    "scheme": (lambda c: setattr(c.time, "scheme", "rk4"),
               lambda d: d["time"].update(scheme="rk4")),
    "degree": (lambda c: setattr(c, "discretisation", Discretisation(degree=3)),
               lambda d: d.update(discretisation={"degree": 3})),
    "end-before-start": (lambda c: setattr(c.time, "end", -1.0),
                         lambda d: d["time"].update(end=-1.0)),
    "negative-dt": (lambda c: setattr(c.time, "dt", -0.1),
                    lambda d: d["time"].update(dt=-0.1)),
    "dict-taxis-incomplete": (
        lambda c: setattr(c.species["u"], "taxis", [{"toward": "v"}]),
        lambda d: d["species"]["u"].update(taxis=[{"toward": "v"}])),
    "dict-taxis-unknown-key": (
        lambda c: setattr(c.species["u"], "taxis", {"toward": "v", "sensitivity": 1, "k": 2}),
        lambda d: d["species"]["u"].update(taxis={"toward": "v", "sensitivity": 1, "k": 2})),
    "taxis-unknown-species": (
        lambda c: setattr(c.species["u"], "taxis", [Taxis(toward="w", sensitivity=1.0)]),
        lambda d: d["species"]["u"].update(taxis=[{"toward": "w", "sensitivity": 1.0}])),
    "mesh-cells-mismatch": (lambda c: setattr(c.mesh, "cells", [8, 8]),
                            lambda d: d["mesh"].update(cells=[8, 8])),
    "string-as-number": (lambda c: setattr(c.time, "dt", "0.1"),
                         lambda d: d["time"].update(dt="0.1")),
    "unknown-symbol": (lambda c: setattr(c.species["u"], "reaction", "u*w"),
                       lambda d: d["species"]["u"].update(reaction="u*w")),
    "bad-shape": (lambda c: setattr(c.mesh, "shape", "torus"),
                  lambda d: d["mesh"].update(shape="torus")),
    "nonfinite": (lambda c: setattr(c.time, "end", float("inf")),
                  lambda d: d["time"].update(end=float("inf"))),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_python_config_is_validated_like_toml(case: str) -> None:
    """An invalid value set on the Python objects fails with the TOML loader's message."""
    py_change, toml_change = BAD[case]
    cfg = Config(**_base())
    py_change(cfg)
    data = _toml_base()
    toml_change(data)
    with pytest.raises(tp.ConfigError) as from_toml:
        tp.Problem(load_dict(copy.deepcopy(data)))
    with pytest.raises(tp.ConfigError) as from_python:
        tp.Problem(cfg)
    assert str(from_python.value) == str(from_toml.value)


def test_python_config_valid_runs_as_toml() -> None:
    """A valid config built in Python (tuples, numpy numbers) runs like its TOML twin."""
    cfg = Config(species={"u": Species(diffusion=np.float64(0.1), initial="sin(pi*x)")},
                 mesh=Mesh(shape="interval", size=(1.0,), cells=np.array([16])),
                 time=Time(end=0.5, dt=0.05, scheme="backward-euler"))
    data = {"species": {"u": {"diffusion": 0.1, "initial": "sin(pi*x)"}},
            "mesh": {"shape": "interval", "size": [1.0], "cells": [16]},
            "time": {"end": 0.5, "dt": 0.05, "scheme": "backward-euler"}}
    a = tp.Problem(cfg).solve()
    b = tp.Problem(data).solve()
    assert a.rows == b.rows
    assert tp.Problem(cfg).config.time.scheme == "backward-euler"


def test_failure_in_memory_raises_and_keeps_the_state() -> None:
    """A solver failure raises SolverError; the problem keeps the last good state."""
    cfg = tp.load({"species": {"u": {"reaction": "-u - 1", "initial": 1.0}},
                   "mesh": {"shape": "interval", "cells": [4]},
                   "time": {"end": 2.0, "dt": 0.1, "max_failures": 3},
                   "output": {"progress": False}})
    p = tp.Problem(cfg)
    with pytest.raises(tp.SolverError, match="failed 3 times") as info:
        p.solve()
    assert "checkpoint" not in str(info.value)  # nothing is written in memory
    assert 0.0 < p.t < 2.0
    assert min(p.minima().values()) >= -1e-3


def test_public_api_is_documented() -> None:
    """tp.__all__ names exist and have docstrings; import tumorpde does not load DOLFINx."""
    for name in tp.__all__:
        obj = getattr(tp, name)
        if name != "__version__":
            assert obj.__doc__, name
    import subprocess
    import sys

    if MPI.COMM_WORLD.size == 1:
        out = subprocess.run([sys.executable, "-c", "import sys, tumorpde; "
                              "print(any(m.startswith(('dolfinx', 'petsc4py')) for m in sys.modules))"],
                             capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "False"


EXAMPLES = sorted(p.stem for p in EXAMPLES_DIR.glob("*.toml"))


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_example_in_memory_equals_its_run(name: str, mpi_tmp: Path) -> None:
    """Each bundled example, shortened to two steps: solve() == `tumorpde run`'s CSV."""
    from tumorpde.simulation import run

    cfg = tp.load(name)
    end = cfg.time.start + 2 * cfg.time.dt
    sets = [f"time.end={end!r}", "output.progress=false"]
    if cfg.mesh.cells and np.prod(cfg.mesh.cells) > 2000:  # the tme scenarios: half the cells
        sets.append(f"mesh.cells={[max(2, c // 2) for c in cfg.mesh.cells]}")
    mem = tp.Problem(tp.load(name, sets)).solve()
    run(tp.load(name, sets), mpi_tmp / name)
    csv = tp.read(mpi_tmp / name).observables
    assert list(csv) == mem.columns and mem.steps == 2
    for col, values in csv.items():
        np.testing.assert_allclose(mem.observables[col], values, rtol=1e-9,
                                   atol=1e-12 * max(1.0, float(np.abs(values).max())),
                                   err_msg=f"{name}: {col}")


def test_live_problems_keep_their_own_solver_options(monkeypatch) -> None:
    """Two problems alive in one process: neither sees the other's [solver] options; options
    given to PETSc under ``tumorpde_`` reach both; destroy() removes every option it wrote."""
    from petsc4py import PETSc

    db = PETSc.Options()
    before = {k for k in db.getAll() if k.startswith("tumorpde_")}  # other live solvers'
    db["tumorpde_ksp_max_it"] = "17"  # as PETSC_OPTIONS="-tumorpde_ksp_max_it 17" would
    try:
        mono = ['solver.strategy="monolithic"', *QUICK]
        a = tp.Problem(tp.load("quickstart", [*mono, 'solver.ksp_type="gmres"', 'solver.pc_type="jacobi"',
                                              "solver.ksp_rtol=1e-3"]))
        b = tp.Problem(tp.load("quickstart", [*mono, 'solver.ksp_type="cg"']))
        ka, kb = a.solver.snes.getKSP(), b.solver.snes.getKSP()
        assert a.solver.prefix != b.solver.prefix
        assert (ka.getType(), ka.getPC().getType()) == ("gmres", "jacobi")
        assert kb.getType() == "cg" and kb.getPC().getType() != "jacobi"
        assert ka.getTolerances()[0] == pytest.approx(1e-3)
        assert kb.getTolerances()[0] == pytest.approx(1e-5)  # PETSc's default, not a's
        assert ka.getTolerances()[3] == kb.getTolerances()[3] == 17
        prefix_a = a.solver.prefix
        a.destroy()
        c = tp.Problem(tp.load("quickstart", mono))
        assert c.solver.prefix == prefix_a  # the freed slot is taken again
        # a problem dropped without destroy() gives its options and slot back when collected
        d = tp.Problem(tp.load("quickstart", mono))
        prefix_d = d.solver.prefix
        del d
        gc.collect()
        assert not any(k.startswith(prefix_d) for k in db.getAll())
        assert c.solver.snes.getKSP().getPC().getType() == "lu"
        b.destroy()
        c.destroy()
        left = sorted(k for k in db.getAll() if k.startswith("tumorpde_") and k not in before)
        assert left == ["tumorpde_ksp_max_it"], left
    finally:
        db.delValue("tumorpde_ksp_max_it")


@pytest.mark.serial
def test_a_signal_during_the_last_step_reaches_an_enclosing_stop_request() -> None:
    """A sweep around runs: a SIGINT that a finished run had no step left to act on is kept."""
    import signal

    from tumorpde.signals import StopRequest

    with StopRequest(MPI.COMM_WORLD) as outer:
        with StopRequest(MPI.COMM_WORLD):
            signal.raise_signal(signal.SIGINT)  # the run ends without checking again
        assert outer.requested() == signal.SIGINT
    with StopRequest(MPI.COMM_WORLD) as outer:
        with StopRequest(MPI.COMM_WORLD) as inner:
            signal.raise_signal(signal.SIGINT)
            assert inner.requested() == signal.SIGINT  # the run acted on it: not passed on
        assert outer.requested() == 0
