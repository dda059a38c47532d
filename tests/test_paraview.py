"""ParaView (the real client of our output) opens fields.xdmf with the Xdmf3 reader.

Needs Debian's ``paraview python3-paraview xvfb`` (installed by ``.ci/run``); in CI
(``CI`` set) a missing ParaView is a failure, elsewhere the test is skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.subprocess

SCRIPT = """
import json, sys
from paraview.simple import Xdmf3ReaderT, GetActiveViewOrCreate, Show, ColorBy, ResetCamera, SaveScreenshot
r = Xdmf3ReaderT(FileName=[sys.argv[1]])
r.UpdatePipeline(max(r.TimestepValues))
out = {"arrays": list(r.PointData.keys()), "times": list(r.TimestepValues),
       "range": list(r.PointData["cells"].GetRange())}
v = GetActiveViewOrCreate("RenderView")
d = Show(r, v)
ColorBy(d, ("POINTS", "cells"))
ResetCamera(v)
SaveScreenshot(sys.argv[2], v, ImageResolution=[400, 200])
print("RESULT " + json.dumps(out))
"""


def _pvbatch() -> list[str] | None:
    exe = shutil.which("pvbatch")
    if exe is None:
        return None
    xvfb = shutil.which("xvfb-run")
    return ([xvfb, "-a"] if xvfb else []) + [exe]


def test_paraview_opens_fields(tmp_path):
    cmd = _pvbatch()
    if cmd is None:
        if os.environ.get("CI"):
            pytest.fail("pvbatch not found although CI is set (.ci/run installs ParaView)")
        pytest.skip("ParaView (pvbatch) not installed; .ci/run installs it")
    r = subprocess.run([sys.executable, "-m", "tumorpde", "run", "quickstart", "-o", "o", "-q"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (tmp_path / "pv.py").write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    p = subprocess.run(cmd + [str(tmp_path / "pv.py"), str(tmp_path / "o" / "fields.xdmf"),
                              str(tmp_path / "shot.png")],
                       capture_output=True, text=True, timeout=300, env=env)
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    assert line, p.stdout + p.stderr
    import json

    out = json.loads(line[0][len("RESULT "):])
    assert set(out["arrays"]) == {"cells", "signal"}
    assert out["times"] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert out["range"][1] > 0.5
    assert (tmp_path / "shot.png").stat().st_size > 1000
