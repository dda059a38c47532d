"""One scaling case: time steps of a 15-species 3D reaction-diffusion system on P1 tetrahedra.

Run under MPI by :mod:`benchmarks.scaling` (``mpiexec -n P python -m benchmarks.scaling_step``);
rank 0 writes one JSON object.  The problem is the ``tme-3d`` scenario's transport and its
time step, advanced by the split strategy that tumorpde uses for it (Strang splitting:
half a step of local kinetics at every vertex, a linear diffusion solve per species with the
matrix and preconditioner assembled once and reused, half a step of kinetics):

* mesh: ``cells^3`` cubes of the 2 mm tissue box, 6 tetrahedra each, P1;
* diffusion: Crank-Nicolson ``(M + dt/2 D K) u+ = (M - dt/2 D K) u`` with lumped mass M,
  the diffusivities of the tme model (oxygen 144 mm^2/day ... immune cells 0.01, ECM 0);
  CG with smoothed-aggregation AMG (GAMG) where ``D dt / h^2 > 10`` and with Jacobi where
  the mass matrix dominates;
* kinetics: two Newton iterations of a backward-Euler half step of a dense 15-species
  reaction system at every vertex (batched 15 x 15 solves), the cost of solving the tme
  kinetics pointwise.

Timed: the stepping phase only (``--steps`` after ``--warmup`` untimed steps); mesh
creation, form compilation (JIT), assembly and preconditioner set-up are reported
separately.  Phases are timed on every rank and the slowest rank is reported.  The
solve-phase memory traffic is modelled from PETSc's flop counts per kernel (AIJ
matrix kernels 6 bytes/flop: 12 bytes per stored non-zero and 2 flops; vector kernels
by their own ratio), and a bare ``MatMult`` of the largest species matrix gives the
bandwidth of the sparse kernel itself.

Without a C compiler (no JIT) ``--no-jit`` assembles the same matrices from the mesh
geometry with numpy (P1 stiffness as edge weights, lumped mass as vertex volumes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from mpi4py import MPI

import numpy as np

# tme diffusivities in mm^2/day (tumorpde/models/tme.toml), used when the model cannot be read
TME_DIFFUSIVITY = {
    "tumor": 1.728e-3, "csc": 1.728e-3, "fibroblast": 1e-3, "caf": 1e-3, "ecm": 0.0,
    "mmp": 8.6e-3, "tgfb": 3.66336, "vegf": 3.66336, "oxygen": 144.0, "vessel": 8.75e-4,
    "lymphatic": 8.75e-4, "m1": 0.01, "m2": 0.01, "tcell": 0.01, "ifng": 3.66336,
}

# bytes moved per flop by PETSc kernels (double precision, 32-bit column indices)
BYTES_PER_FLOP = {
    "MatMult": 6.0, "MatMultAdd": 6.0, "MatMultTranspose": 6.0, "MatResidual": 6.0,
    "MatSOR": 6.0, "MatSolve": 6.0,
    "VecAXPY": 12.0, "VecAYPX": 12.0, "VecWAXPY": 24.0, "VecAXPBYPCZ": 8.0, "VecAXPBY": 8.0,
    "VecMAXPY": 4.0, "VecMDot": 4.0, "VecTDot": 8.0, "VecDot": 8.0, "VecNorm": 4.0,
    "VecScale": 16.0, "VecPointwiseMult": 24.0,
}


def tme_diffusivities() -> dict[str, float]:
    """Diffusivities (mm^2/day) of the tme model's species, read from the bundled model."""
    try:
        from pathlib import Path

        import tumorpde
        from tumorpde.model.config import check, load

        spec = check(load(Path(tumorpde.__file__).parent / "examples" / "tme-3d.toml"))
        out = {}
        for n in spec.names:
            d = spec.species[n].diffusion
            out[n] = 0.0 if d is None else float(spec.parameters[d.expr.name][0])
        return out
    except Exception:  # the benchmark must run without the model's dependencies
        return dict(TME_DIFFUSIVITY)


class Timer:
    """Accumulating wall-clock timers per phase."""

    def __init__(self) -> None:
        self.t: dict[str, float] = {}

    def add(self, name: str, dt: float) -> None:
        """Add ``dt`` seconds to phase ``name``."""
        self.t[name] = self.t.get(name, 0.0) + dt


