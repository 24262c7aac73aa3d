"""The learner's files are the library's own code: the solution is the library's function
word for word, the stub its signature and docstring; every solution passes the grader and
every stub is 'not implemented yet'."""

import ast
import inspect
import textwrap

import pytest

from minivit.exercises.grader import COLUMNS, NotImplementedYet, check_file, grade, load_function
from minivit.exercises.registry import EXERCISES, number_of
from minivit.exercises.text import exercise_file, marker_name
from minivit.reference import numerical as checks

NAMES = list(EXERCISES)
SLOW = {"vit"}
NAMES_FAST_FIRST = [pytest.param(n, marks=[pytest.mark.slow] if n in SLOW else []) for n in NAMES]


def written(tmp_path, name, solved):
    path = tmp_path / f"{name}_{'solution' if solved else 'stub'}.py"
    path.write_text(exercise_file(EXERCISES[name], number_of(name), len(EXERCISES), solved))
    return path


def function_def(text, name):
    """The source of function ``name`` as written in a file's text."""
    node = next(n for n in ast.parse(text).body if isinstance(n, ast.FunctionDef)
                and n.name == name)
    return "\n".join(text.splitlines()[node.lineno - 1:node.end_lineno]) + "\n"


@pytest.mark.parametrize("name", NAMES)
def test_solution_text_is_the_librarys_code(tmp_path, name):
    ex = EXERCISES[name]
    text = written(tmp_path, name, solved=True).read_text()
    library = textwrap.dedent(inspect.getsource(ex.solution))
    assert function_def(text, ex.function_name) == library
    assert marker_name(text) == name


@pytest.mark.parametrize("name", NAMES)
def test_stub_keeps_signature_and_docstring_and_imports(tmp_path, name):
    ex = EXERCISES[name]
    stub = written(tmp_path, name, solved=False).read_text()
    solution = written(tmp_path, name, solved=True).read_text()
    fn = ast.parse(function_def(stub, ex.function_name)).body[0]
    assert ast.get_docstring(fn) == inspect.getdoc(ex.solution)
    assert len(fn.body) == 2 and isinstance(fn.body[1], ast.Raise)
    assert ast.unparse(fn.args) == ast.unparse(
        ast.parse(textwrap.dedent(inspect.getsource(ex.solution))).body[0].args)

    def imports(text):
        return [line for line in text.splitlines() if line.startswith(("from ", "import "))]
    assert imports(stub) == imports(solution)
    assert all(line.startswith("from minivit.") for line in imports(stub))
    assert "import torch" not in stub and "import numpy" not in stub


@pytest.mark.parametrize("name", NAMES_FAST_FIRST)
def test_stub_fails_and_solution_passes(tmp_path, name):
    with pytest.raises(NotImplementedYet):
        check_file(written(tmp_path, name, solved=False), use_torch=False)
    report = check_file(written(tmp_path, name, solved=True), use_torch=False)
    assert report.ok and not report.torch_used
    assert len(report.cases) >= 2
    for row in report.rows:
        assert set(row.errors) == ({"ref"} if row.is_value else {"fd", "ref"})


@pytest.mark.torch
@pytest.mark.parametrize("name", NAMES_FAST_FIRST)
def test_solution_agrees_with_pytorch(tmp_path, name):
    pytest.importorskip("torch", reason="PyTorch is an optional reference")
    report = check_file(written(tmp_path, name, solved=True), use_torch=True)
    assert report.ok and report.torch_used
    assert all("torch" in row.errors for row in report.rows)


def test_thresholds_are_the_librarys_own():
    tolerances = {col: tol for col, _, tol in COLUMNS}
    assert tolerances == {"fd": checks.TOL_FD64, "ref": checks.TOL_REF64,
                          "torch": checks.TOL_REF64}


def test_grade_takes_a_function_and_uses_every_case_shape(tmp_path):
    ex = EXERCISES["softmax"]
    fn = load_function(written(tmp_path, "softmax", solved=True), ex)
    report = grade(ex, fn, use_torch=False, seed=3)
    assert report.ok
    assert {c.split(", ")[-1] for c in report.cases} == {"axis=-1", "axis=-2"}


def test_a_learner_writing_into_the_cache_does_not_fool_the_grader(tmp_path):
    """The learner's call gets its own forward pass and copies of dout; the finite
    differences use the untouched inputs."""
    ex = EXERCISES["linear"]

    def scribbling_backward(dy, cache):
        x = cache[0]
        dx, dweight, dbias = ex.solution(dy, cache)
        x[...] = 0.0
        dy[...] = 0.0
        return dx, dweight, dbias

    assert grade(ex, scribbling_backward, use_torch=False).ok


@pytest.mark.cupy
@pytest.mark.parametrize("name", ["cross_entropy", "attention_core", "block"])
def test_solutions_pass_on_every_backend(xp, name):
    """The grader moves the cases to the active backend (CuPy on a GPU, or its stand-in)."""
    ex = EXERCISES[name]
    assert grade(ex, ex.solution, use_torch=False).ok
