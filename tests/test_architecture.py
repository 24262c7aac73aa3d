"""The shape of the package, read from its source with ``ast``: imports go one way (no import
cycles between minivit's modules) and no module is longer than MAX_LINES lines."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "minivit"
MAX_LINES = 400

# Import cycles present today, each as the set of modules of one strongly connected component
# of the import graph. This set must be empty: remove an entry once its cycle is gone.
KNOWN_CYCLES: set[frozenset[str]] = set()

# Modules longer than MAX_LINES today. This set must be empty: remove an entry once its
# module is split.
KNOWN_LONG: set[str] = set()


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _ancestors(name: str) -> list[str]:
    """'minivit.a.b' -> ['minivit', 'minivit.a'] (the packages Python imports first)."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _imported(node: ast.AST, module: str, is_package: bool, modules) -> list[str]:
    """The minivit modules one import statement names (module or function level)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:  # relative: resolve against the importing module's package
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    # ``from pkg import name``: a submodule if pkg.name is one, else an attribute of pkg
    subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules]
    attrs = [a for a in node.names if f"{target}.{a.name}" not in modules]
    return subs + ([target] if attrs or not subs else [])


def _dynamic(node: ast.AST, modules) -> list[str]:
    """``importlib.import_module("minivit.x")`` -> [minivit.x]; with an f-string
    ``f"minivit.pkg.{name}"`` -> every module under minivit.pkg (any of them may be named)."""
    if not (isinstance(node, ast.Call) and node.args and getattr(
            node.func, "attr", getattr(node.func, "id", None)) == "import_module"):
        return []
    arg = node.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return [arg.value]
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        prefix = arg.values[0].value
        return [m for m in modules if m.startswith(prefix) and m != prefix.rstrip(".")]
    return []


def import_graph() -> dict[str, set[str]]:
    """module -> the minivit modules its execution imports (statements at module or function
    level, and ``importlib.import_module`` calls).

    Importing ``minivit.a.b`` runs the packages ``minivit`` and ``minivit.a`` first, so those
    count too -- except for a module inside that package, which is only ever imported while
    its package is already being imported (a package importing its own submodules, and they
    their siblings, is not a cycle).
    """
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                targets = _imported(node, module, is_package, modules)
            else:
                targets = _dynamic(node, modules)
            for target in targets:
                for t in _ancestors(target) + [target]:
                    inside = module == t or module.startswith(t + ".")
                    if t in modules and not inside:
                        graph[module].add(t)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Tarjan's algorithm, iteratively: the components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.add(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(frozenset(comp))
    return out


def one_cycle(graph: dict[str, set[str]], component: frozenset[str]) -> list[str]:
    """A shortest cycle through the first module of a component, e.g. [a, b, a]."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle in {sorted(component)}")  # cannot happen for an SCC


def _describe(graph, components) -> str:
    return "\n".join(f"  {' -> '.join(one_cycle(graph, c))}   (component: {sorted(c)})"
                     for c in sorted(components, key=sorted))


def test_the_graph_sees_every_kind_of_import():
    graph = import_graph()
    assert len(graph) > 30
    assert "minivit.backend" in graph["minivit.layers.gelu"]        # from minivit.x import y
    assert "minivit.data.batches" in graph["minivit.data"]          # a package's own submodule
    assert "minivit.data" not in graph["minivit.data.cifar10"]      # ... and not back
    assert "minivit.data" in graph["minivit.training.loop"]                 # the package runs first
    assert "minivit.commands.train" in graph["minivit.cli"]         # importlib.import_module
    assert all(not m.startswith("minivit.") or m in graph for deps in graph.values() for m in deps)
    toy = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected(toy) == [frozenset("abc")]
    assert one_cycle(toy, frozenset("abc")) == ["a", "b", "c", "a"]


def test_no_import_cycles():
    graph = import_graph()
    found = set(strongly_connected(graph))
    new = found - KNOWN_CYCLES
    assert not new, "import cycles between minivit modules:\n" + _describe(graph, new)
    gone = KNOWN_CYCLES - found
    assert not gone, ("KNOWN_CYCLES lists cycles that are gone; remove them: "
                      + "; ".join(str(sorted(c)) for c in gone))


def test_no_module_is_too_long():
    lengths = {str(p.relative_to(PKG.parent)): len(p.read_text().splitlines())
               for p in sorted(PKG.rglob("*.py"))}
    long = {p for p, n in lengths.items() if n > MAX_LINES}
    new = long - KNOWN_LONG
    assert not new, (f"modules over {MAX_LINES} lines: "
                     + ", ".join(f"{p} ({lengths[p]})" for p in sorted(new)))
    gone = KNOWN_LONG - long
    assert not gone, f"KNOWN_LONG lists modules that are short now; remove them: {sorted(gone)}"