def build_operators(mesh, V, jit: bool):
    """Lumped mass (Vec) and P1 stiffness (Mat) of the scalar space ``V``."""
    from petsc4py import PETSc

    if jit:
        import ufl
        from dolfinx import fem
        from dolfinx.fem import petsc as fpetsc

        u, v = ufl.TrialFunction(V), ufl.TestFunction(V)
        meta = {"quadrature_rule": "vertex", "quadrature_degree": 1}
        m = fpetsc.assemble_vector(fem.form(v * ufl.dx(metadata=meta)))
        m.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        K = fpetsc.assemble_matrix(fem.form(ufl.inner(ufl.grad(u), ufl.grad(v)) * ufl.dx))
        K.assemble()
        return m, K
    return _numpy_operators(mesh, V)


def _numpy_operators(mesh, V):
    """The same operators without JIT: edge weights and vertex volumes (cf. tumorpde.fem.taxis)."""
    from petsc4py import PETSc

    from tumorpde.fem.taxis import EdgeGraph

    g = EdgeGraph(V, V.dofmap.index_map)
    imap = V.dofmap.index_map
    nown = imap.size_local
    gn = g.global_nodes
    # K_ij = -w_ij, K_ii = sum_j w_ij; each rank adds the edges of its own cells
    rows = np.concatenate([gn[g.i], gn[g.j], gn[g.i], gn[g.j]])
    cols = np.concatenate([gn[g.j], gn[g.i], gn[g.i], gn[g.j]])
    vals = np.concatenate([-g.w, -g.w, g.w, g.w])
    K = PETSc.Mat().create(comm=mesh.comm)
    K.setSizes([[nown, PETSc.DECIDE], [nown, PETSc.DECIDE]])
    K.setType("aij")
    K.setPreallocationCOO(rows.astype(PETSc.IntType), cols.astype(PETSc.IntType))
    K.setValuesCOO(vals, addv=PETSc.InsertMode.ADD_VALUES)
    K.assemble()
    # lumped mass: a quarter of each tetrahedron's volume at its vertices
    from tumorpde.compat import geometry_dofmap

    tdim = mesh.topology.dim
    ncells = mesh.topology.index_map(tdim).size_local
    dofs = np.asarray(V.dofmap.list)[:ncells]
    geom = np.asarray(geometry_dofmap(mesh))[:ncells]
    X = mesh.geometry.x[geom]
    vol = np.abs(np.linalg.det(X[:, 1:, :] - X[:, :1, :])) / 6.0
    local = np.bincount(dofs.ravel(), weights=np.repeat(vol / 4.0, 4),
                        minlength=nown + imap.num_ghosts)
    m = PETSc.Vec().createGhost(imap.ghosts.astype(PETSc.IntType), size=(nown, PETSc.DECIDE),
                                comm=mesh.comm)
    with m.localForm() as ml:
        ml.array[:] = local
    m.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
    return m, K


class Kinetics:
    """A dense 15-species reaction system solved pointwise (stand-in for the tme kinetics).

    ``f(u) = r * u * (1 - sum u / 2) - k * u + C u * s(u_o)``: logistic growth limited by the
    total density, linear decay and a dense coupling modulated by a saturating function of
    one signal species, so that the Jacobian is a full 15 x 15 matrix at every vertex.
    """

    def __init__(self, n: int, seed: int = 1) -> None:
        rng = np.random.default_rng(seed)
        self.r = rng.uniform(0.05, 0.3, n)
        self.k = rng.uniform(0.01, 2.0, n)
        self.C = rng.uniform(0.0, 0.05, (n, n))
        self.sig = 0

    def solve(self, u: np.ndarray, h: float, iterations: int = 2) -> np.ndarray:
        """Backward-Euler step of length ``h`` at every row of ``u`` (nodes x species)."""
        u0 = u
        x = u.copy()
        n = u.shape[1]
        eye = np.eye(n)
        for _ in range(iterations):
            tot = x.sum(axis=1, keepdims=True)
            s = x[:, self.sig:self.sig + 1]
            sat = s / (1.0 + s)
            dsat = 1.0 / (1.0 + s) ** 2
            cx = x @ self.C.T
            f = self.r * x * (1.0 - 0.5 * tot) - self.k * x + cx * sat
            # Jacobian df_i/dx_j
            J = np.einsum("ni,ij->nij", sat, self.C)
            J += (self.r * (1.0 - 0.5 * tot) - self.k)[:, :, None] * eye
            J -= 0.5 * (self.r * x)[:, :, None]
            J[:, :, self.sig] += cx * dsat
            G = x - u0 - h * f
            A = eye - h * J
            x = x - np.linalg.solve(A, G[:, :, None])[:, :, 0]
        return np.maximum(x, 0.0)


