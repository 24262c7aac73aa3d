"""Looking inside a trained ViT: the attention analyses of the ViT paper's Figures 6 and 7.

Dosovitskiy et al. (2021), *An Image is Worth 16x16 Words*, section 4.5 "Inspecting Vision
Transformer", and Abnar & Zuidema (2020), *Quantifying Attention Flow in Transformers*:

    (Fig. 7 left and center, the embeddings: minivit/analysis/embeddings.py)
    mean_attention_distance(attn, grid, P)    Fig. 7 right:  attention-weighted distance in
                                              pixels between query and key patches, per head
    attention_rollout(attn)                   Fig. 6 / appendix D.8: attention rollout
    cls_attention_map(rollout_or_attn, grid)  what the class token looks at, as a (g, g) map
    capture_attention(model, images)          logits and every layer's attention probabilities
    confident_mistakes(logits, labels, k)     the images a model gets most wrong

Everything here works on either backend (NumPy or CuPy, whichever holds the inputs) and takes
the attention probabilities exactly as ``VisionTransformer.forward(..., return_attention=True)``
returns them: a list with one (B, heads, T, T) array per block, T = prefix + N tokens, rows
summing to one (row = query token, column = key token).  Token 0 is the class token
(``num_prefix_tokens=1``); patches follow in ``patchify``'s row-major grid order.
"""

from __future__ import annotations

from minivit.backend import array_module, host_xp, is_array, to_device, to_numpy

HEAD_FUSIONS = ("mean", "max", "min")


# --------------------------------------------------------------------------- input checks

def _grid_hw(grid) -> tuple[int, int]:
    """grid: g or (gh, gw) -> (gh, gw), positive ints; ValueError otherwise."""
    if isinstance(grid, (tuple, list)) and len(grid) == 2:
        gh, gw = grid
    else:
        gh = gw = grid
    for v in (gh, gw):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"grid must be a positive int g or a pair (gh, gw) of patches per "
                             f"column/row, got {grid!r}")
    return gh, gw


def _check_prefix(num_prefix_tokens) -> int:
    if isinstance(num_prefix_tokens, bool) or not isinstance(num_prefix_tokens, int) \
            or num_prefix_tokens < 0:
        raise ValueError(f"num_prefix_tokens must be an int >= 0, got {num_prefix_tokens!r}")
    return num_prefix_tokens


def _attention_layers(attn, what="attn") -> list:
    """A (B, h, T, T) array, a (L, B, h, T, T) array or a list of (B, h, T, T) arrays -> list.

    Checks that every layer is a 4-D array with square T x T maps and that all layers agree."""
    if is_array(attn):
        if attn.ndim == 4:
            layers = [attn]
        elif attn.ndim == 5:
            layers = list(attn)
        else:
            raise ValueError(f"{what} must be attention probabilities (B, heads, T, T) or a "
                             f"list of them, one per layer; got an array of shape "
                             f"{tuple(attn.shape)}")
    elif isinstance(attn, (list, tuple)):
        layers = list(attn)
    else:
        raise ValueError(f"{what} must be an array (B, heads, T, T) or a list of them, one per "
                         f"layer; got {type(attn).__name__}")
    if not layers:
        raise ValueError(f"{what} is an empty list: need at least one layer's attention")
    first = None
    for i, a in enumerate(layers):
        if not is_array(a) or a.ndim != 4:
            raise ValueError(f"{what}[{i}] must be a (B, heads, T, T) array, got "
                             f"{tuple(a.shape) if is_array(a) else type(a).__name__}")
        if a.shape[-1] != a.shape[-2]:
            raise ValueError(f"{what}[{i}] has shape {tuple(a.shape)}: the last two axes "
                             "(query tokens, key tokens) must be equal")
        if a.dtype.kind != "f":
            raise ValueError(f"{what}[{i}] must be floating point, got dtype {a.dtype}")
        if first is None:
            first = a.shape
        elif a.shape != first:
            raise ValueError(f"{what}: layer {i} has shape {tuple(a.shape)} but layer 0 has "
                             f"{tuple(first)}; every layer must have the same shape")
    return layers


