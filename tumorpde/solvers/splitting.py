"""The ``split`` solver strategy: a species-split sparse Jacobian with pointwise-kinetics preconditioning.

The monolithic strategy differentiates the whole residual of the blocked space, so every
Jacobian row of a 15-species model holds ``15 x (neighbours + 1)`` entries, a dense 15 x 15
block for every mesh edge, although the P1 discretisation with lumped mass couples species
only at the same vertex (mass, reactions: vertex quadrature) and through the few taxis terms.
This strategy solves *the same discrete equations* (same residual, same time scheme, same
Newton tolerances) with the same (exact) Jacobian, stored with only the couplings that exist:

* nodal blocks: ``c0 m_i I - m_i df/du(u_i)``, an ``n x n`` block per vertex holding the
  entries that do not vanish symbolically, from ``n`` vector assemblies of the residual's
  nodal terms (labelled ``mass`` and ``reaction``, integrated at the vertices:
  :attr:`tumorpde.fem.discretisation.Discretisation.nodal_terms`) differentiated in the
  direction of each species (local kinetics, exact also with region-wise coefficients);
* transport: one scalar P1 matrix for every pair of species (k, m) whose other terms
  (``diffusion``, Galerkin ``taxis``, ``boundary``) couple them (diffusion and boundary
  terms: k = m; a diffusivity of k depending on m, Galerkin taxis: k != m), found
  symbolically and assembled from the residual's own integrals; a block that depends
  neither on the state nor on time (constant coefficients) is assembled once per run;
* edge taxis: the entries of :meth:`tumorpde.fem.taxis.EdgeTaxis.coo_pattern` (each entry
  once, the pieces that land on it summed per edge and per node).

The sparsity is fixed: the values of every evaluation go into one layout (transport blocks,
vertex blocks, edge taxis, Dirichlet diagonal), whose indices are built only when a matrix
is created.  In parallel the values go to PETSc through that COO layout
(``MatSetValuesCOO``); on one process the AIJ matrix is built on CSR arrays kept here and
the values are added in place (no COO maps, no COO values array).  Block size ``n``.
The default linear solver is GMRES preconditioned by a multiplicative composite
of point-block Jacobi (the local kinetics with the transport diagonal, solved at every
vertex) and an additive field split with one solve per species, AMG where the species'
transport is stiff at the time step and ILU(0) elsewhere
(:func:`tumorpde.solvers.options.split_options`, :meth:`SplitJacobian.preconditioner_options`).
Only P1 with lumped mass qualifies (otherwise reactions are not nodal); ``strategy = "auto"``
picks this strategy then, for models of several species (one species has no coupling blocks
to leave out).
"""

from __future__ import annotations

import logging
from typing import Any

from mpi4py import MPI
from petsc4py import PETSc

import numpy as np

from tumorpde.compat import import_dolfinx
from tumorpde.fem.discretisation import TERMS

__all__ = ["SplitJacobian", "applicable", "for_discretisation"]

log = logging.getLogger("tumorpde")

import_dolfinx()
import ufl  # noqa: E402
from dolfinx import fem  # noqa: E402
from dolfinx.fem import petsc as fpetsc  # noqa: E402
from ufl.algorithms import expand_derivatives, expand_indices  # noqa: E402
from ufl.algorithms.apply_algebra_lowering import apply_algebra_lowering  # noqa: E402


def applicable(disc: Any) -> bool:
    """Whether a discretisation has nodal kinetics (P1 with lumped mass)."""
    return disc.degree == 1 and bool(disc.spec.config.discretisation.lumped_mass)


POINTWISE_CHUNK = 2048  # cells per evaluation of the pointwise kinetics blocks
STIFF = 10.0  # species with dt * (transport diagonal / lumped mass) above this get AMG


def for_discretisation(disc: Any) -> SplitJacobian:
    """The split Jacobian of ``disc``, built on first use and kept with it.

    Its forms and pattern depend on the discretisation only, so solvers created again
    during a run (after a checkpoint) share it.
    """
    if disc.split_jacobian is None:
        disc.split_jacobian = SplitJacobian(disc)
    return disc.split_jacobian


def _simplify(form: Any) -> Any:
    """Expand derivatives and index sums, so that blocks that vanish have no integrals."""
    return expand_indices(apply_algebra_lowering(expand_derivatives(form)))


