"""``tumorpde render | plot | report`` on a coarse tme-2d run, with the real ParaView.

ParaView comes from Debian's ``paraview python3-paraview xvfb`` (installed by
``.ci/run``); in CI (``CI`` set) a missing pvbatch is a failure, elsewhere the
ParaView tests are skipped.  The plot, report and missing-pvbatch tests need no ParaView.
"""

from __future__ import annotations

import html.parser
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tumorpde.io.rundir import read

pytestmark = pytest.mark.subprocess

# a coarse tme-2d: 15 fields, outputs at t = 0, 2, 4
TME = ["tme-2d", "--set", "mesh.cells=[12,12]", "--set", "time.end=4", "--set",
       "time.output_every=2"]
SPECIES = {"tumor", "csc", "fibroblast", "caf", "ecm", "mmp", "tgfb", "vegf", "oxygen", "vessel",
           "lymphatic", "m1", "m2", "tcell", "ifng"}


LOAD_STATE = """
import json, sys
from paraview import simple as pv
pv.LoadState(sys.argv[1])
reader = pv.FindSource("fields.xdmf")
view = pv.GetActiveViewOrCreate("RenderView")
rep = pv.GetDisplayProperties(reader, view)
name = rep.ColorArrayName[1]
lut = pv.GetColorTransferFunction(name)
pts = lut.RGBPoints
print("STATE " + json.dumps({"arrays": list(reader.PointData.keys()), "colored_by": name,
                             "range": [pts[0], pts[-4]]}))
"""


def tumorpde(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tumorpde", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=timeout)


def need_paraview() -> None:
    if shutil.which("pvbatch") is None:
        if os.environ.get("CI"):
            pytest.fail("pvbatch not found although CI is set (.ci/run installs ParaView)")
        pytest.skip("ParaView (pvbatch) not installed; .ci/run installs it")


@pytest.fixture(scope="module")
def tme_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tme") / "run"
    r = tumorpde("run", *TME, "-o", str(out), "-q")
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def qs_run(tmp_path_factory) -> Path:
    """The quickstart example, small: two fields (cells, signal), no [observables]."""
    out = tmp_path_factory.mktemp("qs") / "run"
    r = tumorpde("run", "quickstart", "--set", "mesh.cells=[20,10]", "--set", "time.end=0.5",
                 "-o", str(out), "-q")
    assert r.returncode == 0, r.stderr
    return out


def distinct_colours(path: Path) -> int:
    from PIL import Image

    with Image.open(path) as im:
        return len(im.convert("RGB").getcolors(maxcolors=1 << 20) or [])


def h5_range(run: Path, field: str) -> tuple[float, float]:
    r = read(run)
    data = [r.field(field, t) for t in r.times]
    return float(min(d.min() for d in data)), float(max(d.max() for d in data))


# ----------------------------------------------------------------------------- render
def test_render_tme2d_every_field_with_paraview(tme_run, tmp_path):
    need_paraview()
    out = tmp_path / "shots"
    r = tumorpde("render", str(tme_run), "--field", "tumor", "oxygen", "--time", "2", "-o", str(out),
                 "--size", "400x320")
    assert r.returncode == 0, r.stderr
    manifest = json.loads((out / "render.json").read_text())
    # ParaView's Xdmf3 reader sees every species of the model, at every output time
    assert set(manifest["arrays"]) == SPECIES
    assert manifest["times"] == pytest.approx([0.0, 2.0, 4.0])
    for field in ("tumor", "oxygen"):
        png = out / f"{field}_t2.png"
        assert png.stat().st_size > 5000
        assert distinct_colours(png) > 50  # a colour-mapped field, not a blank image
        # the colour range spans the data over all output times (ParaView reads float32)
        lo, hi = h5_range(tme_run, field)
        assert manifest["ranges"][field] == pytest.approx([lo, hi], rel=1e-6, abs=1e-7)
    assert sorted(p.name for p in out.glob("*.png")) == ["oxygen_t2.png", "tumor_t2.png"]
    # the state file opens the run in ParaView, with the reader and the colour maps
    state = ET.parse(out / "fields.pvsm").getroot()
    xml = ET.tostring(state, encoding="unicode")
    assert "Xdmf3ReaderT" in xml and str((tme_run / "fields.xdmf").resolve()) in xml
    (tmp_path / "load.py").write_text(LOAD_STATE)
    from tumorpde.apps.render import find_pvbatch, virtual_display

    with virtual_display(tmp_path) as env:
        p = subprocess.run(find_pvbatch() + [str(tmp_path / "load.py"), str(out / "fields.pvsm")],
                           capture_output=True, text=True, env=env, timeout=300)
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("STATE ")]
    assert line, p.stdout + p.stderr
    loaded = json.loads(line[0][6:])
    assert set(loaded["arrays"]) == SPECIES
    assert loaded["colored_by"] == "tumor"
    assert loaded["range"] == pytest.approx(manifest["ranges"]["tumor"], rel=1e-6)


def test_render_animation(tme_run, tmp_path):
    need_paraview()
    from PIL import Image

    r = tumorpde("render", str(tme_run), "--field", "tumor", "--animate", "--no-state", "-o",
                 str(tmp_path), "--size", "240x200")
    assert r.returncode == 0, r.stderr
    with Image.open(tmp_path / "tumor.gif") as gif:
        assert gif.n_frames == 3  # one frame per output time
    assert not (tmp_path / "fields.pvsm").exists()
    assert not list(tmp_path.glob("*.png"))


