"""Derivatives of a run with respect to parameters: the discrete adjoint and tangent.

A run solves, step after step, ``F^n(u^n, u^{n-1}, u^{n-2}; p) = 0`` (the residual of
:mod:`tumorpde.fem.discretisation` with the step's BDF coefficients, time, drug levels and
Dirichlet values).  :class:`Recorder` keeps the accepted states and what each step used;
:class:`Sensitivity` then differentiates *that* discrete map, with the same steps:

* **adjoint** (the gradient of a scalar objective ``J(u^0..u^N)``, one linear solve per
  step whatever the number of parameters)::

      (A^n)^T lam^n = -(dJ/du^n + (B1^{n+1})^T lam^{n+1} + (B2^{n+2})^T lam^{n+2})
      dJ/dp = sum_n (dF^n/dp)^T lam^n + (du^0/dp)^T (dJ/du^0 + (B1^1 + B2^1)^T lam^1
                                                     + (B2^2)^T lam^2)

* **tangent** (forward sensitivities ``du^n/dp_j``, one solve per step and parameter;
  the Jacobian of residual vectors for Gauss-Newton fits and covariances)::

      A^n du^n = -(B1^n du^{n-1} + B2^n du^{n-2} + dF^n/dp_j),   du^0 = du^0/dp_j

with ``A = dF/du`` (the Jacobian that Newton uses: exact for UFL terms; the edge-upwind
taxis limiter frozen), ``B1 = dF/du^{n-1}``, ``B2 = dF/du^{n-2}`` (UFL derivatives of the
residual form).  ``dF/dp`` is exact for the UFL terms (the parameter's ``fem.Constant``
replaced by a UFL variable and differentiated), and a central difference for the edge
taxis fluxes (relative step 1e-6).  ``du^0/dp`` is the interpolated derivative of the
initial expressions.  Dirichlet values do not depend on the fitted parameters (checked);
Dirichlet dofs and knocked-out species carry no sensitivity.

Every state of the run is kept in memory (``steps x unknowns`` numbers).  Step sizes are
those of the recorded run: with adaptive stepping the objective is differentiated at a
fixed step sequence (the choice of steps is piecewise constant in ``p``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mpi4py import MPI
from petsc4py import PETSc

import numpy as np

from tumorpde.compat import import_dolfinx
from tumorpde.errors import ConfigError
from tumorpde.trackers import Tracker

__all__ = ["Recorder", "Sensitivity", "Snapshot", "unsupported", "variable_derivative"]

import_dolfinx()
import ufl  # noqa: E402
import ufl.algorithms  # noqa: E402
import ufl.constantvalue  # noqa: E402
from dolfinx import fem  # noqa: E402
from dolfinx.fem import petsc as fpetsc  # noqa: E402
from dolfinx.la import InsertMode as _InsertMode  # noqa: E402

_ADD = _InsertMode.add

_FD_STEP = 1e-6


@dataclass
class Snapshot:
    """One accepted state and what its step used."""

    t: float
    u: np.ndarray
    coeffs: tuple[float, float, float]
    constants: dict[str, float]


@dataclass
class Recorder(Tracker):
    """Keeps the initial state and every accepted state of a run (a tracker)."""

    interval: str | float = "step"
    states: list[Snapshot] = field(default_factory=list)

    def initialize(self, problem: Any) -> None:
        """Forget a previous run."""
        self.states = []

    def handle(self, problem: Any, t: float) -> None:
        """Keep the state at ``t`` with the step's coefficients, time and constants."""
        disc = problem.disc
        self.states.append(Snapshot(
            float(t), disc.u.x.array.copy(), tuple(float(c.value) for c in disc.coeffs),
            {n: float(c.value) for n, c in disc.constants.items()
             if n not in disc.parameter_fields}))


def unsupported(problem: Any, parameters: Sequence[str]) -> str | None:
    """Why derivatives of this problem cannot be computed (None when they can)."""
    spec = problem.spec
    if spec.scalars:
        return "models with [scalars] compartments are not supported yet"
    plan = spec.plan
    if plan is not None and any(plan.drugs[n].kind == "fraction" for n in plan.given):
        return "radiotherapy fractions (state jumps) are not supported yet"
    for name in parameters:
        if name not in spec.parameters:
            return f"{name!r} is not a parameter of the model"
    return None


