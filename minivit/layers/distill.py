"""The losses of knowledge distillation (Hinton et al. 2015; DeiT, Touvron et al. 2021).

Soft distillation: the student's temperature-softened distribution is pulled towards the
teacher's by the Kullback-Leibler divergence, scaled by tau^2 so that its gradients keep their
size as tau changes (Hinton et al., section 2):

    p = softmax(teacher / tau)       q = softmax(student / tau)          (rows of (B, K))
    loss = tau^2 (1/B) sum_b sum_k p_bk (log p_bk - log q_bk)
    dloss/dstudent = tau (q - p) / B

This is ``tau**2 * F.kl_div(log_softmax(student / tau), log_softmax(teacher / tau),
reduction="batchmean", log_target=True)`` (tests/test_distill.py checks it).  DeiT's own code
divides the summed divergence by B * K (``reduction="sum"`` / numel) instead of by B: the
same direction, a loss K times smaller; minivit keeps the textbook mean over images.
The teacher is a constant: no gradient flows to it.

Hard distillation (DeiT's best) needs no new layer: the teacher's argmax is a label, and the
loss is minivit.layers.loss.cross_entropy of the distillation head against it.
"""

from typing import NamedTuple

from minivit.backend import array_module
from minivit.layers.softmax import log_softmax


class KLCache(NamedTuple):
    q: object             # (B, K) softmax(student / tau)
    p: object             # (B, K) softmax(teacher / tau)
    tau: float


def soft_distillation_forward(student, teacher, tau=1.0):
    """student, teacher logits (B, K) -> (loss: 0-d array on their device, cache)."""
    if student.shape != teacher.shape or student.ndim != 2:
        raise ValueError(f"soft distillation needs student and teacher logits of the same "
                         f"shape (B, K), got {tuple(student.shape)} and {tuple(teacher.shape)}")
    if not tau > 0:
        raise ValueError(f"the distillation temperature tau must be > 0, got {tau}")
    xp = array_module(student)
    log_p, log_q = log_softmax(teacher / tau), log_softmax(student / tau)
    p = xp.exp(log_p)
    B = student.shape[0]
    loss = (p * (log_p - log_q)).sum() * (tau * tau / B)        # not read back
    return loss, KLCache(xp.exp(log_q), p, tau)


def soft_distillation_backward(dloss, cache):
    """dloss (scalar) -> dstudent (B, K)."""
    B = cache.q.shape[0]
    return (dloss * cache.tau / B) * (cache.q - cache.p)


__all__ = ["KLCache", "soft_distillation_backward", "soft_distillation_forward"]
