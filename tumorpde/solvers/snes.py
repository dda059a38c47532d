"""PETSc nonlinear solver for one time step.

One SNES per solver; the ``[solver]`` table is passed through as PETSc options
(``ksp_type = "gmres"`` is ``ksp_type gmres``).  Defaults (:mod:`tumorpde.solvers.options`):
Newton with a full step, direct LU (MUMPS) in 1D/2D and GMRES with
block-Jacobi/ILU(0) in 3D, so 3D problems never fall back to a direct
factorisation unless asked to.

Options given to PETSc itself (``PETSC_OPTIONS``, the command line) use the prefix
``tumorpde_`` (``-tumorpde_snes_monitor``) and reach every solver; the solver's own
defaults and ``[solver]`` table take precedence over them.  Each live solver has a
prefix of its own, ``tumorpde_<slot>_`` (the smallest slot not held by another live
solver of the process), under which it writes all its options, and removes them when it
is destroyed: two problems alive in one process never see each other's options.
"""

from __future__ import annotations

import re
import weakref
from typing import Any

from petsc4py import PETSc

from tumorpde.errors import ConfigError
from tumorpde.solvers import splitting
from tumorpde.solvers.options import PREFIX, STRATEGIES, monolithic_options, split_options
from tumorpde.solvers.result import StepResult

__all__ = ["StepSolver", "StepResult", "PREFIX", "step_solver"]

#: slots of the live solvers of this process (their prefixes are ``tumorpde_<slot>_``)
_LIVE: set[int] = set()
_SLOT = re.compile(r"\d+_")


def _take_slot() -> int:
    slot = 0
    while slot in _LIVE:
        slot += 1
    _LIVE.add(slot)
    return slot


def _release(slot: int, prefix: str, keys: list[str]) -> None:
    """Remove a solver's options and free its slot (local: safe when collected)."""
    opts = PETSc.Options()
    for k in keys:
        opts.delValue(f"{prefix}{k}")
    _LIVE.discard(slot)


def _global_options() -> dict[str, Any]:
    """The ``tumorpde_`` options of the PETSc database that no live solver wrote."""
    db = PETSc.Options()
    found = {k[len(PREFIX):]: v for k, v in db.getAll().items()
             if k.startswith(PREFIX) and not _SLOT.match(k[len(PREFIX):])}
    for k in found:  # a query marks them used (PETSc warns at exit about unused options)
        db.hasName(f"{PREFIX}{k}")
    return found


def _describe(exc: Exception) -> str:
    lines = [ln.strip().removeprefix("[0]").strip() for ln in str(exc).splitlines() if ln.strip()]
    lines = [ln.split(": http")[0] for ln in lines]
    useful = [ln for ln in lines if "Unknown" in ln or "unknown" in ln or "not" in ln]
    return (useful or lines or [type(exc).__name__])[-1][:200]


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def step_solver(disc: Any, user_options: dict[str, Any], dt: float | None = None) -> Any:
    """The solver of ``disc``'s steps that ``solver.strategy`` (and ``auto``) chooses.

    ``auto`` takes the exact tensor strategy (:mod:`tumorpde.solvers.tensor`) where it
    applies and the ``[solver]`` table holds no PETSc options, else :class:`StepSolver`.
    """
    from tumorpde.solvers import tensor

    value = user_options.get("strategy", "auto")
    petsc = [k for k in user_options if k != "strategy"]
    if value == "tensor":
        why = tensor.unsuitable(disc)
        if why:
            raise ConfigError("solver.strategy", f"'tensor' does not apply: {why}")
        if petsc:
            raise ConfigError(f"solver.{petsc[0]}", "the tensor strategy takes no PETSc "
                              "options (it solves each step exactly, without PETSc)")
        return tensor.TensorSolver(disc)
    if value == "auto" and not petsc and tensor.unsuitable(disc) is None:
        return tensor.TensorSolver(disc)
    return StepSolver(disc, user_options, dt)


def _strategy(disc: Any, value: Any) -> str:
    """The solver strategy (``solver.strategy``) that a run uses."""
    if value not in STRATEGIES:
        raise ConfigError("solver.strategy", f"expected one of {', '.join(STRATEGIES)}, "
                          f"got {value!r}")
    if value == "tensor":
        raise ConfigError("solver.strategy", "'tensor' is built by step_solver()")
    if value == "auto":
        # one species: nothing to split (both Jacobians are the same scalar P1 matrix), and
        # the monolithic direct solve in 1D/2D keeps the values of an unstable zero state
        # (the leading edge of a pulled front) exact, where Krylov errors would grow
        return "split" if splitting.applicable(disc) and disc.n > 1 else "monolithic"
    if value == "split" and not splitting.applicable(disc):
        raise ConfigError("solver.strategy", "'split' needs nodal kinetics: P1 elements with "
                          "lumped mass (discretisation.degree = 1, lumped_mass = true)")
    return str(value)