def test_render_without_pvbatch_is_one_line(tme_run, tmp_path):
    bindir = tmp_path / "bin"  # PATH with python but no pvbatch
    bindir.mkdir()
    (bindir / "python").symlink_to(sys.executable)
    env = {k: v for k, v in os.environ.items() if k != "TUMORPDE_PVBATCH"}
    env["PATH"] = str(bindir)
    r = tumorpde("render", str(tme_run), env=env)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("tumorpde: error: ")
    assert "pvbatch not found" in r.stderr
    env["TUMORPDE_PVBATCH"] = str(tmp_path / "nowhere" / "pvbatch")
    r = tumorpde("render", str(tme_run), env=env)
    assert r.returncode == 2 and r.stderr.startswith("tumorpde: error: TUMORPDE_PVBATCH: ")


@pytest.mark.parametrize("args, message", [
    (["--field", "tumour"], "--field: no field 'tumour'"),
    (["--time", "3"], "--time: 3 is not an output time of this run (output times: 0, 2, 4)"),
    (["--time", "2", "--animate"], "not allowed with argument --time"),
    (["--size", "big"], "expected WIDTHxHEIGHT"),
])
def test_render_bad_input(tme_run, args, message):
    r = tumorpde("render", str(tme_run), *args, "--pvbatch", sys.executable)
    assert r.returncode == 2 and message in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_render_not_a_run(tmp_path):
    r = tumorpde("render", str(tmp_path))
    assert r.returncode == 2 and "has no fields.xdmf" in r.stderr


# ----------------------------------------------------------------------------- plot
def test_plot_observables(tme_run, tmp_path):
    r = tumorpde("plot", str(tme_run), "-o", str(tmp_path / "p"), "--dpi", "50")
    assert r.returncode == 0, r.stderr
    species, observables = tmp_path / "p" / "species.png", tmp_path / "p" / "observables.png"
    from PIL import Image

    with Image.open(species) as a, Image.open(observables) as b:
        # 15 species in a 4x4 grid of 3.6 x 2.7 inch panels; the 14 [observables] likewise
        assert a.size == b.size == (4 * 180, round((4 * 2.7 + 0.5) * 50))
    assert distinct_colours(species) > 20
    r = tumorpde("plot", str(tme_run), "-o", str(tmp_path / "q"), "--column", "tumor_burden",
                 "--format", "svg")
    assert r.returncode == 0, r.stderr
    assert [p.name for p in (tmp_path / "q").iterdir()] == ["observables.svg"]
    r = tumorpde("plot", str(tme_run), "--column", "tumour_burden")
    assert r.returncode == 2 and "no column 'tumour_burden'" in r.stderr


def test_plot_reads_a_running_job(tmp_path):
    """A row being written when the file is read is left out; a bad row is an error."""
    from tumorpde.apps.plot import observable_columns

    (tmp_path / "observables.csv").write_text("t,total_u\n0.0,1.0\n0.5,1.5\n1.0,")
    assert observable_columns(tmp_path) == {"t": [0.0, 0.5], "total_u": [1.0, 1.5]}
    (tmp_path / "observables.csv").write_text("t,total_u\n0.0,1.0\n0.5\n1.0,2.0\n")
    from tumorpde.errors import ConfigError

    with pytest.raises(ConfigError, match="line 3: 1 values for 2 columns"):
        observable_columns(tmp_path)


# ----------------------------------------------------------------------------- report
class _Checker(html.parser.HTMLParser):
    """Counts tags and checks that non-void tags are closed in order."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.count: dict[str, int] = {}

    def handle_starttag(self, tag, attrs):
        self.count[tag] = self.count.get(tag, 0) + 1
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-5:])
        self.stack.pop()


def test_report_html_is_one_self_contained_page(qs_run, tmp_path):
    out = tmp_path / "r.html"
    r = tumorpde("report", str(qs_run), "-o", str(out), "--no-snapshots")
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    checker = _Checker()
    checker.feed(text)
    assert not checker.stack
    assert checker.count["img"] == 1 and text.count('src="data:image/png;base64,') == 1
    run = read(qs_run).info
    for key, version in run.versions.items():
        assert f"<td>{key}</td><td>{version}</td>" in text
    final = run.final.observables
    assert f"<code>total_cells</code></td><td>{final['total_cells']:.6g}</td>" in text
    assert run.config["title"] in text and "<td><code>rho</code></td><td>0.8 1/day</td>" in text
    assert list(tmp_path.iterdir()) == [out]  # no side files


def test_report_markdown_with_snapshots(qs_run, tmp_path):
    need_paraview()
    out = tmp_path / "summary.md"
    r = tumorpde("report", str(qs_run), "-o", str(out))
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    for section in ("## Run", "## Final observables", "## Observables over time",
                    "## Fields at t = 0.5", "## Model", "## Versions"):
        assert section in text
    images = [line[line.index("](") + 2:-1] for line in text.splitlines() if line.startswith("![")]
    why = [line for line in text.splitlines() if "snapshots" in line.lower()]
    assert images == ["summary_files/plots/species.png", "summary_files/snapshots/cells_t0.5.png",
                      "summary_files/snapshots/signal_t0.5.png"], (why, r.stderr[-2000:])
    for rel in images:
        assert distinct_colours(tmp_path / rel) > 20


def test_report_without_paraview_notes_it(qs_run, tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "TUMORPDE_PVBATCH"}
    env["PATH"] = str(bindir)
    out = tmp_path / "r.md"
    r = tumorpde("report", str(qs_run), "-o", str(out), env=env)
    assert r.returncode == 0, r.stderr
    assert "no ParaView snapshots: ParaView's pvbatch not found" in out.read_text()
    r = tumorpde("report", str(qs_run), "-o", str(out), "--pvbatch", "nope", env=env)
    assert r.returncode == 2 and "--pvbatch: ParaView's pvbatch 'nope' not found" in r.stderr
