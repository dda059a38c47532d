"""Manufactured solutions for any tumorpde model.

:func:`manufacture` takes a config (as the dictionary of its TOML file) and an
exact solution for every species, written in the expression language of the
config, and returns the same model with a *source term* added to each
species' ``reaction`` so that the exact solution solves it::

    f_k = du_k/dt - div(D_k grad u_k) + sum_l div(S_kl grad u_l) - R_k(u)

The derivatives are taken symbolically (sympy) from the config's own
``diffusion``, ``taxis`` and ``reaction`` expressions (parameters,
``[definitions]`` and per-region ``diffusion`` tables included), and the
source is written back as an expression in ``x, y, z, t``: the manufactured
model is an ordinary config that runs with ``tumorpde run``.  The initial
values become the exact solution at ``time.start``, and boundaries named in
``dirichlet`` get the exact solution as a (time-dependent) Dirichlet value;
the other boundaries keep their conditions (no-flux by default), so the exact
solution must satisfy them.

Per-region tables are turned into ``where(condition, ...)`` on the region
conditions of ``[mesh.regions]``; regions are cell-wise, so this is exact when
the region interfaces are aligned with the mesh, and the exact solution must
then satisfy the interface conditions (continuity of ``u`` and of the normal
flux ``D du/dn - S dc/dn``).  With lumped P1 the source is sampled at the
vertices: make it continuous across interfaces (see the verification cases).

With ``error_observables`` the squared L2 error of every species is recorded in
``observables.csv`` (``sq_error_NAME``), so a manufactured config checks itself
when run from the command line.

Command line (writes a TOML file)::

    python -m tumorpde.verification manufacture model.toml --exact u="(1 + t)*cos(pi*x)"
        --exact v="exp(-t)*(1 + x*y)" -o mms.toml      (one command line)
"""

from __future__ import annotations

import copy
from typing import Any

import sympy as sp
from sympy.printing.str import StrPrinter

from tumorpde.errors import ConfigError
from tumorpde.io.tomlio import dumps
from tumorpde.model import expressions as ex

__all__ = ["manufacture", "to_sympy", "to_text", "parse_text", "dump_toml", "gdim_of"]

X, Y, Z, T = sp.symbols((*ex.COORDINATES, ex.TIME), real=True)
COORDS = (X, Y, Z)


# ------------------------------------------------------------------ engine syntax -> sympy
#: the reserved symbols (coordinates, time, constants) in sympy
RESERVED = {**dict(zip(ex.COORDINATES, COORDS, strict=True)), ex.TIME: T,
            **{name: getattr(sp, c.sympy) for name, c in ex.CONSTANTS.items()}}


def to_sympy(e: ex.Expr, env: dict[str, Any]) -> Any:
    """A parsed engine expression as a sympy expression (symbols looked up in ``env``)."""
    if isinstance(e, ex.Num):
        v = e.value
        return sp.Integer(int(v)) if float(v).is_integer() and abs(v) < 2**53 else sp.Float(v)
    if isinstance(e, ex.Sym):
        if e.name in env:
            return env[e.name]
        if e.name in RESERVED:
            return RESERVED[e.name]
        raise ConfigError("", f"unknown symbol {e.name!r}")
    if isinstance(e, ex.Neg):
        return -to_sympy(e.operand, env)
    if isinstance(e, ex.BinOp):
        a, b = to_sympy(e.left, env), to_sympy(e.right, env)
        return {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
                "/": lambda: a / b, "**": lambda: a ** b}[e.op]()
    if isinstance(e, ex.Compare):
        a, b = to_sympy(e.left, env), to_sympy(e.right, env)
        return {"<": sp.Lt, "<=": sp.Le, ">": sp.Gt, ">=": sp.Ge}[e.op](a, b)
    if isinstance(e, ex.BoolOp):
        vals = [to_sympy(v, env) for v in e.values]
        return sp.And(*vals) if e.op == "and" else sp.Or(*vals)
    if isinstance(e, ex.Not):
        return sp.Not(to_sympy(e.operand, env))
    if isinstance(e, ex.Call):
        return ex.FUNCTIONS[e.func].sympy(sp, *[to_sympy(a, env) for a in e.args])
    raise ConfigError("", f"cannot convert {e!r}")  # pragma: no cover


