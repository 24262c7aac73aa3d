"""Grade a learner's backward pass: finite differences, the library's own answer, PyTorch.

For each case of the exercise (a few random shapes and options, drawn from a seeded generator)
the library's forward pass runs on float64 inputs, a random upstream gradient ``dout`` is
drawn, and the learner's function gets the cache.  Each gradient it returns is compared with

    finite differences   of sum(forward(inputs) * dout), central, on up to ``fd_samples``
                         entries of each tensor                                       TOL_FD64
                         (minivit.reference.numerical.numerical_gradient)
    minivit              the library's own backward on the same cache                 TOL_REF64
    PyTorch              autograd through the same forward, when torch is installed   TOL_REF64

the thresholds of the library's own gradient tests (minivit/reference/numerical.py).
Gradients too small for finite differences to resolve are judged by their absolute error
(gradcheck's ``fd_scale_floor``).  Each comparison is one relative error over the whole tensor.

What the learner gets wrong is reported, never raised as minivit's own traceback:
``NotImplementedYet`` (the stub as written), ``LearnerError`` (their code raised: their
traceback only; a syntax error; a missing function or wrong signature; a gradient of the wrong
kind or shape).  A file that is not an exercise is a ``UserError``.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import inspect
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from minivit.backend import host_rng, to_device, to_numpy
from minivit.errors import UserError
from minivit.exercises.exercise import WrongAnswer
from minivit.exercises.registry import get_exercise
from minivit.exercises.text import marker_name
from minivit.reference.gradcheck import fd_scale_floor
from minivit.reference.numerical import (
    TOL_FD64,
    TOL_REF64,
    numerical_gradient,
    rel_error,
    sample_indices,
)

H = 1e-5                     # finite-difference step (float64)
COLUMNS = (("fd", "finite differences", TOL_FD64), ("ref", "minivit", TOL_REF64),
           ("torch", "PyTorch", TOL_REF64))


class LearnerError(Exception):
    """The learner's code failed; the message (several lines for a traceback) says how."""


class NotImplementedYet(LearnerError):
    """The learner's function still raises NotImplementedError."""


@dataclass
class Row:
    """One gradient (or returned value) of the report: its worst error over the cases."""
    name: str                      # the input it is the gradient of, or the value's name
    is_value: bool = False         # a value the function returns (the loss), not a gradient
    errors: dict = field(default_factory=dict)     # column -> (worst error, case number)

    def record(self, column: str, error: float, case: int) -> None:
        if column not in self.errors or not error <= self.errors[column][0]:
            self.errors[column] = (error, case)

    def failures(self):
        """[(column, error, tolerance, case)] above their tolerance."""
        return [(col, *self.errors[col], tol) for col, _, tol in COLUMNS
                if col in self.errors and not self.errors[col][0] < tol]

    @property
    def label(self) -> str:
        return self.name if self.is_value else grad_label(self.name)


@dataclass
class Report:
    exercise: object
    rows: list
    cases: list                    # Case.describe() of each case
    torch_used: bool
    torch_missing: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not any(r.failures() for r in self.rows)


def grad_label(name: str) -> str:
    """'dx' for x; 'd[blocks.0.norm1.weight]' for a dotted parameter name."""
    return "d" + name if name.isidentifier() else f"d[{name}]"


def load_torch():
    """(torch, "") where PyTorch is installed, else (None, why not)."""
    try:
        return importlib.import_module("torch"), ""
    except ImportError as e:
        return None, f"PyTorch is not installed ({e}); pip install torch==2.13.0 to compare"


# ------------------------------------------------------------------ the learner's file

def read_exercise_file(path):
    """The exercise the file says it is; UserError when it is no exercise file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read it as text ({e})") from None
    name = marker_name(text)
    if name is None:
        raise UserError(f"{path} is not a minivit exercise: it has no '# minivit exercise: "
                        f"NAME' line (write one with: minivit exercise new NAME --out FILE)")
    return get_exercise(name, where=str(path))


def learner_traceback(error: BaseException, path) -> str:
    """The traceback from the first frame in the learner's file on (none of the grader's)."""
    frames = traceback.extract_tb(error.__traceback__)
    target = str(Path(path).resolve())
    start = next((i for i, f in enumerate(frames)
                  if str(Path(f.filename).resolve()) == target), len(frames))
    lines = traceback.format_list(frames[start:])
    head = ["Traceback (most recent call last):\n"] if lines else []
    return "".join(head + lines + traceback.format_exception_only(type(error), error)).rstrip()


def load_function(path, exercise):
    """Import the learner's file from its path and return their function, its signature
    checked; LearnerError when the file does not import or the function is missing."""
    name = exercise.function_name
    module_name = f"minivit_exercise_{exercise.name}"
    loader = importlib.machinery.SourceFileLoader(module_name, str(path))   # any suffix
    spec = importlib.util.spec_from_file_location(module_name, path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        msg = "".join(traceback.format_exception_only(type(e), e)).rstrip()
        raise LearnerError(f"{path} does not compile:\n{msg}") from None
    except (Exception, SystemExit) as e:  # noqa: BLE001 - the learner's module raised it
        raise LearnerError(f"{path} raised an error when imported:\n"
                           f"{learner_traceback(e, path)}") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise LearnerError(f"{path} defines no function {name}: the exercise grades "
                           f"{name}{inspect.signature(exercise.solution)}")
    check_signature(fn, exercise, path)
    return fn


def check_signature(fn, exercise, path) -> None:
    """The learner's function must take the arguments the library's does, in order."""
    wanted = inspect.signature(exercise.solution)
    try:
        inspect.signature(fn).bind(*wanted.parameters)
    except (TypeError, ValueError):
        raise LearnerError(f"{path}: {fn.__name__}{inspect.signature(fn)} cannot be called as "
                           f"{fn.__name__}{wanted}: the grader passes "
                           f"{len(wanted.parameters)} arguments") from None


def run_learner(thunk, exercise, path):
    """thunk() -- a call of the learner's function -- with its errors turned into LearnerError."""
    try:
        return thunk()
    except NotImplementedError:
        raise NotImplementedYet(f"not implemented yet: {exercise.function_name} in {path} "
                                f"still raises NotImplementedError") from None
    except (Exception, SystemExit) as e:  # noqa: BLE001 - the learner's code raised it
        raise LearnerError(f"{exercise.function_name} raised an error:\n"
                           f"{learner_traceback(e, path)}") from None


