"""The container and cluster recipes: linted with the real tools, consistent with the code.

No container engine runs in CI: the Dockerfiles are linted with hadolint, the shell
scripts with shellcheck, and ``make image-check`` (run by ``.ci/run``) performs the
images' install steps (docker/install.sh) in a fresh virtual environment and their
smoke test (docker/smoke.sh).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.subprocess

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILES = sorted((ROOT / "docker").glob("Dockerfile*"))
SCRIPTS = [ROOT / "docker" / "install.sh", ROOT / "docker" / "smoke.sh",
           ROOT / "cluster" / "tumorpde.slurm"]


def tool(name: str) -> str:
    """A linter installed with the test extra (beside this Python), or on PATH."""
    exe = Path(sys.executable).with_name(name)
    found = str(exe) if exe.exists() else shutil.which(name)
    assert found, f"{name} not installed (pip install -e '.[test]')"
    return found


def test_dockerfiles_exist():
    assert [p.name for p in DOCKERFILES] == ["Dockerfile", "Dockerfile.dolfinx"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(dockerfile):
    r = subprocess.run([tool("hadolint"), "--no-color", "--failure-threshold", "warning",
                        str(dockerfile)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_hadolint_catches_errors(tmp_path):
    """The lint can fail: an unpinned base image and a `cd` in RUN are reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN cd /tmp && pip install numpy\n")
    r = subprocess.run([tool("hadolint"), "--no-color", "--failure-threshold", "warning", str(bad)],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "DL3006" in r.stdout and "DL3003" in r.stdout


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck(script):
    r = subprocess.run([tool("shellcheck"), str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def _requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in ("fenics", "plot", "sweep", "test"):
        reqs += project["optional-dependencies"][extra]
    return reqs


def _pins() -> dict[str, str]:
    from packaging.utils import canonicalize_name

    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not NAME==VERSION"
            pins[canonicalize_name(name)] = version
    return pins


def test_constraints_pin_every_requirement():
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = _pins()
    for text in _requirements():
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, f"constraints.txt does not pin {req.name} (make constraints)"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"constraints.txt pins {req.name}=={pins[name]}, outside {req.specifier}"
    assert "pip" in pins and "tumorpde" not in pins


def test_images_share_install_steps_and_base():
    docker = (ROOT / "docker" / "Dockerfile").read_text()
    dolfinx = (ROOT / "docker" / "Dockerfile.dolfinx").read_text()
    apptainer = (ROOT / "docker" / "tumorpde.def").read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", docker, re.M).group(1)
    assert re.fullmatch(r"python:3\.12\.\d+-slim-bookworm", base)  # a pinned patch release
    assert re.search(r"^From: (\S+)$", apptainer, re.M).group(1) == base
    assert "ARG DOLFINX_IMAGE=ghcr.io/fenics/dolfinx/dolfinx:v0.11.0" in dolfinx
    assert "/src/docker/install.sh /opt/tumorpde /src" in docker
    assert "/src/docker/install.sh /opt/tumorpde /src" in apptainer
    assert "/src/docker/install.sh --keep-installed /src" in dolfinx
    for text in (docker, dolfinx):  # non-root, tumorpde as entry point, outputs on a volume
        assert re.search(r"^USER \d+:\d+$", text, re.M)
        assert 'ENTRYPOINT ["tumorpde"]' in text and 'VOLUME ["/work"]' in text
        assert "smoke.sh" in text
    assert 'exec tumorpde "$@"' in apptainer
    # every file the Apptainer build copies exists, and the Docker build context has them
    ignore = (ROOT / ".dockerignore").read_text().split()
    for src in re.findall(r"^\s{4}(\S+) /src/", apptainer, re.M):
        assert (ROOT / src).exists(), src
        assert f"!{src}" in ignore or f"!{src}/" in ignore, f".dockerignore leaves out {src}"


def test_install_script_builds_a_working_environment():
    """The steps that `make image-check` runs (checked here as text: no network in tests)."""
    install = (ROOT / "docker" / "install.sh").read_text()
    assert '--constraint "$constraints"' in install
    assert 'extras="fenics,plot,sweep,calibrate,imaging"' in install
    assert (ROOT / "docker" / "install.sh").stat().st_mode & 0o111
    makefile = (ROOT / "Makefile").read_text()
    assert "docker/install.sh build/image-venv ." in makefile
    assert "docker/smoke.sh build/image-venv/bin" in makefile
    assert "--constraint constraints.txt" in makefile  # make setup pins the same versions
    assert "make image-check" in (ROOT / ".ci" / "run").read_text()


def test_slurm_template_uses_existing_commands():
    from tumorpde.apps.cli import build_parser

    text = (ROOT / "cluster" / "tumorpde.slurm").read_text()
    r = subprocess.run(["bash", "-n", str(ROOT / "cluster" / "tumorpde.slurm")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    commands = set(build_parser()._subparsers._group_actions[0].choices)
    used = set(re.findall(r'"\$\{TUMORPDE\[@\]\}" (\w+)', text))
    assert used == {"check", "run", "resume", "plot", "report"}
    assert used <= commands
    assert "srun" in text and "#SBATCH --signal=TERM@" in text


def test_cluster_doc_covers_the_recipes():
    doc = (ROOT / "docs" / "cluster.md").read_text()
    for needle in ("cluster/tumorpde.slurm", "docker/tumorpde.def", "docker/Dockerfile",
                   "MPI4PY_LIBMPI", "libmpi.so.12", "srun", "tumorpde resume", "checkpoint_every",
                   "Spack", "conda", "Cray MPICH", "Intel MPI", "MVAPICH"):
        assert needle in doc, needle
