"""The forward pass of one image, every step kept for the page (``minivit explain``).

    z_0 = [x_class; x_p E] + E_pos                          embedded, patch_tokens
    A_lh = softmax(q k^T / sqrt(d))                         probs, scores (before the softmax)
    [A_l1 v_l1; ...; A_lh v_lh]                             head_outputs (A·V, heads side by side)
    z'_l = z_{l-1} + MSA(LN(z_{l-1}))                       attn_update = MSA(...)
    z_l  = z'_l + MLP(LN(z'_l))                             mlp_update  = MLP(...)
    y_l  = head(pool(LN(z_l)))                              the logit lens (logit_lens.py)

Everything comes from ``VisionTransformer.forward`` with a ``trace`` (the token states) and
its cache (each block's attention cache); nothing here re-implements a layer.  One image
(B = 1), host float32 arrays without the batch axis.
"""

from __future__ import annotations

from minivit.backend import host_xp, to_numpy
from minivit.explain.logit_lens import logit_lens
from minivit.layers.linear import linear_forward


def _host(a):
    return to_numpy(a)[0].astype("float32")


def token_norms(z):
    """(..., D) -> (...,) Euclidean norm of each token vector, float32."""
    np = host_xp()
    return np.sqrt((np.asarray(z, dtype="float64") ** 2).sum(axis=-1)).astype("float32")


def forward_story(model, x) -> dict:
    """x (1, C, H, W) normalised -> dict of host arrays (T tokens, L blocks, h heads, K classes):

    logits (K,), patch_tokens (N, D) = x_p E, embedded (T, D) = z_0, probs (L, h, T, T),
    scores (L, h, T, T), head_outputs (L, T, D), residual_norms (L, T, 3): |z_{l-1}|,
    |attention update|, |MLP update| of each token, lens_tokens (L, T, K), lens_pooled (L, K).
    """
    np = host_xp()
    p = model.params
    trace = {}
    logits, probs = model.forward(x, return_attention=True, keep_cache=True, trace=trace)
    cache = model.pop_cache()                          # no backward follows this forward
    patch_tokens, _ = model.embed_patches(x)           # x_p E, before the prefix and E_pos
    states = [trace["embedded"], *trace["blocks"]]     # z_0 .. z_L
    scores, head_outputs, norms = [], [], []
    for i, block in enumerate(cache.encoder.blocks):
        core = block.attn.core
        scores.append(_host(core.qs @ core.k.swapaxes(-1, -2)))        # (h, T, T)
        merged = block.attn.proj[0]                    # A·V of every head, side by side
        head_outputs.append(_host(merged))
        attn_update, _ = linear_forward(merged, p[f"blocks.{i}.attn.proj.weight"],
                                        p[f"blocks.{i}.attn.proj.bias"])
        mlp_update = states[i + 1] - (states[i] + attn_update)
        norms.append(np.stack([token_norms(_host(states[i])), token_norms(_host(attn_update)),
                               token_norms(_host(mlp_update))], axis=-1))
    lens_tokens, lens_pooled = logit_lens(model, trace["blocks"])
    return {
        "logits": _host(logits),
        "patch_tokens": _host(patch_tokens),
        "embedded": _host(trace["embedded"]),
        "probs": np.stack([_host(a) for a in probs]),
        "scores": np.stack(scores),
        "head_outputs": np.stack(head_outputs),
        "residual_norms": np.stack(norms),
        "lens_tokens": np.stack([_host(t) for t in lens_tokens]),
        "lens_pooled": np.stack([_host(t) for t in lens_pooled]),
    }


__all__ = ["forward_story", "token_norms"]
