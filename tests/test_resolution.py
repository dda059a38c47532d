"""The resolution study (``python -m tumorpde.verification.resolution``): the change measure,
the refinement of a config, and a report from two real runs (1 and 2 ranks)."""

from __future__ import annotations

import json
import math

from mpi4py import MPI

import numpy as np
import pytest

import tumorpde as tp
from tumorpde.verification import resolution as rs


def test_change_is_relative_to_the_observables_own_scale():
    coarse = {"a": np.array([0.0, 1.0, 2.0]), "b": np.zeros(3), "c": np.zeros(3),
              "d": np.array([1.0, -0.5, 0.02]), "only_coarse": np.ones(3)}
    fine = {"a": np.array([0.0, 1.1, 2.0]), "b": np.zeros(3), "c": np.array([0, 0, 1e-3]),
            "d": np.array([1.0, -0.5, 0.01])}
    out = rs.compare(coarse, fine)
    assert set(out) == {"a", "b", "c", "d"}
    assert out["a"]["change"] == pytest.approx(0.1 / 2.0) and out["a"]["final_change"] == 0
    assert out["b"] == {"default": 0.0, "fine": 0.0, "change": 0.0, "final_change": 0.0}
    assert out["c"]["change"] == pytest.approx(1.0)  # a core that forms only in one run
    # a value passing near zero: 100 % at the end, 1 % of the observable's scale
    assert out["d"]["final_change"] == pytest.approx(1.0)
    assert out["d"]["change"] == pytest.approx(0.01)
    assert math.isinf(rs.compare({"z": np.array([0.0, 1.0])},
                                 {"z": np.zeros(2)})["z"]["change"])


def test_refinement_multiplies_cells_and_divides_the_step():
    cfg = tp.load("tme-metastasis")
    assert rs.refine_settings(cfg, 1.5) == ["mesh.cells=[168, 108]", "time.dt=0.6666666666666666"]
    assert rs.refine_settings(tp.load("spheroid"), 2.0)[0] == "mesh.cells=[280]"
    # the runs are compared at their own output times (those of the run directory)
    for name, sets, times in (("spheroid", [], np.arange(3.0, 21.5, 1.0)),
                              # output_every 0.25: 0, .25, .5 and the end
                              ("quickstart", ["time.end=0.6"], [0.0, 0.25, 0.5, 0.6])):
        p = tp.Problem(tp.load(name, sets))
        np.testing.assert_allclose(p.output_times(), times)
        p.destroy()


def test_report_of_two_runs(mpi_tmp):
    out = mpi_tmp / "resolution.md"
    rc = rs.main(["quickstart", "--set", "time.end=0.5", "--out", str(out)])
    assert rc == 0
    comm = MPI.COMM_WORLD
    comm.Barrier()
    res = json.loads(out.with_suffix(".json").read_text())["quickstart"]
    assert res["cells"] == [40, 20] and res["fine_cells"] == [60, 30]
    assert res["fine_dt"] == pytest.approx(0.05 / 1.5)
    np.testing.assert_allclose(res["times"], [0.0, 0.25, 0.5])
    # the numbers are those of the two runs at the end
    for sets, key in (([], "default"), (["mesh.cells=[60, 30]", f"time.dt={0.05 / 1.5!r}"],
                                        "fine")):
        p = tp.Problem(tp.load("quickstart", ["time.end=0.5", *sets]))
        obs = p.solve().observables
        p.destroy()
        assert res["observables"]["total_cells"][key] == pytest.approx(obs["total_cells"][-1],
                                                                       rel=1e-12)
    worst = max(v["change"] for v in res["observables"].values())
    assert res["worst_change"] == worst and 0 < worst < 0.05
    text = out.read_text()
    assert "| `quickstart` | 40x20 cells, dt 0.05 | 60x30 cells, dt 0.03333 |" in text
    assert "| `total_cells` |" in text
    # the report names the command that reproduces it, not where it was written
    assert "`python -m tumorpde.verification.resolution quickstart --set time.end=0.5`" in text


def test_bad_factor_is_one_line(capsys):
    assert rs.main(["quickstart", "--factor", "1"]) == 2
    err = capsys.readouterr().err
    if MPI.COMM_WORLD.rank == 0:
        assert err.strip() == "tumorpde: error: --factor: must be > 1, got 1.0"
