"""The benchmark driver's bookkeeping (the benchmarks themselves run with ``make bench``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import run

pytestmark = pytest.mark.serial


def test_update_replaces_only_the_cases_rerun(tmp_path, monkeypatch):
    out = tmp_path / "results.json"
    memory = {"tme-2d": {"unknowns": [10, 20], "bytes_per_unknown_total": [3000.0, 2500.0],
                         "bytes_per_unknown": 1900.0}}
    previous = {"machine": run.machine(), "quick": False, "wall_s": 1.0,
                "cases": {"pypde": {"speedup": 7.5}, "memory": {"tme-2d": dict(
                    memory["tme-2d"], bytes_per_unknown=5000.0)}}}
    previous["machine"]["loadavg_end"] = [0.0, 0.0, 0.0]
    out.write_text(json.dumps(previous))
    monkeypatch.setattr(run, "case_memory", lambda tmp, quick: dict(memory))
    assert run.main(["--only", "memory", "--update", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["cases"]["pypde"] == {"speedup": 7.5}                   # kept
    assert res["cases"]["memory"]["tme-2d"]["bytes_per_unknown"] == 1900.0  # replaced
    assert res["updates"][-1]["cases"] == ["memory"]
    md = out.with_suffix(".md").read_text()
    assert "1900 B/unknown" in md and "7.5x" in md and "(`--update`): memory" in md
    # a quick rerun cannot update a full results file
    with pytest.raises(SystemExit):
        run.main(["--only", "memory", "--update", "--quick", "--out", str(out)])


def test_the_fisher_case_scores_runs_against_the_exact_wave_and_picks_the_cheapest():
    from benchmarks import fisher_case as fc

    x = np.linspace(fc.X0, fc.X1, 401)
    assert fc.error(np.column_stack([x, fc.exact(x)])) == 0.0
    off = fc.error(np.column_stack([x, 1.01 * fc.exact(x)]))
    assert abs(off - 0.01) < 1e-12
    runs = [{"error": 5e-4, "process_s": 3.0}, {"error": 2e-3, "process_s": 1.0},
            {"error": 5e-5, "process_s": 9.0}, {"failed": "x"}]
    assert fc.best(runs, 1e-3)["process_s"] == 3.0
    assert fc.best(runs, 1e-4)["process_s"] == 9.0
    assert fc.best(runs, 1e-6) is None
    cfg = fc.tumorpde_config(10, 0.1)
    assert cfg["mesh"]["cells"] == [80, 10] and "solver" not in cfg  # default settings


def test_the_fisher_rows_of_the_table():
    at = {"tumorpde": {"cells": [160, 20], "dt": 0.05, "process_s": 2.0},
          "py-pde": {"scheme": "rk", "backend": "numpy", "cells": [80, 10], "process_s": 20.0},
          "speedup": 10.0}
    machine = {**run.machine(), "loadavg_end": [0.0, 0.0, 0.0]}
    md = run.markdown({"machine": machine, "quick": False, "wall_s": 1.0,
                       "cases": {"fisher": {"at": {"0.001": at,
                                                   "0.0001": {"tumorpde": None,
                                                              "py-pde": None}}}}})
    assert "whole process to error 0.001" in md and "10.0x (2.0 s vs 20.0 s) | >= 5x | yes" in md
    assert "error 0.0001 | a tool reached no run" in md
