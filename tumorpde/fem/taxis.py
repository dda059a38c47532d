"""Edge-based, positivity-preserving and conservative taxis for P1 elements.

For a species ``u`` (component k) moving up the gradient of a signal ``s``
(component m) with sensitivity ``S``, the Galerkin term ``-(S grad s, grad phi_i)``
is replaced by a sum of antisymmetric edge fluxes (Saito 2007; Kuzmin's
discrete upwinding, Kuzmin & Turek 2002):

    R_i += sum_j  w_ij (s_j - s_i) (S_i + S_j)/2  +  d_ij (u_i - u_j),
    w_ij = -int grad phi_i . grad phi_j dx,
    d_ij = w_ij max(0, |s_j - s_i| max(|dS/du|_i, |dS/du|_j)/2 - min(D_i, D_j)).

With several taxis terms the Peclet numbers add up (see :class:`EdgeTaxis`).
``d_ij`` is the smallest symmetric edge diffusion that makes the linearised
operator (with the species' own diffusion ``D``) an M-matrix on meshes with
``w_ij >= 0`` (non-obtuse triangles, e.g. the built-in rectangles): with lumped
mass and backward Euler the new densities stay non-negative.  Where the local
Peclet number ``|dS/du||s_j - s_i|/D`` is below 2 the artificial diffusion
vanishes and the scheme is the second-order edge discretisation of Galerkin;
where it exceeds 2 it blends to first-order upwinding.  Fluxes are antisymmetric,
so mass is conserved exactly (up to the nonlinear solver tolerance).

The Jacobian is exact except for the dependence of ``d_ij`` on ``dS/du`` and
``D`` (frozen, as usual for algebraic stabilisation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from petsc4py import PETSc

import numpy as np

from tumorpde.compat import geometry_dofmap

__all__ = ["EdgeGraph", "EdgeTaxis", "TaxisTerm", "add_entries"]


class EdgeGraph:
    """Edges of the locally owned P1 cells with weights ``w_ij = -sum_K int_K grad phi_i.grad phi_j``.

    Each rank holds the edges of its own cells (local node indices ``i < j``, owned
    or ghost); contributions to ghost rows are accumulated on their owners by the
    usual reverse scatter, exactly as in finite-element assembly.  Because the
    edge fluxes depend on the edge's end-point values only, summing the cell
    weights first is exact.
    """

    def __init__(self, V0: Any, node_map: Any) -> None:
        """Build the graph.

        Args:
            V0: Scalar P1 space (collapsed component 0 of the blocked space).
            node_map: Index map of the blocked space's nodes (gives the global node numbers
                used by the Jacobian; local numbering must equal ``V0``'s).
        """
        mesh = V0.mesh
        tdim = mesh.topology.dim
        ncells = mesh.topology.index_map(tdim).size_local
        cell_dofs = np.asarray(V0.dofmap.list)[:ncells]
        geom = np.asarray(geometry_dofmap(mesh))[:ncells, : tdim + 1]
        X = mesh.geometry.x[geom]  # (cells, tdim+1, 3)
        E = X[:, 1:, :] - X[:, :1, :]  # edge vectors from vertex 0: (cells, tdim, 3)
        # gradients of the barycentric coordinates 1..tdim: columns of pinv(E)
        pinv = np.linalg.pinv(E)  # (cells, 3, tdim)
        g = np.concatenate([-pinv.sum(axis=2, keepdims=True), pinv], axis=2)  # (cells, 3, tdim+1)
        gram = np.abs(np.linalg.det(np.einsum("cik,cjk->cij", E, E))) ** 0.5
        vol = gram / math.factorial(tdim)
        # vertex order of the geometry and of the P1 dofmap agree for affine simplices
        ii, jj = np.triu_indices(tdim + 1, k=1)
        local_a = np.einsum("cki,ckj->cij", g, g)[:, ii, jj] * vol[:, None]  # (cells, pairs)
        a = cell_dofs[:, ii].ravel().astype(np.int64)
        b = cell_dofs[:, jj].ravel().astype(np.int64)
        w = -local_a.ravel()
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        n_local = V0.dofmap.index_map.size_local + V0.dofmap.index_map.num_ghosts
        key = lo * n_local + hi
        uniq, inv = np.unique(key, return_inverse=True)
        self.i = uniq // n_local
        self.j = uniq % n_local
        self.w = np.bincount(inv, weights=w)
        self.n_owned = V0.dofmap.index_map.size_local
        self.n_local = n_local
        self.global_nodes = np.asarray(
            node_map.local_to_global(np.arange(n_local, dtype=np.int32)), dtype=np.int64)
        self.min_weight = float(self.w.min()) if len(self.w) else 0.0
        #: the local nodes that lie on an edge (sorted)
        self.nodes = np.unique(np.concatenate([self.i, self.j]))


@dataclass
class TaxisTerm:
    """One signal of a species' taxis: component ``m`` and nodal sensitivity data.

    Attributes:
        m: Component of the signal.
        S: P1 function holding the nodal sensitivity.
        dS: component -> P1 function with nodal dS/du_component.
    """

    m: int
    S: Any
    dS: dict[int, Any]


@dataclass
class EdgeTaxis:
    """All taxis terms of one species on the edge graph, with one shared limiter.

    The artificial diffusion is computed from the sum of the terms' local Peclet
    numbers, ``d_ij = w_ij max(0, sum_t |s_t,j - s_t,i| max|dS_t/du|/2 - min(D_i, D_j))``,
    so that the species' own diffusion is counted once however many signals it follows
    (chemotaxis and haptotaxis together keep the M-matrix property).

    Attributes:
        graph: Edge graph.
        k: Component of the moving species.
        terms: Its taxis terms.
        D: P1 function with the moving species' nodal diffusion coefficient.
        exprs: (Expression, target function) pairs to interpolate in ``update``.
    """

    graph: EdgeGraph
    k: int
    terms: list[TaxisTerm]
    D: Any
    exprs: list[tuple[Any, Any]]

    def update(self) -> None:
        """Interpolate S, dS/du and D at the nodes from the current state."""
        for expr, target in self.exprs:
            target.interpolate(expr)
            target.x.scatter_forward()

    def _edge_terms(self, u: np.ndarray, n: int) -> tuple[Any, ...]:
        g = self.graph
        i, j, w = g.i, g.j, g.w
        uk = u[self.k::n]
        D = np.maximum(self.D.x.array, 0.0)
        central = np.zeros(len(i))
        peclet = np.zeros(len(i))
        per_term = []
        for t in self.terms:
            s = u[t.m::n]
            S = t.S.x.array
            G = np.abs(t.dS[self.k].x.array) if self.k in t.dS else np.zeros_like(S)
            v = s[j] - s[i]
            sbar = 0.5 * (S[i] + S[j])
            gmax = np.maximum(G[i], G[j])
            central += w * v * sbar
            peclet += 0.5 * np.abs(v) * gmax
            per_term.append((v, sbar, gmax))
        act = peclet - np.minimum(D[i], D[j])
        active = act > 0.0
        d = w * np.where(active, act, 0.0)
        du = uk[i] - uk[j]
        r = central + d * du
        return per_term, active, d, du, r

    def add_residual(self, u: np.ndarray, b: np.ndarray, n: int) -> None:
        """Add the edge fluxes to the local residual array ``b`` (ghosts included)."""
        g = self.graph
        *_, r = self._edge_terms(u, n)
        flux = np.bincount(g.i, weights=r, minlength=g.n_local)
        flux -= np.bincount(g.j, weights=r, minlength=g.n_local)
        b[self.k::n][: g.n_local] += flux

    def _pieces(self, u: np.ndarray, n: int) -> Any:
        """The Jacobian entries of row ``i`` of every edge, one piece at a time.

        Yields ``(side, component, values)``: ``values[e]`` is the derivative of the flux of
        edge ``e`` (added to row ``i``, subtracted from row ``j``) with respect to
        ``component`` at node ``i`` (side 0) or ``j`` (side 1).
        """
        w = self.graph.w
        per_term, active, d, du, _ = self._edge_terms(u, n)
        i, j = self.graph.i, self.graph.j
        for t, (v, sbar, gmax) in zip(self.terms, per_term, strict=True):
            # d/ds_j and d/ds_i (including the kink of the shared artificial diffusion)
            dd_dv = np.where(active, w * np.sign(v) * 0.5 * gmax, 0.0)
            a = w * sbar + dd_dv * du
            yield 1, t.m, a
            yield 0, t.m, -a
            # sensitivity dependence on every component it involves
            for comp, f in t.dS.items():
                dsv = f.x.array
                yield 0, comp, 0.5 * w * v * dsv[i]
                yield 1, comp, 0.5 * w * v * dsv[j]
        # artificial diffusion acting on the moving species
        yield 0, self.k, d
        yield 1, self.k, -d

    def jacobian_entries(self, u: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Global (row, column, value) Jacobian entries of the edge fluxes (with repeats)."""
        g = self.graph
        gn = g.global_nodes
        ends = (gn[g.i], gn[g.j])
        row = ends[0] * n + self.k
        rows, cols, vals = [], [], []
        for side, comp, val in self._pieces(u, n):
            rows.append(row)
            cols.append(ends[side] * n + comp)
            vals.append(val)
        # row j receives the opposite flux
        r_i, c_i, v_i = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
        r_j = np.tile(ends[1] * n + self.k, len(rows))
        return np.concatenate([r_i, r_j]), np.concatenate([c_i, c_i]), np.concatenate([v_i, -v_i])

    def components(self) -> list[int]:
        """The components that the fluxes of this species depend on (sorted)."""
        comps = {self.k}
        for t in self.terms:
            comps.add(t.m)
            comps.update(t.dS)
        return sorted(comps)

    def coo_size(self) -> int:
        """Number of entries of :meth:`coo_pattern` and :meth:`coo_values`."""
        g = self.graph
        return len(self.components()) * (2 * len(g.i) + len(g.nodes))

    def coo_pattern(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Global (row, column) of the Jacobian entries, each pair once.

        For every component ``c`` of :meth:`components`: the entries ``(i, j)`` and
        ``(j, i)`` of every edge, then the diagonal entry of every node on an edge
        (rows and columns ``node * n + k`` and ``node * n + c``).  The sparsity is fixed,
        so this is computed when the matrix is created and :meth:`coo_values` gives the
        values in the same order.
        """
        g = self.graph
        gn = g.global_nodes
        gi, gj, gv = gn[g.i], gn[g.j], gn[g.nodes]
        rows = np.concatenate([gi * n + self.k, gj * n + self.k, gv * n + self.k])
        cols = [np.concatenate([gj * n + c, gi * n + c, gv * n + c]) for c in self.components()]
        return np.tile(rows, len(cols)), np.concatenate(cols)

    def coo_values(self, u: np.ndarray, n: int, out: np.ndarray) -> None:
        """Write the values of :meth:`coo_pattern` for the state ``u`` into ``out``.

        The pieces of :meth:`jacobian_entries` that land on the same entry are summed
        here: per edge for the entries ``(i, j)`` and ``(j, i)``, per node for the diagonal.
        """
        g = self.graph
        ne, nv = len(g.i), len(g.nodes)
        comps = self.components()
        slot = {c: q for q, c in enumerate(comps)}
        # per component: sum over pieces of the derivative w.r.t. node i (side 0) and j (side 1)
        side_sum = np.zeros((len(comps), 2, ne))
        for side, comp, val in self._pieces(u, n):
            side_sum[slot[comp], side] += val
        size = 2 * ne + nv
        for q in range(len(comps)):
            s_i, s_j = side_sum[q]
            block = out[q * size:(q + 1) * size]
            block[:ne] = s_j  # row i, column j
            np.negative(s_i, out=block[ne:2 * ne])  # row j, column i
            diag = np.bincount(g.i, weights=s_i, minlength=g.n_local)
            diag -= np.bincount(g.j, weights=s_j, minlength=g.n_local)
            block[2 * ne:] = diag[g.nodes]


def add_entries(J: PETSc.Mat, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray,
                skip: np.ndarray | None, ncols: int) -> None:
    """Sum duplicate (row, col) pairs and add them to ``J`` (global indices).

    Args:
        J: Matrix (flushed, not final-assembled).
        rows: Global rows.
        cols: Global columns.
        vals: Values.
        skip: Sorted global indices whose rows and columns are left untouched (Dirichlet dofs).
        ncols: Global number of columns (for coalescing keys).
    """
    if skip is not None and len(skip):
        keep = ~(np.isin(rows, skip) | np.isin(cols, skip))
        rows, cols, vals = rows[keep], cols[keep], vals[keep]
    if not len(rows):
        return
    key = rows * ncols + cols
    uniq, inv = np.unique(key, return_inverse=True)
    summed = np.bincount(inv, weights=vals)
    r = (uniq // ncols).astype(PETSc.IntType)
    c = (uniq % ncols).astype(PETSc.IntType)
    J.setValuesRCV(r.reshape(-1, 1), c.reshape(-1, 1), summed.reshape(-1, 1, 1),
                   addv=PETSc.InsertMode.ADD_VALUES)
