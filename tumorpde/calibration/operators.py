"""Observation operators: what the model says about each data row, and its derivative.

An operator binds one :class:`~tumorpde.io.data.Data` to a
:class:`~tumorpde.problem.Problem` and offers, for the rows measured at one time,

* ``evaluate(rows)``: the model's values (the same on every rank);
* ``transpose(rows, w)``: the local vector ``sum_i w_i d m_i / d u`` (owned and ghost
  entries, before the reverse scatter that adds ghost contributions to their owners);
* ``tangent(rows, du)``: ``d m_i / d u . du`` for a consistent (forward-scattered) ``du``.

Every observation used here is linear in the state, a ratio of integrals or a radius (a
level crossing between two nodes, :mod:`tumorpde.fem.radius`), so these are exact; the
observables' own parameters enter through ``parameter_derivative(rows, names)``.
:class:`FieldSamples` evaluates a species at points (the finite-element function itself:
basis functions at the point's reference coordinates in the cell that owns it);
:class:`ObservableSamples` evaluates ``total_<species>`` and integral observables.  A
image (an image manifest of :mod:`tumorpde.io.data`) is read as field samples at its voxel
centres, restricted to the mesh by :func:`within_mesh`.
"""

from __future__ import annotations

from typing import Any

from mpi4py import MPI

import numpy as np

from tumorpde.compat import coordinate_element, geometry_dofmap, import_dolfinx
from tumorpde.errors import ConfigError
from tumorpde.fem.discretisation import is_zero
from tumorpde.io.data import Data

__all__ = ["FieldSamples", "ObservableSamples", "operator_for", "observable_columns", "within_mesh"]

import_dolfinx()
import ufl  # noqa: E402
from dolfinx import fem, geometry  # noqa: E402


class _Rows:
    """Rows grouped by time (times matched within ``tol``)."""

    def __init__(self, data: Data, tol: float) -> None:
        self.data = data
        order = np.argsort(data.t, kind="stable")
        self.times: list[float] = []
        self.groups: list[np.ndarray] = []
        for i in order:
            t = float(data.t[i])
            if self.times and abs(t - self.times[-1]) <= tol:
                self.groups[-1] = np.append(self.groups[-1], i)
            else:
                self.times.append(t)
                self.groups.append(np.array([i]))

    def at(self, t: float, tol: float) -> np.ndarray:
        """Indices of the rows measured at ``t`` (empty when none)."""
        for tt, g in zip(self.times, self.groups, strict=True):
            if abs(tt - t) <= tol:
                return g
        return np.zeros(0, dtype=int)


