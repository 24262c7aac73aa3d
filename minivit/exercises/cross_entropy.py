"""Exercise: the softmax cross-entropy loss and its gradient (minivit/layers/loss.py)."""

from minivit.backend import to_device
from minivit.exercises.exercise import Case, Exercise, WrongAnswer, unpack_tuple
from minivit.layers.loss import _targets, cross_entropy_device
from minivit.layers.softmax import log_softmax

STATEMENT = """
The loss of a batch of logits x (B, K) against targets t (B, K):

    loss = -(1/B) sum_b sum_k t_bk log softmax(x_b)_k

The targets come from the labels: one-hot rows of integer labels (B,), or given soft targets
(B, K) (mixup, cutmix: their rows need not sum to one), mixed with the uniform distribution by
label smoothing eps: t <- (1 - eps) t + eps / K.  ``_targets(logits, labels, label_smoothing)``
builds t for you, and ``log_softmax(x)`` computes log p stably.

Write ``cross_entropy_device``: return (loss, dlogits), the loss as a 0-d array and
dlogits = dloss/dx (B, K).  (``_check_inputs`` checks the arguments; you may call it.)

Hints: log softmax(x)_k = x_k - log sum_j exp(x_j), so
    d(-sum_k t_k log p_k)/dx_j = p_j sum_k t_k - t_j
which is p - t when the targets sum to one -- but soft targets need not.  Do not forget 1/B.
"""


def forward(inputs, static):
    logits = inputs["logits"]
    loss, _ = cross_entropy_device(logits, to_device(static["labels"]), static["label_smoothing"])
    return loss, logits


def call(backward, dloss, logits, static):
    return backward(logits, to_device(static["labels"]), static["label_smoothing"]), dloss


def unpack(result_and_dloss):
    result, dloss = result_and_dloss
    got = unpack_tuple(result, ("loss", "logits"), "cross_entropy_device")
    if not hasattr(got["logits"], "shape"):
        raise WrongAnswer(f"cross_entropy_device returned {type(got['logits']).__name__} for "
                          f"dlogits; expected an array")
    return {"logits": got["logits"] * dloss, "loss": got["loss"]}


def cases(rng):
    out = []
    for B, K, targets, eps in ((4, 5, "integer", 0.0), (3, 6, "integer", 0.1),
                               (5, 3, "soft", 0.0), (2, 4, "soft", 0.2)):
        if targets == "integer":
            labels = rng.integers(0, K, size=B)
        else:
            labels = rng.random((B, K)) * 0.8        # soft targets, rows not summing to one
        out.append(Case({"logits": 3.0 * rng.standard_normal((B, K))},
                        {"targets": targets, "label_smoothing": eps, "labels": labels}))
    return out


def torch_forward(torch, t, static):
    labels = torch.from_numpy(static["labels"])
    return torch.nn.functional.cross_entropy(t["logits"], labels,
                                             label_smoothing=static["label_smoothing"])


EXERCISE = Exercise(
    name="cross_entropy", title="softmax cross-entropy, labels or soft targets",
    difficulty="easy", solution=cross_entropy_device, statement=STATEMENT,
    given=(_targets, log_softmax), forward=forward, call=call, unpack=unpack, cases=cases,
    torch_forward=torch_forward)
