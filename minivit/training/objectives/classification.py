"""Classification: cross-entropy on the class labels (``minivit train``).

    loss = CE(model(x), y)  with label smoothing, or soft targets (mixup / cutmix)

The batch is split over threads: ``classify_shard`` is one thread's forward, loss and
backward; ``classify`` maps it over the shards and sums (minivit/parallel/threads.py).  With
``cfg.init_from`` the encoder starts from a pre-trained checkpoint and the head from zero.
"""

from __future__ import annotations

from minivit.analysis.evaluation import evaluate
from minivit.backend import array_module
from minivit.io.pretrained import init_from_pretrained
from minivit.io.serialization import save as save_vit
from minivit.layers.loss import cross_entropy_device
from minivit.models.convnets import CONVNET_CONFIGS, create_convnet, prepare_convnet
from minivit.models.vit import create_model
from minivit.parallel.threads import resolve_threads
from minivit.training.objectives.base import Objective


def classify_shard(replica, images, targets, smoothing, weight, patch_dropout=True):
    """One shard's step -> (weight * loss_s (0-d float64 on the device), logits_s, grads of
    weight * loss_s).  The labels were checked when the data were loaded (no per-batch check)."""
    logits = replica.forward(images, train=True, patch_dropout=patch_dropout)
    loss, dlogits = cross_entropy_device(logits, targets, smoothing)
    replica.backward(dlogits * weight if weight != 1.0 else dlogits)   # d(weight * L_s)
    return weight * loss.astype("float64"), logits, replica.grads


def classify(parallel, images, targets, smoothing=0.0, patch_dropout=True, part=None):
    """Cross-entropy of a batch split over ``parallel``'s threads -> (loss, logits (B, K));
    the gradients summed in ``model.grads``.  images (B, C, H, W), targets (B,) labels or
    (B, K) soft targets; part: see DataParallel.map_shards.  The loss is a 0-d float64 array
    on the device (not read back; the backward runs whatever its value)."""
    outs = parallel.map_shards(
        lambda r, x, t, w: classify_shard(r, x, t, smoothing, w, patch_dropout),
        images, targets, patch_dropout=patch_dropout, part=part)
    loss = sum(shard_loss for shard_loss, _, _ in outs)
    logits = array_module(images).concatenate([lg for _, lg, _ in outs]) \
        if len(outs) > 1 else outs[0][1]
    parallel.sum_grads([g for _, _, g in outs])
    return loss, logits


class Classification(Objective):
    """Cross-entropy on the class labels of a ViT or a ResNet."""

    def __init__(self, cfg, data, resume: bool = False, ranks=None):
        convnet = cfg.model in CONVNET_CONFIGS
        model = (create_convnet if convnet else create_model)(
            cfg.model, seed=cfg.seed, dtype=cfg.dtype,
            **{"num_classes": data.num_classes, **cfg.model_overrides})
        if convnet and not resume:
            prepare_convnet(model, data)
        if cfg.init_from and not resume:
            init_from_pretrained(model, cfg.init_from)
        super().__init__(model, resolve_threads(cfg.threads), ranks, cfg.batch_size)
        self.smoothing, self.classes, self.tta = cfg.label_smoothing, data.num_classes, cfg.tta
        self.optimizer = cfg.optimizer

    def forward_backward(self, batch):
        loss, logits = classify(self.parallel, batch.images, batch.targets, batch.smoothing,
                                batch.patch_dropout, self.part)
        return loss, (logits.argmax(axis=1) == batch.labels).sum()

    def evaluate_images(self, x, y, mean, std, batch_size=500):
        return evaluate(self.model, x, y, mean, std, batch_size, self.parallel, self.tta)

    def write_model(self, path):
        save_vit(self.model, path)

    def summary(self) -> str:
        extras = (", airbench's optimizer (Nesterov SGD, lookahead, triangular lr)"
                  if self.optimizer == "airbench" else "") + \
            (f", test-time augmentation {self.tta}" if self.tta else "")
        return (f"classification: cross-entropy on {self.classes} classes, label smoothing "
                f"{self.smoothing:g}{extras}")


__all__ = ["Classification", "classify", "classify_shard"]
