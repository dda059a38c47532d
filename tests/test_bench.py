"""The benchmark driver's bookkeeping (the benchmarks themselves run with ``make bench``)."""

from __future__ import annotations

import json

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