def _check_tokens(T, grid, num_prefix_tokens, what) -> tuple[int, int]:
    gh, gw = _grid_hw(grid)
    p = _check_prefix(num_prefix_tokens)
    if T != p + gh * gw:
        raise ValueError(f"{what} has {T} tokens but a {gh}x{gw} grid with {p} prefix token(s) "
                         f"needs {p + gh * gw}; check grid and num_prefix_tokens")
    return gh, gw


# --------------------------------------------------------------------------- Fig. 7 right

def patch_distances(grid, patch_size: int):
    """(N, N) Euclidean distances in pixels between the centres of the patches of a grid.

    Patch n sits at row n // gw, column n % gw (``patchify``'s order); centres are P apart.
    Host (NumPy) array, float64."""
    np = host_xp()
    gh, gw = _grid_hw(grid)
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
        raise ValueError(f"patch_size must be a positive int, got {patch_size!r}")
    rows, cols = np.divmod(np.arange(gh * gw), gw)
    dr = rows[:, None] - rows[None, :]
    dc = cols[:, None] - cols[None, :]
    return patch_size * np.sqrt(dr * dr + dc * dc).astype("float64")


def mean_attention_distance(attn, grid, patch_size: int, num_prefix_tokens: int = 1,
                            per_image: bool = False):
    """Mean attention distance per layer and head (ViT paper, Fig. 7 right; appendix D.7).

    "Size of attended area by head and network depth. Attention distance was computed for 128
    example images by averaging the distance between the query pixel and all other pixels,
    weighted by the attention weight."  It is the analogue of a CNN's receptive field size.

    attn: one (B, heads, T, T) array, a (L, B, heads, T, T) array or a list of L such arrays
    (``model.forward(images, return_attention=True)[1]``); grid: g or (gh, gw) patches; patch_size
    P in pixels.  Returns (L, heads) float64 (L = 1 for a single array), or (L, B, heads) with
    per_image=True; on the inputs' backend.

    Convention (patch to patch): only the attention of patch queries to patch keys is used, the
    N x N block A[p:, p:] without the class token; each query's row is renormalised over the
    patch keys, so the weights again sum to one.  Then, with d(q, k) the distance in pixels
    between the centres of patches q and k (``patch_distances``),

        distance(head) = mean over images b and queries q of  sum_k A_bq[k] d(q, k).

    A head that attends only to its own patch has distance 0; uniform attention gives the mean
    distance between two patches.  A query row whose weight on patch keys is exactly zero (it
    attends only to the class token) contributes distance 0.
    """
    layers = _attention_layers(attn)
    B, H, T, _ = layers[0].shape
    gh, gw = _check_tokens(T, grid, num_prefix_tokens, "attn")
    p = num_prefix_tokens
    xp = array_module(*layers)
    dist = xp.asarray(patch_distances((gh, gw), patch_size))       # (N, N) pixels
    out = []
    for a in layers:
        a = a[:, :, p:, p:].astype("float64")                      # (B, h, N, N)
        mass = a.sum(axis=-1, keepdims=True)
        a = a / xp.where(mass > 0, mass, 1.0)
        d = (a * dist).sum(axis=-1).mean(axis=-1)                  # (B, h)
        out.append(d if per_image else d.mean(axis=0))
    return xp.stack(out)


# --------------------------------------------------------------------------- Fig. 6