def variable_derivative(expr: Any, const: Any) -> Any:
    """D expr / d const for a ``fem.Constant`` in a UFL expression or form."""
    var = ufl.variable(const)
    return ufl.algorithms.expand_derivatives(ufl.diff(ufl.replace(expr, {const: var}), var))


class Sensitivity:
    """Adjoint and tangent of one problem's discrete time stepping.

    Args:
        problem: The :class:`~tumorpde.problem.Problem` (its run recorded by a
            :class:`Recorder`).
        parameters: Names of scalar ``[parameters]`` entries to differentiate with respect to.
        fields: Names of field parameters (``field = true``): the adjoint gives the
            derivative with respect to each of their nodal values.

    Raises:
        ConfigError: A model feature without derivatives here, or a parameter in a
            Dirichlet value (a field parameter also in an initial condition or an
            edge-upwind taxis term).
    """

    def __init__(self, problem: Any, parameters: Sequence[str], fields: Sequence[str] = ()) -> None:
        why = unsupported(problem, [*parameters, *fields])
        if why:
            raise ConfigError("calibration", why)
        self.problem, self.names, self.fields = problem, list(parameters), list(fields)
        disc = self.disc = problem.disc
        self.comm: MPI.Comm = disc.comm
        for name in self.names:
            if name in disc.parameter_fields:
                raise ConfigError(f"parameters.{name}", "is a field parameter (field = true)")
        for name in self.fields:
            if name not in disc.parameter_fields:
                raise ConfigError(f"parameters.{name}", "is not a field parameter (field = true)")
        self._check_dirichlet()
        self._check_fields()
        V = disc.V
        trial = ufl.TrialFunction(V)
        F = disc.F_ufl
        self.lam = fem.Function(V, name="adjoint")
        self.du = fem.Function(V, name="tangent")
        dFdun = ufl.derivative(F, disc.u_n, trial)
        dFdunm1 = ufl.derivative(F, disc.u_nm1, trial)
        self.B1T = fem.form(ufl.action(ufl.adjoint(dFdun), self.lam))
        self.B2T = fem.form(ufl.action(ufl.adjoint(dFdunm1), self.lam))
        self.B1 = fem.form(ufl.action(dFdun, self.du))
        self.B2 = fem.form(ufl.action(dFdunm1, self.du))
        consts = [disc.constants[n] for n in self.names]
        dFdp = [variable_derivative(F, c) for c in consts]
        self.P = [fem.form(d) if not d.empty() else None for d in dFdp]
        self.PT = [fem.form(ufl.action(d, self.lam)) if not d.empty() else None for d in dFdp]
        q = ufl.TrialFunction(disc.V0)
        #: per field parameter: (dF/dp)^T lam as a linear form on the field's space
        self.GT = {f: fem.form(ufl.action(ufl.adjoint(ufl.derivative(F, disc.parameter_fields[f],
                                                                      q)), self.lam))
                   for f in self.fields}
        init = disc.initial_expression()
        pts = V.element.interpolation_points
        self.U0 = [disc.compile_expression(variable_derivative(init, c), pts) for c in consts]
        self.A = disc.create_matrix()
        self.ksp = PETSc.KSP().create(self.comm)
        self.ksp.setType("preonly")
        pc = self.ksp.getPC()
        pc.setType("lu")
        if PETSc.Sys.hasExternalPackage("mumps"):
            pc.setFactorSolverType("mumps")
        self.x = disc.u.x.petsc_vec.duplicate()
        self.b = disc.u.x.petsc_vec.duplicate()
        n = disc.n
        size = disc.u.x.array.size
        fixed = np.zeros(size, dtype=bool)
        fixed[disc.bc_local] = True
        for k in disc.held_components:
            fixed[k::n] = True
        self.fixed = fixed
        self.size = size

    def _check_dirichlet(self) -> None:
        disc = self.disc
        for b in self.disc.bcs:
            for name in self.fields:
                if disc.parameter_fields[name] in ufl.algorithms.extract_coefficients(
                        b.expr.ufl_expression):
                    raise ConfigError(f"parameters.{name}", "appears in a Dirichlet boundary "
                                      "value: such parameters cannot be calibrated yet")
            for name in self.names:
                d = variable_derivative(b.expr.ufl_expression, disc.constants[name])
                if not isinstance(d, ufl.constantvalue.Zero):
                    raise ConfigError(f"parameters.{name}", "appears in a Dirichlet boundary "
                                      "value: such parameters cannot be calibrated yet")

    def _check_fields(self) -> None:
        disc = self.disc
        for name in self.fields:
            f = disc.parameter_fields[name]
            where = []
            if f in ufl.algorithms.extract_coefficients(disc.initial_expression()):
                where.append("an initial condition")
            for et in disc.edge_taxis:
                for expr, _ in et.exprs:
                    if f in ufl.algorithms.extract_coefficients(expr.ufl_expression):
                        where.append("an edge-upwind taxis term (use discretisation.taxis = "
                                     "\"galerkin\")")
            if where:
                raise ConfigError(f"parameters.{name}", f"a field parameter in {where[0]} "
                                  "cannot be calibrated yet")

    def destroy(self) -> None:
        """Free the PETSc objects."""
        for obj in (self.ksp, self.A, self.x, self.b):
            obj.destroy()

    # ------------------------------------------------------------------ one step
    def _load(self, states: list[Snapshot], n: int) -> None:
        """Put step ``n`` (>= 1) into the discretisation: u^n, history, coefficients, time."""
        disc = self.disc
        s = states[n]
        disc.u.x.array[:] = s.u
        disc.u_n.x.array[:] = states[n - 1].u
        disc.u_nm1.x.array[:] = states[max(n - 2, 0)].u
        for c, v in zip(disc.coeffs, s.coeffs, strict=True):
            c.value = v
        for name, v in s.constants.items():
            disc.constants[name].value = v
        disc.t.value = s.t
        disc.update_boundary_values()
        disc.u.x.petsc_vec.copy(self.x)
        disc.jacobian(None, self.x, self.A, self.A)
        self.ksp.setOperators(self.A)

    def _assemble(self, form: Any) -> np.ndarray:
        """A linear form as a local array with ghost contributions added to their owners."""
        with self.b.localForm() as bl:
            bl.set(0.0)
        fpetsc.assemble_vector(self.b, form)
        return self._reverse(self.b)

    def assemble_on(self, form: Any, space: Any) -> np.ndarray:
        """A linear form on ``space`` as a consistent local array (owners summed)."""
        g = fem.Function(space)
        fem.assemble_vector(g.x.array, form)
        g.x.scatter_reverse(_ADD)
        g.x.scatter_forward()
        return g.x.array.copy()

    def _reverse(self, vec: PETSc.Vec) -> np.ndarray:
        vec.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        vec.ghostUpdate(addv=PETSc.InsertMode.INSERT, mode=PETSc.ScatterMode.FORWARD)
        with vec.localForm() as loc:
            return loc.array.copy()

    def reverse_add(self, local: np.ndarray) -> np.ndarray:
        """Add the ghost entries of a local array to their owners (and update the ghosts)."""
        with self.b.localForm() as bl:
            bl.array[:] = local
        return self._reverse(self.b)

    def _solve(self, rhs: np.ndarray, transpose: bool) -> np.ndarray:
        """Solve ``A x = rhs`` (or ``A^T x = rhs``) with fixed dofs zero; consistent result."""
        rhs = np.where(self.fixed, 0.0, rhs)
        with self.b.localForm() as bl:
            bl.array[:] = rhs
        (self.ksp.solveTranspose if transpose else self.ksp.solve)(self.b, self.x)
        reason = self.ksp.getConvergedReason()
        if reason < 0:
            raise ConfigError("calibration", f"the sensitivity solve failed (KSP reason {reason})")
        self.x.ghostUpdate(addv=PETSc.InsertMode.INSERT, mode=PETSc.ScatterMode.FORWARD)
        with self.x.localForm() as xl:
            out = xl.array.copy()
        out[self.fixed] = 0.0
        return out

    def _edge_dp(self, j: int) -> np.ndarray | None:
        """Central difference of the edge-taxis residual in parameter ``j`` (local, unsummed)."""
        disc = self.disc
        if not disc.edge_taxis:
            return None
        c = disc.constants[self.names[j]]
        p = float(c.value)
        h = _FD_STEP * max(abs(p), 1e-12)
        out = []
        for v in (p + h, p - h):
            c.value = v
            r = np.zeros(self.size)
            for et in disc.edge_taxis:
                et.update()
                et.add_residual(disc.u.x.array, r, disc.n)
            out.append(r)
        c.value = p
        for et in disc.edge_taxis:
            et.update()
        return (out[0] - out[1]) / (2.0 * h)

    def _dFdp(self, j: int) -> np.ndarray:
        """dF/dp_j at the loaded step as a consistent local array (fixed rows zero)."""
        vec = self._assemble(self.P[j]) if self.P[j] is not None else np.zeros(self.size)
        edge = self._edge_dp(j)
        if edge is not None:
            vec = vec + self.reverse_add(edge)
        vec[self.fixed] = 0.0
        return vec

    def initial_derivative(self, j: int) -> np.ndarray:
        """D u^0 / d p_j (the derivative of the interpolated initial conditions)."""
        self.du.interpolate(self.U0[j])
        self.du.x.scatter_forward()
        return self.du.x.array.copy()

    # ------------------------------------------------------------------ sweeps
    def gradient(self, states: list[Snapshot], dJ: dict[int, np.ndarray]) -> np.ndarray:
        """dJ/dp by the adjoint (scalar parameters; the fields' parts in :attr:`field_gradient`).

        Args:
            states: The recorded run (``states[0]`` the initial state).
            dJ: Step index -> dJ/du^n as a consistent local array (owners summed).
        """
        nq = self.disc.V0.dofmap.index_map.size_local + self.disc.V0.dofmap.index_map.num_ghosts
        #: field parameter -> dJ/dp at its nodes (consistent local array, owned + ghosts)
        self.field_gradient = {f: np.zeros(nq) for f in self.fields}
        N = len(states) - 1
        nown = self.disc.V.dofmap.index_map.size_local * self.disc.n
        zero = np.zeros(self.size)
        grad = np.zeros(len(self.names))
        a: dict[int, np.ndarray] = {}  # a[n] = (B1^n)^T lam^n: feeds u^{n-1}
        b: dict[int, np.ndarray] = {}  # b[n] = (B2^n)^T lam^n: feeds u^{n-2}
        for n in range(N, 0, -1):
            rhs = dJ.get(n, zero) + a.pop(n + 1, zero) + b.pop(n + 2, zero)
            self._load(states, n)
            lam = self._solve(-rhs, transpose=True)
            self.lam.x.array[:] = lam
            for j in range(len(self.names)):
                if self.PT[j] is not None:
                    grad[j] += self.comm.allreduce(fem.assemble_scalar(self.PT[j]), op=MPI.SUM)
                edge = self._edge_dp(j)
                if edge is not None:
                    grad[j] += self.comm.allreduce(float(edge @ lam), op=MPI.SUM)
            for f, form in self.GT.items():
                self.field_gradient[f] += self.assemble_on(form, self.disc.V0)
            a[n] = self._assemble(self.B1T)
            b[n] = self._assemble(self.B2T)
        # u^0 is both the history of step 1 (u^{n-1} and u^{n-2}) and u^{n-2} of step 2
        mu0 = dJ.get(0, zero) + a.pop(1, zero) + b.pop(1, zero) + b.pop(2, zero)
        for j in range(len(self.names)):
            d0 = self.initial_derivative(j)
            grad[j] += self.comm.allreduce(float(d0[:nown] @ mu0[:nown]), op=MPI.SUM)
        return grad

    def tangent(self, states: list[Snapshot], steps: Sequence[int]) -> dict[int, np.ndarray]:
        """du^n/dp for the steps named: step -> array (parameters x local size)."""
        N = len(states) - 1
        want = set(steps)
        out: dict[int, np.ndarray] = {}
        m = len(self.names)
        d0 = np.array([self.initial_derivative(j) for j in range(m)])
        if 0 in want:
            out[0] = d0.copy()
        prev, prev2 = d0, d0  # du^{n-1}, du^{n-2}
        for n in range(1, N + 1):
            if n > max(want, default=0):
                break
            self._load(states, n)
            cur = np.zeros_like(d0)
            for j in range(m):
                self.du.x.array[:] = prev[j]
                rhs = self._assemble(self.B1)
                self.du.x.array[:] = prev2[j]
                rhs = rhs + self._assemble(self.B2) + self._dFdp(j)
                cur[j] = self._solve(-rhs, transpose=False)
            if n in want:
                out[n] = cur.copy()
            prev2, prev = prev, cur
        return out
