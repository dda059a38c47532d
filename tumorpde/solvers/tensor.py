"""The ``tensor`` solver strategy: exact fast-diagonalisation solves on uniform grids.

For species that are linear with constant coefficients, ``u_t = D_k lap u_k + r_k u_k +
s_k(x, t)`` with no-flux (or given-flux) boundaries, on the built-in ``interval``, or on a
``rectangle`` of quadrilaterals or a ``box`` of hexahedra (``mesh.cell``), the discrete
equations of every step are separable.  Q1 with lumped mass on a uniform grid has

* lumped mass ``M = Ml_x (x) Ml_y (x) Ml_z`` (the trapezoidal weights ``h (1/2, 1, ..., 1,
  1/2)`` of each direction),
* stiffness ``K = K_x (x) Mc_y (x) Mc_z + Mc_x (x) K_y (x) Mc_z + Mc_x (x) Mc_y (x) K_z``
  with the 1-D P1 stiffness ``K_d`` and consistent mass ``Mc_d = Ml_d - h_d^2/6 K_d``,

and every 1-D matrix is diagonal in the basis of the generalised eigenproblem
``K_d s = lambda Ml_d s``: with natural (Neumann) boundaries the cosines
``s_j(i) = cos(pi j i / N)``, ``lambda_j = 4/h^2 sin^2(pi j / 2N)``, a discrete cosine
transform of type I.  The step's system ``(c0 M + D_k K - r_k M) u = b`` is then solved
exactly by two transforms and a division:

    u = DCT1( DCT1(b / W) / (H a) ),
    a(j) = c0 + D_k sum_d lambda_d(j_d) prod_{e != d} (1 - h_e^2 lambda_e(j_e) / 6) - r_k,

with ``W = prod_d 2 w_d`` (``w_d`` the trapezoidal weights without ``h``) and
``H = prod_d h_d N_d``.  These are the same discrete equations that the other strategies
solve (same residual, same scheme): no Newton iteration, no Krylov solver, no matrix, no
form assembly; a new step size changes ``a`` only.  The right-hand side comes from vectors:
the history ``-M (c1 u_n + c2 u_nm1)``, the sources ``M s_k`` (the reaction at zero state,
evaluated at the vertices, once if it is constant) and the boundary fluxes (assembled once
if constant).  Cost per step: a few passes over the state and ``O(N log N)`` transforms.

It applies on one process (the transforms need every vertex of a direction on one rank;
in parallel ``auto`` takes the general strategies) when :func:`unsuitable` finds no
reason against it.  The transforms use :func:`threads` threads (``OMP_NUM_THREADS``, else
every CPU the process may use).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from tumorpde.compat import import_dolfinx
from tumorpde.fem.discretisation import component_derivative, is_zero
from tumorpde.solvers.result import StepResult

__all__ = ["TensorSolver", "unsuitable"]

import_dolfinx()
import ufl  # noqa: E402
from dolfinx import fem  # noqa: E402
from ufl.algorithms import expand_derivatives  # noqa: E402
from ufl.algorithms.analysis import extract_coefficients, extract_type  # noqa: E402

TENSOR_CELLS = ("interval", "quadrilateral", "hexahedron")


def threads() -> int:
    """Threads of the transforms: ``OMP_NUM_THREADS`` if set, else the CPUs this process may use."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    if value.strip().isdigit() and int(value) > 0:
        return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _separable(factors: list[np.ndarray]) -> np.ndarray:
    """The grid array ``prod_d factors[d][j_d]`` (an outer product over the axes)."""
    out = factors[0]
    for f in factors[1:]:
        out = np.multiply.outer(out, f)
    return out


def _varying(disc: Any) -> list[Any]:
    """The constants that change during a run (scheme coefficients, time, drugs, scalars)."""
    spec = disc.spec
    return [*disc.coeffs, disc.t, *(disc.constants[n] for n in spec.config.drugs),
            *(disc.constants[n] for n in spec.scalars)]


def _uniform(expr: Any, varying: list[Any]) -> bool:
    """Whether ``expr`` is the same number everywhere and at every step of a run."""
    if isinstance(expr, int | float):
        return True
    if extract_coefficients(expr) or extract_type(expr, ufl.SpatialCoordinate):
        return False
    used = set(extract_type(expr, ufl.Constant))
    return not any(c in used for c in varying)


def _value(expr: Any) -> float:
    """The number that a constant expression (literals and ``fem.Constant``) has now."""
    if isinstance(expr, int | float):
        return float(expr)
    consts = extract_type(expr, ufl.Constant)
    mapping = {c: ufl.as_ufl(float(np.asarray(c.value))) for c in consts}
    e = ufl.replace(expr, mapping) if mapping else expr
    return float(e)


