"""Layering of the package: no import cycles, a model layer without DOLFINx, no private imports.

The import graph is read from the source (every ``import`` and ``from ... import``,
inside functions too), so a cycle hidden behind a function-level import fails here.
Imports under ``if TYPE_CHECKING:`` are left out (they do not run).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "tumorpde"

#: the layers, bottom first: a module may import its own layer and those below it only.
#: Each entry is a module or a folder of the package (a folder covers its modules).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("tumorpde.errors", "tumorpde.version"),
    ("tumorpde.model",),                        # plain objects, validation, units, expressions
    ("tumorpde.compat", "tumorpde.signals", "tumorpde.io"),  # DOLFINx shim; files
    ("tumorpde.fem",),                          # mesh, labelled UFL terms, discretisation, taxis
    ("tumorpde.solvers",),                      # options, SNES wrapper, monolithic / split Jacobian
    ("tumorpde.time",),                         # BDF, step control, couplings
    ("tumorpde", "tumorpde.problem", "tumorpde.trackers", "tumorpde.simulation"),
    ("tumorpde.calibration",),                  # data, observation operators, adjoint, fits
    ("tumorpde.apps", "tumorpde.verification", "tumorpde.__main__"),
)
#: modules that describe and check a model: importing them must not load the FE stack
MODEL_LAYER = ("tumorpde.model", "tumorpde.model.objects", "tumorpde.model.config",
               "tumorpde.model.expressions", "tumorpde.model.units", "tumorpde.model.compartments",
               "tumorpde.model.pharmacology", "tumorpde.model.validation", "tumorpde.model.spec",
               "tumorpde.errors")
HEAVY = ("dolfinx", "ufl", "petsc4py", "basix", "ffcx")


def module_names(package: Path) -> dict[str, Path]:
    """Dotted name -> file of every module of the package in the folder ``package``."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or \
        (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _base(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module that ``from <node.module> import ...`` names."""
    if not node.level:
        return node.module or ""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def imports(package: Path) -> dict[str, list[tuple[str, ast.AST]]]:
    """Module -> (imported module of the package, import node) for every import in it.

    ``from P import x`` imports the module ``P.x`` when there is one, else ``P``.
    """
    mods = module_names(package)
    root = package.name
    out: dict[str, list[tuple[str, ast.AST]]] = {m: [] for m in mods}
    for mod, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in _runtime_nodes(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _base(mod, path, node)
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    targets.append(sub if sub in mods else base)
            for t in targets:
                if t == root or t.startswith(root + "."):
                    while t not in mods:  # import P.x.y of a name that is not a module
                        t = t.rpartition(".")[0]
                    if t != mod:
                        out[mod].append((t, node))
    return out


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the package's modules that it imports (anywhere in its source)."""
    return {m: {t for t, _ in edges} for m, edges in imports(package).items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        # iterative Tarjan: (node, iterator over its successors)
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        work = [(start, iter(sorted(graph[start])))]
        while work:
            node, succ = work[-1]
            for nxt in succ:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return sorted(out)


def _cycle_path(graph: dict[str, set[str]], comp: list[str]) -> list[str]:
    """One cycle through the first module of a strongly connected component (for messages)."""
    inside = set(comp)
    start = comp[0]
    prev = {start: None}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node] & inside):
            if nxt == start:
                path = [node]
                while prev[path[-1]] is not None:
                    path.append(prev[path[-1]])
                return [*reversed(path), start]
            if nxt not in prev:
                prev[nxt] = node
                queue.append(nxt)
    return comp  # pragma: no cover - a component always has a cycle


def private_imports(package: Path) -> list[str]:
    """Uses of a private name (``_x``, not dunder) of one module of the package in another.

    ``from M import _x`` and ``alias._x`` where ``alias`` is an imported module of the package.
    """
    mods = module_names(package)
    root = package.name
    found = []
    for mod, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        aliases: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = _base(mod, path, node)
                if not (base == root or base.startswith(root + ".")):
                    continue
                for a in node.names:
                    if f"{base}.{a.name}" in mods:
                        aliases[a.asname or a.name] = f"{base}.{a.name}"
                    elif a.name.startswith("_") and not a.name.startswith("__"):
                        found.append(f"{mod}:{node.lineno}: from {base} import {a.name}")
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith(root + ".") and a.asname:
                        aliases[a.asname] = a.name
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                    node.value.id in aliases and node.attr.startswith("_") and \
                    not node.attr.startswith("__"):
                found.append(f"{mod}:{node.lineno}: {node.value.id}.{node.attr} "
                             f"({aliases[node.value.id]})")
    return found