def parse_text(text: Any, env: dict[str, Any], key: str) -> Any:
    """Parse an expression string (or number) of the config language into sympy."""
    return to_sympy(ex.parse(text, key), env)


# ------------------------------------------------------------------ sympy -> engine syntax
class _Printer(StrPrinter):
    """Prints sympy expressions in the syntax of tumorpde expressions."""

    def _print_Float(self, expr: Any) -> str:
        return repr(float(expr))

    def _print_Exp1(self, expr: Any) -> str:
        return "e"

    def _print_Abs(self, expr: Any) -> str:
        return f"abs({self._print(expr.args[0])})"

    def _print_Max(self, expr: Any) -> str:
        return self._minmax("max", expr.args)

    def _print_Min(self, expr: Any) -> str:
        return self._minmax("min", expr.args)

    def _minmax(self, name: str, args: tuple[Any, ...]) -> str:
        # the engine takes 2 to 8 arguments: nest pairwise
        out = self._print(args[0])
        for a in args[1:]:
            out = f"{name}({out}, {self._print(a)})"
        return out

    def _print_Heaviside(self, expr: Any) -> str:
        return f"step({self._print(expr.args[0])})"

    def _print_sign(self, expr: Any) -> str:
        return f"sign({self._print(expr.args[0])})"

    def _print_Piecewise(self, expr: Any) -> str:
        pieces = list(expr.args)
        last_val, last_cond = pieces[-1]
        if last_cond is not sp.true:
            raise ConfigError("", "a Piecewise without a default branch cannot be printed")
        out = self._print(last_val)
        for val, cond in reversed(pieces[:-1]):
            out = f"where({self._print(cond)}, {self._print(val)}, {out})"
        return out

    def _print_Relational(self, expr: Any) -> str:
        op = expr.rel_op
        if op not in ("<", "<=", ">", ">="):
            raise ConfigError("", f"comparison {op!r} is not supported by tumorpde expressions")
        return f"{self.parenthesize(expr.lhs, 40)} {op} {self.parenthesize(expr.rhs, 40)}"

    def _print_And(self, expr: Any) -> str:
        return " and ".join(f"({self._print(a)})" for a in expr.args)

    def _print_Or(self, expr: Any) -> str:
        return " or ".join(f"({self._print(a)})" for a in expr.args)

    def _print_Not(self, expr: Any) -> str:
        return f"not ({self._print(expr.args[0])})"

    def _print_BooleanTrue(self, expr: Any) -> str:  # only as a where() condition
        return "0 <= 1"

    def _print_BooleanFalse(self, expr: Any) -> str:
        return "1 <= 0"


def to_text(e: Any) -> str:
    """A sympy expression in the expression language of tumorpde configs."""
    return _Printer({"full_prec": False}).doprint(sp.sympify(e))


# ------------------------------------------------------------------ TOML output
def dump_toml(data: dict[str, Any], header: str = "") -> str:
    """A config dictionary as TOML text (see :func:`tumorpde.io.tomlio.dumps`)."""
    return dumps(data, header)


# ------------------------------------------------------------------ manufacturing
def gdim_of(mesh: dict[str, Any]) -> int:
    """Geometric dimension of a ``[mesh]`` table (files: 2 unless ``size`` says otherwise)."""
    shape = mesh.get("shape", "file" if "file" in mesh else "rectangle")
    if shape in ("interval",):
        return 1
    if shape in ("box", "sphere"):
        return 3
    if shape == "file" and "size" in mesh:
        return len(mesh["size"])
    return 2


def _param_env(data: dict[str, Any]) -> dict[str, Any]:
    env: dict[str, Any] = {}
    for name, v in data.get("parameters", {}).items():
        val = v["value"] if isinstance(v, dict) else v
        if isinstance(val, str):
            try:
                val = float(val)
            except ValueError:
                raise ConfigError(f"parameters.{name}", "manufactured solutions need plain-number "
                                  "parameters (no units)") from None
        env[name] = sp.Float(val) if not float(val).is_integer() else sp.Integer(int(val))
    return env


