"""Safe expressions: config strings -> a small syntax tree -> units check -> UFL.

Expressions use Python syntax (``**`` for powers) over species, parameters,
``x``, ``y``, ``z``, ``t``, ``pi``, ``e`` and the functions in :data:`FUNCTIONS`.
They are parsed with :mod:`ast` into the tree below and never evaluated by
Python: attribute access, subscripts, keywords, lambdas, strings and unknown
names are all rejected with a message that names the key and the token.

The tree knows nothing of DOLFINx; :func:`lower` turns it into UFL (or only
checks its units) given a mapping of symbols.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping
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
    "RESERVED",
    "parse",
    "symbols_of",
    "lower",
    "lower_number",
    "Dim",
]

MAX_LENGTH = 20_000
MAX_DEPTH = 200

#: name -> (minimum arguments, maximum arguments, one-line description)
FUNCTIONS: dict[str, tuple[int, int, str]] = {
    "exp": (1, 1, "exponential"),
    "log": (1, 1, "natural logarithm"),
    "sqrt": (1, 1, "square root"),
    "sin": (1, 1, "sine"),
    "cos": (1, 1, "cosine"),
    "tan": (1, 1, "tangent"),
    "sinh": (1, 1, "hyperbolic sine"),
    "cosh": (1, 1, "hyperbolic cosine"),
    "tanh": (1, 1, "hyperbolic tangent"),
    "atan": (1, 1, "arc tangent"),
    "erf": (1, 1, "error function"),
    "abs": (1, 1, "absolute value"),
    "sign": (1, 1, "sign (-1, 0, 1)"),
    "min": (2, 8, "smallest argument"),
    "max": (2, 8, "largest argument"),
    "pos": (1, 1, "positive part max(a, 0)"),
    "step": (1, 1, "Heaviside step: 1 where a > 0, else 0"),
    "smoothstep": (2, 2, "smooth switch 0.5*(1 + tanh(a/width)), smoothstep(a, width)"),
    "hill": (3, 3, "Hill function a**n/(K**n + a**n), hill(a, K, n), 0 for a <= 0"),
    "where": (3, 3, "where(condition, a, b): a where the condition holds, else b"),
}

#: Names with a fixed meaning inside expressions.
RESERVED = {"x", "y", "z", "t", "pi", "e"}


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
        lo, hi, _ = FUNCTIONS[name]
        if not lo <= len(node.args) <= hi:
            want = str(lo) if lo == hi else f"{lo} to {hi}"
            raise ConfigError(key, f"{name}() takes {want} arguments, got {len(node.args)} "
                                   f"in {src!r}")
        args = tuple(conv(a, cond=(name == "where" and i == 0)) for i, a in enumerate(node.args))
        if name == "where" and not _is_condition(args[0]):
            raise ConfigError(key, f"the first argument of where() must be a condition such as "
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

    @staticmethod
    def erf(v: Any) -> Any:
        from scipy.special import erf

        return erf(v)


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
    if f == "where":
        cond, _ = rec(e.args[0])
        (a, da), (b, db) = rec(e.args[1]), rec(e.args[2])
        a, b, d = _unify(a, da, b, db, key, ureg, be, "where()")
        return (be.ufl.conditional(cond, a, b) if be.build else None), d
    args = [rec(a) for a in e.args]
    u = be.ufl if be.build else None
    if f in ("min", "max"):
        v, d = args[0]
        for w, dw in args[1:]:
            v, w, d = _unify(v, d, w, dw, key, ureg, be, f"{f}()")
            if be.build:
                v = u.min_value(v, w) if f == "min" else u.max_value(v, w)
        return v, d
    if f in ("abs", "pos"):
        v, d = args[0]
        if not be.build:
            return None, d
        return (abs(v) if f == "abs" else u.max_value(v, 0.0)), d
    if f in ("sign", "step"):
        v, _ = args[0]
        if not be.build:
            return None, Dim(one, True)
        return (u.sign(v) if f == "sign" else u.conditional(u.gt(v, 0.0), 1.0, 0.0)), Dim(one, True)
    if f == "sqrt":
        v, d = args[0]
        unit = d.unit ** 0.5 if (ureg is not None and d.unit is not None) else None
        return (u.sqrt(v) if be.build else None), Dim(unit, d.exact)
    if f == "smoothstep":
        (v, dv), (w, dw) = args
        v, w, _ = _unify(v, dv, w, dw, key, ureg, be, "smoothstep()")
        return (0.5 * (1.0 + u.tanh(v / w)) if be.build else None), Dim(one, True)
    if f == "hill":
        (v, dv), (k, dk), (n, dn) = args
        v, k, _ = _unify(v, dv, k, dk, key, ureg, be, "hill()")
        if not _dimensionless(dn, ureg):
            raise ConfigError(key, f"the Hill exponent must be dimensionless, got {dn.unit:~}")
        if not be.build:
            return None, Dim(one, True)
        vp = u.max_value(v, 0.0)
        return vp ** n / (k ** n + vp ** n), Dim(one, True)
    # transcendental functions need dimensionless arguments
    v, d = args[0]
    if not _dimensionless(d, ureg):
        raise ConfigError(key, f"{f}() needs a dimensionless argument, got units {d.unit:~}")
    if not be.build:
        return None, Dim(one, True)
    fn = {"exp": u.exp, "log": u.ln, "sin": u.sin, "cos": u.cos, "tan": u.tan, "sinh": u.sinh,
          "cosh": u.cosh, "tanh": u.tanh, "atan": u.atan, "erf": u.erf}[f]
    return fn(v), Dim(one, True)


def evaluate(expr: Expr, env: Mapping[str, Any], key: str) -> Any:
    """Evaluate an expression with numpy (used for region/boundary conditions on points).

    Args:
        expr: Parsed expression.
        env: name -> number or numpy array (``pi`` and ``e`` are provided).
        key: Config key for messages.
    """
    import numpy as np

    full = {"pi": math.pi, "e": math.e, **env}

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
            f = n.func
            with np.errstate(all="ignore"):
                if f == "where":
                    return np.where(args[0], args[1], args[2])
                if f == "min":
                    return np.minimum.reduce(np.broadcast_arrays(*args))
                if f == "max":
                    return np.maximum.reduce(np.broadcast_arrays(*args))
                if f == "pos":
                    return np.maximum(args[0], 0.0)
                if f == "step":
                    return np.where(np.asarray(args[0]) > 0, 1.0, 0.0)
                if f == "smoothstep":
                    return 0.5 * (1.0 + np.tanh(np.divide(args[0], args[1])))
                if f == "hill":
                    a = np.maximum(args[0], 0.0)
                    return a ** args[2] / (args[1] ** args[2] + a ** args[2])
                if f == "erf":
                    from scipy.special import erf

                    return erf(args[0])
                fn = {"exp": np.exp, "log": np.log, "sqrt": np.sqrt, "sin": np.sin,
                      "cos": np.cos, "tan": np.tan, "sinh": np.sinh, "cosh": np.cosh,
                      "tanh": np.tanh, "atan": np.arctan, "abs": np.abs, "sign": np.sign}[f]
                return fn(args[0])
        raise ConfigError(key, f"cannot evaluate {n!r}")  # pragma: no cover

    return ev(expr)


def parse_condition(text: Any, key: str, allowed: set[str] | None = None) -> Expr:
    """Parse a condition such as ``"x < 0.5 and y > 0.2"`` (comparisons allowed at top level)."""
    if not isinstance(text, str):
        raise ConfigError(key, f"expected a condition string such as 'x < 0.5', got {text!r}")
    return parse(f"where({text}, 1, 0)", key, allowed)
