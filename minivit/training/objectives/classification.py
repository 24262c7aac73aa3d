"""What the training loop trains: an *objective*, with one contract for all of them.

    batch = prepare_batch(data, indices, cfg, aug_rng, dtype)   # a Batch on the device
    loss, stats = objective.step(batch)      # forward, loss, backward, clipping: model.grads
    result = objective.evaluate(x, y, mean, std, batch_size)    # {"loss", "acc" or None, "n"}
    objective.save_model(path)

An objective also has ``model`` (params, grads, rng, dtype, config) and ``has_accuracy``
(whether ``stats.correct`` and ``evaluate``'s "acc" mean anything).

* ``Classification``: cross-entropy on the class labels (``minivit train``); with
  ``cfg.init_from`` the encoder starts from a pre-trained checkpoint and the head from zero.
* ``Pretraining``: MAE or masked patch prediction (``minivit pretrain``, ``cfg.objective``
  "mae" / "mpp", options in ``cfg.objective_options``).  Labels are unused.  The masks are
  drawn from ``model.rng``, which the checkpoint stores, so a resumed run is bit-identical;
  evaluation masks come from a fresh generator seeded [seed, EVAL_STREAM] each time, so the
  validation loss of every epoch uses the same masks.

Both clip the gradients' global norm to ``cfg.clip_grad`` (0 = off), on the device over the
flat gradient buffer.  A step reads nothing back to the host: its loss, count of correct
predictions and gradient norm stay on the device (``StepStats``), and the loop reads them a
window of steps at a time (minivit/training/loop.py), checking there that they are finite.
"""

from __future__ import annotations

from dataclasses import dataclass

from minivit.backend import array_module, host_xp, rng as make_rng, to_device
from minivit.models.vit_config import get_config
from minivit.data.augment import mix_batch, random_crop_flip
from minivit.data.batches import iterate_batches, normalize
from minivit.data.randaugment import randaugment
from minivit.analysis.evaluation import evaluate
from minivit.layers.masking import masking_noise
from minivit.models.mae import create_mae, save_mae
from minivit.models.vit import create_model
from minivit.models.masked_patch_prediction import create_mpp, draw_corruption, mean_color_targets, save_mpp
from minivit.training.optim import clip_flat_grads
from minivit.parallel.threads import DataParallel, resolve_threads
from minivit.io.pretrained import init_from_pretrained, objective_config
from minivit.models.resnet import create_resnet
from minivit.models.resnet_config import RESNET_CONFIGS
from minivit.io.serialization import save as save_vit

EVAL_STREAM = 2     # seeds [seed, EVAL_STREAM]: pre-training's evaluation masks


@dataclass
class Batch:
    """One training batch on the device."""
    images: object              # (B, C, H, W) normalised, augmented
    labels: object              # (B,) int class labels
    targets: object             # the labels, or (B, K) soft targets (mixup / cutmix)
    smoothing: float            # label smoothing still to apply to targets
    patch_dropout: bool = True  # False: this step trains without patch dropout


@dataclass
class StepStats:
    """A step's numbers, 0-d arrays on the device (not read back)."""
    correct: object             # correct predictions in the batch (None: no accuracy)
    grad_norm: object           # global gradient norm before clipping (0.0: not clipped)


def prepare_batch(data, idx, cfg, aug_rng, dtype, patch_dropout: bool = True,
                  mix_rng=None) -> Batch:
    """Host indices -> a Batch on the device.

    uint8 pixels are moved, then cropped/flipped, RandAugment-ed (cfg.randaugment [N, M]),
    normalised and (mixup/cutmix) mixed there;
    soft targets (B, K) already include label smoothing.  mix_rng: the generator of the
    mixup / cutmix scalars (lambda, the box), best a host one so that nothing is read back
    from the device (default: aug_rng)."""
    images, labels = to_device(data.train_x[idx]), to_device(data.train_y[idx])
    if cfg.augment:
        images = random_crop_flip(images, aug_rng)
    if cfg.randaugment:
        images = randaugment(images, aug_rng, *cfg.randaugment)
    images = normalize(images, data.mean, data.std, dtype)
    if cfg.mixup > 0 or cfg.cutmix > 0:
        images, targets = mix_batch(images, labels, aug_rng if mix_rng is None else mix_rng,
                                    data.num_classes, cfg.mixup, cfg.cutmix,
                                    smoothing=cfg.label_smoothing)
        return Batch(images, labels, targets, 0.0, patch_dropout)
    return Batch(images, labels, labels, cfg.label_smoothing, patch_dropout)


