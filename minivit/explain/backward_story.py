"""The backward pass of one image, stage by stage, for every target class (``minivit explain``).

For the cross-entropy loss L = -log softmax(y)_k of target class k:

    dL/dy = softmax(y) - onehot(k)                         stage 0: the logits
    dL/dz_L                                                stage 1: head, pooling, final LN
    dL/dz_{l-1} = block_l^T(dL/dz_l)                       stages 2 .. L+1: the blocks, last first
    dL/dx  (x the normalised image)                        stage L+2: patch projection, pixels

Every gradient is ``VisionTransformer.backward``'s own, read through its ``trace``.  Host
float32 arrays without the batch axis.
"""

from __future__ import annotations

from minivit.backend import host_xp, to_device, to_numpy
from minivit.explain.forward_story import token_norms
from minivit.layers.loss import cross_entropy


def class_backward(model, x, target: int) -> dict:
    """x (1, C, H, W) normalised -> dict for class ``target``:

    loss (), d_logits (K,), token_grad_norms (L+1, T): |dL/dz_l| per token for l = L .. 0,
    d_image (C, H, W) = dL/dx, grad_x_input (H, W) = sum over channels of x dL/dx,
    param_grad_norms (number of parameter tensors,) in ``model.grads`` order.
    """
    np = host_xp()
    logits = model.forward(x, keep_cache=True)
    labels = to_device(np.asarray([target], dtype="int64"))
    loss, d_logits = cross_entropy(logits, labels)      # mean over a batch of one: the loss
    trace = {}
    d_image = model.backward(d_logits, trace)
    d_states = np.stack([to_numpy(d)[0] for d in trace["d_blocks"]])      # (L+1, T, D)
    d_image = to_numpy(d_image)[0].astype("float32")
    x_host = to_numpy(x)[0]
    grad_norms = [float(np.sqrt((to_numpy(g).astype("float64") ** 2).sum()))
                  for g in model.grads.values()]
    return {
        "loss": np.float32(loss),
        "d_logits": to_numpy(d_logits)[0].astype("float32"),
        "token_grad_norms": token_norms(d_states),
        "d_image": d_image,
        "grad_x_input": (d_image * x_host).sum(axis=0).astype("float32"),
        "param_grad_norms": np.asarray(grad_norms, dtype="float32"),
    }


def backward_story(model, x) -> dict:
    """Every class's ``class_backward``, stacked on a leading class axis (K, ...); plus
    param_names, the parameter tensors in ``param_grad_norms`` order."""
    np = host_xp()
    per_class = [class_backward(model, x, k) for k in range(model.config.num_classes)]
    story = {key: np.stack([c[key] for c in per_class]) for key in per_class[0]}
    story["param_names"] = list(model.grads.keys())
    return story


__all__ = ["backward_story", "class_backward"]
