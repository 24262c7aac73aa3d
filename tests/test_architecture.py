"""The shape of the package, read from its source with ``ast``: imports go one way (no import
cycles between minivit's modules, nor between its folders), no module is longer than
MAX_LINES lines (the training loop: MAX_LOOP_LINES), the top level keeps at most
MAX_TOP_MODULES modules and tests/ at most MAX_TEST_FILES files beside its folders."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "minivit"
TESTS = Path(__file__).resolve().parent
MAX_LINES = 350
MAX_LOOP_LINES = 300                      # minivit/training/loop.py: the loop reads in one place
MAX_TOP_MODULES = 8                       # the package face, the command line, the backend
MAX_TEST_FILES = 8


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
    assert "minivit.data" in graph["minivit.training.batch"]        # the package runs first
    assert "minivit.commands.train" in graph["minivit.cli"]         # importlib.import_module
    assert all(not m.startswith("minivit.") or m in graph for deps in graph.values() for m in deps)
    toy = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected(toy) == [frozenset("abc")]
    assert one_cycle(toy, frozenset("abc")) == ["a", "b", "c", "a"]


def folder_of(module: str) -> str:
    """'minivit.training.objectives.mae' -> 'minivit.training'; a top-level module is its own."""
    return ".".join(module.split(".")[:2])


def folder_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The import graph between minivit's folders (and top-level modules), without the
    package itself (``minivit/__init__.py``, the face that re-exports) and self-edges."""
    folders: dict[str, set[str]] = {}
    for module, deps in graph.items():
        if module == "minivit":
            continue
        node = folders.setdefault(folder_of(module), set())
        node.update(folder_of(d) for d in deps
                    if d.startswith("minivit.") and folder_of(d) != folder_of(module))
    return folders


def test_the_folder_graph_sees_a_cycle():
    graph = {"minivit.a.x": {"minivit.b.y"}, "minivit.b.y": {"minivit.a.z"}, "minivit.a.z": set()}
    assert strongly_connected(folder_graph(graph)) == [frozenset({"minivit.a", "minivit.b"})]


def test_no_import_cycles():
    graph = import_graph()
    found = set(strongly_connected(graph))
    assert not found, "import cycles between minivit modules:\n" + _describe(graph, found)


def test_folders_import_one_way():
    folders = folder_graph(import_graph())
    found = set(strongly_connected(folders))
    assert not found, "import cycles between minivit's folders:\n" + _describe(folders, found)


def test_no_module_is_too_long():
    lengths = {str(p.relative_to(PKG.parent)): len(p.read_text().splitlines())
               for p in sorted(PKG.rglob("*.py"))}
    long = {p: n for p, n in lengths.items() if n > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
    loop = lengths["minivit/training/loop.py"]
    assert loop <= MAX_LOOP_LINES, f"minivit/training/loop.py has {loop} lines"


def test_the_top_level_keeps_the_package_face_only():
    top = sorted(p.name for p in PKG.glob("*.py"))
    assert len(top) <= MAX_TOP_MODULES, f"{len(top)} modules in minivit/: {top}"
    files = sorted(p.name for p in TESTS.iterdir() if p.is_file() and p.suffix == ".py")
    assert len(files) <= MAX_TEST_FILES, f"{len(files)} files directly in tests/: {files}"


def test_tests_that_train_are_marked_slow():
    """conftest.py marks a test slow when its source (or a fixture's) starts a training loop,
    MPI ranks or a fresh interpreter."""
    from support import TRAINS
    for source in ("T.train(make_cfg(data_dir, tmp_path))", 'main(["train", "--data-dir", d])',
                   "T.resume(run)", 'cli("predict", run, image)', "subprocess.run(argv)"):
        assert TRAINS.search(source), source
    for source in ("xp.ones(3).sum()", "model.forward(x, train=True)", 'data["train"]'):
        assert not TRAINS.search(source), source
