"""What an exercise is: one hand-written backward pass of the library, to be written again.

Each module of ``minivit/exercises/`` (one per exercise) defines ``EXERCISE``, an ``Exercise``:

    solution       the library's own function the learner writes again (its source is the
                   reference solution, its signature and docstring the stub's)
    statement      what the function computes, the shapes, hints with the equations
    given          library objects whose source the stub quotes: the forward pass and its cache
    forward        (inputs, static) -> (out, cache): the library's forward, run by the grader
    call           (backward, dout, cache, static) -> what ``backward`` returns, called with
                   every argument of ``solution`` (a method gets its object as ``self``)
    unpack         that return value -> {input name: gradient} (and named values, e.g. "loss")
    cases          (rng) -> [Case]: a few random shapes and options, drawn from a seeded rng
    torch_forward  (torch, tensors, static) -> out, the same forward in PyTorch (optional)

The grader (``grader.py``) differentiates sum(forward(inputs) * dout) for a random ``dout``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


class WrongAnswer(Exception):
    """The learner's function returned something of the wrong kind or shape (one line)."""


@dataclass(frozen=True)
class Case:
    """One graded call: the float64 host arrays the gradients are taken with respect to, and
    every other argument (sizes, labels, options)."""
    inputs: dict
    static: dict = field(default_factory=dict)

    def describe(self) -> str:
        """'x 2x3x4, weight 5x4, axis=-1': the tensors' shapes (not those of a model's
        dotted parameter names), then the options."""
        shapes = [f"{k} {'x'.join(str(s) for s in v.shape)}" for k, v in self.inputs.items()
                  if "." not in k]
        options = [f"{k}={v}" for k, v in self.static.items() if isinstance(v, (int, float, str))]
        return ", ".join(shapes + options)


@dataclass(frozen=True)
class Exercise:
    name: str
    title: str
    difficulty: str                       # "easy", "medium" or "hard"
    solution: Callable
    statement: str
    given: tuple
    forward: Callable
    call: Callable
    unpack: Callable
    cases: Callable
    torch_forward: Callable | None = None
    fd_samples: int = 30                  # entries of each tensor checked by finite differences

    @property
    def function_name(self) -> str:
        return self.solution.__name__


def unpack_tuple(result, names, function_name):
    """A backward's tuple (a single array when there is one name) -> {name: array};
    WrongAnswer when it is not that.  names: the inputs the gradients belong to, in order."""
    if len(names) == 1:
        result = (result,)
    if not isinstance(result, (tuple, list)) or len(result) != len(names):
        got = f"a tuple of {len(result)}" if isinstance(result, tuple) else type(result).__name__
        grads = ", ".join("d" + n for n in names)
        want = grads if len(names) == 1 else f"a tuple of {len(names)}: ({grads})"
        raise WrongAnswer(f"{function_name} returned {got}; expected {want}")
    return dict(zip(names, result))


__all__ = ["Case", "Exercise", "WrongAnswer", "unpack_tuple"]
