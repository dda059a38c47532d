"""Radius observables: where an expression crosses a level on an interval mesh.

``{ radius = "EXPR", above = L }`` is the outer edge of the region where ``EXPR >= L``;
``{ radius = "EXPR", below = L }`` the outer edge of the region where ``EXPR < L``.  On a
radial mesh (``mesh.coordinates = "spherical"`` or ``"cylindrical"`` on an interval) these
are the radii of a spheroid's rim, its inhibited region or its necrotic core.

The expression is interpolated at the nodes of the species' space and the crossing is
found between the last node inside the region (counted outward) and the next one, by
linear interpolation:

    R = x_j + (x_{j+1} - x_j) (L - e_j) / (e_{j+1} - e_j).

R is the first node of the mesh when no node is inside and the last node when the
region reaches the end of the mesh.  R is continuous in the nodal values and
differentiable between the events where the crossing moves from one interval to the
next: :meth:`Radius.gradient` gives ``dR/du`` (two nodes at most) for calibration, and
:meth:`Radius.parameter_derivative` ``dR/dp`` for parameters in the expression.

In parallel every rank gathers the nodal values (a 1-D mesh has few), so every rank finds
the same radius.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tumorpde.compat import import_dolfinx
from tumorpde.errors import ConfigError

__all__ = ["Radius", "crossing"]

import_dolfinx()
import ufl  # noqa: E402
import ufl.algorithms  # noqa: E402
from dolfinx import fem  # noqa: E402


def crossing(x: np.ndarray, e: np.ndarray, level: float,
             above: bool) -> tuple[float, int | None, float, float]:
    """``(R, j, dR/de_j, dR/de_{j+1})`` of nodal values ``e`` at ascending ``x``.

    ``j`` is ``None`` (and the derivatives 0) when the region is empty or reaches the end.
    """
    inside = e >= level if above else e < level
    idx = np.nonzero(inside)[0]
    if idx.size == 0:
        return float(x[0]), None, 0.0, 0.0
    j = int(idx[-1])
    if j == len(x) - 1:
        return float(x[-1]), None, 0.0, 0.0
    h = float(x[j + 1] - x[j])
    ej, ek = float(e[j]), float(e[j + 1])
    delta = ek - ej  # nonzero: e_j and e_{j+1} lie on opposite sides of the level
    r = float(x[j]) + h * (level - ej) / delta
    return r, j, h * (level - ek) / delta**2, -h * (level - ej) / delta**2


def _derivative(expr: Any, target: Any, direction: Any) -> Any:
    d = ufl.derivative(expr, target, direction)
    return ufl.algorithms.expand_derivatives(d)


class Radius:
    """One radius observable on a discretisation (see the module's docstring).

    Args:
        disc: The :class:`~tumorpde.fem.discretisation.Discretisation`.
        name: The observable's name (for errors).
        expr: Its expression lowered on ``disc.u`` (UFL).
        level: The level ``L`` (the expression's magnitude).
        above: ``True`` for ``above = L``, ``False`` for ``below = L``.

    Raises:
        ConfigError: The mesh is not an interval.
    """

    def __init__(self, disc: Any, name: str, expr: Any, level: float, above: bool) -> None:
        if disc.domain.gdim != 1 or disc.domain.mesh.topology.dim != 1:
            raise ConfigError(f"observables.{name}.radius",
                              "a radius observable needs an interval (1-D) mesh; on 2-D and "
                              "3-D meshes integrate an indicator instead")
        self.disc, self.expr, self.level, self.above = disc, expr, float(level), above
        self.comm = comm = disc.comm
        V0 = disc.V0
        pts = V0.element.interpolation_points
        self._value = disc.compile_expression(expr, pts)
        self._f = fem.Function(V0)
        self.nown = V0.dofmap.index_map.size_local
        x = np.ascontiguousarray(V0.tabulate_dof_coordinates()[: self.nown, 0])
        xs = comm.allgather(x)
        counts = [len(a) for a in xs]
        self.offset = int(sum(counts[: comm.rank]))
        allx = np.concatenate(xs)
        self.order = np.argsort(allx, kind="stable")
        self.x = allx[self.order]
        self._du: list[Any] | None = None
        self._dp: dict[str, Any] = {}

    # ------------------------------------------------------------------ nodal values
    def _nodal(self, compiled: Any) -> np.ndarray:
        """The interpolated expression at every node, in ascending ``x`` (on every rank)."""
        self._f.interpolate(compiled)
        loc = np.ascontiguousarray(self._f.x.array[: self.nown])
        return np.concatenate(self.comm.allgather(loc))[self.order]

    def _crossing(self) -> tuple[float, int | None, float, float]:
        return crossing(self.x, self._nodal(self._value), self.level, self.above)

    def value(self) -> float:
        """The radius of the current state (collective; the same on every rank)."""
        return self._crossing()[0]

    # ------------------------------------------------------------------ derivatives
    def _local(self, j: int) -> int:
        """The local dof of sorted node ``j`` on this rank, or -1 where another owns it."""
        k = int(self.order[j]) - self.offset
        return k if 0 <= k < self.nown else -1

    def gradient(self, size: int) -> np.ndarray:
        """``dR/du`` as a local state array of ``size`` (owned entries only)."""
        disc = self.disc
        out = np.zeros(size)
        _, j, dj, dk = self._crossing()
        if j is None:
            return out
        if self._du is None:
            pts = disc.V0.element.interpolation_points
            n = disc.n
            self._du = []
            for k in range(n):
                e = ufl.as_vector([1.0 if i == k else 0.0 for i in range(n)]) if n > 1 else \
                    ufl.as_ufl(1.0)
                self._du.append(disc.compile_expression(_derivative(self.expr, disc.u, e),
                                                        pts))
        for k, compiled in enumerate(self._du):
            de = self._nodal(compiled)
            for node, w in ((j, dj), (j + 1, dk)):
                loc = self._local(node)
                if loc >= 0:
                    out[loc * disc.n + k] += w * de[node]
        return out

    def parameter_derivative(self, names: list[str]) -> np.ndarray:
        """``dR/dp`` for the scalar parameters ``names`` (the same on every rank)."""
        disc = self.disc
        _, j, dj, dk = self._crossing()
        out = np.zeros(len(names))
        if j is None:
            return out
        pts = disc.V0.element.interpolation_points
        for i, name in enumerate(names):
            if name not in self._dp:
                c = disc.constants[name]
                var = ufl.variable(c)
                d = ufl.algorithms.expand_derivatives(
                    ufl.diff(ufl.replace(self.expr, {c: var}), var))
                self._dp[name] = disc.compile_expression(d, pts)
            de = self._nodal(self._dp[name])
            out[i] = dj * de[j] + dk * de[j + 1]
        return out
