"""The tools a skeptic uses: relative error and central finite differences.

Relative error (one number for a whole tensor, as in CS231n's gradient checks):

    rel_error(a, b) = max |a - b| / max(max |a| + max |b|, tiny)

The denominator is the scale of the tensors, so entries that are tiny compared with the rest
do not blow the error up.  Thresholds used across the tests:

    float64, analytic vs finite differences     < 1e-6   (around 1e-9 is typical)
    float64, minivit vs PyTorch                  < 1e-10
    float32, minivit vs PyTorch                  < 1e-5

Finite differences, central, step h:   df/dx_i ~ (f(x + h e_i) - f(x - h e_i)) / (2h)
With h = 1e-5 in float64, truncation error (~h^2) and rounding error (~eps/h) are both ~1e-10.
"""

from __future__ import annotations

from minivit.backend import array_module, to_numpy

TOL_FD64 = 1e-6
TOL_REF64 = 1e-10
TOL_REF32 = 1e-5


def rel_error(a, b, tiny=1e-30) -> float:
    """max|a - b| / max(max|a| + max|b|, tiny), on the host in float64."""
    a = to_numpy(a).astype("float64")
    b = to_numpy(b).astype("float64")
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    num = float(abs(a - b).max())
    den = max(float(abs(a).max()) + float(abs(b).max()), tiny)
    return num / den


def numerical_gradient(f, x, h=1e-5, indices=None):
    """Central differences of scalar f() with respect to array x, modified in place and restored.

    indices: None for every entry, or a sequence of flat indices to check (large tensors).
    Returns an array like x (zeros where not checked) when indices is None, else a 1-D array.
    """
    xp = array_module(x)
    if not x.flags.c_contiguous:
        raise ValueError("numerical_gradient perturbs x in place and needs a C-contiguous array")
    flat = x.reshape(-1)                                  # a view: writes reach x
    idx = range(x.size) if indices is None else indices
    out = []
    for i in idx:
        old = flat[i].item()
        flat[i] = old + h
        fp = f()
        flat[i] = old - h
        fm = f()
        flat[i] = old
        out.append((fp - fm) / (2.0 * h))
    out = xp.asarray(out, dtype=x.dtype)
    return out.reshape(x.shape) if indices is None else out


def sample_indices(size, k, seed=0):
    """Up to k distinct flat indices of a tensor of `size` entries, deterministic."""
    from minivit.backend import host_rng
    if size <= k:
        return list(range(size))
    return sorted(int(i) for i in host_rng(seed).choice(size, size=k, replace=False))
