"""Softmax cross-entropy from logits, with label smoothing and soft targets.

    loss = -(1/B) sum_b sum_k t_bk log softmax(x_b)_k
    dloss/dx_b = (softmax(x_b) sum_k t_bk - t_b) / B
               = (softmax(x_b) - t_b) / B            when t_b sums to 1

Targets t: one-hot of integer labels, or given soft targets (mixup, cutmix); label smoothing
eps mixes them with the uniform distribution as PyTorch does: t <- (1 - eps) t + eps / K.
log softmax is computed with the log-sum-exp trick, so large logits do not overflow.

``cross_entropy`` checks the labels' range and returns the loss as a Python float (both read
the device); ``cross_entropy_device`` is the same loss for the training loop, whose labels were
checked when the data were loaded: it returns a 0-d array and reads nothing back.
"""

from minivit.backend import array_module
from minivit.layers.softmax import log_softmax


def _check_label_range(labels, B, K):
    if labels.ndim == 1 and labels.shape[0] == B and labels.size and labels.dtype.kind in "iu":
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= K:
            raise ValueError(f"labels out of range: got values in [{lo}, {hi}], expected "
                             f"0 <= label < {K}")


def _targets(logits, labels, label_smoothing):
    xp = array_module(logits)
    B, K = logits.shape
    if labels.ndim == 1:                                   # integer class labels
        if labels.dtype.kind not in "iu":
            raise ValueError(f"labels of shape (B,) must be integers, got dtype {labels.dtype}")
        if labels.shape[0] != B:
            raise ValueError(f"batch size mismatch: {B} logits but {labels.shape[0]} labels")
        t = xp.zeros((B, K), dtype=logits.dtype)
        t[xp.arange(B), labels] = 1.0
    elif labels.ndim == 2:                                 # soft targets (B, K)
        if labels.shape != (B, K):
            raise ValueError(f"soft targets have shape {tuple(labels.shape)}, expected {(B, K)}")
        if labels.dtype.kind != "f":
            raise ValueError(f"soft targets must be floating point, got dtype {labels.dtype}")
        t = labels.astype(logits.dtype, copy=False)
    else:
        raise ValueError(f"labels must be (B,) integers or (B, K) soft targets, got shape "
                         f"{tuple(labels.shape)}")
    if label_smoothing:
        t = (1.0 - label_smoothing) * t + label_smoothing / K
    return t


def cross_entropy(logits, labels, label_smoothing=0.0):
    """logits (B, K) float, labels (B,) int or (B, K) float -> (loss float, dlogits (B, K))."""
    _check_inputs(logits, labels, label_smoothing)
    _check_label_range(labels, *logits.shape)
    loss, dlogits = cross_entropy_device(logits, labels, label_smoothing)
    return float(loss), dlogits


def cross_entropy_device(logits, labels, label_smoothing=0.0):
    """As ``cross_entropy`` without the labels' range check; the loss a 0-d array of the
    logits' dtype on their device."""
    _check_inputs(logits, labels, label_smoothing)
    xp = array_module(logits)
    B = logits.shape[0]
    t = _targets(logits, labels, label_smoothing)
    logp = log_softmax(logits)
    loss = -(t * logp).sum() / B
    # dlogits = (p - t) / B when t sums to 1
    dlogits = (xp.exp(logp) * t.sum(axis=-1, keepdims=True) - t) / B
    return loss, dlogits


def _check_inputs(logits, labels, label_smoothing):
    if not hasattr(logits, "ndim") or logits.ndim != 2:
        raise ValueError("logits must have shape (B, K), "
                         f"got {getattr(logits, 'shape', type(logits))}")
    if logits.dtype.kind != "f":
        raise ValueError(f"logits must be floating point, got dtype {logits.dtype}")
    if not hasattr(labels, "ndim"):
        raise ValueError(f"labels must be an array, got {type(labels).__name__}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    xp = array_module(logits)
    if array_module(labels) is not xp:
        raise ValueError("logits and labels are on different backends; "
                         "move both with minivit.to_device")
