"""Reading a run directory: ``tumorpde.io.rundir.read`` and the ``run.json`` schema (``RunInfo``).

Everything read is checked against the files themselves (the CSV text, the HDF5
datasets the XDMF file names), on a real quickstart run.
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

from mpi4py import MPI

import h5py
import numpy as np
import pytest

from tumorpde.errors import ConfigError
from tumorpde.io.rundir import Run, read, read_observables
from tumorpde.io.runinfo import Counters, Final, RunInfo, WallTime
from tumorpde.model.config import find_config, load

pytestmark = pytest.mark.serial


@pytest.fixture(scope="module")
def qs(tmp_path_factory) -> Path:
    from tumorpde.simulation import run

    out = tmp_path_factory.mktemp("rundir") / "qs"
    cfg = load(find_config("quickstart"), ["mesh.cells=[20,10]", "time.end=0.5",
                                           "output.progress=false"])
    run(cfg, out, MPI.COMM_SELF)
    return out


def csv_text(path: Path) -> tuple[list[str], list[list[str]]]:
    lines = (path / "observables.csv").read_text().splitlines()
    return lines[0].split(","), [ln.split(",") for ln in lines[1:]]


def test_read_a_completed_run(qs):
    run = read(qs)
    assert isinstance(run, Run) and run.path == qs
    assert run.status == "completed" == run.info.status
    assert run.config == json.loads((qs / "run.json").read_text())["config"]
    assert run.config["time"]["end"] == 0.5
    assert run.info.counters.steps == 10 and run.info.mesh.cells == 400
    assert isinstance(run.info.wall_time, WallTime) and run.info.wall_time.total > 0


def test_every_observable_column_is_the_csv_text(qs):
    header, rows = csv_text(qs)
    obs = read(qs).observables
    assert list(obs) == header == ["t", "total_cells", "total_signal"]
    for j, name in enumerate(header):
        assert obs[name].dtype == np.float64 and len(obs[name]) == len(rows) == 11
        assert obs[name].tolist() == [float(r[j]) for r in rows], name


def test_fields_are_the_h5_data_named_by_the_xdmf(qs):
    run = read(qs)
    tree = ET.parse(qs / "fields.xdmf")
    assert run.times == sorted({float(t.get("Value")) for t in tree.iter("Time")})
    assert run.times == pytest.approx([0.0, 0.25, 0.5])
    assert run.field_names == ["cells", "signal"]
    with h5py.File(qs / "fields.h5", "r") as f:
        np.testing.assert_array_equal(run.nodes, f["Mesh/mesh/geometry"][...])
        np.testing.assert_array_equal(run.cells, f["Mesh/mesh/topology"][...])
        for t, key in zip(run.times, ["0_0", "0_25", "0_5"], strict=True):
            snap = run.fields(t)
            assert snap.t == t and set(snap) == {"cells", "signal"}
            assert snap.nodes.shape == (21 * 11, 2) and snap.cells.shape == (400, 3)
            for name in snap:
                np.testing.assert_array_equal(snap[name], f[f"Function/{name}/{key}"][:, 0])
                np.testing.assert_array_equal(run.field(name, t), snap[name])
    # the outputs differ from each other (a reader returning one time for all would fail)
    assert not np.array_equal(run.field("cells", 0.0), run.field("cells", 0.5))


def test_final_record_agrees_with_observables_and_fields(qs):
    run = read(qs)
    final = run.info.final
    assert isinstance(final, Final)
    obs = run.observables
    assert final.t == obs["t"][-1] == run.times[-1]
    assert final.observables == {k: v[-1] for k, v in obs.items() if k != "t"}
    last = run.fields()  # the last output
    assert last.t == run.times[-1]
    assert final.minima == {name: float(v.min()) for name, v in last.items()}


def test_output_times_exact_or_nearest(qs):
    run = read(qs)
    assert run.output_time(0.25 + 1e-9) == 0.25
    with pytest.raises(ConfigError, match=r"0\.3 is not an output time .*output times: 0, 0\.25"):
        run.fields(0.3)
    assert run.fields(0.3, nearest=True).t == 0.25
    assert run.output_time(-5, nearest=True) == 0.0
    with pytest.raises(ConfigError, match="no field 'oxygen'"):
        run.field("oxygen", 0.5)


def test_to_pandas(qs):
    run = read(qs)
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="needs pandas"):
            run.to_pandas()
        return
    df = run.to_pandas()
    assert list(df.columns) == list(run.observables)
    np.testing.assert_array_equal(df["total_cells"].to_numpy(), run.observables["total_cells"])


def test_incomplete_last_line_is_left_out(qs, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(qs, run_dir)
    full = read(run_dir).observables
    with open(run_dir / "observables.csv", "a") as f:
        f.write("0.55,0.1")  # a row a running job is writing
    part = read(run_dir).observables
    assert list(part) == list(full)
    for k in full:
        np.testing.assert_array_equal(part[k], full[k])
    (run_dir / "observables.csv").write_text("t,total_u\n0.0,1.0\n0.5\n1.0,2.0\n")
    with pytest.raises(ConfigError, match="line 3: 1 values for 2 columns"):
        read_observables(run_dir)
    (run_dir / "observables.csv").write_text("t,total_u\n")  # header only: no rows yet
    assert {k: len(v) for k, v in read_observables(run_dir).items()} == {"t": 0, "total_u": 0}


def test_a_run_not_yet_at_its_first_output(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"status": "running", "config": {}}))
    run = read(tmp_path)
    assert run.times == [] and run.field_names == []
    with pytest.raises(ConfigError, match="has written no output"):
        run.fields()
    with pytest.raises(ConfigError, match="has no observables.csv"):
        run.observables  # noqa: B018


@pytest.mark.parametrize(("content", "expect"), [
    (None, "holds no run.json: not the output directory of a run"),
    ("{not json", "run.json is unreadable (Expecting property name"),
    ("[1, 2]", "run.json is unreadable: run.json must be an object, not list"),
    ('{"config": {}}', "run.json is unreadable: status is missing"),
    ('{"status": "completed", "config": []}', "config must be an object, not list []"),
    ('{"status": "completed", "config": {}, "counters": {"steps": "5"}}',
     "counters.steps must be an integer, not str '5'"),
    ('{"status": "completed", "config": {}, "counters": {"steps": true}}',
     "counters.steps must be an integer, not bool True"),
    ('{"status": "completed", "config": {}, "final": {"observables": {"a": "x"}}}',
     "final.observables.a must be a number, not str 'x'"),
    ('{"status": "completed", "config": {}, "argv": ["a", 3]}', r"argv\[1\] must be a string"),
    ('{"status": "completed", "config": {}, "message": null}', "message must be a string, not null"),
])
def test_not_a_run_directory_is_one_clear_error(tmp_path, content, expect):
    if content is not None:
        (tmp_path / "run.json").write_text(content)
    with pytest.raises(ConfigError, match=expect.replace("(", r"\(").replace("[]", r"\[\]")) as exc:
        read(tmp_path)
    assert "\n" not in str(exc.value) and str(tmp_path) in str(exc.value)


def test_missing_directory(tmp_path):
    with pytest.raises(ConfigError, match="nowhere is not a directory"):
        read(tmp_path / "nowhere")


def test_runinfo_round_trip_is_byte_identical(qs, tmp_path):
    text = (qs / "run.json").read_text()
    info = RunInfo.read(qs / "run.json")
    assert RunInfo.from_json(info.to_json()) == info
    assert info.to_json() == json.loads(text)
    assert info.dumps() == text
    # written again: the same bytes
    (tmp_path / "run.json").write_text(info.dumps())
    assert (tmp_path / "run.json").read_bytes() == (qs / "run.json").read_bytes()
    # a change shows in the JSON and makes the records differ
    other = RunInfo.from_json(info.to_json())
    other.counters.steps += 1
    assert other != info and other.to_json()["counters"]["steps"] == info.counters.steps + 1


def test_unknown_keys_and_key_order_are_kept():
    data = {"config": {"x": 1}, "future": {"a": [1, 2]}, "status": "interrupted",
            "counters": {"newer": 3, "steps": 4}, "t": 0.5,
            "resumed": [{"ranks": 2, "at": "2026-01-01T00:00:00+0000", "argv": [], "how": "x"}],
            "final": {"t": 1, "observables": {}, "minima": {"u": float("nan")}}}
    info = RunInfo.from_json(data)
    assert info.extra == {"future": {"a": [1, 2]}} and info.counters.extra == {"newer": 3}
    assert info.resumed[0].ranks == 2 and info.resumed[0].extra == {"how": "x"}
    out = info.to_json()
    assert list(out) == list(data) and list(out["counters"]) == ["newer", "steps"]
    assert json.dumps(out) == json.dumps(data)
    out["future"]["a"].append(3)  # to_json and from_json copy
    data["config"]["x"] = 2
    assert info.extra["future"] == {"a": [1, 2]} and info.config == {"x": 1}


def test_old_run_json_without_optional_keys(tmp_path):
    # the first run.json: no mesh, no final, no t, no resumed (and an older run: less still)
    old = {"status": "completed", "config": {"time": {"end": 1.0}}, "versions": {"tumorpde": "0.0.1"},
           "ranks": 1, "host": "h", "argv": [], "started": "2025-01-01T00:00:00+0000",
           "wall_time": {"total": 1.5}, "counters": {}, "finished": "2025-01-01T00:00:02+0000"}
    for data in (old, {"status": "failed", "config": {}}):
        (tmp_path / "run.json").write_text(json.dumps(data, indent=2) + "\n")
        run = read(tmp_path)
        assert run.info.mesh is None and run.info.final is None and run.info.resumed is None
        assert run.info.counters == Counters() and run.info.message is None
        assert run.info.dumps() == (tmp_path / "run.json").read_text()  # nothing added
    assert run.info.wall_time.total is None and run.info.versions is None


def test_run_record_writes_through_the_schema(tmp_path):
    from tumorpde.io.output import RunRecord

    rec = RunRecord(MPI.COMM_SELF, tmp_path, {"title": "x"}, {"tumorpde": "0"}, ["tumorpde"])
    rec.data["wall_time"]["setup"] = 0.25
    rec.update(counters={"steps": 3}, t=0.5)
    rec.save()
    info = read(tmp_path).info
    assert info.wall_time.setup == 0.25 and info.counters.steps == 3 and info.t == 0.5
    assert info == rec.info and (tmp_path / "run.json").read_text() == info.dumps()
    rec.finish("failed", "because")
    assert read(tmp_path).info.message == "because" and read(tmp_path).status == "failed"
    assert list(json.loads((tmp_path / "run.json").read_text()))[-2:] == ["finished", "message"]
    rec.update(counters={"steps": np.int64(3)})  # would be written as the string "3"
    with pytest.raises(ConfigError, match="counters.steps must be an integer"):
        rec.save()
    assert read(tmp_path).info.counters.steps == 3  # the last good record stays
    # a resumed record keeps the previous one's keys, order and counters
    again = RunRecord(MPI.COMM_SELF, tmp_path, {}, {}, ["tumorpde", "resume"],
                      previous=read(tmp_path).info.to_json())
    info = read(tmp_path).info
    assert info.status == "running" and info.message is None and info.finished is None
    assert info.resumed[-1].argv == ["tumorpde", "resume"] and info.counters.steps == 3
    assert again.data["config"] == {"title": "x"}