def errors_ignored():
    """A diverging run overflows; the loop checks the loss and gradient norm instead (the
    step, the optimizer's update included, runs to its end whatever the values)."""
    return host_xp().errstate(over="ignore", invalid="ignore", divide="ignore")


class Objective:
    """What the objectives share: the model, its DataParallel, gradient clipping."""
    has_accuracy = True

    def __init__(self, model, threads: int, clip_grad: float):
        self.model, self.clip_grad = model, clip_grad
        self.parallel = DataParallel(model, threads)
        self.reduce_grads = None    # ranks: sums the flat gradients in place (distributed.py)

    def _clipped(self, correct) -> StepStats:
        if self.reduce_grads is not None:
            self.reduce_grads(self.model.flat_grads)
        norm = 0.0
        if self.clip_grad:
            norm = clip_flat_grads(self.model.flat_grads, self.clip_grad)    # in place
        return StepStats(correct, norm)

    def close(self):
        self.parallel.close()


class Classification(Objective):
    """Cross-entropy on the class labels, the batch split over threads (minivit.parallel.threads)."""

    def __init__(self, cfg, data, resume: bool = False):
        create = create_resnet if cfg.model in RESNET_CONFIGS else create_model
        model = create(cfg.model, seed=cfg.seed, dtype=cfg.dtype,
                       **{"num_classes": data.num_classes, **cfg.model_overrides})
        if cfg.init_from and not resume:
            init_from_pretrained(model, cfg.init_from)
        super().__init__(model, resolve_threads(cfg.threads), cfg.clip_grad)

    def step(self, batch: Batch):
        with errors_ignored():
            loss, logits = self.parallel.forward_backward(batch.images, batch.targets,
                                                          batch.smoothing, batch.patch_dropout)
            return loss, self._clipped((logits.argmax(axis=1) == batch.labels).sum())

    def evaluate(self, x, y, mean, std, batch_size=500):
        return evaluate(self.model, x, y, mean, std, batch_size, self.parallel)

    def save_model(self, path):
        save_vit(self.model, path)


