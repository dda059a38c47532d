"""The virtual trial at small size: each drug moves its target in the expected direction
(vessel density, CAF density, M2 share, tumour burden), with its one command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DRUGS = ["anti_vegf", "tgfb_inhibitor", "csf1r_inhibitor", "checkpoint_inhibitor",
         "chemotherapy", "radiotherapy"]


@pytest.mark.subprocess
def test_each_drug_moves_its_target(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "experiments" / "virtual-trial" / "run.py"),
                        "--size", "small", "--samples", "1", "--arms", ",".join(DRUGS),
                        "-o", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    for f in ("figure.png", "effects.png"):
        assert (tmp_path / f).stat().st_size > 10_000
    assert "| radiotherapy |" in (tmp_path / "effects.md").read_text()
    s = json.loads((tmp_path / "results.json").read_text())["summary"]
    assert set(s) == set(DRUGS)
    expected = {"anti_vegf": "vessel_density_tumor", "tgfb_inhibitor": "caf_density_tumor",
                "csf1r_inhibitor": "m2_share", "checkpoint_inhibitor": "primary_burden",
                "chemotherapy": "primary_burden", "radiotherapy": "primary_burden"}
    for drug, target in expected.items():
        assert s[drug]["targets"] == {drug: target}
        assert s[drug][target]["ratio"] < 0.9, (drug, s[drug][target])
    # every treatment also lowers the cells that reach the circulation
    for drug in DRUGS:
        assert s[drug]["ctc_released"]["ratio"] < 1.0, drug
