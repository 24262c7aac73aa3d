"""The learner's file, stub or solution, written from the library's own source.

    # minivit exercise: linear                     <- the marker ``check`` reads
    \"\"\"the statement\"\"\"
    from minivit.layers.sums import column_sum      <- what the library's function uses
    # the forward pass, quoted from the library (the grader runs the library's own)
    def linear_backward(dy, cache):                 <- the library's signature and docstring,
        \"\"\"...\"\"\"                                    then its body (solution) or
        raise NotImplementedError(...)              <- this line (stub)

Nothing is copied by hand: the solution is ``inspect.getsource`` of the library's function, so
it cannot drift from the code the library runs.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import re
import sys
import textwrap

MARKER = "# minivit exercise: "
MARKER_RE = re.compile(r"^# minivit exercise: *([A-Za-z0-9_-]+) *$", re.MULTILINE)
NOT_IMPLEMENTED = "NotImplementedError"


def function_source(fn) -> str:
    """The source of a library function or method, dedented to the left margin."""
    return textwrap.dedent(inspect.getsource(fn))


def _function_node(source: str) -> ast.FunctionDef:
    node = ast.parse(source).body[0]
    if not isinstance(node, ast.FunctionDef):
        raise TypeError("expected the source of one function")
    return node


def stub_source(fn) -> str:
    """The library function's signature and docstring, its body one ``raise``."""
    source = function_source(fn)
    node = _function_node(source)
    first = node.body[0]
    has_doc = isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None),
                                                         ast.Constant)
    keep = first.end_lineno if has_doc else first.lineno - 1
    lines = source.splitlines()[:keep]
    lines.append(f'    raise {NOT_IMPLEMENTED}("{fn.__name__}: your code here")')
    return "\n".join(lines) + "\n"


def used_globals(fn) -> list[str]:
    """The module-level names the function's body reads (not its own locals, not builtins)."""
    node = _function_node(function_source(fn))
    loaded = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)
              and isinstance(n.ctx, ast.Load)}
    assigned = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)
                and isinstance(n.ctx, ast.Store)}
    params = {a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg)}
    names = loaded - assigned - params
    return sorted(n for n in names if n in fn.__globals__ and not hasattr(builtins, n))


def import_lines(fn) -> list[str]:
    """``from MODULE import NAME`` for each global the function reads, from where it is
    defined (a constant: from the function's own module), grouped by module."""
    by_module = {}
    for name in used_globals(fn):
        obj = fn.__globals__[name]
        module = getattr(obj, "__module__", None)
        if (inspect.ismodule(obj) or module is None
                or getattr(sys.modules.get(module), name, None) is not obj):
            module = fn.__module__
        by_module.setdefault(module, []).append(name)
    return [f"from {m} import {', '.join(names)}" for m, names in sorted(by_module.items())]


def quoted(obj) -> str:
    """The source of a library object as comment lines, with where it lives."""
    where = f"{obj.__module__}.{obj.__qualname__}"
    body = textwrap.indent(textwrap.dedent(inspect.getsource(obj)).rstrip(), "#     ",
                           predicate=lambda line: True)
    body = "\n".join(line.rstrip() for line in body.splitlines())
    return f"# {where}:\n#\n{body}\n"


def exercise_file(exercise, number: int, total: int, solved: bool,
                  file_name: str = "THIS_FILE") -> str:
    """The text of the file ``exercise new`` (stub) or ``exercise solution`` (solved) writes
    under ``file_name``."""
    fn = exercise.solution
    kind = "the library's solution" if solved else "stub"
    statement = exercise.statement.strip().replace('"""', "'''")
    head = (f"{MARKER}{exercise.name}\n"
            f'"""Exercise {number} of {total}, {exercise.difficulty}: {exercise.title} '
            f"({kind}).\n\n{statement}\n\n"
            f"Check it:      minivit exercise check {file_name}\n"
            f"The answer:    minivit exercise solution {exercise.name} --out OTHER_FILE\n"
            f'"""\n\n')
    imports = "\n".join(import_lines(fn))
    given = "\n".join(quoted(obj) for obj in exercise.given)
    body = function_source(fn) if solved else stub_source(fn)
    return (f"{head}{imports}\n\n"
            f"# Given (the grader runs the library's own forward and passes you its cache):\n#\n"
            f"{given}\n\n{body}")


def marker_name(text: str) -> str | None:
    """The exercise a file says it is (its marker line), or None."""
    m = MARKER_RE.search(text)
    return m.group(1) if m else None


__all__ = ["MARKER", "exercise_file", "function_source", "import_lines", "marker_name",
           "quoted", "stub_source", "used_globals"]
