"""Looking inside a trained ViT: its embeddings, the ViT paper's Figure 7 left and center.

    patch_embedding_pca(weight, k)            Fig. 7 left:   principal components of the
                                              patch-embedding filters, as small RGB images
    position_embedding_similarity(pos_embed)  Fig. 7 center: cosine similarity of each patch
                                              position's embedding with every other one

Both work on either backend (NumPy or CuPy, whichever holds the inputs).
"""

from __future__ import annotations

from minivit.analysis.attention import _check_prefix, _grid_hw
from minivit.backend import array_module, is_array

# --------------------------------------------------------------------------- Fig. 7 left

def patch_embedding_pca(weight, k: int = 28):
    """Principal components of the patch-embedding filters (ViT paper, Fig. 7 left).

    Each of the D rows of the patch embedding E is a filter: a (C, P, P) image (timm stores E
    as the conv kernel ``patch_embed.proj.weight`` of shape (D, C, P, P)).  The paper shows "the
    top principal components of the learned embedding filters", which "resemble plausible basis
    functions for a low-dimensional representation of the fine structure within each patch".

    weight: (D, C, P, P) -> (components (k, C, P, P), explained_variance_ratio (k,)).

    The D filters, flattened to vectors of length C*P*P and centred (their mean filter
    subtracted), are decomposed X = U S V^T (SVD); the components are the first k rows of V^T,
    orthonormal vectors ordered by the variance S_i^2 / (D - 1) they explain.  ratio_i =
    S_i^2 / sum_j S_j^2.  Each component's sign is fixed so that its largest-magnitude entry is
    positive (an SVD's signs are arbitrary).  Computed in float64; k <= min(D, C*P*P).
    """
    if not is_array(weight) or weight.ndim != 4:
        raise ValueError("weight must be the patch-embedding kernel (D, C, P, P), got "
                         f"{tuple(weight.shape) if is_array(weight) else type(weight).__name__}")
    D, C, P, P2 = weight.shape
    if P != P2:
        raise ValueError(f"weight must be (D, C, P, P) with square P x P filters, got "
                         f"{tuple(weight.shape)}")
    kmax = min(D, C * P * P)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= kmax:
        raise ValueError(f"k must be an int in 1..{kmax} (min of D = {D} filters and "
                         f"C*P*P = {C * P * P} values per filter), got {k!r}")
    xp = array_module(weight)
    X = weight.reshape(D, -1).astype("float64")
    X = X - X.mean(axis=0, keepdims=True)                         # (D, C*P*P), centred
    _, S, Vt = xp.linalg.svd(X, full_matrices=False)              # Vt: (min(D, CPP), CPP)
    comps = Vt[:k]
    rows = xp.arange(k)
    signs = xp.sign(comps[rows, xp.abs(comps).argmax(axis=1)])
    comps = comps * xp.where(signs == 0, 1.0, signs)[:, None]
    var = S * S
    total = var.sum()
    ratio = var[:k] / total if float(total) > 0 else xp.zeros(k)
    return comps.reshape(k, C, P, P), ratio


# --------------------------------------------------------------------------- Fig. 7 center

def position_embedding_similarity(pos_embed, num_prefix_tokens: int = 1, grid=None):
    """Cosine similarity between position embeddings (ViT paper, Fig. 7 center).

    "Similarity of position embeddings of ViT-L/32. Tiles show the cosine similarity between
    the position embedding of the patch with the indicated row and column and the position
    embeddings of all other patches."

    pos_embed: (1, prefix + N, D) (timm's ``pos_embed``) or (prefix + N, D); the prefix rows
    (class token) are dropped.  grid: (gh, gw) or g; default square, g = sqrt(N).
    Returns sim (gh, gw, gh, gw): sim[i, j] is the (gh, gw) map of the cosine similarity of
    patch (i, j)'s embedding with every patch's; sim[i, j, i, j] = 1.
    """
    if not is_array(pos_embed) or pos_embed.ndim not in (2, 3) or \
            (pos_embed.ndim == 3 and pos_embed.shape[0] != 1):
        got = tuple(pos_embed.shape) if is_array(pos_embed) else type(pos_embed).__name__
        raise ValueError(f"pos_embed must be (1, prefix + N, D) or (prefix + N, D), got {got}")
    p = _check_prefix(num_prefix_tokens)
    E = pos_embed.reshape(pos_embed.shape[-2], pos_embed.shape[-1])[p:].astype("float64")
    N = E.shape[0]
    if grid is None:
        g = int(round(N ** 0.5))
        if N == 0 or g * g != N:
            raise ValueError(f"pos_embed has {N} patch positions after {p} prefix token(s), "
                             "which is not a square grid; pass grid=(gh, gw)")
        grid = (g, g)
    gh, gw = _grid_hw(grid)
    if gh * gw != N:
        raise ValueError(f"pos_embed has {N} patch positions after {p} prefix token(s), but "
                         f"grid {gh}x{gw} has {gh * gw}")
    xp = array_module(E)
    norms = xp.sqrt((E * E).sum(axis=1, keepdims=True))
    if bool((norms == 0).any()):
        raise ValueError("pos_embed has an all-zero position embedding: its cosine similarity "
                         "is undefined")
    U = E / norms
    return (U @ U.T).reshape(gh, gw, gh, gw)


__all__ = ["patch_embedding_pca", "position_embedding_similarity"]
