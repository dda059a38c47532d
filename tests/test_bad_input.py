"""Bad input ends with exit status 2 and one clear line naming the key.

Every case starts from the bundled quick-start config (or from raw text for
malformed TOML), breaks one thing and runs the command line in a child process:
the exit status must be 2, stderr exactly one line ``tumorpde: error: ...`` that
names the offending key or token, there must be no traceback, and no
``run.json`` may say ``completed``.  A few cases run under ``mpiexec -n 2`` to
show that bad input found on every rank (or during the collective mesh set-up)
ends all ranks with one message and never hangs.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tumorpde.io.rundir import read
from tumorpde.io.tomlio import dumps

pytestmark = pytest.mark.subprocess

QUICKSTART = Path(__file__).resolve().parents[1] / "tumorpde" / "examples" / "quickstart.toml"
MPIEXEC = Path(sys.executable).parent / "mpiexec"
TIMEOUT = 120
INJECTIONS = [
    "__import__('os').system('touch PWNED')",
    "().__class__.__bases__",
    "open('x')",
    "lambda: 0",
    "[x for x in ()]",
]


# ------------------------------------------------------------------------ helpers
def to_toml(data: dict[str, Any]) -> str:
    """TOML text of a config dict; non-finite numbers are written (they are bad input here)."""
    return dumps(data, nonfinite=True)


def quickstart() -> dict[str, Any]:
    """The bundled quick-start config as a dict."""
    return tomllib.loads(QUICKSTART.read_text())


def test_toml_writer_round_trips() -> None:
    data = quickstart()
    data["x"] = {"a": [1, 2.5, "s'\"q"], "b": {"c": True, "d": float("inf")}}
    assert tomllib.loads(to_toml(data)) == data


@dataclass
class Case:
    """One piece of bad input.

    Attributes:
        id: Test id.
        expect: Substrings the error line must contain (key and/or token).
        mutate: Changes the quick-start dict in place.
        text: Raw config text instead of a mutated quick-start.
        args: Extra command-line arguments after the config.
        command: ``run`` or ``check``.
    """

    id: str
    expect: list[str]
    mutate: Callable[[dict[str, Any]], None] | None = None
    text: str | None = None
    args: list[str] = field(default_factory=list)
    command: str = "run"


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation setting the dotted ``path`` (tables created as needed)."""
    def f(d: dict[str, Any]) -> None:
        *head, last = path.split(".")
        for p in head:
            d = d.setdefault(p, {})
        d[last] = value
    return f


def _del(path: str) -> Callable[[dict[str, Any]], None]:
    def f(d: dict[str, Any]) -> None:
        *head, last = path.split(".")
        for p in head:
            d = d[p]
        del d[last]
    return f


