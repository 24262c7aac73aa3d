"""Multi-head scaled dot-product self-attention (Vaswani et al. 2017; ViT appendix A, eq. 5-8).

For each head h with width d = D / heads:
    [q, k, v] = z U_qkv                          (one fused linear map, timm's ``attn.qkv``)
    A = softmax(q k^T / sqrt(d))                 (T x T attention probabilities, rows sum to 1)
    SA(z) = A v
    MSA(z) = [SA_1(z); ...; SA_h(z)] U_msa       (timm's ``attn.proj``)

Layout of ``attn.qkv.weight`` (3D, D) as in timm: output rows 0..D-1 are q, D..2D-1 are k,
2D..3D-1 are v, and inside each, head h owns rows h*d .. (h+1)*d - 1.  All heads and all
samples go through one batched matrix product: shapes (B, heads, T, d).
"""

from typing import NamedTuple

from minivit.backend import array_module
from minivit.layers.dropout import dropout_backward, dropout_forward
from minivit.layers.linear import linear_backward, linear_forward
from minivit.layers.softmax import softmax_backward, softmax_forward


def split_heads_qkv(qkv, num_heads):
    """(B, T, 3D) -> q, k, v each (B, heads, T, d)."""
    B, T, threeD = qkv.shape
    d = threeD // (3 * num_heads)
    qkv = qkv.reshape(B, T, 3, num_heads, d).transpose(2, 0, 3, 1, 4)   # (3, B, h, T, d)
    return qkv[0], qkv[1], qkv[2]


def merge_heads(x):
    """(B, heads, T, d) -> (B, T, heads*d)."""
    B, H, T, d = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, T, H * d)


class AttentionCoreCache(NamedTuple):
    qs: object            # q / sqrt(d)            (B, h, T, d)
    k: object             # (B, h, T, d)
    v: object             # (B, h, T, d)
    probs_t: object       # the attention probabilities before dropout, keys first: A^T (B, h, T, T)
    dropped_t: object     # the same after dropout  (B, h, T, T), keys first
    drop: object          # dropout cache
    scale: float          # 1 / sqrt(d)

    @property
    def probs(self):
        """A = softmax(q k^T / sqrt(d)) (B, h, queries, keys), before dropout: a view."""
        return self.probs_t.swapaxes(-1, -2)


class AttentionCache(NamedTuple):
    qkv: object           # linear cache of attn.qkv
    core: AttentionCoreCache
    proj: object          # linear cache of attn.proj
    proj_drop: object     # dropout cache after attn.proj
    num_heads: int

    @property
    def probs(self):
        """The attention probabilities (B, h, T, T), before dropout (what the maps show)."""
        return self.core.probs


def _t(x):
    """(B, h, m, n) -> (B, h, n, m): the matrices of a stack transposed (a view)."""
    return x.swapaxes(-1, -2)


def attention_core_forward(q, k, v, attn_drop=0.0, rng=None, train=False):
    """q, k, v (B, h, T, d) -> (out (B, h, T, d), cache); ``cache.probs`` (B, h, T, T).

    out = dropout(softmax(q k^T / sqrt(d))) v.  ``probs`` are before dropout (what the maps show).

    The scores are computed transposed, S^T = k (q / sqrt(d))^T with one column per query, and
    the softmax runs down the columns (axis -2): the same numbers as a softmax along the rows
    of S, faster on the CPU (minivit/layers/softmax.py).  A^T v is then a transposed product.
    """
    scale = q.shape[-1] ** -0.5
    qs = q * scale                                         # scale q (T x d), not scores (T x T)
    scores_t = k @ _t(qs)                                  # (B, h, keys, queries) = S^T
    probs_t, _ = softmax_forward(scores_t, axis=-2)        # A^T: each column sums to one
    dropped_t, drop_cache = dropout_forward(probs_t, attn_drop, rng, train)
    out = _t(dropped_t) @ v                                # A v  (B, h, T, d)
    return out, AttentionCoreCache(qs, k, v, probs_t, dropped_t, drop_cache, scale)


def attention_core_backward(dout, cache):
    """dout (B, h, T, d) -> dq, dk, dv (B, h, T, d)."""
    c = cache
    dv = c.dropped_t @ dout                                # A^T dout   (B, h, T, d)
    ddropped_t = c.v @ _t(dout)                            # (dout v^T)^T   (B, h, keys, queries)
    dprobs_t = dropout_backward(ddropped_t, c.drop)
    dscores_t = softmax_backward(dprobs_t, c.probs_t, axis=-2)   # w.r.t. S^T = (q k^T / sqrt(d))^T
    dq = _t(dscores_t) @ c.k                               # dS k   (B, h, T, d)
    dq *= c.scale
    dk = dscores_t @ c.qs                                  # dS^T q / sqrt(d)
    return dq, dk, dv


def attention_forward(x, qkv_weight, qkv_bias, proj_weight, proj_bias, num_heads,
                      attn_drop=0.0, proj_drop=0.0, rng=None, train=False):
    """x (B, T, D) -> (y (B, T, D), cache); ``cache.probs`` (B, h, T, T)."""
    B, T, D = x.shape
    if D % num_heads:
        raise ValueError(f"width {D} is not divisible by {num_heads} heads")
    qkv, qkv_cache = linear_forward(x, qkv_weight, qkv_bias)          # (B, T, 3D)
    q, k, v = split_heads_qkv(qkv, num_heads)                         # (B, h, T, d) each
    out, core_cache = attention_core_forward(q, k, v, attn_drop, rng, train)
    merged = merge_heads(out)                                         # (B, T, D)
    y, proj_cache = linear_forward(merged, proj_weight, proj_bias)    # (B, T, D)
    y, pdrop_cache = dropout_forward(y, proj_drop, rng, train)
    return y, AttentionCache(qkv_cache, core_cache, proj_cache, pdrop_cache, num_heads)


def attention_backward(dy, cache):
    """dy (B, T, D) -> (dx, dqkv_weight, dqkv_bias, dproj_weight, dproj_bias)."""
    num_heads = cache.num_heads
    xp = array_module(dy)
    dy = dropout_backward(dy, cache.proj_drop)
    dmerged, dproj_w, dproj_b = linear_backward(dy, cache.proj)
    B, T, D = dmerged.shape
    dout = dmerged.reshape(B, T, num_heads, D // num_heads).transpose(0, 2, 1, 3)
    dq, dk, dv = attention_core_backward(dout, cache.core)
    dqkv = xp.empty((B, T, 3, num_heads, D // num_heads), dtype=dq.dtype)
    dqkv[:, :, 0] = dq.transpose(0, 2, 1, 3)               # undo split_heads_qkv:
    dqkv[:, :, 1] = dk.transpose(0, 2, 1, 3)               # (B, h, T, d) -> (B, T, h, d)
    dqkv[:, :, 2] = dv.transpose(0, 2, 1, 3)
    dqkv = dqkv.reshape(B, T, 3 * D)
    dx, dqkv_w, dqkv_b = linear_backward(dqkv, cache.qkv)
    return dx, dqkv_w, dqkv_b, dproj_w, dproj_b
