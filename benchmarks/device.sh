#!/usr/bin/env bash
# Scaling measurements on a many-core machine (16 cores), within about 7.5 minutes.
#
#   OUT=/some/dir bash benchmarks/device.sh
#
# Needs Python with numpy and the DOLFINx/PETSc/MPICH/mpi4py stack importable (on PYTHONPATH;
# mpiexec is taken from $MPIEXEC, from <entry>/bin/mpiexec of a PYTHONPATH entry, or from PATH).
# Writes into $OUT (at most 8 files): machine.txt, stream.json, strong.json, weak.json,
# logview.txt (PETSc -log_view of the largest strong case), device.log, summary.txt.
# Every case has its own time limit and the results files are rewritten after each case,
# so whatever finished is kept.  Environment knobs: RANKS, CELLS (strong mesh, 64 = 4.1 M
# unknowns), WEAK_PER_RANK (unknowns per rank), BUDGET_S (whole script), PYTHON.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/out/device}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
RANKS=${RANKS:-"1 2 4 8 16"}
CELLS=${CELLS:-64}
WEAK_PER_RANK=${WEAK_PER_RANK:-500000}
BUDGET_S=${BUDGET_S:-450}
T0=$(date +%s)
END=$((T0 + BUDGET_S))
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tumorpde-bench.XXXXXX")
# FFCx/DOLFINx JIT cache inside the work directory (compiled once, by the pre-warm run)
export XDG_CACHE_HOME=$WORK/cache
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
LOG=$OUT/device.log
: >"$LOG"
say() { echo "[$(($(date +%s) - T0)) s] $*" | tee -a "$LOG"; }
left() { echo $((END - $(date +%s))); }

{
  echo "date: $(date -u +%FT%TZ)"; echo "host: $(uname -a)"; echo "nproc: $(nproc)"
  echo "loadavg: $(cat /proc/loadavg)"; echo "python: $($PY -V 2>&1) at $(command -v $PY)"
  echo "PYTHONPATH: $PYTHONPATH"
  command -v lscpu >/dev/null && lscpu
  grep -E 'MemTotal|MemAvailable' /proc/meminfo
  command -v cc gcc 2>/dev/null | sed 's/^/compiler: /'
  $PY -c "import numpy, sys; print('numpy', numpy.__version__); numpy.show_config()" 2>&1 | head -40
} >"$OUT/machine.txt" 2>&1

say "pre-warm: FFCx JIT of the step's forms on 1 rank"
NOJIT=""
if ! timeout -k 5 120 $PY -m benchmarks.scaling_step --cells 4 --steps 1 --warmup 0 >>"$LOG" 2>&1; then
  say "JIT pre-warm failed (no C compiler or Python headers?): assembling with numpy instead"
  NOJIT="--no-jit"
  timeout -k 5 60 $PY -m benchmarks.scaling_step --cells 4 --steps 1 --warmup 0 --no-jit >>"$LOG" 2>&1 \
    || say "the no-JIT step failed too: see device.log"
fi
$PY -c "from benchmarks.scaling import find_mpiexec; print('mpiexec:', find_mpiexec())" >>"$LOG" 2>&1

run() {  # run <name> <seconds> <args...>: one scaling.py mode with its own limit
  local name=$1 limit=$2; shift 2
  local avail; avail=$(left)
  (( limit > avail - 5 )) && limit=$((avail - 5))
  if (( limit < 15 )); then say "$name: skipped (out of time)"; return; fi
  say "$name: up to $limit s"
  timeout -k 5 "$limit" $PY benchmarks/scaling.py --mode "$name" --ranks $RANKS --bind \
    --out "$OUT/$name.json" --log "$WORK/$name.log" --deadline $(($(date +%s) + limit - 2)) "$@" \
    2>&1 | tee -a "$LOG"
}

run stream 40 --stream-n 20000000
# strong: 4.1 M unknowns; PETSc -log_view of the largest case
export PETSC_OPTIONS="-log_view :$WORK/logview.txt"
run strong 230 --cells "$CELLS" --steps 3 --warmup 1 --timeout 150 $NOJIT
unset PETSC_OPTIONS
run weak "$(( $(left) - 10 ))" --unknowns-per-rank "$WEAK_PER_RANK" --steps 3 --warmup 1 --timeout 90 $NOJIT

cp "$WORK/logview.txt" "$OUT/logview.txt" 2>/dev/null
for f in stream strong weak; do
  [ -f "$WORK/$f.log" ] && { echo "===== $f children"; cat "$WORK/$f.log"; } >>"$LOG"
done
$PY - "$OUT" <<'EOF' 2>&1 | tee "$OUT/summary.txt"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for mode in ("stream", "strong", "weak"):
    p = out / f"{mode}.json"
    if not p.exists():
        print(f"{mode}: no results"); continue
    d = json.loads(p.read_text())
    for c in d["cases"]:
        if "error" in c:
            print(f"{mode:6s} P={c['ranks']:2d}: {c['error']}")
        elif mode == "stream":
            print(f"stream P={c['ranks']:2d}: {c['bandwidth_GBs']:.1f} GB/s (copy {c['copy_GBs']:.1f})")
        else:
            print(f"{mode:6s} P={c['ranks']:2d}: {c['unknowns']/1e6:.2f} M unknowns, step {c['step_s']:.3f} s "
                  f"(diffusion {c['diffusion_s']:.3f}, kinetics {c['kinetics_s']:.3f}), "
                  f"efficiency {c.get('efficiency', float('nan')):.2f}, "
                  f"solve {c['solve_modelled_GBs'] or 0:.1f} GB/s, {c['bytes_per_unknown']:.0f} B/unknown")
EOF
say "done"
rm -rf "$WORK"