def unsuitable(disc: Any) -> str | None:
    """Why the tensor strategy cannot solve ``disc``'s steps, or None if it can."""
    dom = disc.domain
    cell = dom.mesh.topology.cell_name()
    if dom.grid is None or cell not in TENSOR_CELLS:
        return ("it needs the built-in interval, or a rectangle or box with mesh.cell = "
                "'quadrilateral' or 'hexahedron'")
    if disc.weight is not None:
        return (f"it is for Cartesian coordinates, not mesh.coordinates = "
                f"{disc.coordinates!r}")
    if disc.comm.size > 1:
        return "it runs on one process only"
    if disc.degree != 1 or not disc.spec.config.discretisation.lumped_mass:
        return "it needs P1 with lumped mass (discretisation.degree = 1, lumped_mass = true)"
    if disc.edge_taxis or any(label == "taxis" for label, _ in disc.terms):
        return "a species has taxis"
    if disc.bcs:
        return "a species has a Dirichlet boundary value (only flux boundaries qualify)"
    affine, _ = disc.linearity()
    if not affine:
        return "the model is nonlinear"
    varying = _varying(disc)
    n, u = disc.n, disc.u
    for name in disc.spec.names:
        k = disc.spec.species[name].index
        if not _uniform(disc.diffusion_exprs.get(k, 0.0), varying):
            return f"the diffusion of {name} is not constant"
        f = disc.reaction_exprs[k]
        for m in range(n):
            d = component_derivative(f, u, m, n)
            if is_zero(d):
                continue
            if m != k:
                return f"the reaction of {name} depends on {disc.spec.names[m]}"
            if not _uniform(d, varying):
                return f"the reaction of {name} is not linear with a constant rate"
    boundary = [t for label, t in disc.terms if label == "boundary"]
    if boundary:
        J = expand_derivatives(ufl.derivative(sum(boundary[1:], boundary[0]), u,
                                              ufl.TrialFunction(disc.V)))
        if not J.empty():
            return "a boundary condition depends on the state (only given fluxes qualify)"
    return None


