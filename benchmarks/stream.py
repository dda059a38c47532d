"""STREAM-like memory-bandwidth kernels (numpy), serially or on every MPI rank at once.

Run as ``python -m benchmarks.stream [--n N] [--repeat R]``, or under
``mpiexec -n P`` for the aggregate bandwidth of P ranks working at the same time
(the bound that a memory-bound solver on P ranks can reach).  Prints one JSON object.

Counting follows STREAM (McCalpin): copy ``a = b`` moves 16 bytes per element and
triad ``a = b + s c`` 24 bytes per element (write-allocate traffic not counted).  numpy
evaluates the triad in two passes (``a = s c`` then ``a += b``), which moves 40 bytes per
element; both countings are reported, and ``bandwidth`` is the best of the single-pass
kernels (copy, scale-in-place), the figure a sparse solve is compared with.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

__all__ = ["measure"]


def _best(fn, repeat: int, barrier=None) -> float:
    best = float("inf")
    for _ in range(repeat):
        if barrier is not None:
            barrier()
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        if barrier is not None:  # the slowest rank decides (all ranks share the memory bus)
            dt = barrier(dt)
        best = min(best, dt)
    return best


def measure(n: int = 20_000_000, repeat: int = 5, comm=None) -> dict:
    """Bandwidths in GB/s (1e9 bytes/s) of copy, scale and triad over arrays of ``n`` doubles.

    With ``comm`` (an mpi4py communicator) every rank runs the kernels at the same time and
    the aggregate bandwidth (bytes of all ranks / slowest time) is returned.
    """
    a = np.zeros(n)
    b = np.full(n, 1.0)
    c = np.full(n, 2.0)
    s = 3.0
    nranks = 1
    barrier = None
    if comm is not None:
        from mpi4py import MPI

        nranks = comm.size

        def barrier(dt=None):
            if dt is None:
                comm.Barrier()
                return None
            return comm.allreduce(dt, op=MPI.MAX)

    def copy():
        np.copyto(a, b)

    def scale():
        np.multiply(b, s, out=a)

    def triad():
        np.multiply(c, s, out=a)
        np.add(a, b, out=a)

    copy()
    triad()  # touch pages
    t_copy = _best(copy, repeat, barrier)
    t_scale = _best(scale, repeat, barrier)
    t_triad = _best(triad, repeat, barrier)
    gb = 1e-9 * n * nranks
    out = {
        "ranks": nranks,
        "n_per_rank": n,
        "copy_GBs": 16 * gb / t_copy,
        "scale_GBs": 16 * gb / t_scale,
        "triad_stream_counting_GBs": 24 * gb / t_triad,
        "triad_two_pass_GBs": 40 * gb / t_triad,
    }
    out["bandwidth_GBs"] = max(out["copy_GBs"], out["scale_GBs"], out["triad_two_pass_GBs"])
    return out


def main(argv: list[str] | None = None) -> None:
    """Command line: print the bandwidths as JSON (rank 0)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20_000_000, help="doubles per array and rank")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--mpi", action="store_true", help="run on every rank of MPI_COMM_WORLD")
    args = p.parse_args(argv)
    comm = None
    if args.mpi:
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
    res = measure(args.n, args.repeat, comm)
    res["loadavg"] = list(os.getloadavg())
    if comm is None or comm.rank == 0:
        print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
