"""Dropout (Srivastava et al. 2014) and stochastic depth / DropPath (Huang et al. 2016).

Both are "inverted": kept values are scaled by 1 / (1 - p) during training, so evaluation is the
identity.  Randomness comes from a generator passed in by the caller (seeded, deterministic);
the mask the forward pass drew is all the backward pass needs.

* dropout zeroes single elements;
* drop_path zeroes a whole residual branch for some samples: mask shape (B, 1, 1, ...).
"""


from minivit.backend import array_module


def _scaled_mask(rng, shape, dtype, p, xp):
    """(uniform >= p) / (1 - p): kept entries 1 / (1 - p), dropped 0 -- one array, in place."""
    mask = rng.random(shape, dtype=dtype)
    xp.greater_equal(mask, p, out=mask)            # 1.0 kept, 0.0 dropped
    mask /= 1.0 - p
    return mask


def dropout_forward(x, p, rng, train=True):
    """x (...) -> y (...).  cache = the scaled mask, or None when nothing is dropped."""
    if not train or p == 0.0:
        return x, None
    if rng is None:
        raise ValueError("dropout with p > 0 in training needs a random generator (rng)")
    mask = _scaled_mask(rng, x.shape, x.dtype, p, xp=array_module(x))
    return x * mask, mask


def dropout_backward(dy, cache):
    return dy if cache is None else dy * cache


def drop_path_forward(x, p, rng, train=True):
    """x (B, ...) -> y (B, ...): each sample's branch kept with probability 1 - p."""
    if not train or p == 0.0:
        return x, None
    if rng is None:
        raise ValueError("drop_path with p > 0 in training needs a random generator (rng)")
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    mask = _scaled_mask(rng, shape, x.dtype, p, xp=array_module(x))
    return x * mask, mask


drop_path_backward = dropout_backward