def _rss() -> float:
    """Peak resident set size of this process in bytes."""
    import resource

    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024.0


def run(args: argparse.Namespace) -> dict:
    """Build the problem, step it and return the timings (on every rank; rank 0 reports)."""
    comm = MPI.COMM_WORLD
    timer = Timer()
    t0 = time.perf_counter()
    from tumorpde.compat import import_dolfinx

    import_dolfinx()
    from petsc4py import PETSc

    from dolfinx import fem, mesh

    PETSc.Log.begin()
    timer.add("import", time.perf_counter() - t0)
    rss0 = _rss()
    t0 = time.perf_counter()
    N = args.cells
    msh = mesh.create_box(comm, [np.zeros(3), np.full(3, 2.0)], [N, N, N],
                          mesh.CellType.tetrahedron)
    V = fem.functionspace(msh, ("Lagrange", 1))
    comm.Barrier()
    timer.add("mesh", time.perf_counter() - t0)
    imap = V.dofmap.index_map
    nown, nglob = imap.size_local, imap.size_global
    diff = tme_diffusivities()
    names = list(diff)[: args.species]
    ns = len(names)
    t0 = time.perf_counter()
    m, K = build_operators(msh, V, not args.no_jit)
    comm.Barrier()
    timer.add("operators", time.perf_counter() - t0)
    h = 2.0 / N
    dt = args.dt
    # per-species matrices A = M + dt/2 D K (same pattern as K), solvers built once
    t0 = time.perf_counter()
    species = []
    for name in names:
        D = diff[name]
        if D == 0.0:
            species.append((name, D, None, None, "ode"))
            continue
        A = K.copy()
        A.scale(0.5 * dt * D)
        A.setDiagonal(m, addv=PETSc.InsertMode.ADD_VALUES)
        ksp = PETSc.KSP().create(comm)
        prefix = f"scal_{name}_"
        ksp.setOptionsPrefix(prefix)
        ksp.setOperators(A)
        ksp.setType("cg")
        stiff = D * dt / h ** 2 > 10.0
        opts = PETSc.Options()
        opts[f"{prefix}ksp_rtol"] = args.rtol
        if stiff:
            opts[f"{prefix}pc_type"] = "gamg"
            opts[f"{prefix}pc_gamg_threshold"] = 0.02
            opts[f"{prefix}mg_levels_ksp_type"] = "chebyshev"
            opts[f"{prefix}mg_levels_pc_type"] = "jacobi"
        else:
            opts[f"{prefix}pc_type"] = "jacobi"
        ksp.setFromOptions()
        ksp.setInitialGuessNonzero(True)
        species.append((name, D, A, ksp, "gamg" if stiff else "jacobi"))
    timer.add("matrices", time.perf_counter() - t0)
    # initial state: smooth fields of order one
    X = V.tabulate_dof_coordinates()[:nown]
    r2 = ((X - 1.0) ** 2).sum(axis=1)
    U = np.empty((nown, ns))
    for s in range(ns):
        U[:, s] = 0.1 + 0.5 * np.exp(-r2 / (0.05 * (1 + s)))
    kin = Kinetics(ns)
    x = m.duplicate()
    b = m.duplicate()
    mm = m.getArray(readonly=True)[:nown].copy()
    # preconditioner set-up (excluded from the step time, reported)
    t0 = time.perf_counter()
    for *_, ksp, _pc in species:
        if ksp is not None:
            ksp.setUp()
    comm.Barrier()
    timer.add("pc_setup", time.perf_counter() - t0)

    its = {name: 0 for name in names}
    stage = PETSc.Log.Stage("bench_steps")

    def step(timed: bool) -> None:
        c0 = time.perf_counter()
        U[:] = kin.solve(U, 0.5 * dt)
        c1 = time.perf_counter()
        for s, (name, _D, A, ksp, _pc) in enumerate(species):
            if ksp is None:
                continue
            with x.localForm() as xl:
                xl.array[:nown] = U[:, s]
            A.mult(x, b)  # b = (M + dt/2 D K) u,  rhs = 2 M u - b = (M - dt/2 D K) u
            with b.localForm() as bl:
                bl.array[:nown] = 2.0 * mm * U[:, s] - bl.array[:nown]
            ksp.solve(b, x)
            if timed:
                its[name] += ksp.getIterationNumber()
            U[:, s] = x.getArray(readonly=True)[:nown]
        c2 = time.perf_counter()
        U[:] = kin.solve(U, 0.5 * dt)
        c3 = time.perf_counter()
        if timed:
            timer.add("kinetics", (c1 - c0) + (c3 - c2))
            timer.add("diffusion", c2 - c1)

    for _ in range(args.warmup):
        step(False)
    comm.Barrier()
    stage.push()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step(True)
    comm.Barrier()
    t_steps = time.perf_counter() - t0
    stage.pop()
    timer.add("steps", t_steps)
    # bare MatMult of the oxygen-like (stiffest) matrix: bandwidth of the sparse kernel
    A0 = next(A for (_, _, A, ksp, _) in species if ksp is not None)
    y = x.duplicate()
    comm.Barrier()
    reps = 20
    t0 = time.perf_counter()
    for _ in range(reps):
        A0.mult(x, y)
    comm.Barrier()
    t_mult = (time.perf_counter() - t0) / reps
    info = A0.getInfo(PETSc.Mat.InfoType.GLOBAL_SUM)
    nnz = float(info["nz_used"])
    mult_bytes = 12.0 * nnz + 4.0 * nglob + 16.0 * nglob  # values+cols, row pointers, x, y
    # modelled traffic of the timed steps' linear algebra from PETSc's flop counts
    local_bytes = 0.0
    for ev, f in BYTES_PER_FLOP.items():
        try:
            perf = PETSc.Log.Event(ev).getPerfInfo(stage.id)
        except Exception:
            continue
        local_bytes += f * float(perf.get("flops", 0.0))
    solve_time_local = float(PETSc.Log.Event("KSPSolve").getPerfInfo(stage.id)["time"])
    solve_bytes = comm.allreduce(local_bytes, op=MPI.SUM)
    solve_time = comm.allreduce(solve_time_local, op=MPI.MAX)
    phases = {k: comm.allreduce(v, op=MPI.MAX) for k, v in timer.t.items()}
    # memory high-water mark (resident set) of all ranks, less what the imports took
    rss_total = comm.allreduce(_rss(), op=MPI.SUM)
    rss_base = comm.allreduce(rss0, op=MPI.SUM)
    steps = max(args.steps, 1)
    out = {
        "kernel": "split",
        "ranks": comm.size,
        "cells": N,
        "species": ns,
        "diffusing_species": sum(1 for s in species if s[3] is not None),
        "nodes": nglob,
        "unknowns": nglob * ns,
        "unknowns_per_rank": nglob * ns / comm.size,
        "dt_days": dt,
        "steps": args.steps,
        "jit": not args.no_jit,
        "step_s": phases["steps"] / steps,
        "diffusion_s": phases.get("diffusion", 0.0) / steps,
        "kinetics_s": phases.get("kinetics", 0.0) / steps,
        "ksp_solve_s": solve_time / steps,
        "setup_s": {k: phases[k] for k in ("import", "mesh", "operators", "matrices", "pc_setup")},
        "iterations_per_step": {k: v / steps for k, v in its.items() if v},
        "preconditioners": {name: pc for name, _, _, _, pc in species},
        "matmult_GBs": 1e-9 * mult_bytes / t_mult,
        "solve_modelled_GBs": 1e-9 * solve_bytes / solve_time if solve_time > 0 else None,
        "nnz_per_matrix": nnz,
        "max_rss_bytes_total": rss_total,
        "rss_after_imports_bytes_total": rss_base,
        "bytes_per_unknown": (rss_total - rss_base) / (nglob * ns),
        "loadavg": list(os.getloadavg()),
    }
    for _, _, A, ksp, _ in species:
        if ksp is not None:
            ksp.destroy()
            A.destroy()
    return out


def main(argv: list[str] | None = None) -> None:
    """Command line."""
    p = argparse.ArgumentParser(description="one scaling case (run under mpiexec)")
    p.add_argument("--cells", type=int, required=True, help="cubes per direction of the box")
    p.add_argument("--species", type=int, default=15)
    p.add_argument("--dt", type=float, default=1.0, help="time step in days (tme-3d: 1)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--rtol", type=float, default=1e-8)
    p.add_argument("--no-jit", action="store_true", help="assemble with numpy instead of FFCx")
    p.add_argument("--out", help="JSON file (rank 0); default: stdout")
    args = p.parse_args(argv)
    res = run(args)
    if MPI.COMM_WORLD.rank == 0:
        text = json.dumps(res)
        if args.out:
            with open(args.out, "w") as f:
                f.write(text + "\n")
        print(text, flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