def _same(key: tuple[float, ...], old: tuple[float, ...] | None) -> bool:
    return old is not None and all(abs(a - b) <= 1e-13 * max(abs(a), abs(b))
                                   for a, b in zip(key, old, strict=True))


#: a lagged-Jacobian (chord) solve stops after this many iterations and Newton takes over
CHORD_MAX_IT = 8
#: a chord solve that needs more iterations than this has the next step assemble anew
CHORD_REFRESH = 4


class _Jacobian:
    """The SNES Jacobian callback, assembling only when the matrix may have changed.

    It assembles again when the matrix can have changed (a linear problem) or is worth
    assembling again (a lagged Jacobian).

    With ``constants`` (a linear problem), the matrix depends on the state not at all and
    on those constants only: while they keep their values (to round-off), the assembled
    matrix, and so PETSc's factorisation or preconditioner of it, is kept.

    With ``lag`` (a nonlinear problem solved with a direct factorisation), the matrix of an
    earlier Newton iteration, or an earlier step, is kept while the step's coefficients
    (``lag``: the BDF coefficients, which change with the step size) keep their values and
    :attr:`stale` is not set: Newton becomes a chord iteration whose every iteration is an
    exact solve with that matrix (a triangular solve, no assembly, no factorisation).
    Only the speed of convergence depends on the matrix: the residual, and so the
    solution and its tolerance, are those of Newton.  :attr:`always` assembles at every
    call (Newton itself).
    """

    def __init__(self, assemble: Any, constants: list[Any] | None,
                 lag: list[Any] | None = None) -> None:
        self.assemble, self.constants, self.lag = assemble, constants, lag
        self.key: tuple[float, ...] | None = None
        self.assemblies = 0
        self.stale = True
        self.always = False

    def __call__(self, snes: Any, x: PETSc.Vec, J: PETSc.Mat, P: PETSc.Mat) -> None:
        if self.constants is not None:
            key = tuple(float(c.value) for c in self.constants)
            if _same(key, self.key):
                return  # the same matrix (to round-off in dt)
            self.key = key
        elif self.lag is not None and not self.always:
            key = tuple(float(c.value) for c in self.lag)
            if not self.stale and _same(key, self.key):
                return  # the lagged matrix (and its factorisation) serves again
            self.key, self.stale = key, False
        self.assemblies += 1
        self.assemble(snes, x, J, P)