def _owned_cells(mesh: Any, pts: np.ndarray, comm: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(local, owner)``: each point's owned cell on the lowest rank that has one.

    ``local`` is the cell on this rank (-1 where another rank owns the point or none does),
    ``owner`` the owning rank (``comm.size`` for points outside the mesh).  Collective.
    """
    tdim = mesh.topology.dim
    owned = mesh.topology.index_map(tdim).size_local
    tree = geometry.bb_tree(mesh, tdim, entities=np.arange(owned, dtype=np.int32))
    hits = geometry.compute_colliding_cells(
        mesh, geometry.compute_collisions_points(tree, pts), pts)
    offsets, array = np.asarray(hits.offsets), np.asarray(hits.array)
    local = np.full(len(pts), -1, dtype=np.int64)
    mine = array < owned
    # the first owned colliding cell of each point
    first = np.full(len(pts), np.iinfo(np.int64).max)
    rows = np.repeat(np.arange(len(pts)), np.diff(offsets))
    np.minimum.at(first, rows[mine], np.nonzero(mine)[0])
    has = first < len(array)
    local[has] = array[first[has]]
    claim = np.where(local >= 0, comm.rank, comm.size).astype(np.int32)
    owner = np.empty_like(claim)
    comm.Allreduce(claim, owner, op=MPI.MIN)
    return np.where(owner == comm.rank, local, -1), owner


def _points3(data: Data) -> np.ndarray:
    pts = np.zeros((len(data), 3))
    pts[:, : data.points.shape[1]] = data.points
    return pts


def within_mesh(problem: Any, data: Data) -> Data:
    """The rows of ``data`` that the mesh can compare.

    For voxel samples of images, those whose voxel centre lies in the mesh (the same rows on
    every rank); other data unchanged.

    Raises:
        ConfigError: No voxel of the images lies in the mesh.
    """
    if not data.voxels or data.kind != "field":
        return data
    disc = problem.disc
    if data.points.shape[1] != disc.domain.gdim:
        return data  # Data.check reports the mismatch
    _, owner = _owned_cells(disc.domain.mesh, _points3(data), disc.comm)
    inside = owner < disc.comm.size
    if not inside.any():
        raise ConfigError(data.label, "no voxel of its images lies in the mesh (do the image "
                                      "and the mesh overlap? both in the model's length unit)")
    return data if inside.all() else data.select(inside)


class FieldSamples:
    """Point values of species: ``m_i = u_{field_i}(x_i)``, a sparse matrix on the state."""

    def __init__(self, problem: Any, data: Data) -> None:
        from scipy import sparse

        disc = problem.disc
        self.data, self.comm, self.n = data, disc.comm, disc.n
        self.rows = _Rows(data, problem.milestones.tol)
        mesh = disc.domain.mesh
        gdim = disc.domain.gdim
        pts = _points3(data)
        cells = self._locate(mesh, pts)
        V0 = disc.V0
        if V0.element.needs_dof_transformations:  # pragma: no cover - P1/P2 only
            raise ConfigError(data.label, "point samples need an element without dof "
                                          "transformations (Lagrange P1 or P2)")
        element = V0.element.basix_element
        cmap = coordinate_element(mesh)
        gdofs = np.asarray(geometry_dofmap(mesh))
        comp = {name: problem.names.index(name) for name in set(data.name)}
        imap = V0.dofmap.index_map
        size = (imap.size_local + imap.num_ghosts) * self.n
        rows_, cols_, vals_ = [], [], []
        for c in np.unique(cells[cells >= 0]):
            mine = np.nonzero(cells == c)[0]
            X = mesh.geometry.x[gdofs[c]][:, :gdim]
            ref = np.atleast_2d(cmap.pull_back(pts[mine, :gdim], X))
            phi = np.asarray(element.tabulate(0, ref))[0]  # (points, basis)
            phi = phi.reshape(len(mine), -1)
            dofs = np.asarray(V0.dofmap.cell_dofs(c), dtype=np.int64)
            k = np.array([comp[data.name[i]] for i in mine])
            rows_.append(np.repeat(mine, len(dofs)))
            cols_.append((dofs[None, :] * self.n + k[:, None]).reshape(-1))
            vals_.append(phi.reshape(-1))

        def cat(a: list[np.ndarray], dt: Any) -> np.ndarray:
            return np.concatenate(a).astype(dt) if a else np.zeros(0, dtype=dt)
        #: rows x local state entries (owned + ghosts); empty rows where another rank owns
        self.B = sparse.csr_matrix((cat(vals_, float), (cat(rows_, np.int64),
                                    cat(cols_, np.int64))), shape=(len(data), size))

    def _locate(self, mesh: Any, pts: np.ndarray) -> np.ndarray:
        """The owned cell of each point on the lowest rank that has one (-1 elsewhere)."""
        local, owner = _owned_cells(mesh, pts, self.comm)
        outside = np.nonzero(owner == self.comm.size)[0]
        if outside.size:
            i = int(outside[0])
            raise ConfigError(self.data.label,
                              f"line {self.data.line[i]}: the point "
                              f"({', '.join(f'{v:g}' for v in self.data.points[i])}) lies "
                              f"outside the mesh ({outside.size} point(s) outside)")
        return local

    @property
    def times(self) -> list[float]:
        """The distinct data times, ascending."""
        return self.rows.times

    def evaluate(self, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Model values of ``rows`` from the local state array ``u`` (owned + ghosts)."""
        local = self.B[rows] @ u[: self.B.shape[1]]
        out = np.empty_like(local)
        self.comm.Allreduce(local, out, op=MPI.SUM)
        return out

    def transpose(self, rows: np.ndarray, w: np.ndarray, size: int) -> np.ndarray:
        """``sum_i w_i dm_i/du`` as a local array of ``size`` (before the reverse scatter)."""
        out = np.zeros(size)
        out[: self.B.shape[1]] = self.B[rows].T @ np.asarray(w, dtype=float)
        return out

    def tangent(self, rows: np.ndarray, du: np.ndarray) -> np.ndarray:
        """``dm_i/du . du`` of ``rows`` (``du`` consistent: owned and ghost values)."""
        return self.evaluate(rows, du)

    def parameter_derivative(self, rows: np.ndarray, names: list[str]) -> np.ndarray:
        """Zero: a point value depends on the parameters through the state only."""
        return np.zeros((len(rows), len(names)))


def observable_columns(problem: Any) -> list[str]:
    """The observable columns that data may name: species totals and integral observables."""
    spec = problem.spec
    return [f"total_{n}" for n in problem.names] + [
        n for n, ob in spec.observables.items()
        if ob.kind in ("integral", "radius") and not ob.cumulative]


class ObservableSamples:
    """Scalar observables: ``total_<species>``, an integral or a radius observable at ``t_i``.

    An observable with ``per`` is the ratio of two integrals (differentiated as one).
    """

    def __init__(self, problem: Any, data: Data) -> None:
        disc = self.disc = problem.disc
        self.data, self.comm = data, disc.comm
        self.rows = _Rows(data, problem.milestones.tol)
        dx = ufl.dx(domain=disc.domain.mesh)
        v = ufl.TestFunction(disc.V)
        spec = problem.spec
        #: name -> (numerator, its derivative, denominator or None, its derivative)
        self.forms: dict[str, tuple[Any, Any, Any, Any]] = {}
        #: name -> (numerator, denominator or None) as UFL, for the parameter derivatives
        self.exprs: dict[str, tuple[Any, Any]] = {}
        #: radius observables: name -> Radius
        self.radii: dict[str, Any] = {}
        for name in sorted(set(data.name)):
            if name.startswith("total_") and name[6:] in problem.names:
                e, per = disc.comp(disc.u, problem.names.index(name[6:])), None
            else:
                ob = spec.observables.get(name)
                if ob is not None and ob.kind == "radius" and not ob.cumulative:
                    self.radii[name] = disc._observables[name][1]
                    continue
                if ob is None or ob.kind != "integral" or ob.cumulative:
                    what = "cumulative" if ob is not None and ob.cumulative else \
                        (f"a {ob.kind}" if ob is not None else "not an observable")
                    raise ConfigError(data.label, f"observable {name!r} is {what}: data can "
                                      "name a species total or an integral observable "
                                      f"({', '.join(observable_columns(problem))})")
                e = disc.lower(ob.expr, None, disc.u)
                per = disc.lower(ob.per, None, disc.u) if ob.per else None

            def pair(expr: Any) -> tuple[Any, Any]:
                form = disc.weighted(expr) * dx
                return fem.form(form), fem.form(ufl.derivative(form, disc.u, v))

            num, dnum = pair(e)
            den, dden = pair(per) if per is not None else (None, None)
            self.forms[name] = (num, dnum, den, dden)
            self.exprs[name] = (e, per)
        self._dp: dict[tuple[str, str], tuple[Any, Any]] = {}

    @property
    def times(self) -> list[float]:
        """The distinct data times, ascending."""
        return self.rows.times

    def _scalar(self, form: Any) -> float:
        return float(self.comm.allreduce(fem.assemble_scalar(form), op=MPI.SUM))

    def _vector(self, form: Any, size: int) -> np.ndarray:
        out = np.zeros(size)
        fem.assemble_vector(out, form)
        return out

    def _value(self, name: str) -> tuple[float, float | None]:
        if name in self.radii:
            return self.radii[name].value(), None
        num, _, den, _ = self.forms[name]
        a = self._scalar(num)
        if den is None:
            return a, None
        b = self._scalar(den)
        return (a / b if b != 0 else 0.0), b

    def evaluate(self, rows: np.ndarray, u: np.ndarray | None = None) -> np.ndarray:
        """Model values of ``rows`` from the current state (``disc.u``)."""
        cache = {n: self._value(n)[0] for n in sorted({self.data.name[i] for i in rows})}
        return np.array([cache[self.data.name[i]] for i in rows])

    def _gradient(self, name: str, size: int) -> np.ndarray:
        """D m / d u of one observable as a local array (before the reverse scatter)."""
        if name in self.radii:
            return self.radii[name].gradient(size)
        _, dnum, den, dden = self.forms[name]
        g = self._vector(dnum, size)
        if den is not None:
            val, b = self._value(name)
            g = (g - val * self._vector(dden, size)) / b if b else np.zeros(size)
        return g

    def transpose(self, rows: np.ndarray, w: np.ndarray, size: int) -> np.ndarray:
        """``sum_i w_i dm_i/du`` as a local array of ``size`` (before the reverse scatter)."""
        out = np.zeros(size)
        for name in sorted({self.data.name[i] for i in rows}):
            wsum = sum(float(wi) for i, wi in zip(rows, w, strict=True)
                       if self.data.name[i] == name)
            out += wsum * self._gradient(name, size)
        return out

    def tangent(self, rows: np.ndarray, du: np.ndarray) -> np.ndarray:
        """``dm_i/du . du`` of ``rows`` (``du`` consistent: owned and ghost values)."""
        names = sorted({self.data.name[i] for i in rows})
        local = np.array([float(self._gradient(n, du.size) @ du) for n in names])
        glob = np.empty_like(local)
        self.comm.Allreduce(local, glob, op=MPI.SUM)
        value = dict(zip(names, glob, strict=True))
        return np.array([value[self.data.name[i]] for i in rows])


    def parameter_derivative(self, rows: np.ndarray, names: list[str]) -> np.ndarray:
        """``dm_i/dp_j`` through the parameters in the observables themselves (rows x names).

        Zero for species totals and for observables without those parameters; the state's
        dependence on the parameters is the tangent's.
        """
        out = np.zeros((len(rows), len(names)))
        for name in sorted({self.data.name[i] for i in rows}):
            if name in self.radii:
                d = self.radii[name].parameter_derivative(names)
            else:
                d = np.array([self._integral_dp(name, p) for p in names])
            for r, i in enumerate(rows):
                if self.data.name[i] == name:
                    out[r] = d
        return out

    def _integral_dp(self, name: str, param: str) -> float:
        """d/dp of an integral observable (a ratio differentiated as one)."""
        from tumorpde.calibration.sensitivity import variable_derivative

        key = (name, param)
        if key not in self._dp:
            e, per = self.exprs[name]
            const = self.disc.constants[param]
            dx = ufl.dx(domain=self.disc.domain.mesh)

            def form(expr: Any) -> Any:
                d = variable_derivative(expr, const) if expr is not None else None
                if d is None or is_zero(d):
                    return None
                return fem.form(self.disc.weighted(d) * dx)
            self._dp[key] = (form(e), form(per) if per is not None else None)
        dnum, dden = self._dp[key]
        if dnum is None and dden is None:
            return 0.0
        num, _, den, _ = self.forms[name]
        a_p = self._scalar(dnum) if dnum is not None else 0.0
        if den is None:
            return a_p
        a, b = self._scalar(num), self._scalar(den)
        if b == 0:
            return 0.0
        b_p = self._scalar(dden) if dden is not None else 0.0
        return (a_p * b - a * b_p) / b**2


def operator_for(problem: Any, data: Data) -> FieldSamples | ObservableSamples:
    """The operator of a data file on a problem (checks names, coordinates, times, points)."""
    tc = problem.config.time
    data.check(problem.names, observable_columns(problem), problem.disc.domain.gdim,
               tc.start, tc.end)
    return FieldSamples(problem, data) if data.kind == "field" else \
        ObservableSamples(problem, data)