def attention_rollout(attn, discard_ratio: float = 0.0, head_fusion: str = "mean"):
    """Attention rollout (Abnar & Zuidema 2020), the method behind the ViT paper's Fig. 6.

    Attention flows through the residual connections too, so each layer's attention matrix
    (heads fused into one) gets the identity added and its rows renormalised, and the layers
    are chained by matrix products:

        A_hat_l = 0.5 A_l + 0.5 I,   rows renormalised to sum to one
        rollout = A_hat_L A_hat_{L-1} ... A_hat_1            (B, T, T)

    rollout[b, i, j] is how much input token j contributes to output token i; row 0 is what the
    class token, and so the classifier, sees.

    attn: list of (B, heads, T, T) per layer, first layer first (or a (L, B, h, T, T) array).
    head_fusion: "mean" (as Abnar & Zuidema), "max" or "min" over heads.  discard_ratio in
    [0, 1): in each row of the fused matrix, that fraction of the weights, the smallest, is set
    to zero before the identity is added (the noise filter of Gildenblat's vit-explain, applied
    per query row here).  Returns (B, T, T) float64 with rows summing to one.
    """
    layers = _attention_layers(attn)
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, got {head_fusion!r}")
    if isinstance(discard_ratio, bool) or not isinstance(discard_ratio, (int, float)) \
            or not 0.0 <= discard_ratio < 1.0:
        raise ValueError(f"discard_ratio must be a number in [0, 1), got {discard_ratio!r}")
    xp = array_module(*layers)
    B, _, T, _ = layers[0].shape
    eye = xp.eye(T, dtype="float64")
    result = xp.broadcast_to(eye, (B, T, T)).copy()
    n_drop = int(discard_ratio * T)
    for a in layers:
        fused = getattr(a.astype("float64"), head_fusion)(axis=1)        # (B, T, T)
        if n_drop:                           # rank of each weight within its row
            rank = fused.argsort(axis=-1).argsort(axis=-1)
            fused = xp.where(rank < n_drop, 0.0, fused)
        a_hat = 0.5 * fused + 0.5 * eye
        a_hat = a_hat / a_hat.sum(axis=-1, keepdims=True)
        result = a_hat @ result
    return result


def _query_rows(attn, grid, num_prefix_tokens, head, what):
    """Check ``attn`` (a rollout (B, T, T) or one layer (B, heads, T, T)), pick ``head`` (or
    the mean over heads) -> ((B, T, T), number of prefix tokens, (gh, gw))."""
    if not is_array(attn) or attn.ndim not in (3, 4):
        raise ValueError("attn must be a rollout (B, T, T) or one layer's attention (B, heads, "
                         "T, T), got "
                         f"{tuple(attn.shape) if is_array(attn) else type(attn).__name__}")
    if attn.shape[-1] != attn.shape[-2]:
        raise ValueError(f"attn has shape {tuple(attn.shape)}: the last two axes must be equal")
    p = _check_prefix(num_prefix_tokens)
    if p < 1:
        raise ValueError(f"{what} needs a class token (num_prefix_tokens >= 1)")
    grid_hw = _check_tokens(attn.shape[-1], grid, p, "attn")
    if attn.ndim == 4:
        H = attn.shape[1]
        if head is None:
            attn = attn.mean(axis=1)
        elif isinstance(head, bool) or not isinstance(head, int) or not -H <= head < H:
            raise ValueError(f"head must be None or an int in 0..{H - 1}, got {head!r}")
        else:
            attn = attn[:, head]
    elif head is not None:
        raise ValueError("head is only meaningful for per-head attention (B, heads, T, T)")
    return attn, p, grid_hw


def cls_attention_map(attn, grid, num_prefix_tokens: int = 1, head=None, token: int = 0):
    """What the class token (or prefix token ``token``: 1 is a distilled model's distillation
    token) attends to, as an image-shaped map: (B, gh, gw).

    attn: a rollout (B, T, T) from ``attention_rollout``, or one layer's attention probabilities
    (B, heads, T, T), of which ``head`` (an int) is taken, or the mean over heads (head=None).
    The result is row ``token`` (the class token's query for 0), columns of the patch keys,
    reshaped to the patch grid; it is not renormalised (it sums to one minus the weight on
    prefix tokens).
    """
    a, p, (gh, gw) = _query_rows(attn, grid, num_prefix_tokens, head, "cls_attention_map")
    if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < p:
        raise ValueError(f"token must be a prefix token's index in 0..{p - 1}, got {token!r}")
    return a[:, token, p:].reshape(a.shape[0], gh, gw)


