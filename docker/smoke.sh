#!/bin/sh
# Smoke test of an installed tumorpde (the images run it when they are built;
# `make image-check` runs it on a fresh virtual environment):
#
#   docker/smoke.sh BINDIR       BINDIR holds the tumorpde and python commands (and
#                                mpiexec, else the one on PATH)
#
# the command line, a bundled mesh, a run on 2 MPI ranks, its figures; then the forms of
# the tme model are compiled (`check`), so that they are cached for the first real run.
set -eu
bin=${1:?usage: docker/smoke.sh BINDIR}
unset PYTHONPATH
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

mpiexec=$bin/mpiexec
[ -x "$mpiexec" ] || mpiexec=$(command -v mpiexec)

"$bin/tumorpde" --version
"$bin/tumorpde" mesh disk -o "$tmp/disk.msh" --set cell_size=0.2
"$mpiexec" -n 2 "$bin/tumorpde" run quickstart -q -o "$tmp/run" \
    --set 'mesh.cells=[20,10]' --set time.end=0.2
test "$("$bin/python" -c 'import sys; from tumorpde.io.rundir import read; print(read(sys.argv[1]).info.ranks)' \
    "$tmp/run")" = 2
"$bin/tumorpde" plot "$tmp/run" -o "$tmp/plots"
"$bin/tumorpde" check tme-2d
echo "smoke test passed"