class SplitJacobian:
    """Sparse Jacobian of a :class:`~tumorpde.fem.discretisation.Discretisation` (P1, lumped mass)."""

    def __init__(self, disc: Any) -> None:
        """Build the forms and the fixed COO pattern (collective)."""
        self.disc = disc
        n = disc.n
        self.n = n
        V, V0 = disc.V, disc.V0
        comm = disc.comm
        imap = self._number_nodes(V, V0)
        u = disc.u
        v = ufl.TestFunction(V)
        w, v0 = ufl.TrialFunction(V0), ufl.TestFunction(V0)

        def unit(k: int, f: Any) -> Any:
            return ufl.as_vector([f if i == k else 0 for i in range(n)]) if n > 1 else f

        # the pointwise kinetics (mass, reactions) and the transport, by the terms' labels
        nodal = disc.nodal_terms
        vertex = ufl.Form(disc.term_integrals(nodal))
        other = disc.term_integrals(tuple(t for t in TERMS if t not in nodal))
        one = fem.Constant(disc.domain.mesh, PETSc.ScalarType(1.0))
        self._nodal_blocks(vertex, v, v0, u, unit, one)
        self._pointwise = self._pointwise_kinetics(vertex, v, unit, one)
        self._transport_blocks(other, v, v0, w, u, unit)
        self.comm: MPI.Comm = comm
        self.bc = disc.bc_global
        rstart, rend = imap.local_range[0] * n, imap.local_range[1] * n
        # Dirichlet dofs owned here: unit diagonal
        self.bc_owned = (self.bc[(self.bc >= rstart) & (self.bc < rend)] if len(self.bc)
                         else np.zeros(0, np.int64))
        self._rates: np.ndarray | None = None
        self.transport_rates()  # at the initial state, before constant blocks drop their matrices
        self._coo_layout()
        self._store_constant_blocks()

    def _number_nodes(self, V: Any, V0: Any) -> Any:
        """Owned/ghosted sizes and global numbers of the nodes; the index map of ``V``."""
        imap = V.dofmap.index_map
        self.nown = imap.size_local
        self.nloc = imap.size_local + imap.num_ghosts
        gnodes = np.asarray(imap.local_to_global(np.arange(self.nloc, dtype=np.int32)),
                            dtype=np.int64)
        gnodes0 = np.asarray(V0.dofmap.index_map.local_to_global(
            np.arange(self.nloc, dtype=np.int32)), dtype=np.int64)
        if not np.array_equal(gnodes, gnodes0):  # pragma: no cover - DOLFINx layout guard
            raise RuntimeError("the component space and the blocked space number nodes differently")
        self.gnodes = gnodes
        self._row_start = imap.local_range[0]
        return imap

    def _nodal_blocks(self, vertex: Any, v: Any, v0: Any, u: Any, unit: Any, one: Any) -> None:
        """Forms of the vertex blocks and which of their entries can be non-zero."""
        n = self.n
        self.nodal_forms = []
        for m in range(n):
            form = expand_derivatives(ufl.derivative(vertex, u, unit(m, one)))
            self.nodal_forms.append(fem.form(form) if form.integrals() else None)
        self.nodal_vec = fem.Function(self.disc.V)
        # which entries of the vertex blocks can be non-zero (the diagonal always: the mass):
        # the form tested with species k (a constant unit vector for the test function keeps
        # only k's own terms) differentiated along m; a derivative that does not vanish
        # symbolically is never folded to zero, so no entry that can be non-zero is missed
        nz = np.eye(n, dtype=bool)
        for k in range(n):
            ek = ufl.as_vector([1.0 if i == k else 0.0 for i in range(n)]) if n > 1 else one
            Vk = ufl.replace(vertex, {v: ek})
            for m in range(n):
                if not nz[k, m] and expand_derivatives(
                        ufl.derivative(Vk, u, unit(m, one))).integrals():
                    nz[k, m] = True
        self.nodal_pattern = nz
        self._nodal_flat = np.flatnonzero(nz.ravel())

    def _transport_blocks(self, other: Any, v: Any, v0: Any, w: Any, u: Any, unit: Any) -> None:
        """Assembled transport blocks (k, m) from the cell and facet integrals."""
        n, disc = self.n, self.disc
        self.blocks: list[tuple[int, int, Any, bool, PETSc.Mat]] = []
        state_coeffs = {u, disc.u_n, disc.u_nm1}
        if other:
            other_form = ufl.Form(other)
            for k in range(n):
                Fk = _simplify(ufl.replace(other_form, {v: unit(k, v0)}))
                if not Fk.integrals():
                    continue
                for m in range(n):
                    Jkm = _simplify(ufl.derivative(Fk, u, unit(m, w)))
                    if not Jkm.integrals():
                        continue
                    coeffs = set(ufl.algorithms.extract_coefficients(Jkm))
                    consts = set(ufl.algorithms.analysis.extract_constants(Jkm))
                    varies = bool(coeffs & state_coeffs) or disc.t in consts
                    form = fem.form(Jkm)
                    A = fpetsc.assemble_matrix(form)
                    A.assemble()
                    self.blocks.append((k, m, form, varies, A))

    def _coo_layout(self) -> None:
        """The sparsity parts, the Dirichlet filter and the offsets of the COO layout."""
        # The COO layout: one part per transport block, the vertex blocks, one part per
        # edge-taxis species, the Dirichlet diagonal.  The values array is kept and filled
        # in place; the indices are only built when a matrix is created (create_matrix).
        # Entries in Dirichlet rows or columns are dropped (``_keep``, only with Dirichlet dofs).
        self._patterns: list[tuple[np.ndarray, np.ndarray]] = []
        self._block_pattern: list[int] = []
        for _k, _m, _f, _v, A in self.blocks:
            ip, jj, _ = A.getValuesCSR()
            ip, jj = ip.astype(np.int32), jj.astype(np.int32)
            for q, (ip0, jj0) in enumerate(self._patterns):  # blocks share their sparsity
                if np.array_equal(ip0, ip) and np.array_equal(jj0, jj):
                    self._block_pattern.append(q)
                    break
            else:
                self._block_pattern.append(len(self._patterns))
                self._patterns.append((ip, jj))
        self._keep: list[np.ndarray | None] = []
        sizes = []
        for rows, cols in self._parts():
            keep = None
            if len(self.bc):
                keep = ~(np.isin(rows, self.bc) | np.isin(cols, self.bc))
            self._keep.append(keep)
            sizes.append(len(rows) if keep is None else int(keep.sum()))
        sizes.append(len(self.bc_owned))
        self._offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.ncoo = int(self._offsets[-1])
        # In parallel the values go to PETSc in this COO layout (MatSetValuesCOO), from an
        # array that keeps the constant blocks.  On one process the matrix is built on
        # CSR arrays that stay here (create_matrix), the values are added straight into
        # them at the positions ``_pos`` of the COO entries, and the constant blocks keep
        # their values in ``_constant`` (PETSc's COO maps and a COO values array cost
        # 16-24 bytes per entry; this costs 4).
        self.serial = self.comm.size == 1
        self._csr: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._csr_handle = 0
        self._pos: np.ndarray | None = None
        self._constant: dict[int, np.ndarray] = {}
        self._values = np.zeros(0 if self.serial else self.ncoo)
        if not self.serial:
            self._values[self._offsets[-2]:] = 1.0

    def _store_constant_blocks(self) -> None:
        """Keep the values of the constant transport blocks; destroy their matrices."""
        for idx, (k, m, form, varies, A) in enumerate(self.blocks):
            if not varies:
                data = np.asarray(A.getValuesCSR()[2])
                if self.serial:
                    keep = self._keep[idx]
                    self._constant[idx] = data.copy() if keep is None else data[keep]
                else:
                    self._put(idx, data)
                A.destroy()
                self.blocks[idx] = (k, m, form, varies, None)

    def _parts(self) -> Any:
        """Global (row, column) index arrays of every part of the COO layout, in order."""
        n = self.n
        for idx, (k, m, _f, _v, _A) in enumerate(self.blocks):
            ip, jj = self._patterns[self._block_pattern[idx]]
            r0 = int(self._row_start)
            grow = np.repeat(np.arange(r0, r0 + len(ip) - 1, dtype=np.int64), np.diff(ip))
            yield grow * n + k, jj.astype(np.int64) * n + m
        owned = self.gnodes[: self.nown]
        kk, mm = np.divmod(self._nodal_flat, n)  # the (k, m) entries of every vertex block
        yield (owned[:, None] * n + kk[None]).ravel(), (owned[:, None] * n + mm[None]).ravel()
        for et in self.disc.edge_taxis:
            yield et.coo_pattern(n)

    def _put(self, part: int, data: np.ndarray) -> None:
        """Write the values of one part into the COO values array (or add them to the CSR values)."""
        keep = self._keep[part]
        lo, hi = self._offsets[part], self._offsets[part + 1]
        if self.serial:
            np.add.at(self._csr[2], self._pos[lo:hi], data if keep is None else data[keep])
        else:
            self._values[lo:hi] = data if keep is None else data[keep]

    def _pointwise_kinetics(self, vertex: Any, v: Any, unit: Any, one: Any) -> Any:
        """Evaluation of the vertex blocks at the vertices themselves, or None.

        With vertex quadrature the entry ``(k, m)`` of the block of vertex ``i`` is
        ``m_i g_km(x_i)``, ``g_km`` the integrand differentiated along species ``m`` and
        tested with species ``k``.  Assembling it visits every vertex once per cell around
        it (about 6 times in 2D, 24 in 3D); evaluating ``g`` once per vertex (on one cell
        that contains it) gives the same numbers when the integrand is continuous at the
        vertices: cell integrals over the whole mesh of P1 functions and constants only (a
        region-wise, cell-wise coefficient falls back to the assembly).
        """
        disc = self.disc
        n = self.n
        allowed = {disc.u, disc.u_n, disc.u_nm1}
        for it in vertex.integrals():
            if it.integral_type() != "cell" or it.subdomain_id() not in ("everywhere", "otherwise"):
                return None
        for c in ufl.algorithms.extract_coefficients(vertex):
            if c in allowed:
                continue
            el = c.ufl_element()
            if getattr(el, "embedded_superdegree", None) != 1 or "Lagrange" not in str(el):
                return None
        integrand = sum(it.integrand() for it in vertex.integrals())
        entries = []
        tested: dict[int, Any] = {}  # the integrand tested with species k: its terms only
        for flat in self._nodal_flat:
            k, m = divmod(int(flat), n)
            if k not in tested:
                ek = ufl.as_vector([1.0 if i == k else 0.0 for i in range(n)]) if n > 1 else 1.0
                tested[k] = ufl.replace(integrand, {v: ek})
            entries.append(expand_derivatives(ufl.derivative(tested[k], disc.u, unit(m, one))))
        V0 = disc.V0
        expr = fem.Expression(ufl.as_vector(entries), V0.element.interpolation_points,
                              comm=disc.comm)
        # one cell for every owned vertex; its position among the cell's vertices
        dofs = np.asarray(V0.dofmap.list)
        per = dofs.shape[1]
        uniq, first = np.unique(dofs.ravel(), return_index=True)
        owned = uniq < self.nown
        if int(owned.sum()) != self.nown:  # pragma: no cover - every owned vertex has a cell
            return None
        cell_of, local = first[owned] // per, first[owned] % per
        cells, cell_pos = np.unique(cell_of, return_inverse=True)
        mass = disc.lumped_mass()
        # evaluated in chunks of cells, so that the (cells, vertices, entries) array stays small
        order = np.argsort(cell_pos, kind="stable")
        starts = np.arange(0, len(cells), POINTWISE_CHUNK)
        bounds = np.append(np.searchsorted(cell_pos[order], starts), len(order))
        chunks = []
        for c0, lo, hi in zip(starts, bounds[:-1], bounds[1:], strict=True):
            verts = order[lo:hi]
            chunks.append((cells[c0:c0 + POINTWISE_CHUNK].astype(np.int32), verts,
                           cell_pos[verts] - c0, local[verts]))
        return expr, chunks, mass

    def transport_rates(self) -> np.ndarray:
        """Per species, ``max_i A_ii / m_i`` of its transport block ``A`` (1/time; 0 without one).

        ``dt`` times this rate is the squared number of cells that the species diffuses
        across in a step of ``dt``; computed once (for the transport blocks at the initial state).
        """
        if self._rates is not None:
            return self._rates
        mass = self.disc.volume_mass()  # the weighted mass, as the transport is weighted
        rates = np.zeros(self.n)
        for k, m, _form, _varies, A in self.blocks:
            if k == m and self.nown and A is not None:
                diag = A.getDiagonal().array[: self.nown]
                rates[k] = max(rates[k], float(np.max(diag / np.maximum(mass, 1e-300))))
        self._rates = np.empty_like(rates)
        self.comm.Allreduce(rates, self._rates, op=MPI.MAX)
        return self._rates

    def preconditioner_options(self, dt: float) -> dict[str, Any]:
        """The default preconditioner (PETSc options without prefix).

        Several species: a multiplicative composite of point-block Jacobi (the local
        kinetics at every vertex, with the diagonal of the transport) and an additive field
        split with one solve per species (``sub_1_fieldsplit_<k>_``); one species: its
        transport preconditioner alone.  A species whose transport is stiff at the step
        ``dt`` (``dt`` times :meth:`transport_rates` above :data:`STIFF`: it diffuses across
        several cells in a step) gets smoothed-aggregation AMG; the others, whose matrices
        are dominated by the mass, keep ILU(0) (block Jacobi with ILU(0) blocks in parallel).

        On an interval the split matrix is banded and a direct solve (MUMPS) costs less than
        one Krylov iteration of the composite; it is also exact where values are tiny: the
        absolute errors an iterative solve leaves everywhere (``ksp_atol``, ``ksp_rtol``
        times the residual) grow like ``exp(rho t)`` in an unstable zero state such as the
        leading edge of a Fisher-KPP front, and after ``40/rho`` reach the size of the
        solution (docs/numerics.md).
        """
        if self.disc.V.mesh.geometry.dim == 1:
            return {"pc_type": "lu", "pc_factor_mat_solver_type": "mumps"}
        n = self.n
        stiff = dt * self.transport_rates()
        if n == 1:
            return {"pc_type": "gamg" if stiff[0] > STIFF else "bjacobi"}
        opts: dict[str, Any] = {
            "pc_type": "composite",
            "pc_composite_type": "multiplicative",
            "pc_composite_pcs": "pbjacobi,fieldsplit",
            "sub_1_pc_fieldsplit_type": "additive",
            "sub_1_pc_fieldsplit_block_size": n,
        }
        for k in range(n):
            if stiff[k] > STIFF:
                opts[f"sub_1_fieldsplit_{k}_pc_type"] = "gamg"
        return opts

    def _coo_indices(self) -> tuple[np.ndarray, np.ndarray]:
        """Global rows and columns of the whole COO layout (built when needed, not kept)."""
        rows = np.empty(self.ncoo, dtype=PETSc.IntType)
        cols = np.empty(self.ncoo, dtype=PETSc.IntType)
        for part, (r, c) in enumerate(self._parts()):
            keep = self._keep[part]
            lo, hi = self._offsets[part], self._offsets[part + 1]
            rows[lo:hi] = r if keep is None else r[keep]
            cols[lo:hi] = c if keep is None else c[keep]
        rows[self._offsets[-2]:] = self.bc_owned
        cols[self._offsets[-2]:] = self.bc_owned
        return rows, cols

    def create_matrix(self) -> PETSc.Mat:
        """An AIJ matrix with the split pattern, block size ``n``.

        In parallel the COO indices are built here for PETSc (which keeps its own map from
        them) and not kept.  On one process the matrix is built on CSR arrays held here,
        which :meth:`values` fills in place; a matrix created earlier gets its values copied.
        """
        n = self.n
        nrows = self.nown * n
        if self.serial:
            rows, cols = self._coo_indices()
            keys = rows.astype(np.int64) * nrows
            del rows
            keys += cols
            del cols
            uniq, inv = np.unique(keys, return_inverse=True)
            del keys
            self._pos = inv.astype(np.int32)
            del inv
            counts = np.bincount(uniq // nrows, minlength=nrows)
            ip = np.zeros(nrows + 1, dtype=PETSc.IntType)
            np.cumsum(counts, out=ip[1:])
            jj = (uniq % nrows).astype(PETSc.IntType)
            del uniq
            self._csr = (ip, jj, np.zeros(len(jj)))
            A = PETSc.Mat().createAIJWithArrays([nrows, nrows], self._csr, comm=self.comm)
            A.setBlockSize(n)  # (createAIJWithArrays leaves it at 1 on one process)
            A.setOption(PETSc.Mat.Option.NEW_NONZERO_ALLOCATION_ERR, True)
            A.assemble()
            self._csr_handle = A.handle
            return A
        rows, cols = self._coo_indices()
        A = PETSc.Mat().create(comm=self.comm)
        A.setSizes([[nrows, PETSc.DECIDE], [nrows, PETSc.DECIDE]], bsize=n)
        A.setType(PETSc.Mat.Type.AIJ)
        A.setPreallocationCOO(rows, cols)  # (PETSc may overwrite them in parallel)
        A.setOption(PETSc.Mat.Option.NEW_NONZERO_ALLOCATION_ERR, True)
        return A

    def values(self) -> np.ndarray:
        """The Jacobian's values for the current state in ``disc.u`` (after :meth:`create_matrix`).

        In parallel the COO values (an array kept and reused), on one process the CSR
        values of the last matrix created.
        """
        disc = self.disc
        n = self.n
        nblocks = len(self.blocks)
        if self.serial:
            ip, jj, csr = self._csr
            csr[:] = 0.0
            for idx, data in self._constant.items():
                np.add.at(csr, self._pos[self._offsets[idx]:self._offsets[idx + 1]], data)
            np.add.at(csr, self._pos[self._offsets[-2]:], 1.0)
        for idx, (_k, _m, form, varies, A) in enumerate(self.blocks):
            if not varies:  # in the values array since set-up, or in _constant
                continue
            A.zeroEntries()
            fpetsc.assemble_matrix(A, form)
            A.assemble()
            data = np.asarray(A.getValuesCSR()[2])
            if len(data) != len(self._patterns[self._block_pattern[idx]][1]):  # pragma: no cover
                raise RuntimeError("the sparsity of a transport block changed")
            self._put(idx, data)
        part = nblocks
        if self._pointwise is not None:
            expr, chunks, mass = self._pointwise
            nodal = np.empty((self.nown, len(self._nodal_flat)))
            for cells, verts, cell_pos, local in chunks:
                vals = expr.eval(self.disc.domain.mesh, cells)  # (cells, vertices, entries)
                nodal[verts] = vals[cell_pos, local, :]
            nodal *= mass[:, None]
            self._put(part, nodal.ravel())
        else:
            blocks = np.zeros((self.nown, n, n))
            vec = self.nodal_vec
            for m, form in enumerate(self.nodal_forms):
                if form is None:
                    continue
                vec.x.array[:] = 0.0
                fem.assemble_vector(vec.x.array, form)
                vec.x.scatter_reverse(_add())
                blocks[:, :, m] = vec.x.array[: self.nown * n].reshape(self.nown, n)
            self._put(part, blocks.reshape(self.nown, n * n)[:, self._nodal_flat].ravel())
        arr = disc.u.x.array
        for q, et in enumerate(disc.edge_taxis):
            p = part + 1 + q
            et.update()
            if self._keep[p] is None and not self.serial:
                et.coo_values(arr, n, self._values[self._offsets[p]:self._offsets[p + 1]])
            else:
                full = np.empty(et.coo_size())
                et.coo_values(arr, n, full)
                self._put(p, full)
        return self._csr[2] if self.serial else self._values

    def jacobian(self, snes: Any, x: PETSc.Vec, J: PETSc.Mat, P: PETSc.Mat) -> None:
        """SNES Jacobian callback."""
        disc = self.disc
        x.ghostUpdate(addv=PETSc.InsertMode.INSERT, mode=PETSc.ScatterMode.FORWARD)
        x.copy(disc.u.x.petsc_vec)
        disc.u.x.scatter_forward()
        vals = self.values()
        if not self.serial:
            J.setValuesCOO(vals, addv=PETSc.InsertMode.INSERT_VALUES)
        elif J.handle != self._csr_handle:  # a matrix created before the last one
            ip, jj, _ = self._csr
            J.setValuesCSR(ip, jj, vals, addv=PETSc.InsertMode.INSERT_VALUES)
        J.assemble()



def _add() -> Any:
    from dolfinx import la

    return la.InsertMode.add