def _all(*fs: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def f(d: dict[str, Any]) -> None:
        for g in fs:
            g(d)
    return f


def _no_units(d: dict[str, Any]) -> None:
    """Drop [units] and make the parameters plain numbers."""
    del d["units"]
    d["parameters"] = {"D0": 0.01, "rho": 0.8, "chi": 0.02}


def write_config(tmp_path: Path, case: Case) -> Path:
    cfg = tmp_path / "cfg.toml"
    if case.text is not None:
        cfg.write_text(case.text)
    else:
        data = quickstart()
        if case.mutate is not None:
            case.mutate(data)
        cfg.write_text(to_toml(data))
    return cfg


def run_cli(args: list[str], cwd: Path, mpi: int = 0) -> subprocess.CompletedProcess[str]:
    """Run ``python -m tumorpde ARGS`` (under ``mpiexec -n MPI`` if mpi > 0)."""
    cmd = [sys.executable, "-m", "tumorpde", *args]
    if mpi:
        cmd = [str(MPIEXEC), "-n", str(mpi), *cmd]
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:  # a hang is a failure, not an error
        pytest.fail(f"{' '.join(args)} did not finish within {TIMEOUT} s "
                    f"(stderr: {exc.stderr!r})")


def assert_bad_input(proc: subprocess.CompletedProcess[str], expect: list[str],
                     outdir: Path | None = None) -> str:
    """Exit status 2, one ``tumorpde: error:`` line naming ``expect``, no traceback."""
    both = proc.stdout + proc.stderr
    assert "Traceback" not in both, both
    assert proc.returncode == 2, f"exit status {proc.returncode}\n{both}"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{proc.stderr}"
    line = lines[0]
    assert line.startswith("tumorpde: error:"), line
    for token in expect:
        assert token in line, f"{token!r} not named in: {line}"
    if outdir is not None:
        if (outdir / "run.json").exists():
            assert read(outdir).status != "completed"
    return line


# -------------------------------------------------------------------------- cases
CASES = [
    # --- TOML and keys
    Case("malformed-toml", ["cfg.toml", "not valid TOML"],
         text="[mesh\nshape = 'rectangle'\n"),
    Case("unknown-top-level-key", ["colour", "unknown key"], _set("colour", "red")),
    Case("unknown-key-time", ["time.ned", "unknown key"], _set("time.ned", 2.0)),
    Case("unknown-key-mesh", ["mesh.cels", "unknown key"], _set("mesh.cels", [4, 4])),
    Case("unknown-key-species", ["species.cells.difusion", "unknown key"],
         _set("species.cells.difusion", 0.1)),
    # --- expressions
    Case("unknown-symbol-reaction", ["species.cells.reaction", "cels"],
         _set("species.cells.reaction", "rho*cells*(1 - cels)")),
    Case("syntax-error", ["species.cells.reaction", "syntax error"],
         _set("species.cells.reaction", "rho*cells*(1 - cells")),
    Case("deeply-nested", ["species.cells.reaction", "nested"],
         _set("species.cells.reaction", "+".join(["cells"] * 1000))),
    Case("initial-uses-species", ["species.cells.initial", "signal"],
         _set("species.cells.initial", "signal")),
    Case("region-condition-unknown-symbol", ["mesh.regions.core", "r"],
         _set("mesh.regions", {"core": "r < 0.3"})),
    Case("huge-integer-literal", ["species.cells.reaction", "too large"],
         _set("species.cells.reaction", "1" + "0" * 400 + "*cells")),
    Case("where-without-condition", ["species.cells.reaction", "where()"],
         _set("species.cells.reaction", "where(x, cells, 0)")),
    # --- diffusion
    Case("negative-diffusion-number", ["species.signal.diffusion", "negative"],
         _set("species.signal.diffusion", -0.05)),
    Case("negative-diffusion-expression", ["species.cells.diffusion", "negative"],
         _all(_no_units, _set("species.cells.diffusion", "-0.01 - 0*x"))),
    Case("negative-diffusion-expression-units", ["species.cells.diffusion", "negative"],
         _set("species.cells.diffusion", "D0*(tanh((x - 1.0)/0.1) - 2)")),
    Case("nan-diffusion", ["species.signal.diffusion", "finite"],
         _set("species.signal.diffusion", float("nan"))),
    # --- units
    Case("diffusion-wrong-units", ["species.cells.diffusion", "mm"],
         _set("parameters.D0", "0.01 mm^2")),
    Case("reaction-wrong-units", ["species.cells.reaction", "units"],
         _set("species.cells.reaction", "D0*cells")),
    Case("units-without-units-table", ["parameters.D0", "[units]"], _del("units")),
    Case("unknown-unit", ["parameters.D0", "blorp"], _set("parameters.D0", "0.01 blorp")),
    Case("parameter-not-finite", ["parameters.D0", "finite"], _set("parameters.D0", "1e999")),
    # --- mesh
    Case("missing-mesh-file", ["mesh.file", "nope.msh"],
         _set("mesh", {"shape": "file", "file": "nope.msh"})),
    Case("zero-cells", ["mesh.cells", "positive"], _set("mesh.cells", [0, 20])),
    Case("too-many-cells", ["mesh.cells"], _set("mesh.cells", [100_000, 100_000])),
    Case("degenerate-size", ["mesh.size"], _set("mesh.size", [1e-300, 1.0])),
    Case("degenerate-disk", ["mesh.radius"], _set("mesh", {"shape": "disk", "radius": 1e-300})),
    Case("cells-string-entry", ["mesh.cells[1]", "number"], _set("mesh.cells", [40, "x"])),
    # --- time
    Case("negative-end", ["time.end"], _set("time.end", -1.0)),
    Case("end-equals-start", ["time.end"], _all(_set("time.start", 1.0), _set("time.end", 1.0))),
    Case("dt-string", ["time.dt", "abc"], _set("time.dt", "abc")),
    Case("dt-too-small", ["time.dt"], _set("time.dt", 1e-12)),
    Case("dt-below-resolution", ["time.dt", "resolution"],
         _all(_set("time.start", 1e12), _set("time.end", 1e12 + 1.0), _set("time.dt", 1e-5))),
    Case("checkpoint-every-tiny", ["output.checkpoint_every"],
         _set("output.checkpoint_every", 1e-300)),
    Case("scheme-integer", ["time.scheme", "string"], _set("time.scheme", 3)),
    Case("scheme-unknown", ["time.scheme", "rk4"], _set("time.scheme", "rk4")),
    # --- names
    Case("taxis-unknown-species", ["species.cells.taxis[0].toward", "signl"],
         _set("species.cells.taxis", [{"toward": "signl", "sensitivity": "chi*cells"}])),
    Case("dirichlet-unknown-boundary", ["species.signal.boundary.leftt", "leftt"],
         _set("species.signal.boundary", {"leftt": {"value": 1.0}})),
    Case("boundary-flux-and-value", ["species.signal.boundary.left"],
         _set("species.signal.boundary", {"left": {"value": 1.0, "flux": 0.1}})),
    Case("output-fields-unknown-species", ["output.fields", "cell"],
         _set("output.fields", ["cell"])),
    # --- --set
    Case("set-no-equals", ["--set", "time.end"], args=["--set", "time.end"]),
    Case("set-empty-key", ["--set"], args=["--set", "=1"]),
    Case("set-empty-part", ["--set", "time..end"], args=["--set", "time..end=1"]),
    Case("set-not-toml", ["--set", "time.end"], args=["--set", "time.end=[1,"]),
    Case("set-word-for-number", ["time.end", "abc"], args=["--set", "time.end=abc"]),
    Case("set-into-scalar", ["--set", "time.end"], args=["--set", "time.end.x=1"]),
    # --- the same checks through `tumorpde check`
    Case("check-negative-diffusion-expression", ["species.cells.diffusion", "negative"],
         _all(_no_units, _set("species.cells.diffusion", "-0.01 - 0*x")), command="check"),
]


CASES += [
    Case("unknown-region", ["species.cells.diffusion", "tumour"],
         _set("species.cells.diffusion", {"tumour": "2*D0", "default": "D0"})),
    Case("initial-not-finite", ["species.cells.initial", "finite"],
         _all(_no_units, _set("species.cells.initial", "log(x - x)"))),
    Case("diffusion-not-finite", ["species.cells.diffusion", "finite"],
         _all(_no_units, _set("species.cells.diffusion", "1/(x - x)"))),
    Case("solver-unknown-type", ["solver.snes_type", "nosuch"], _set("solver.snes_type", "nosuch")),
]
CASES.append(Case("calibration-max-evaluations", ["calibration.max_evaluations", "at least 2"],
                  _set("calibration.max_evaluations", 1), command="check"))
# a radiotherapy aimed at a region the mesh does not have: by `run` and by `check`
BEAM = {"kind": "fraction", "dose": 2.0, "survival": {"cells": "exp(-0.3*beam)"}}
for command in ("run", "check"):
    CASES.append(Case(f"{command}-therapy-unknown-region", ["therapy[0].region", "lung"],
                      _all(_set("drugs.beam", BEAM),
                           _set("therapy", [{"drug": "beam", "start": 0.1, "region": "lung"}])),
                      command=command))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_config(tmp_path: Path, case: Case) -> None:
    cfg = write_config(tmp_path, case)
    outdir = tmp_path / "out"
    args = [case.command, str(cfg)]
    if case.command == "run":
        args += ["-o", str(outdir), "-q"]
    proc = run_cli(args + case.args, tmp_path)
    assert_bad_input(proc, case.expect, outdir)


INJECTION_CASES = [("species.cells.reaction", code) for code in INJECTIONS] + [
    ("species.cells.taxis", INJECTIONS[0])]


@pytest.mark.parametrize(("where", "code"), INJECTION_CASES,
                         ids=[f"{w.split('.')[-1]}-{c[:12]}" for w, c in INJECTION_CASES])
def test_code_injection(tmp_path: Path, where: str, code: str) -> None:
    """Expressions are parsed, never evaluated: every such string is refused by name."""
    data = quickstart()
    if where == "species.cells.taxis":
        data["species"]["cells"]["taxis"][0]["sensitivity"] = code
        key = "species.cells.taxis[0].sensitivity"
    else:
        _set(where, code)(data)
        key = where
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(to_toml(data))
    outdir = tmp_path / "out"
    proc = run_cli(["run", str(cfg), "-o", str(outdir), "-q"], tmp_path)
    assert_bad_input(proc, [key], outdir)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("target", ["parameter", "region", "set"])
def test_code_injection_elsewhere(tmp_path: Path, target: str) -> None:
    """Parameters (read by pint), region conditions and --set values are not evaluated either."""
    code = INJECTIONS[0]
    data = quickstart()
    args: list[str] = []
    if target == "parameter":
        data["parameters"]["D0"] = code
        expect = ["parameters.D0"]
    elif target == "region":
        data["mesh"]["regions"] = {"core": code}
        expect = ["mesh.regions.core"]
    else:
        args = ["--set", f"species.cells.reaction={code}"]
        expect = ["--set"]
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(to_toml(data))
    outdir = tmp_path / "out"
    proc = run_cli(["run", str(cfg), "-o", str(outdir), "-q", *args], tmp_path)
    assert_bad_input(proc, expect, outdir)
    assert not (tmp_path / "PWNED").exists()


# ------------------------------------------------------------- command-line misuse
def test_run_unknown_example(tmp_path: Path) -> None:
    proc = run_cli(["run", "nosuchexample", "-q"], tmp_path)
    assert_bad_input(proc, ["nosuchexample"])
    assert not (tmp_path / "out").exists()


def test_init_unknown_example(tmp_path: Path) -> None:
    proc = run_cli(["init", "nosuchexample"], tmp_path)
    assert_bad_input(proc, ["nosuchexample", "quickstart"])
    assert list(tmp_path.iterdir()) == []


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    dest = tmp_path / "mine.toml"
    dest.write_text("# my edits\n")
    proc = run_cli(["init", "quickstart", str(dest)], tmp_path)
    assert_bad_input(proc, ["mine.toml", "--force"])
    assert dest.read_text() == "# my edits\n"


def test_output_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("")
    proc = run_cli(["run", str(QUICKSTART), "-o", str(tmp_path / "taken"), "-q"], tmp_path)
    assert_bad_input(proc, ["--output"])


def test_unknown_option(tmp_path: Path) -> None:
    proc = run_cli(["run", str(QUICKSTART), "--bogus"], tmp_path)
    assert_bad_input(proc, ["--bogus"])


# ---------------------------------------------------------------------- under MPI
MPI_CASES = [c for c in CASES if c.id in (
    "unknown-key-species", "syntax-error", "negative-diffusion-expression",
    "missing-mesh-file", "set-not-toml")]


@pytest.mark.subprocess
@pytest.mark.skipif(not MPIEXEC.exists(), reason="no mpiexec next to the interpreter")
class TestBadInputUnderMPI:
    """Bad input under ``mpiexec -n 2``: status 2, one line from rank 0, no hang."""

    @pytest.mark.parametrize("case", MPI_CASES, ids=[c.id for c in MPI_CASES])
    def test_bad_config(self, tmp_path: Path, case: Case) -> None:
        cfg = write_config(tmp_path, case)
        outdir = tmp_path / "out"
        proc = run_cli(["run", str(cfg), "-o", str(outdir), "-q", *case.args], tmp_path, mpi=2)
        line = assert_bad_input(proc, case.expect, outdir)
        assert proc.stderr.count("tumorpde: error:") == 1, line