class TensorSolver:
    """Exact step solves by fast diagonalisation (see the module's text).

    The interface of :class:`tumorpde.solvers.snes.StepSolver`: :meth:`solve` from the
    state, scheme coefficients and history held by ``disc``.
    """

    strategy = "tensor"
    #: nothing is kept that a fresh solver would not make again alike (checkpoints)
    reuse = True
    jacobian_assemblies = 0

    def __init__(self, disc: Any) -> None:
        from scipy import fft

        self._fft = fft
        self.workers = threads()
        self.disc = disc
        self.n = disc.n
        origin, size, cells = disc.domain.grid
        gdim = len(cells)
        h = np.array(size, dtype=float) / np.array(cells, dtype=float)
        self.shape = tuple(int(c) + 1 for c in cells)
        V0 = disc.V0
        nown = V0.dofmap.index_map.size_local
        self.nown = nown
        x = V0.tabulate_dof_coordinates()[:nown, :gdim]
        idx = np.rint((x - np.array(origin)) / h).astype(np.int64)
        flat = np.ravel_multi_index(tuple(idx.T), self.shape)
        if len(flat) != int(np.prod(self.shape)) or len(np.unique(flat)) != len(flat):
            raise RuntimeError("the vertices are not the uniform grid of the mesh")  # pragma: no cover
        #: grid index -> node (owned vertex of V0)
        self.perm = np.empty(len(flat), dtype=np.int64)
        self.perm[flat] = np.arange(len(flat))
        # the 1-D eigenvalues and the separable symbol of the stiffness
        lam, mu = [], []
        for d in range(gdim):
            N = int(cells[d])
            j = np.arange(N + 1)
            ld = 4.0 / h[d] ** 2 * np.sin(np.pi * j / (2 * N)) ** 2
            lam.append(ld)
            mu.append(1.0 - h[d] ** 2 * ld / 6.0)
        self.symbol = sum(_separable([lam[e] if e == d else mu[e] for e in range(gdim)])
                          for d in range(gdim))
        ends = []
        for d in range(gdim):
            w = np.full(self.shape[d], 2.0)
            w[[0, -1]] = 1.0
            ends.append(w)
        weights = _separable(ends)
        #: 1 / transform weights by grid point (a column: the species share them)
        self.inv_weights_nodes = (1.0 / weights).reshape(-1, 1)
        self.scale = float(np.prod(h * np.array(cells, dtype=float)))
        self.axes = tuple(range(gdim))
        self.mass_w = (disc.lumped_mass()[self.perm, None] * self.inv_weights_nodes)
        self._buf: tuple[np.ndarray, np.ndarray] | None = None
        self._coefficients()
        self._sources()
        self._key: tuple[float, ...] | None = None
        self._inv: np.ndarray | None = None
        self.held = tuple(disc.held_components)

    # ------------------------------------------------------------------ set-up
    def _coefficients(self) -> None:
        disc, n = self.disc, self.n
        self._D = [disc.diffusion_exprs.get(k, 0.0) for k in range(n)]
        self._R = [component_derivative(disc.reaction_exprs[k], disc.u, k, n) for k in range(n)]

    def _sources(self) -> None:
        """The reaction at zero state and the boundary fluxes: constants, or compiled."""
        disc, n = self.disc, self.n
        zero = ufl.as_vector([0.0] * n) if n > 1 else ufl.as_ufl(0.0)
        varying = _varying(disc)
        self._src_const: list[Any] = []
        self._src_expr: list[tuple[int, Any]] = []
        for k in range(n):
            f = disc.reaction_exprs[k]
            f0 = f if isinstance(f, int | float) else \
                expand_derivatives(ufl.replace(f, {disc.u: zero}))
            if is_zero(f0):
                continue
            if _uniform(f0, []):
                self._src_const.append((k, f0))
            else:
                self._src_expr.append((k, disc.compile_expression(
                    f0, disc.V0.element.interpolation_points)))
        self._src_field = fem.Function(disc.V0) if self._src_expr else None
        boundary = [t for label, t in disc.terms if label == "boundary"]
        self._bnd = None
        if boundary:
            form = sum(boundary[1:], boundary[0])
            self._bnd = fem.form(ufl.replace(form, {disc.u: zero}))
            used = set(extract_type(form, ufl.Constant))
            self._bnd_fixed = not any(c in used for c in varying)
            self._bnd_vec: np.ndarray | None = None

    def _boundary_vector(self) -> np.ndarray:
        """The boundary terms of the residual (at zero state), in grid order.

        Divided by the transform weights; assembled once when they do not change in a run.
        """
        if self._bnd_fixed and self._bnd_vec is not None:
            return self._bnd_vec
        V = self.disc.V
        b = fem.Function(V)
        fem.assemble_vector(b.x.array, self._bnd)
        from dolfinx.la import InsertMode

        b.x.scatter_reverse(InsertMode.add)
        nodes = b.x.array[: self.nown * self.n].reshape(self.nown, self.n)
        self._bnd_vec = nodes[self.perm] * self.inv_weights_nodes
        return self._bnd_vec

    def _inverse_symbol(self) -> np.ndarray:
        """``1 / (H a)`` for the current scheme coefficient and parameters (cached)."""
        c0 = float(self.disc.coeffs[0].value)
        D = [_value(d) for d in self._D]
        R = [_value(r) if not is_zero(r) else 0.0 for r in self._R]
        key = (c0, *D, *R)
        if key != self._key:
            a = c0 + self.symbol[..., None] * np.array(D) - np.array(R)
            self._inv = 1.0 / (self.scale * a)
            self._key = key
        return self._inv

    # ------------------------------------------------------------------ solve
    def solve(self) -> Any:
        """Solve the step exactly; ``disc.u`` holds the result."""
        disc, n, nown = self.disc, self.n, self.nown
        _, c1, c2 = (float(c.value) for c in disc.coeffs)
        size = nown * n
        if self._buf is None:
            self._buf = (np.empty((nown, n)), np.empty((nown, n)))
        grid, hist = self._buf
        # the right-hand side in grid order: -M (c1 u_n + c2 u_nm1) + M s - boundary (the
        # history combined in the dofs' order, then one gather into the grid's)
        np.multiply(disc.u_n.x.array[:size].reshape(nown, n), -c1, out=hist)
        if c2 != 0.0:
            hist -= c2 * disc.u_nm1.x.array[:size].reshape(nown, n)
        np.take(hist, self.perm, axis=0, out=grid)
        for k, f0 in self._src_const:
            grid[:, k] += _value(f0)
        for k, expr in self._src_expr:
            self._src_field.interpolate(expr)
            grid[:, k] += self._src_field.x.array[:nown][self.perm]
        grid *= self.mass_w  # lumped mass / transform weights, in grid order
        if self._bnd is not None:
            grid -= self._boundary_vector()
        inv = self._inverse_symbol()
        fft = self._fft
        z = fft.dctn(grid.reshape(*self.shape, n), type=1, axes=self.axes,
                     workers=self.workers)
        z *= inv
        sol = fft.dctn(z, type=1, axes=self.axes, overwrite_x=True, workers=self.workers)
        out = disc.u.x.array[:size].reshape(nown, n)
        out[self.perm] = sol.reshape(-1, n)
        for k in self.held:
            out[:, k] = 0.0
        disc.u.x.scatter_forward()
        return StepResult(True, 2, 1, 0)

    def destroy(self) -> None:
        """Nothing to free (no PETSc objects)."""