def pooled_attention_map(attn, grid, pool: str = "token", num_prefix_tokens: int = 1,
                         head=None):
    """What the pooled feature reads, as an image-shaped map (B, gh, gw).

    pool="token": the class token's row (``cls_attention_map``).  pool="mean": the head reads
    (1/N) sum_q z_q, and (1/N) sum_q sum_k A_qk v_k = sum_k ((1/N) sum_q A_qk) v_k, so each
    patch's value enters with the average weight the N patch queries give it: the patch
    queries' rows averaged, over the patch keys (prefix tokens left out)."""
    if pool == "token":
        return cls_attention_map(attn, grid, num_prefix_tokens, head)
    if pool != "mean":
        raise ValueError(f"pool must be 'token' or 'mean', got {pool!r}")
    a, p, (gh, gw) = _query_rows(attn, grid, num_prefix_tokens, head, "pooled_attention_map")
    return a[:, p:, p:].mean(axis=1).reshape(a.shape[0], gh, gw)


# --------------------------------------------------------------------------- running a model

def capture_attention(model, images, batch_size: int = 100, split_heads: bool = False):
    """Run ``model`` on images in evaluation mode and keep every layer's attention.

    images: float (B, C, H, W) in the model's dtype (normalised, e.g. ``minivit.data.normalize``),
    on the host or the device.  Returns (logits (B, K), [attention (B, heads, T, T)] * depth),
    on the active backend; batches of ``batch_size`` go through ``model.forward(...,
    return_attention=True)`` and are concatenated.  split_heads=True (a distilled model):
    logits (2, B, K), the class head's and the distillation head's.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not is_array(images):
        raise ValueError(f"images must be an array (B, C, H, W), got {type(images).__name__}")
    images = to_device(images)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"images must be a non-empty batch (B, C, H, W), got shape "
                         f"{tuple(images.shape)}")
    xp = array_module(images)
    logits, attn = [], None
    for start in range(0, len(images), batch_size):
        lg, at = model.forward(images[start:start + batch_size], train=False,
                               return_attention=True, keep_cache=False,   # no backward follows
                               split_heads=split_heads)
        logits.append(lg)
        attn = [[a] for a in at] if attn is None else [acc + [a] for acc, a in zip(attn, at)]
    return xp.concatenate(logits, axis=-2), [xp.concatenate(a) for a in attn]


def confident_mistakes(logits, labels, k: int = 8):
    """Indices of the k misclassified images with the lowest probability on their true class
    (the highest cross-entropy), worst first; fewer if fewer are wrong.

    logits (B, K), labels (B,) ints -> host int64 indices (<= k,)."""
    from minivit.layers.softmax import log_softmax
    if not is_array(logits) or logits.ndim != 2:
        raise ValueError(f"logits must be (B, K), got "
                         f"{tuple(logits.shape) if is_array(logits) else type(logits).__name__}")
    logp = to_numpy(log_softmax(logits.astype("float64")))
    y = to_numpy(labels)
    if y.shape != (logp.shape[0],) or y.dtype.kind not in "iu":
        raise ValueError(f"labels must be ({logp.shape[0]},) integers, got shape {y.shape} "
                         f"dtype {y.dtype}")
    true_logp = logp[range(len(y)), y]
    wrong = (logp.argmax(axis=1) != y).nonzero()[0]
    order = wrong[true_logp[wrong].argsort(kind="stable")]
    return order[:k]


__all__ = ["patch_distances",
           "mean_attention_distance", "attention_rollout", "cls_attention_map",
           "pooled_attention_map", "capture_attention", "confident_mistakes"]