# ------------------------------------------------------------------------------ tests
def test_the_walker_sees_function_level_and_relative_imports(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg import b\n")
    (pkg / "b.py").write_text("from . import c\n")
    (pkg / "c.py").write_text("import pkg.sub.d as d\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "d.py").write_text("from ..a import f\nfrom typing import TYPE_CHECKING\n"
                                      "if TYPE_CHECKING:\n    from pkg import e\n")
    (pkg / "e.py").write_text("from pkg.sub.d import _hidden\nfrom pkg import c\nc._x\n")
    graph = import_graph(pkg)
    assert graph["pkg.a"] == {"pkg.b"}
    assert graph["pkg.b"] == {"pkg.c"}
    assert graph["pkg.c"] == {"pkg.sub.d"}
    assert graph["pkg.sub.d"] == {"pkg.a"}  # TYPE_CHECKING imports do not run
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.sub.d"]]
    assert _cycle_path(graph, ["pkg.a", "pkg.b", "pkg.c", "pkg.sub.d"]) == \
        ["pkg.a", "pkg.b", "pkg.c", "pkg.sub.d", "pkg.a"]
    assert private_imports(pkg) == ["pkg.e:1: from pkg.sub.d import _hidden",
                                    "pkg.e:3: c._x (pkg.c)"]


def test_no_import_cycles():
    graph = import_graph(PACKAGE)
    assert "tumorpde.model.config" in graph and "tumorpde.verification.mms" in graph
    found = [" -> ".join(_cycle_path(graph, comp)) for comp in cycles(graph)]
    assert not found, "import cycles (imports inside functions included):\n" + "\n".join(found)


def test_no_private_names_across_modules():
    found = private_imports(PACKAGE)
    assert not found, "private names used by another module:\n" + "\n".join(found)


def layer_of(module: str) -> int:
    """Index in LAYERS of the module (the longest entry that is the module or a folder of it)."""
    best, rank = "", -1
    for i, entries in enumerate(LAYERS):
        for e in entries:
            if (module == e or module.startswith(e + ".")) and len(e) > len(best):
                best, rank = e, i
    return rank


def test_every_module_has_a_layer_and_sits_in_a_folder():
    mods = module_names(PACKAGE)
    assert not [m for m in mods if layer_of(m) < 0]
    loose = sorted(m for m in mods if m.count(".") == 1 and
                   m not in {e for entries in LAYERS for e in entries})
    assert not loose, f"modules outside the layer folders: {loose}"


def test_the_layers_import_downward_only():
    """model -> io -> fem -> solvers -> time -> Problem/trackers -> apps: no import goes up."""
    graph = import_graph(PACKAGE)
    assert layer_of("tumorpde.model.config") < layer_of("tumorpde.io.rundir") < \
        layer_of("tumorpde.fem.discretisation") < layer_of("tumorpde.solvers.splitting") < \
        layer_of("tumorpde.time.coupling") < layer_of("tumorpde.problem") < layer_of("tumorpde.apps.cli")
    upward = sorted(f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)})"
                    for m, targets in graph.items() for t in targets
                    if t != "tumorpde" and layer_of(t) > layer_of(m))
    assert not upward, "imports that go up a layer:\n" + "\n".join(upward)


def test_the_layer_check_fails_on_an_upward_import(tmp_path):
    graph = {"tumorpde.model.config": {"tumorpde.fem.mesh"}, "tumorpde.fem.mesh": set()}
    assert [(m, t) for m, ts in graph.items() for t in ts if layer_of(t) > layer_of(m)] == \
        [("tumorpde.model.config", "tumorpde.fem.mesh")]


@pytest.mark.subprocess
def test_the_model_layer_loads_without_the_finite_element_stack():
    code = ("import json, sys\n"
            f"for m in {list(MODEL_LAYER)!r}:\n"
            "    __import__(m)\n"
            f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {list(HEAVY)!r})))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=PACKAGE.parent)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == []
