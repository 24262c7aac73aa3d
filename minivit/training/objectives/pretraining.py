"""What the two pre-training objectives share (``minivit pretrain``): the loss is the model's
own (MAE: minivit/models/mae.py; masked patch prediction:
minivit/models/masked_patch_prediction.py), on masks drawn from ``model.rng``, which the
checkpoint stores, so a resumed run is bit-identical.  Labels are unused.  Evaluation masks
come from a fresh generator seeded [seed, EVAL_STREAM] each time, so the validation loss of
every epoch uses the same masks.

A subclass defines ``draw`` (the batch's randomness, drawn on the calling thread so that it
does not depend on the number of threads) and ``shard_loss`` (one shard's forward and loss).
"""

from __future__ import annotations

from abc import abstractmethod

from minivit.backend import rng as make_rng
from minivit.backend import to_device
from minivit.data.batches import iterate_batches, normalize
from minivit.io.pretrained import objective_config
from minivit.models.vit_config import get_config
from minivit.training.objectives.base import Objective, float64

EVAL_STREAM = 2     # seeds [seed, EVAL_STREAM]: pre-training's evaluation masks


class Pretraining(Objective):
    """MAE or masked patch prediction: the loss of the model's own forward."""
    kind = ""                                   # "mae" / "mpp"

    def __init__(self, cfg, data, create, threads: int, ranks=None):
        encoder = get_config(cfg.model, **cfg.model_overrides)
        ocfg = objective_config(self.kind, encoder, cfg.objective_options)
        self.mean, self.std = data.mean, data.std
        self.eval_seed = [cfg.seed, EVAL_STREAM]
        super().__init__(create(ocfg, seed=cfg.seed, dtype=cfg.dtype), threads, ranks,
                         cfg.batch_size)

    @abstractmethod
    def draw(self, gen, images, part=None):
        """The randomness of a batch of ``images`` from ``gen``; part (start, total): the
        images are rows start.. of a global batch of total (DataParallel.map_shards)."""

    @abstractmethod
    def shard_loss(self, model, images, draws, keep_cache=True) -> tuple:
        """-> (loss, correct or None) of one shard."""

    def shard_step(self, replica, images, draws, weight):
        """-> (weight * loss (0-d float64), correct, grads of weight * loss)."""
        loss, correct = self.shard_loss(replica, images, draws)
        replica.backward(weight)                          # d(weight * loss_s)
        return weight * float64(loss, images), correct, replica.grads

    def forward_backward(self, batch):
        draws = self.draw(self.model.rng, batch.images, self.part)
        outs = self.parallel.map_shards(self.shard_step, batch.images, draws,
                                        part=self.part)
        loss = sum(o[0] for o in outs)
        self.parallel.sum_grads([o[2] for o in outs])
        return loss, None if not self.has_accuracy else sum(o[1] for o in outs)

    def evaluate_images(self, x, y, mean, std, batch_size=500) -> dict:
        """Mean loss (and MPP colour accuracy) over host uint8 images, fixed eval masks."""
        gen = make_rng(self.eval_seed)
        loss_sum, correct, n = 0.0, 0.0, len(x)
        for xb, _ in iterate_batches(x, y, batch_size):
            images = normalize(to_device(xb), mean, std, self.model.dtype)
            outs = self.parallel.map_shards(
                lambda r, im, d, w: (w, *self.shard_loss(r, im, d, keep_cache=False)),
                images, self.draw(gen, images))
            loss_sum += len(xb) * sum(w * float64(loss, images)
                                      for w, loss, _ in outs)              # sum_s B_s loss_s
            correct += sum(0.0 if c is None else c for _, _, c in outs)
        return {"loss": float(loss_sum) / max(n, 1), "n": n,
                "acc": float(correct) / max(n, 1) if self.has_accuracy else None}


__all__ = ["EVAL_STREAM", "Pretraining"]
