"""Compare the observables.csv of two sets of run directories (a refactoring's gate).

Usage: ``python scripts/compare_observables.py BEFORE_DIR AFTER_DIR`` where each folder
holds run directories of the same names (``AFTER_DIR/*/observables.csv``).  Prints, per
run, the number of rows and the largest difference relative to each column's largest
magnitude; columns and row counts must agree.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np


def read(path: Path) -> tuple[list[str], np.ndarray]:
    """Header and data of an observables.csv."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], np.array(rows[1:], dtype=float)


def compare(before: Path, after: Path) -> str:
    """One line: rows and the largest relative difference (or what does not match)."""
    ha, da = read(before)
    hb, db = read(after)
    if ha != hb:
        return f"columns differ: {sorted(set(ha) ^ set(hb))}"
    if da.shape != db.shape:
        return f"shape {da.shape} vs {db.shape}"
    scale = np.maximum(np.abs(da).max(axis=0), 1e-300)
    rel = np.abs(da - db).max(axis=0) / scale
    return f"rows {len(da)} max rel {rel.max():.2e} (column {ha[int(rel.argmax())]})"


def main(argv: list[str]) -> int:
    """Compare every run of ``argv[1]`` with the run of the same name in ``argv[0]``."""
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    before, after = Path(argv[0]), Path(argv[1])
    for path in sorted(after.glob("*/observables.csv")):
        ref = before / path.parent.name / "observables.csv"
        print(path.parent.name, compare(ref, path) if ref.is_file() else "no reference run")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
