"""Gradient-check helpers shared by the tests (float64, central differences).

``check_layer`` checks a forward/backward pair: for a random upstream gradient dout it compares
the hand-written backward with finite differences of f(x) = sum(forward(x) * dout).
"""

import numpy as np

from minivit.backend import array_module
from minivit.checks import TOL_FD64, numerical_gradient, rel_error


def randn(xp, *shape, seed=0, scale=1.0):
    """Deterministic standard-normal float64 array on backend xp (drawn on the host)."""
    return xp.asarray(np.random.default_rng(seed).standard_normal(shape) * scale)


def check_layer(forward, backward, inputs, names=None, seed=123, tol=TOL_FD64, h=1e-5):
    """forward(*inputs) -> (out, cache); backward(dout, cache) -> grad or tuple of grads, one
    per input (None entries skipped).  Returns {name: rel_error}; asserts each is below tol."""
    xp = array_module(inputs[0])
    out, cache = forward(*inputs)
    dout = randn(xp, *out.shape, seed=seed)
    grads = backward(dout, cache)
    if not isinstance(grads, tuple):
        grads = (grads,)
    names = names or [f"input{i}" for i in range(len(inputs))]
    errors = {}

    def f():
        return float((forward(*inputs)[0] * dout).sum())

    for name, x, g in zip(names, inputs, grads):
        if g is None:
            continue
        assert g.shape == x.shape, f"{name}: gradient shape {g.shape} != input shape {x.shape}"
        errors[name] = rel_error(g, numerical_gradient(f, x, h=h))
    bad = {k: v for k, v in errors.items() if not v < tol}
    assert not bad, f"gradient check failed (rel error > {tol}): {bad}"
    return errors
