"""The shape of the code, held by measures (docs/architecture.md): no import
cycle in the package, no module too long, each hyper-parameter declared
once, one codec of the network's state."""

from __future__ import annotations

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "python", "sparse_mlp")


def modules() -> dict[str, str]:
    """Dotted module name -> path, for every module of the package."""
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3].replace(os.sep, ".")
                found[rel[: -len(".__init__")] if rel.endswith(".__init__") else rel] = path
    return found


def imports(module: str, path: str, known: set[str]) -> set[str]:
    """Every package module ``module`` imports, wherever the import is (at the
    top, under TYPE_CHECKING, inside functions)."""
    is_package = path.endswith("__init__.py")
    base = module.split(".") if is_package else module.split(".")[:-1]
    out = set()
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                root = base[: len(base) - node.level + 1]
                origin = ".".join(root + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            targets = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in known else origin
                       for a in node.names]
        else:
            continue
        out.update(t for t in targets if t in known and t != module)
    return out


def test_no_import_cycle_in_the_package():
    found = modules()
    known = set(found) | {"sparse_mlp._core"}  # (the compiled module imports nothing of ours)
    graph = {m: imports(m, p, known) for m, p in found.items()}
    graph["sparse_mlp._core"] = set()
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, trail: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append(trail[trail.index(n):] + [n] if n in trail else [m, n])
            elif n not in state:
                visit(n, trail + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, f"import cycles: {cycles}"
    assert len(graph) > 30  # the walk saw the package


def test_no_module_is_too_long():
    long = {m: n for m, p in modules().items() if (n := sum(1 for _ in open(p, encoding="utf-8"))) > 600}
    assert not long, long
    with open(os.path.join(ROOT, "rust", "python", "src", "lib.rs")) as f:
        assert sum(1 for _ in f) <= 450


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_the_learning_rate_is_a_parameter_of_three_signatures_at_most():
    # (the scikit-learn estimators' __init__ must list their parameters)
    where = []
    for module, path in modules().items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        for fn in _functions(tree):
            args = fn.args
            names = [a.arg for a in args.args + args.kwonlyargs + args.posonlyargs]
            if "learning_rate" in names and not (module.endswith("estimator") and fn.name == "__init__"):
                where.append(f"{module}.{fn.name}")
    assert sorted(where) == ["sparse_mlp.model.fit", "sparse_mlp.parallel.fit"], where


def test_one_place_builds_a_network_from_its_state():
    calls = []
    for module, path in modules().items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr == "from_state":
                calls.append(module)
    assert calls == ["sparse_mlp._netstate"], calls
