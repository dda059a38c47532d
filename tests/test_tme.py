"""The built-in tme model: contract (15 fields, observables), knockouts, non-negativity,
1 rank = 2 ranks, and docs/model.md generated from the model."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from helpers import run_dict

from tumorpde.apps.modeldoc import model_markdown
from tumorpde.io.rundir import read
from tumorpde.model.config import find_config, load, resolve_extends

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ["tumor", "csc", "fibroblast", "caf", "ecm", "mmp", "tgfb", "vegf", "oxygen", "vessel",
          "lymphatic", "m1", "m2", "tcell", "ifng"]
OBSERVABLES = ["tumor_burden", "invasion_distance", "hypoxic_fraction", "vessel_density_tumor",
               "caf_density_tumor", "m1_m2_ratio", "tcell_density_tumor", "csc_fraction",
               "intravasation_blood", "intravasation_lymph", "ctc_released"]
SMALL = ["--set", "mesh.cells=[12, 12]", "--set", "time.end=8.0", "--set", "time.dt=2.0",
         "--set", "time.output_every=4.0"]


def test_model_declares_the_contract():
    cfg = load(find_config("tme-2d"))
    assert list(cfg.species) == FIELDS
    assert set(OBSERVABLES) | {"tumor_area"} <= set(cfg.observables)
    cfg3 = load(find_config("tme-3d"))
    assert list(cfg3.species) == FIELDS
    assert "tumor_volume" in cfg3.observables and "tumor_area" not in cfg3.observables
    # every parameter documents its meaning and its source (or says it is assumed)
    for name, p in cfg.parameters.items():
        assert p.description and p.source, name


def test_the_3d_scenario_states_volumes_not_areas():
    cfg = load(find_config("tme-3d"))
    for name, ob in cfg.observables.items():
        assert "mm^2" not in ob.description and " area" not in ob.description, name
    assert "mm^3" in cfg.observables["tumor_burden"].description


def test_the_tgfb_inhibitors_standard_regimen_repeats_and_lowers_cafs_at_day_60(tmp_path):
    # 14 daily doses of a 28-day cycle, repeated until the end (Rodon et al. 2015): from day
    # 14 of a 60-day run, courses on days 14-27 and 42-55
    from tumorpde.apps.study import Variant, run_variants
    from tumorpde.model.config import check

    therapy = 'therapy=[{drug = "tgfb_inhibitor", start = 14}]'
    plan = check(load(find_config("tme-2d"), [therapy])).plan
    np.testing.assert_allclose(plan.drugs["tgfb_inhibitor"].times,
                               [*range(14, 28), *range(42, 56)])
    # at the end of the run, 5 days after the second course (coarse: 3x larger cells, 2-day
    # steps), CAF density in the tumour is lower than without the drug
    res = run_variants("tme-2d", [Variant("control"), Variant("tgfb", set=[therapy])],
                       tmp_path, "small", ["time.end=60", "time.dt=2.0"])
    caf = {k: v["final"]["caf_density_tumor"] for k, v in res.items()}
    assert caf["tgfb"] < 0.95 * caf["control"], caf


def test_model_doc_is_generated_from_the_model():
    text = model_markdown(load(find_config("tme-2d")), "tme-2d")
    assert (ROOT / "docs" / "model.md").read_text() == text, \
        "docs/model.md is stale: run `tumorpde doc tme-2d -o docs/model.md`"


@pytest.mark.subprocess
def test_tme2d_small_serial_equals_two_ranks_and_stays_non_negative(tmp_path):
    mpiexec = str(Path(sys.executable).parent / "mpiexec")
    base = [sys.executable, "-m", "tumorpde", "run", "tme-2d", "-q", *SMALL]
    r1 = subprocess.run(base + ["-o", "s"], cwd=tmp_path, capture_output=True, text=True,
                        timeout=600)
    r2 = subprocess.run([mpiexec, "-n", "2", *base, "-o", "p"], cwd=tmp_path,
                        capture_output=True, text=True, timeout=600)
    assert r1.returncode == 0, r1.stderr
    assert r2.returncode == 0, r2.stderr
    a = read(tmp_path / "s").observables
    b = read(tmp_path / "p").observables
    assert {f"total_{f}" for f in FIELDS} | set(OBSERVABLES) <= set(a)
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-6, atol=1e-12, err_msg=k)
    run = read(tmp_path / "s").info
    minima = run.final.minima
    assert set(minima) == set(FIELDS)
    assert min(minima.values()) > -1e-6, minima
    assert a["tumor_burden"][-1] > a["tumor_burden"][0]


@pytest.mark.subprocess
def test_knockout_caf_holds_it_at_zero(tmp_path):
    r = subprocess.run([sys.executable, "-m", "tumorpde", "run", "tme-2d", "-q", *SMALL,
                        "--knockout", "caf", "-o", "ko"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    obs = read(tmp_path / "ko").observables
    assert np.all(obs["total_caf"] == 0.0)
    assert np.all(obs["caf_density_tumor"] == 0.0)



def _oxygen_near_seed(outdir: Path, origin: list[float], size: float, robin: bool) -> float:
    """Oxygen in the 0.8 mm square around the seed of tme-2d in a uniform capillary bed,
    simulated in a square section of ``size`` mm (0.1 mm cells), once oxygen is steady
    (minutes) and before the other fields have changed."""
    path = find_config("tme-2d")
    data = resolve_extends(tomllib.loads(path.read_text()), path)
    cells = round(size / 0.1)
    data["mesh"].update(origin=origin, size=[size, size], cells=[cells, cells])
    data["time"].update(end=0.05, dt=0.025, output_every=0.05)
    data["definitions"]["normal_vessels"] = "vessel_background"
    if not robin:
        del data["species"]["oxygen"]["boundary"]
    data["observables"]["o2_near_seed"] = {
        "integral": "where(max(abs(x - 1.5), abs(y - 1.5)) < 0.4, oxygen, 0)"}
    return run_dict(data, outdir).final["o2_near_seed"]


def test_oxygen_boundary_condition_stands_in_for_the_tissue_beyond(mpi_tmp):
    """A section cut 0.4 mm around the seed sees, with the far-field Robin condition,
    nearly the oxygen of the same tissue simulated in a section three times as wide;
    with no-flux edges (a mirror: the consuming seed repeated beyond) it does not."""
    wide = _oxygen_near_seed(mpi_tmp / "wide", [0.3, 0.3], 2.4, robin=True)
    robin = _oxygen_near_seed(mpi_tmp / "robin", [1.1, 1.1], 0.8, robin=True)
    mirror = _oxygen_near_seed(mpi_tmp / "mirror", [1.1, 1.1], 0.8, robin=False)
    assert wide - mirror > 0.1 * wide, (wide, mirror)
    assert abs(robin - wide) < 0.3 * (wide - mirror), (wide, robin, mirror)