class StepSolver:
    """SNES bound to a :class:`~tumorpde.fem.discretisation.Discretisation`.

    Args:
        disc: The discretisation whose residual and Jacobian are solved.
        user_options: The ``[solver]`` table (PETSc options without prefix, and
            ``strategy``).
        dt: The step size that the split strategy's default preconditioner is chosen for
            (AMG for species whose transport is stiff at this step); ``None`` takes the
            configured ``time.dt``.
    """

    def __init__(self, disc: Any, user_options: dict[str, Any], dt: float | None = None) -> None:
        self.disc = disc
        comm = disc.comm
        user_options = dict(user_options)
        self.strategy = _strategy(disc, user_options.pop("strategy", "auto"))
        # held components are exactly zero after every solve
        self.held = tuple(disc.held_components)
        split = self.strategy == "split"
        base = split_options if split else monolithic_options
        self.split = splitting.for_discretisation(disc) if split else None
        self.dt = disc.spec.config.time.dt if dt is None else dt
        extra = {}
        if self.split and "pc_type" not in user_options:
            extra = self.split.preconditioner_options(self.dt)
        # a residual affine in the state: one linear solve per step (no Newton check), and
        # the Jacobian and its factorisation/preconditioner kept while its constants (the
        # BDF coefficients, ...) keep their values
        self.linear, jac_constants = disc.linearity()
        if self.linear and "snes_type" not in user_options:
            extra = {**extra, "snes_type": "ksponly"}
        #: the Jacobian is kept between steps: exactly the one a fresh solver would build, so
        #: the solver need not be rebuilt after a checkpoint to match a resumed run
        self.reuse = self.linear and not any(k.startswith("snes_lag") for k in user_options)
        self.options = {**base(disc.domain.gdim), **extra, **user_options}
        if "pc_factor_mat_solver_type" not in user_options \
                and user_options.get("pc_type", "lu") not in ("lu", "cholesky"):
            # the default factorisation package belongs to the default LU: another
            # preconditioner (ilu, ...) takes PETSc's own unless the table names one
            self.options.pop("pc_factor_mat_solver_type", None)
        #: a nonlinear problem solved with an exact factorisation: the Jacobian is lagged
        #: (kept across Newton iterations and steps, _Jacobian), unless [solver] sets
        #: how SNES lags it or which nonlinear solver to use
        self.lagged = (not self.linear and not split
                       and self.options.get("ksp_type") == "preonly"
                       and self.options.get("pc_type") in ("lu", "cholesky")
                       and not any(k.startswith("snes_lag") or k == "snes_type"
                                   for k in user_options))
        self.slot = _take_slot()
        self.prefix = f"{PREFIX}{self.slot}_"
        self._written = {**_global_options(), **{k: _fmt(v) for k, v in self.options.items()}}
        opts = PETSc.Options()
        for k, v in self._written.items():
            opts[f"{self.prefix}{k}"] = v
        # a solver dropped without destroy() still gives its options and slot back
        self._finalizer = weakref.finalize(self, _release, self.slot, self.prefix,
                                           list(self._written))
        self.b = disc.u.x.petsc_vec.duplicate()
        self.A = self.split.create_matrix() if self.split else disc.create_matrix()
        self.snes = PETSc.SNES().create(comm)
        self.snes.setOptionsPrefix(self.prefix)
        self.snes.setFunction(disc.residual, self.b)
        # (a callable of its own: the SNES must not hold the solver, which frees on collection)
        self._jac = _Jacobian(self.split.jacobian if self.split else disc.jacobian,
                              jac_constants if self.reuse else None,
                              list(disc.coeffs) if self.lagged else None)
        self.snes.setJacobian(self._jac, self.A, self.A)
        self.x = disc.u.x.petsc_vec.duplicate()
        try:
            # options are identical on every rank, so a bad one fails everywhere alike
            self.snes.setFromOptions()
            self.snes.getKSP().setFromOptions()
            self.snes.setUp()
        except PETSc.Error as exc:
            self.destroy()
            text = str(exc)
            culprits = [k for k, v in user_options.items() if _fmt(v) in text]
            if culprits:
                k = culprits[0]
                raise ConfigError(f"solver.{k}", f"PETSc rejected {_fmt(user_options[k])!r} "
                                  f"({_describe(exc)})") from None
            raise ConfigError("solver", f"PETSc rejected the solver options ({_describe(exc)})") \
                from None

    @property
    def jacobian_assemblies(self) -> int:
        """Jacobian assemblies so far (a linear problem at fixed dt: one per distinct step)."""
        return self._jac.assemblies

    def _snes_solve(self) -> tuple[int, int, int]:
        """One SNES solve from ``disc.u``: (reason, iterations, linear iterations)."""
        disc = self.disc
        disc.u.x.petsc_vec.copy(self.x)
        disc.apply_bcs(self.x)
        # a PETSc error here is an internal error, not divergence: let it propagate so
        # that the CLI ends every rank (divergence is reported by a negative reason)
        self.snes.solve(None, self.x)
        return (self.snes.getConvergedReason(), self.snes.getIterationNumber(),
                self.snes.getLinearSolveIterations())

    def solve(self) -> StepResult:
        """Solve from the initial guess in ``disc.u``; on success ``disc.u`` holds the result.

        With a lagged Jacobian: a chord iteration with the kept matrix first, of at most
        :data:`CHORD_MAX_IT` iterations; where it does not converge, Newton itself (a
        Jacobian at every iteration) from the same guess.  A chord solve that needed more
        than :data:`CHORD_REFRESH` iterations has the next step start from a new Jacobian.
        """
        disc = self.disc
        if self.lagged:
            max_it = self.snes.getTolerances()[3]
            self.snes.setTolerances(max_it=min(CHORD_MAX_IT, max_it))
            try:
                reason, its, lits = self._snes_solve()
            finally:
                self.snes.setTolerances(max_it=max_it)
            if reason <= 0:
                self._jac.always = True
                try:
                    r2, its2, lits2 = self._snes_solve()
                finally:
                    self._jac.always = False
                reason, its, lits = r2, its + its2, lits + lits2
                self._jac.stale = True
            elif its > CHORD_REFRESH:
                self._jac.stale = True
        else:
            reason, its, lits = self._snes_solve()
        ok = reason > 0
        if ok:
            self.x.copy(disc.u.x.petsc_vec)
            # held (knocked-out) species are zero exactly: drop the round-off that an iterative
            # solve (or a pivoted block inverse of its preconditioner) leaves in them
            for k in self.held:
                disc.u.x.array[k::disc.n] = 0.0
            disc.u.x.scatter_forward()
        return StepResult(ok, int(reason), int(its), int(lits))

    def destroy(self) -> None:
        """Free PETSc objects, remove this solver's options and free its prefix."""
        if not self._finalizer.alive:  # destroyed already
            return
        self._finalizer()  # options removed, slot freed
        self.snes.destroy()
        self.A.destroy()
        self.b.destroy()
        self.x.destroy()
