"""Safe expressions: config strings -> a small syntax tree -> units check -> UFL.

Expressions use Python syntax (``**`` for powers) over species, parameters,
``x``, ``y``, ``z``, ``t``, ``pi``, ``e`` and the functions in :data:`FUNCTIONS`.
They are parsed with :mod:`ast` into the tree below and never evaluated by
Python: attribute access, subscripts, keywords, lambdas, strings and unknown
names are all rejected with a message that names the key and the token.

The tree knows nothing of DOLFINx.  Four back ends interpret it, from one table of
functions (:data:`FUNCTIONS`) and one of constants (:data:`CONSTANTS`): :func:`lower`
turns it into UFL (or only checks its units) given a mapping of symbols,
:func:`lower_number` evaluates it on numbers with the same unit conversions,
:func:`evaluate` on numpy arrays (no units), and :mod:`tumorpde.verification.mms`
converts it to sympy.  :func:`reserved_symbols` and :func:`constant_symbols` give the
entries of a symbol table that every model has.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tumorpde.errors import ConfigError

__all__ = [
    "Expr",
    "Num",
    "Sym",
    "BinOp",
    "Neg",
    "Call",
    "Compare",
    "BoolOp",
    "Not",
    "FUNCTIONS",
    "Function",
    "CONSTANTS",
    "Constant",
    "COORDINATES",
    "TIME",
    "RESERVED",
    "constant_symbols",
    "reserved_symbols",
    "parse",
    "symbols_of",
    "lower",
    "lower_number",
    "evaluate",
    "parse_condition",
    "Dim",
]

MAX_LENGTH = 20_000
MAX_DEPTH = 200

#: the coordinates of space, in the order of the mesh's components
COORDINATES = ("x", "y", "z")
#: the time
TIME = "t"


@dataclass(frozen=True)
class Constant:
    """A named constant of the expression language.

    Attributes:
        value: Its value (UFL, plain numbers and numpy take it as a float).
        sympy: Its name in :mod:`sympy` (:mod:`tumorpde.verification.mms`).
    """

    value: float
    sympy: str


#: name -> the constants of the expression language
CONSTANTS: dict[str, Constant] = {"pi": Constant(math.pi, "pi"), "e": Constant(math.e, "E")}

#: Names with a fixed meaning inside expressions.
RESERVED = {*COORDINATES, TIME, *CONSTANTS}


def constant_symbols(dims: Mapping[str, Dim] | Dim) -> dict[str, tuple[float, Dim]]:
    """The constants' entries of a symbol table: name -> (value, units).

    Args:
        dims: The units of each constant by name (a table of symbol units), or one
            :class:`Dim` for all.
    """
    return {name: (c.value, dims if isinstance(dims, Dim) else dims[name])
            for name, c in CONSTANTS.items()}


def reserved_symbols(coordinates: Sequence[Any], t: Any,
                     dims: Mapping[str, Dim] | Dim) -> dict[str, tuple[Any, Dim]]:
    """The reserved entries of a symbol table: coordinates, time and constants.

    Args:
        coordinates: The components of the position that the mesh has (``x`` only in 1D);
            the coordinates beyond them are 0.
        t: The time.
        dims: Units by name (a table of symbol units), or one :class:`Dim` for all.
    """
    def dim(name: str) -> Dim:
        return dims if isinstance(dims, Dim) else dims[name]

    out: dict[str, tuple[Any, Dim]] = {
        c: (coordinates[i] if i < len(coordinates) else 0.0, dim(c))
        for i, c in enumerate(COORDINATES)}
    out[TIME] = (t, dim(TIME))
    out.update(constant_symbols(dims))
    return out


@dataclass(frozen=True)
class Function:
    """A function of the expression language and how each back end computes it.

    A new function is one entry of :data:`FUNCTIONS`: its arity, how the units of its
    arguments combine, and its spelling on UFL, on numpy arrays and in sympy.

    Attributes:
        min_args: Fewest arguments.
        max_args: Most arguments.
        description: One line (for the documentation).
        units: How the units of the arguments combine (:func:`lower` checks them):

            * ``"dimensionless"``: a dimensionless argument, a dimensionless result;
            * ``"same"``: any units, the result in the units of the argument;
            * ``"any"``: any units, a dimensionless result;
            * ``"sqrt"``: the square root of the units;
            * ``"common"``: the arguments are brought to common units, one after
              another, and ``lower`` is applied to each pair (a fold), the result in
              those units;
            * ``"ratio"``: two arguments in common units, a dimensionless result;
            * ``"hill"``: the first two in common units, a dimensionless third one (the
              exponent), a dimensionless result;
            * ``"where"``: a condition, then two values in common units, the result in
              those units.
        lower: ``lower(ns, *args)`` on UFL (``ns`` is :mod:`ufl`) and on plain numbers
            (``ns`` spells numpy with UFL's names, for :func:`lower_number`).
        numpy: ``numpy(np, *args)`` on numpy arrays (:func:`evaluate`).
        sympy: ``sympy(sp, *args)`` (:mod:`tumorpde.verification.mms`).
        condition: Whether the first argument is a condition (``x < 0.5``).
    """

    min_args: int
    max_args: int
    description: str
    units: str
    lower: Callable[..., Any]
    numpy: Callable[..., Any]
    sympy: Callable[..., Any]
    condition: bool = False


def _unary(description: str, ufl_name: str, numpy_name: str, sympy_name: str) -> Function:
    """A function of one dimensionless argument, named in each back end."""
    return Function(1, 1, description, "dimensionless",
                    lower=lambda ns, a: getattr(ns, ufl_name)(a),
                    numpy=lambda np, a: getattr(np, numpy_name)(a),
                    sympy=lambda sp, a: getattr(sp, sympy_name)(a))


def _erf(v: Any) -> Any:
    from scipy.special import erf

    return erf(v)


def _hill(a: Any, k: Any, n: Any) -> Any:
    """``a**n/(k**n + a**n)`` (``a`` already its positive part)."""
    return a ** n / (k ** n + a ** n)


#: name -> the functions of the expression language
FUNCTIONS: dict[str, Function] = {
    "exp": _unary("exponential", "exp", "exp", "exp"),
    "log": _unary("natural logarithm", "ln", "log", "log"),
    "sqrt": Function(1, 1, "square root", "sqrt", lambda ns, a: ns.sqrt(a),
                     lambda np, a: np.sqrt(a), lambda sp, a: sp.sqrt(a)),
    "sin": _unary("sine", "sin", "sin", "sin"),
    "cos": _unary("cosine", "cos", "cos", "cos"),
    "tan": _unary("tangent", "tan", "tan", "tan"),
    "sinh": _unary("hyperbolic sine", "sinh", "sinh", "sinh"),
    "cosh": _unary("hyperbolic cosine", "cosh", "cosh", "cosh"),
    "tanh": _unary("hyperbolic tangent", "tanh", "tanh", "tanh"),
    "atan": _unary("arc tangent", "atan", "arctan", "atan"),
    "erf": Function(1, 1, "error function", "dimensionless", lambda ns, a: ns.erf(a),
                    lambda np, a: _erf(a), lambda sp, a: sp.erf(a)),
    "abs": Function(1, 1, "absolute value", "same", lambda ns, a: abs(a),
                    lambda np, a: np.abs(a), lambda sp, a: sp.Abs(a)),
    "sign": Function(1, 1, "sign (-1, 0, 1)", "any", lambda ns, a: ns.sign(a),
                     lambda np, a: np.sign(a), lambda sp, a: sp.sign(a)),
    "min": Function(2, 8, "smallest argument", "common", lambda ns, a, b: ns.min_value(a, b),
                    lambda np, *a: np.minimum.reduce(np.broadcast_arrays(*a)),
                    lambda sp, *a: sp.Min(*a)),
    "max": Function(2, 8, "largest argument", "common", lambda ns, a, b: ns.max_value(a, b),
                    lambda np, *a: np.maximum.reduce(np.broadcast_arrays(*a)),
                    lambda sp, *a: sp.Max(*a)),
    "pos": Function(1, 1, "positive part max(a, 0)", "same", lambda ns, a: ns.max_value(a, 0.0),
                    lambda np, a: np.maximum(a, 0.0), lambda sp, a: sp.Max(a, 0)),
    "step": Function(1, 1, "Heaviside step: 1 where a > 0, else 0", "any",
                     lambda ns, a: ns.conditional(ns.gt(a, 0.0), 1.0, 0.0),
                     lambda np, a: np.where(np.asarray(a) > 0, 1.0, 0.0),
                     lambda sp, a: sp.Piecewise((1, a > 0), (0, True))),
    "smoothstep": Function(2, 2, "smooth switch 0.5*(1 + tanh(a/width)), smoothstep(a, width)",
                           "ratio", lambda ns, a, w: 0.5 * (1.0 + ns.tanh(a / w)),
                           lambda np, a, w: 0.5 * (1.0 + np.tanh(np.divide(a, w))),
                           lambda sp, a, w: sp.Rational(1, 2) * (1 + sp.tanh(a / w))),
    "hill": Function(3, 3, "Hill function a**n/(K**n + a**n), hill(a, K, n), 0 for a <= 0", "hill",
                     lambda ns, a, k, n: _hill(ns.max_value(a, 0.0), k, n),
                     lambda np, a, k, n: _hill(np.maximum(a, 0.0), k, n),
                     lambda sp, a, k, n: _hill(sp.Max(a, 0), k, n)),
    "where": Function(3, 3, "where(condition, a, b): a where the condition holds, else b", "where",
                      lambda ns, c, a, b: ns.conditional(c, a, b),
                      lambda np, c, a, b: np.where(c, a, b),
                      lambda sp, c, a, b: sp.Piecewise((a, c), (b, True)), condition=True),
}


class Expr:
    """Base class of expression nodes."""


@dataclass(frozen=True)
class Num(Expr):
    """A number literal."""

    value: float


@dataclass(frozen=True)
class Sym(Expr):
    """A named symbol: species, parameter, coordinate, time or constant."""

    name: str


@dataclass(frozen=True)
class BinOp(Expr):
    """Arithmetic: one of ``+ - * / **``."""

    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Neg(Expr):
    """Unary minus."""

    operand: Expr


@dataclass(frozen=True)
class Call(Expr):
    """A call of one of :data:`FUNCTIONS`."""

    func: str
    args: tuple[Expr, ...]


@dataclass(frozen=True)
class Compare(Expr):
    """A comparison ``< <= > >=`` (only inside conditions)."""

    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True)
class BoolOp(Expr):
    """``and`` / ``or`` of conditions."""

    op: str
    values: tuple[Expr, ...]


@dataclass(frozen=True)
class Not(Expr):
    """``not`` of a condition."""

    operand: Expr


_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
_CMPOPS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}


def _token(node: ast.AST, text: str) -> str:
    seg = ast.get_source_segment(text, node)
    return seg if seg else type(node).__name__


def parse(text: str | float | int, key: str, allowed: set[str] | None = None) -> Expr:
    """Parse an expression safely.

    Args:
        text: The expression (a number is accepted as such).
        key: Dotted config key, used in error messages.
        allowed: Symbols that may appear (besides :data:`RESERVED`); ``None`` skips the check.

    Returns:
        The syntax tree.

    Raises:
        ConfigError: Syntax errors, disallowed constructs, unknown symbols or functions.
    """
    if isinstance(text, bool):
        raise ConfigError(key, f"expected a number or an expression string, got {text!r}")
    if isinstance(text, int | float):
        if not math.isfinite(float(text)):
            raise ConfigError(key, f"value {text!r} is not finite")
        return Num(float(text))
    if not isinstance(text, str):
        raise ConfigError(key, f"expected a number or an expression string, got {type(text).__name__}")
    if not text.strip():
        raise ConfigError(key, "empty expression")
    if len(text) > MAX_LENGTH:
        raise ConfigError(key, f"expression longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        col = f" at column {exc.offset}" if exc.offset else ""
        raise ConfigError(key, f"syntax error{col} in {text!r}") from None
    except (RecursionError, MemoryError, ValueError):
        raise ConfigError(key, "expression is too deeply nested") from None
    src = text.strip()
    try:
        return _convert(tree.body, src, key, allowed, 0, condition=False)
    except RecursionError:
        raise ConfigError(key, "expression is too deeply nested") from None


def _convert(node: ast.AST, src: str, key: str, allowed: set[str] | None, depth: int,
             condition: bool) -> Expr:
    if depth > MAX_DEPTH:
        raise ConfigError(key, "expression is too deeply nested")
    d = depth + 1

    def conv(n: ast.AST, cond: bool = False) -> Expr:
        return _convert(n, src, key, allowed, d, cond)

    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise ConfigError(key, f"{_token(node, src)!r} is not allowed in an expression "
                                   "(only numbers, names, arithmetic and functions)")
        try:
            value = float(node.value)
        except OverflowError:  # an integer literal beyond the float range
            tok = _token(node, src)
            raise ConfigError(key, f"number {tok[:20] + '...' if len(tok) > 24 else tok} is "
                                   "too large") from None
        if not math.isfinite(value):
            raise ConfigError(key, f"number {_token(node, src)!r} is not finite")
        return Num(value)
    if isinstance(node, ast.Name):
        name = node.id
        if name in FUNCTIONS:
            raise ConfigError(key, f"function {name!r} used without arguments in {src!r}")
        if allowed is not None and name not in allowed and name not in RESERVED:
            raise ConfigError(key, f"unknown symbol {name!r} in {src!r}")
        return Sym(name)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return BinOp(_BINOPS[type(node.op)], conv(node.left), conv(node.right))
    if isinstance(node, ast.UnaryOp):
        if isinstance(node.op, ast.USub):
            return Neg(conv(node.operand))
        if isinstance(node.op, ast.UAdd):
            return conv(node.operand)
        if isinstance(node.op, ast.Not) and condition:
            return Not(conv(node.operand, True))
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            raise ConfigError(key, f"{_token(node.func, src)!r} is not a known function in {src!r}")
        name = node.func.id
        if name not in FUNCTIONS:
            raise ConfigError(key, f"unknown function {name!r} in {src!r} "
                                   f"(known: {', '.join(sorted(FUNCTIONS))})")
        if node.keywords:
            raise ConfigError(key, f"keyword arguments are not allowed in {name}() in {src!r}")
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise ConfigError(key, f"'*' arguments are not allowed in {src!r}")
        fn = FUNCTIONS[name]
        lo, hi = fn.min_args, fn.max_args
        if not lo <= len(node.args) <= hi:
            want = str(lo) if lo == hi else f"{lo} to {hi}"
            raise ConfigError(key, f"{name}() takes {want} arguments, got {len(node.args)} "
                                   f"in {src!r}")
        args = tuple(conv(a, cond=(fn.condition and i == 0)) for i, a in enumerate(node.args))
        if fn.condition and not _is_condition(args[0]):
            raise ConfigError(key, f"the first argument of {name}() must be a condition such as "
                                   f"'x < 0.5', got {_token(node.args[0], src)!r}")
        return Call(name, args)
    if isinstance(node, ast.Compare) and condition:
        if not all(type(op) in _CMPOPS for op in node.ops):
            raise ConfigError(key, f"only < <= > >= comparisons are allowed in {src!r}")
        operands = [conv(node.left)] + [conv(c) for c in node.comparators]
        parts = [Compare(_CMPOPS[type(op)], operands[i], operands[i + 1])
                 for i, op in enumerate(node.ops)]
        return parts[0] if len(parts) == 1 else BoolOp("and", tuple(parts))
    if isinstance(node, ast.BoolOp) and condition:
        op = "and" if isinstance(node.op, ast.And) else "or"
        return BoolOp(op, tuple(conv(v, True) for v in node.values))
    if isinstance(node, ast.Compare | ast.BoolOp):
        raise ConfigError(key, f"comparison {_token(node, src)!r} is only allowed as the "
                               f"condition of where(...) in {src!r}")
    if isinstance(node, ast.Attribute):
        raise ConfigError(key, f"attribute access {_token(node, src)!r} is not allowed in {src!r}")
    raise ConfigError(key, f"{_token(node, src)!r} is not allowed in an expression {src!r}")


def _is_condition(e: Expr) -> bool:
    """Whether ``e`` is a comparison, or ``and``/``or``/``not`` of comparisons."""
    if isinstance(e, Compare):
        return True
    if isinstance(e, BoolOp):
        return all(_is_condition(v) for v in e.values)
    if isinstance(e, Not):
        return _is_condition(e.operand)
    return False


def symbols_of(expr: Expr) -> set[str]:
    """All symbol names an expression refers to."""
    out: set[str] = set()
    stack = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, Sym):
            out.add(node.name)
        elif isinstance(node, BinOp | Compare):
            stack += [node.left, node.right]
        elif isinstance(node, Neg | Not):
            stack.append(node.operand)
        elif isinstance(node, Call):
            stack += list(node.args)
        elif isinstance(node, BoolOp):
            stack += list(node.values)
    return out


# --------------------------------------------------------------------------- units
@dataclass(frozen=True)
class Dim:
    """Units attached to a value during lowering.

    ``unit`` is a pint unit or ``None`` (unknown).  ``exact`` is False for plain
    numbers, which are taken to be in whatever units their context needs
    (so ``(x - 0.5)**2/0.02`` works with ``x`` in mm).
    """

    unit: Any
    exact: bool

    @staticmethod
    def flexible(unit: Any = None) -> Dim:
        """A plain number (tentatively ``unit``)."""
        return Dim(unit, False)


class _Backend:
    """Arithmetic on UFL objects (or on ``None`` when only units are checked)."""

    def __init__(self, build: bool, namespace: Any = None) -> None:
        self.build = build
        if namespace is not None:
            self.ufl = namespace
        elif build:
            import ufl

            self.ufl = ufl

    def scale(self, v: Any, f: float) -> Any:
        if not self.build or f == 1.0:
            return v
        return v * f


class _Numbers:
    """The part of UFL's namespace that lowering uses, on plain numbers (numpy)."""

    def __init__(self) -> None:
        import numpy as np

        self.lt, self.le, self.gt, self.ge = np.less, np.less_equal, np.greater, np.greater_equal
        self.And, self.Or, self.Not = np.logical_and, np.logical_or, np.logical_not
        self.conditional = lambda c, a, b: float(np.where(c, a, b))  # noqa: E731
        self.min_value, self.max_value = np.minimum, np.maximum
        self.sign, self.sqrt, self.exp, self.ln = np.sign, np.sqrt, np.exp, np.log
        self.sin, self.cos, self.tan = np.sin, np.cos, np.tan
        self.sinh, self.cosh, self.tanh, self.atan = np.sinh, np.cosh, np.tanh, np.arctan
        self.erf = _erf

def _factor(src: Any, dst: Any) -> float:
    return float((1.0 * src).to(dst).magnitude)


def _compatible(a: Any, b: Any) -> bool:
    return a is not None and b is not None and a.dimensionality == b.dimensionality


def lower(expr: Expr, symbols: Mapping[str, tuple[Any, Dim]], key: str,
          ureg: Any = None, build: bool = True) -> tuple[Any, Dim]:
    """Lower an expression to UFL and/or check its units.

    Args:
        expr: Parsed expression.
        symbols: name -> (UFL object or ``None``, :class:`Dim`).
        key: Config key for messages.
        ureg: pint registry; ``None`` disables unit checks.
        build: False checks units only (symbol values may then be ``None``).

    Returns:
        (UFL expression or None, its units).
    """
    be = _Backend(build)
    return _lower(expr, symbols, key, ureg, be)


def lower_number(expr: Expr, symbols: Mapping[str, tuple[float, Dim]], key: str,
                 ureg: Any = None) -> tuple[float, Dim]:
    """Evaluate an expression on numbers, with the same unit conversions as :func:`lower`.

    Used for global (scalar) quantities, which are numbers rather than fields.

    Args:
        expr: Parsed expression.
        symbols: name -> (number, :class:`Dim`).
        key: Config key for messages.
        ureg: pint registry; ``None`` disables unit checks and conversions.
    """
    import numpy as np

    with np.errstate(all="ignore"):
        v, d = _lower(expr, symbols, key, ureg, _Backend(True, _Numbers()))
    return float(v), d


def _lower(e: Expr, syms: Mapping[str, tuple[Any, Dim]], key: str, ureg: Any,
           be: _Backend) -> tuple[Any, Dim]:
    one = ureg.dimensionless if ureg is not None else None
    rec: Callable[[Expr], tuple[Any, Dim]] = lambda n: _lower(n, syms, key, ureg, be)  # noqa: E731

    if isinstance(e, Num):
        return (e.value if be.build else None), Dim.flexible(one)
    if isinstance(e, Sym):
        if e.name not in syms:
            raise ConfigError(key, f"unknown symbol {e.name!r}")
        return syms[e.name]
    if isinstance(e, Neg):
        v, d = rec(e.operand)
        return (-v if be.build else None), d
    if isinstance(e, BinOp):
        (a, da), (b, db) = rec(e.left), rec(e.right)
        if e.op in "+-":
            a, b, d = _unify(a, da, b, db, key, ureg, be, f"'{e.op}'")
            if not be.build:
                return None, d
            return (a + b if e.op == "+" else a - b), d
        if e.op in ("*", "/"):
            if ureg is None or da.unit is None or db.unit is None:
                unit = None if ureg is not None else None
            else:
                unit = da.unit * db.unit if e.op == "*" else da.unit / db.unit
            d = Dim(unit, da.exact and db.exact)
            if not be.build:
                return None, d
            return (a * b if e.op == "*" else a / b), d
        # power
        if ureg is not None and db.exact and db.unit is not None and \
                db.unit.dimensionality != one.dimensionality:
            raise ConfigError(key, f"an exponent must be dimensionless, got {db.unit:~}")
        unit = None
        if ureg is not None and da.unit is not None:
            if isinstance(e.right, Num):
                unit = da.unit ** e.right.value
            elif da.unit.dimensionality == one.dimensionality:
                unit = one
            elif da.exact:
                raise ConfigError(key, f"a quantity with units {da.unit:~} may only be raised "
                                       "to a plain number")
        d = Dim(unit, da.exact and (unit is not None))
        return ((a ** b) if be.build else None), d
    if isinstance(e, Call):
        return _call(e, syms, key, ureg, be, rec)
    if isinstance(e, Compare):
        (a, da), (b, db) = rec(e.left), rec(e.right)
        a, b, _ = _unify(a, da, b, db, key, ureg, be, f"'{e.op}'")
        if not be.build:
            return None, Dim(one, True)
        u = be.ufl
        fn = {"<": u.lt, "<=": u.le, ">": u.gt, ">=": u.ge}[e.op]
        return fn(a, b), Dim(one, True)
    if isinstance(e, BoolOp):
        vals = [rec(v)[0] for v in e.values]
        if not be.build:
            return None, Dim(one, True)
        out = vals[0]
        for v in vals[1:]:
            out = be.ufl.And(out, v) if e.op == "and" else be.ufl.Or(out, v)
        return out, Dim(one, True)
    if isinstance(e, Not):
        v, _ = rec(e.operand)
        return (be.ufl.Not(v) if be.build else None), Dim(one, True)
    raise ConfigError(key, f"cannot evaluate {e!r}")  # pragma: no cover


def _unify(a: Any, da: Dim, b: Any, db: Dim, key: str, ureg: Any, be: _Backend,
           what: str) -> tuple[Any, Any, Dim]:
    """Bring two operands of a sum/comparison to common units: (a', b', result units)."""
    if ureg is None:
        return a, b, Dim(None, False)
    if da.exact and db.exact:
        if not _compatible(da.unit, db.unit):
            raise ConfigError(key, f"cannot combine {da.unit:~} and {db.unit:~} with {what}")
        return a, be.scale(b, _factor(db.unit, da.unit)), da
    if da.exact or db.exact:
        # a plain-number operand is converted when its tentative units are compatible
        # (2*D with D in mm^2/s), otherwise taken to be in the exact operand's units
        if da.exact:
            if _compatible(db.unit, da.unit):
                b = be.scale(b, _factor(db.unit, da.unit))
            return a, b, da
        if _compatible(da.unit, db.unit):
            a = be.scale(a, _factor(da.unit, db.unit))
        return a, b, db
    if _compatible(da.unit, db.unit):
        return a, be.scale(b, _factor(db.unit, da.unit)), da
    return a, b, Dim(None, False)


def _dimensionless(d: Dim, ureg: Any) -> bool:
    return ureg is None or not d.exact or d.unit is None or \
        d.unit.dimensionality == ureg.dimensionless.dimensionality


def _call(e: Call, syms: Mapping[str, tuple[Any, Dim]], key: str, ureg: Any, be: _Backend,
          rec: Callable[[Expr], tuple[Any, Dim]]) -> tuple[Any, Dim]:
    one = ureg.dimensionless if ureg is not None else None
    f = e.func
    fn = FUNCTIONS[f]
    what = f"{f}()"
    args = [rec(a) for a in e.args]
    u = be.ufl if be.build else None
    if fn.units == "where":
        (cond, _), (a, da), (b, db) = args
        a, b, d = _unify(a, da, b, db, key, ureg, be, what)
        return (fn.lower(u, cond, a, b) if be.build else None), d
    if fn.units == "common":
        v, d = args[0]
        for w, dw in args[1:]:
            v, w, d = _unify(v, d, w, dw, key, ureg, be, what)
            if be.build:
                v = fn.lower(u, v, w)
        return v, d
    if fn.units == "same":
        v, d = args[0]
        return (fn.lower(u, v) if be.build else None), d
    if fn.units == "any":
        v, _ = args[0]
        return (fn.lower(u, v) if be.build else None), Dim(one, True)
    if fn.units == "sqrt":
        v, d = args[0]
        unit = d.unit ** 0.5 if (ureg is not None and d.unit is not None) else None
        return (fn.lower(u, v) if be.build else None), Dim(unit, d.exact)
    if fn.units == "ratio":
        (v, dv), (w, dw) = args
        v, w, _ = _unify(v, dv, w, dw, key, ureg, be, what)
        return (fn.lower(u, v, w) if be.build else None), Dim(one, True)
    if fn.units == "hill":
        (v, dv), (k, dk), (n, dn) = args
        v, k, _ = _unify(v, dv, k, dk, key, ureg, be, what)
        if not _dimensionless(dn, ureg):
            raise ConfigError(key, f"the Hill exponent must be dimensionless, got {dn.unit:~}")
        return (fn.lower(u, v, k, n) if be.build else None), Dim(one, True)
    # "dimensionless": transcendental functions
    v, d = args[0]
    if not _dimensionless(d, ureg):
        raise ConfigError(key, f"{f}() needs a dimensionless argument, got units {d.unit:~}")
    return (fn.lower(u, v) if be.build else None), Dim(one, True)


def evaluate(expr: Expr, env: Mapping[str, Any], key: str) -> Any:
    """Evaluate an expression with numpy (used for region/boundary conditions on points).

    Args:
        expr: Parsed expression.
        env: name -> number or numpy array (``pi`` and ``e`` are provided).
        key: Config key for messages.
    """
    import numpy as np

    full = {**{name: c.value for name, c in CONSTANTS.items()}, **env}

    def ev(n: Expr) -> Any:
        if isinstance(n, Num):
            return n.value
        if isinstance(n, Sym):
            if n.name not in full:
                raise ConfigError(key, f"symbol {n.name!r} cannot be used here")
            return full[n.name]
        if isinstance(n, Neg):
            return -ev(n.operand)
        if isinstance(n, Not):
            return np.logical_not(ev(n.operand))
        if isinstance(n, BinOp):
            a, b = ev(n.left), ev(n.right)
            with np.errstate(all="ignore"):
                return {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide,
                        "**": np.power}[n.op](a, b)
        if isinstance(n, Compare):
            a, b = ev(n.left), ev(n.right)
            return {"<": np.less, "<=": np.less_equal, ">": np.greater,
                    ">=": np.greater_equal}[n.op](a, b)
        if isinstance(n, BoolOp):
            vals = [ev(v) for v in n.values]
            out = vals[0]
            for v in vals[1:]:
                out = np.logical_and(out, v) if n.op == "and" else np.logical_or(out, v)
            return out
        if isinstance(n, Call):
            args = [ev(a) for a in n.args]
            with np.errstate(all="ignore"):
                return FUNCTIONS[n.func].numpy(np, *args)
        raise ConfigError(key, f"cannot evaluate {n!r}")  # pragma: no cover

    return ev(expr)


def parse_condition(text: Any, key: str, allowed: set[str] | None = None) -> Expr:
    """Parse a condition such as ``"x < 0.5 and y > 0.2"`` (comparisons allowed at top level)."""
    if not isinstance(text, str):
        raise ConfigError(key, f"expected a condition string such as 'x < 0.5', got {text!r}")
    return parse(f"where({text}, 1, 0)", key, allowed)
