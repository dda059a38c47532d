#!/bin/sh
# Install tumorpde from a source tree with the pinned versions of constraints.txt.
# These are the install steps of the container images (docker/Dockerfile,
# docker/Dockerfile.dolfinx, docker/tumorpde.def); `make image-check` runs them in a
# fresh virtual environment.
#
#   docker/install.sh VENV [SRC]          new virtual environment VENV with the binary
#                                         DOLFINx/PETSc/MPICH wheels (extras fenics, plot, sweep, calibrate, imaging)
#   docker/install.sh --keep-installed [SRC]
#                                         into the current Python environment, on a DOLFINx
#                                         it already has (extras plot, sweep, calibrate, imaging): packages it has
#                                         stay at their versions, the others follow constraints.txt
#
# PYTHON names the interpreter (default python3; it must be Python >= 3.12).
set -eu

if [ "${1:-}" = "--keep-installed" ]; then
    src=${2:-.}
    python=${PYTHON:-python3}
    extras="plot,sweep,calibrate,imaging"
    constraints=$(mktemp)
    trap 'rm -f "$constraints"' EXIT
    # an installed package is pinned to its installed version, any other to constraints.txt
    "$python" - "$src/constraints.txt" > "$constraints" <<'PY'
import importlib.metadata as md
import sys

for line in open(sys.argv[1], encoding="utf-8"):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    name = line.split("==")[0]
    try:
        print(f"{name}=={md.version(name)}")
    except md.PackageNotFoundError:
        print(line)
PY
else
    venv=${1:?usage: docker/install.sh VENV [SRC] | --keep-installed [SRC]}
    src=${2:-.}
    "${PYTHON:-python3}" -m venv "$venv"
    python=$venv/bin/python
    extras="fenics,plot,sweep,calibrate,imaging"
    constraints=$src/constraints.txt
    pip_version=$(sed -n 's/^pip==//p' "$constraints")
    "$python" -m pip install --quiet --upgrade "pip==$pip_version"
fi

"$python" -m pip install --quiet --constraint "$constraints" "${src}[${extras}]"
"$python" -c "import tumorpde.compat as c; c.import_dolfinx(); print('tumorpde installed:', c.versions())"
