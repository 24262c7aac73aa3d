"""One training batch: host indices -> augmented, normalised images on the device.

    batch = prepare_batch(data, indices, cfg, aug_rng, dtype)    # a Batch
    share = batch.rows(rows)                                     # a process's rows of it
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from minivit.backend import to_device
from minivit.data.augment import mix_batch, random_crop_flip
from minivit.data.batches import normalize
from minivit.data.randaugment import randaugment


@dataclass
class Batch:
    """One training batch on the device."""
    images: object              # (B, C, H, W) normalised, augmented
    labels: object              # (B,) int class labels
    targets: object             # the labels, or (B, K) soft targets (mixup / cutmix)
    smoothing: float            # label smoothing still to apply to targets
    patch_dropout: bool = True  # False: this step trains without patch dropout

    def rows(self, rows: slice) -> "Batch":
        """Rows ``rows`` of the batch (one process's share of a batch split over ranks)."""
        return dataclasses.replace(self, images=self.images[rows], labels=self.labels[rows],
                                   targets=self.targets[rows])


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


__all__ = ["Batch", "prepare_batch"]