def _coefficient(value: Any, env: dict[str, Any], regions: dict[str, Any], key: str) -> Any:
    if not isinstance(value, dict):
        return parse_text(value, env, key)
    pieces = []
    # later [mesh.regions] entries take cells from earlier ones: test them first
    for name in reversed(list(regions)):
        if name in value:
            pieces.append((parse_text(value[name], env, f"{key}.{name}"), regions[name]))
    unknown = set(value) - set(regions) - {"default"}
    if unknown:
        raise ConfigError(key, f"regions {sorted(unknown)} are not [mesh.regions] conditions; "
                               "manufactured solutions support those only")
    default = parse_text(value["default"], env, f"{key}.default") if "default" in value else sp.nan
    return sp.Piecewise(*pieces, (default, True))


def manufacture(data: dict[str, Any], exact: dict[str, str], dirichlet: list[str] | None = None,
                simplify: bool = False, error_observables: bool = False) -> dict[str, Any]:
    """The config with manufactured sources so that ``exact`` solves it.

    Args:
        data: A config as the dictionary of its TOML file (no ``[units]``: plain numbers).
        exact: species name -> exact solution, an expression in parameters, ``x, y, z, t``.
        dirichlet: Boundaries on which every species gets the exact solution as a Dirichlet value.
        simplify: Run sympy's ``simplify`` on the sources (slow; shorter expressions).
        error_observables: Add observables ``sq_error_NAME``, the integral of
            ``(NAME - exact)**2`` (the squared L2 error) at every step, to ``observables.csv``.

    Returns:
        A new dictionary: ``reaction`` = original reaction + source, ``initial`` = exact solution
        at ``time.start``, Dirichlet values on ``dirichlet`` boundaries.
    """
    if "units" in data:
        raise ConfigError("units", "manufactured solutions are built for configs without [units]")
    out = copy.deepcopy(data)
    species = out.get("species", {})
    for s in species.values():  # a manufactured solution is any smooth function, not a density
        if isinstance(s, dict):
            s.setdefault("nonnegative", False)
    if set(exact) != set(species):
        raise ConfigError("species", f"give an exact solution for every species "
                                     f"({', '.join(species)}); got {', '.join(exact) or 'none'}")
    gdim = gdim_of(out.get("mesh", {}))
    coords = COORDS[:gdim]
    env = _param_env(out)
    regions = {name: to_sympy(ex.parse_condition(cond, f"mesh.regions.{name}").args[0], env)
               for name, cond in out.get("mesh", {}).get("regions", {}).items()}
    exact_sym = {name: parse_text(exact[name], env, f"exact.{name}") for name in species}
    # species symbols stand for their exact solutions; definitions in file order
    full = dict(env)
    full.update(exact_sym)
    for name, text in out.get("definitions", {}).items():
        full[name] = parse_text(text, full, f"definitions.{name}")
    start = float(out.get("time", {}).get("start", 0.0))

    def grad(f: Any) -> list[Any]:
        return [sp.diff(f, c) for c in coords]

    def div(vec: list[Any]) -> Any:
        return sum((sp.diff(v, c) for v, c in zip(vec, coords, strict=True)), sp.Integer(0))

    for name, s in species.items():
        key = f"species.{name}"
        u = exact_sym[name]
        src = sp.diff(u, T)
        if s.get("diffuses", True) and "diffusion" in s:
            D = _coefficient(s["diffusion"], full, regions, f"{key}.diffusion")
            src -= div([D * g for g in grad(u)])
        taxis = s.get("taxis", [])
        taxis = [taxis] if isinstance(taxis, dict) else taxis
        for i, term in enumerate(taxis):
            S = parse_text(term["sensitivity"], full, f"{key}.taxis[{i}].sensitivity")
            src += div([S * g for g in grad(exact_sym[term["toward"]])])
        reaction = s.get("reaction", 0.0)
        src -= parse_text(reaction, full, f"{key}.reaction")
        if simplify:
            src = sp.simplify(src)
        text = to_text(src)
        orig = reaction if isinstance(reaction, str) else repr(float(reaction))
        s["reaction"] = text if orig in ("0.0", "0") else f"({orig}) + ({text})"
        s["initial"] = to_text(u.subs(T, start))
        if dirichlet:
            bnd = s.setdefault("boundary", {})
            for b in dirichlet:
                bnd[b] = {"value": to_text(u)}
        if error_observables:
            out.setdefault("observables", {})[f"sq_error_{name}"] = {
                "integral": f"({name} - ({exact[name]}))**2",
                "description": f"squared L2 error of {name} against the exact solution"}
    return out