class Pretraining(Objective):
    """MAE or MPP: the loss of the model's own forward, on masks drawn from ``model.rng``."""

    def __init__(self, cfg, data):
        encoder = get_config(cfg.model, **cfg.model_overrides)
        ocfg = objective_config(cfg.objective, encoder, cfg.objective_options)
        create = create_mae if cfg.objective == "mae" else create_mpp
        self.kind = cfg.objective
        self.has_accuracy = cfg.objective == "mpp"
        self.mean, self.std = data.mean, data.std
        self.eval_seed = [cfg.seed, EVAL_STREAM]
        # MAE splits a batch over threads (minivit.parallel.threads); MPP draws each replacement patch
        # from anywhere in the batch, so its batch cannot be split and it runs on one thread.
        threads = resolve_threads(cfg.threads) if cfg.objective == "mae" else 1
        super().__init__(create(ocfg, seed=cfg.seed, dtype=cfg.dtype), threads, cfg.clip_grad)

    def _draw(self, gen, images, rows=None):
        """The batch's randomness, drawn on the calling thread (so that it does not depend on
        the number of threads): MAE masking noise (B, N), or the MPP corruption draws.
        rows (start, total): the images are rows start.. of a batch split over processes
        (minivit.parallel.ranks): MAE cuts them from the noise of the whole batch; MPP draws
        its own share's corruption from a generator of the step and the start row."""
        m = self.model
        B, N = images.shape[0], m.config.encoder.num_patches
        if self.kind == "mae":
            if rows is None:
                return masking_noise(gen, B, N, m.dtype)
            return masking_noise(gen, rows[1], N, m.dtype)[rows[0]:rows[0] + B]
        if rows is not None:
            gen = make_rng([int(gen.integers(0, 2**31 - 1)), rows[0]])
        return draw_corruption(gen, B, N, m.dtype)

    def _forward(self, model, images, draws, keep_cache=True):
        """-> (loss, correct or None): correct = B x the share of corrupted patches whose
        colour is predicted right (MPP), so that correct / B is the accuracy."""
        if self.kind == "mae":
            return model.forward(images, noise=draws, keep_cache=keep_cache)[0], None
        pixels = images * _channels(images, self.std) + _channels(images, self.mean)  # [0, 1]
        targets = mean_color_targets(pixels, model.config.encoder.patch_size,
                                     model.config.color_bits)
        loss, logits, labels, _ = model.forward(images, targets, draws=draws,
                                                keep_cache=keep_cache)
        acc = (logits.argmax(axis=-1) == labels).mean()
        return loss, acc * images.shape[0]

    def _shard_step(self, replica, images, draws, weight):
        """-> (weight * loss (0-d float64), correct, grads of weight * loss)."""
        loss, correct = self._forward(replica, images, draws)
        replica.backward(weight)                          # d(weight * loss_s)
        return weight * _float64(loss, images), correct, replica.grads

    def step(self, batch: Batch):
        with errors_ignored():
            draws = self._draw(self.model.rng, batch.images, self.parallel.rows)
            outs = self.parallel.map_shards(self._shard_step, batch.images, draws)
            loss = sum(o[0] for o in outs)
            self.parallel.sum_grads([o[2] for o in outs])
        return loss, self._clipped(None if self.kind == "mae" else sum(o[1] for o in outs))

    def evaluate(self, x, y, mean, std, batch_size=500) -> dict:
        """Mean loss (and MPP colour accuracy) over host uint8 images, fixed eval masks."""
        gen = make_rng(self.eval_seed)
        loss_sum, correct, n = 0.0, 0.0, len(x)
        for xb, _ in iterate_batches(x, y, batch_size):
            images = normalize(to_device(xb), mean, std, self.model.dtype)
            outs = self.parallel.map_shards(
                lambda r, im, d, w: (w, *self._forward(r, im, d, keep_cache=False)),
                images, self._draw(gen, images))
            loss_sum += len(xb) * sum(w * _float64(loss, images)
                                      for w, loss, _ in outs)              # sum_s B_s loss_s
            correct += sum(0.0 if c is None else c for _, _, c in outs)
        return {"loss": float(loss_sum) / max(n, 1), "n": n,
                "acc": float(correct) / max(n, 1) if self.has_accuracy else None}

    def save_model(self, path):
        (save_mae if self.kind == "mae" else save_mpp)(self.model, path)


def _float64(value, like):
    """A loss (Python float or 0-d array) as a 0-d float64 array on ``like``'s device."""
    return array_module(like).asarray(value, dtype="float64")


def _channels(images, values):
    """(C,) host values -> (1, C, 1, 1) on the images' device, in their dtype."""
    return to_device(host_xp().asarray(values).reshape(1, -1, 1, 1), images.dtype)


def make_objective(cfg, data, resume: bool = False) -> Objective:
    """Classification, or pre-training for cfg.objective "mae" / "mpp"."""
    if cfg.objective == "classify":
        return Classification(cfg, data, resume)
    return Pretraining(cfg, data)


__all__ = ["Batch", "Classification", "EVAL_STREAM", "errors_ignored", "Objective", "Pretraining", "StepStats",
           "make_objective", "prepare_batch"]