def check_answer(got: dict, expected: dict, inputs: dict, function_name: str) -> dict:
    """The learner's answer as host float64 arrays; WrongAnswer naming the first entry that is
    missing, not an array, the wrong shape, or not finite."""
    answer = {}
    for name, want in expected.items():
        if want is None:
            continue
        label = name if name not in inputs else grad_label(name)
        value = got.get(name)
        if value is None:
            raise WrongAnswer(f"{function_name} gave no {label} (None or missing)")
        if not hasattr(value, "shape") and not (label == name and isinstance(value, float)):
            raise WrongAnswer(f"{function_name} returned {type(value).__name__} for {label}; "
                              f"expected an array")
        value = to_numpy(value)
        shape = tuple(to_numpy(want).shape)
        if value.shape != shape:
            of = f", the shape of {name}" if name in inputs else ""
            raise WrongAnswer(f"{label} has shape {value.shape}; expected {shape}{of}")
        if value.dtype.kind not in "fiu":
            raise WrongAnswer(f"{label} is an array of dtype {value.dtype}; expected numbers")
        if not bool(abs(value.astype("float64")).max(initial=0.0) < float("inf")):
            raise WrongAnswer(f"{label} has NaN or infinite entries")
        answer[name] = value.astype("float64")
    return answer


# ------------------------------------------------------------------ grading

def torch_answer(exercise, torch, inputs, static, dout) -> tuple[dict, object]:
    """({input name: gradient}, forward output) by PyTorch autograd, as NumPy arrays."""
    tensors = {k: torch.from_numpy(to_numpy(v).copy()).requires_grad_(True)
               for k, v in inputs.items()}
    out = exercise.torch_forward(torch, tensors, static)
    (out * torch.from_numpy(to_numpy(dout).copy())).sum().backward()
    grads = {k: t.grad.numpy() if t.grad is not None else None for k, t in tensors.items()}
    return grads, out.detach().numpy()


def grade(exercise, backward, path="<function>", use_torch=True, seed=0) -> Report:
    """Grade ``backward`` (the learner's function) on every case of ``exercise``."""
    t0 = time.perf_counter()
    torch, torch_missing = load_torch() if use_torch else (None, "")
    if exercise.torch_forward is None:
        torch, torch_missing = None, "this exercise has no PyTorch twin"
    rng = host_rng(seed)
    cases = exercise.cases(rng)
    rows = {}
    for number, case in enumerate(cases, 1):
        dout_seed = int(rng.integers(2**31))
        grade_case(exercise, backward, path, case, number, dout_seed, torch, rows)
    return Report(exercise, list(rows.values()), [c.describe() for c in cases],
                  torch_used=torch is not None, torch_missing=torch_missing,
                  seconds=time.perf_counter() - t0)


def grade_case(exercise, backward, path, case, number, seed, torch, rows: dict) -> None:
    """Grade one case; the worst errors go into ``rows`` ({name: Row})."""
    inputs = {k: to_device(v) for k, v in case.inputs.items()}
    static = case.static
    out, cache = exercise.forward(inputs, static)
    dout = to_device(host_rng(seed).standard_normal(out.shape))
    expected = exercise.unpack(exercise.call(exercise.solution, dout.copy(), cache, static))
    copies = {k: v.copy() for k, v in inputs.items()}         # the learner may write into them
    _, learner_cache = exercise.forward(copies, static)
    result = run_learner(lambda: exercise.call(backward, dout.copy(), learner_cache, static),
                         exercise, path)
    try:
        answer = check_answer(exercise.unpack(result), expected, inputs, exercise.function_name)
    except WrongAnswer as e:
        raise LearnerError(f"{e} (case {number}: {case.describe()})") from None

    def f():
        return float((exercise.forward(inputs, static)[0] * dout).sum())

    floor = fd_scale_floor(f(), H)
    t_grads, t_out = (torch_answer(exercise, torch, inputs, static, dout)
                      if torch is not None else ({}, None))
    for i, (name, value) in enumerate(answer.items()):
        row = rows.setdefault(name, Row(name, is_value=name not in inputs))
        row.record("ref", rel_error(value, expected[name]), number)
        if row.is_value:
            if t_out is not None:
                row.record("torch", rel_error(value, t_out), number)
            continue
        x = inputs[name]
        idx = sample_indices(x.size, exercise.fd_samples, seed=seed + i)
        numeric = numerical_gradient(f, x, h=H, indices=idx)
        row.record("fd", rel_error(value.reshape(-1)[idx], numeric, tiny=floor), number)
        if t_grads.get(name) is not None:
            row.record("torch", rel_error(value, t_grads[name]), number)


def check_file(path, use_torch=True, seed=0) -> Report:
    """Grade the learner's file: which exercise it is (its marker), their function, the cases."""
    exercise = read_exercise_file(path)
    fn = load_function(path, exercise)
    return grade(exercise, fn, path=path, use_torch=use_torch, seed=seed)


__all__ = ["COLUMNS", "LearnerError", "NotImplementedYet", "Report", "Row", "check_file",
           "grad_label", "grade", "load_function", "read_exercise_file"]
