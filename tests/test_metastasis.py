"""The tme-metastasis scenario: contract, generated docs, seeding of the lung through the
circulation, no metastasis without vessels and lymphatics, and `tumorpde init`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mpi4py import MPI

import numpy as np
import pytest

from tumorpde.apps.modeldoc import model_markdown
from tumorpde.io.rundir import read
from tumorpde.model.config import apply_overrides, find_config, load, load_dict, parse_set, resolve_extends
from tumorpde.simulation import run

ROOT = Path(__file__).resolve().parents[1]
OBSERVABLES = ["ctc_count", "seeded_cells", "niche_strength", "metastatic_burden"]
TINY = ["mesh.cells=[22, 12]", "time.dt=4.0", "time.end=16.0", "time.output_every=8.0",
        "output.progress=false"]


def tiny(*sets: str) -> dict:
    import tomllib

    path = find_config("tme-metastasis")
    data = resolve_extends(tomllib.loads(path.read_text()), path)
    return apply_overrides(data, [parse_set(s) for s in [*TINY, *sets]])


def test_metastasis_declares_the_contract():
    cfg = load(find_config("tme-metastasis"))
    assert set(OBSERVABLES) <= set(cfg.observables)
    assert list(cfg.scalars) == ["ctc", "lymph_node", "bmdc"]
    assert list(cfg.species)[-1] == "premetastatic_niche"
    assert cfg.mesh.remove
    for name, p in cfg.parameters.items():
        assert p.description and p.source, name


def test_metastasis_doc_is_generated_from_the_scenario():
    text = model_markdown(load(find_config("tme-metastasis")), "tme-metastasis")
    assert (ROOT / "docs" / "metastasis.md").read_text() == text, \
        "docs/metastasis.md is stale: run `tumorpde doc tme-metastasis -o docs/metastasis.md`"


def _series(outdir: Path) -> dict:
    comm = MPI.COMM_WORLD
    return comm.bcast(read(outdir).observables if comm.rank == 0 else None, root=0)


def test_circulating_cells_seed_the_lung_and_knockouts_stop_them(mpi_tmp):
    run(load_dict(tiny()), mpi_tmp / "full")
    s = _series(mpi_tmp / "full")
    assert s["ctc_count"][-1] > 0 and s["node_cells"][-1] > 0
    assert np.all(np.diff(s["seeded_cells"]) >= 0) and s["seeded_cells"][-1] > 0
    assert s["niche_strength"][-1] > s["niche_strength"][0] == 0.0
    assert s["metastatic_burden"][0] == 0.0 < s["metastatic_burden"][-1]
    # without vessels and lymphatics nothing reaches the circulation or the lung
    data = tiny()
    data["knockout"] = ["vessel", "lymphatic"]
    run(load_dict(data), mpi_tmp / "ko")
    k = _series(mpi_tmp / "ko")
    for col in ("metastatic_burden", "ctc_count", "seeded_cells", "node_cells"):
        assert np.all(k[col] == 0.0), col


def test_radiotherapy_spares_the_lung_unless_asked(mpi_tmp):
    # one fraction at day 8 (a row before and one after it): aimed at the primary by the
    # scenario, it leaves the lung's cancer cells as they were; region = "all" kills there too
    drops = {}
    for region in ("primary", "all"):
        extra = "" if region == "primary" else ', region = "all"'
        data = tiny(f'therapy=[{{drug = "radiotherapy", start = 8, doses = 1{extra}}}]')
        run(load_dict(data), mpi_tmp / region)
        s = _series(mpi_tmp / region)
        at = np.flatnonzero(np.abs(s["t"] - 8.0) < 1e-9)
        assert len(at) == 2
        drops[region] = {k: s[k][at[1]] / s[k][at[0]]
                         for k in ("primary_burden", "metastatic_burden")}
    assert s["metastatic_burden"][at[0]] > 0
    assert drops["primary"]["primary_burden"] < 0.9
    assert drops["primary"]["metastatic_burden"] == 1.0
    assert drops["all"]["metastatic_burden"] < 0.9
    assert drops["all"]["primary_burden"] == pytest.approx(drops["primary"]["primary_burden"],
                                                          rel=1e-12)


@pytest.mark.subprocess
def test_init_writes_a_runnable_metastasis_config(tmp_path):
    cli = [sys.executable, "-m", "tumorpde"]
    r = subprocess.run([*cli, "init", "tme-metastasis", "m.toml"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*cli, "run", "m.toml", "-q", "-o", "out", "--set", "time.end=8.0",
                        *[a for s in TINY[:2] for a in ("--set", s)]], cwd=tmp_path,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    obs = read(tmp_path / "out").observables
    assert set(OBSERVABLES) | {"ctc", "lymph_node", "bmdc"} <= set(obs)
