"""Masked patch prediction (the ViT paper's self-supervision): predict the mean colour of
corrupted patches (minivit/models/masked_patch_prediction.py computes the loss in its
forward).  Each replacement patch is drawn from anywhere in the batch, so the batch cannot
be split over threads: it runs on one; over ranks each draws its own share's corruption."""

from __future__ import annotations

from minivit.backend import host_xp, to_device
from minivit.backend import rng as make_rng
from minivit.io.pretrained import save_mpp
from minivit.models.masked_patch_prediction import create_mpp, draw_corruption, mean_color_targets
from minivit.training.objectives.pretraining import Pretraining


class MPPObjective(Pretraining):
    kind, has_accuracy = "mpp", True

    def __init__(self, cfg, data, ranks=None):
        super().__init__(cfg, data, create_mpp, 1, ranks)

    def draw(self, gen, images, part=None):
        """The corruption draws; over ranks, from a generator of the step and the start row."""
        B, N = images.shape[0], self.model.config.encoder.num_patches
        if part is not None:
            gen = make_rng([int(gen.integers(0, 2**31 - 1)), part[0]])
        return draw_corruption(gen, B, N, self.model.dtype)

    def shard_loss(self, model, images, draws, keep_cache=True):
        """-> (loss, correct): correct = B x the share of corrupted patches whose colour is
        predicted right, so that correct / B is the accuracy."""
        pixels = images * _channels(images, self.std) + _channels(images, self.mean)  # [0, 1]
        targets = mean_color_targets(pixels, model.config.encoder.patch_size,
                                     model.config.color_bits)
        loss, logits, labels, _ = model.forward(images, targets, draws=draws,
                                                keep_cache=keep_cache)
        acc = (logits.argmax(axis=-1) == labels).mean()
        return loss, acc * images.shape[0]

    def write_model(self, path):
        save_mpp(self.model, path)

    def summary(self) -> str:
        return (f"masked patch prediction: the {2 ** (3 * self.model.config.color_bits)} mean "
                f"colours of corrupted patches (cross-entropy)")


def _channels(images, values):
    """(C,) host values -> (1, C, 1, 1) on the images' device, in their dtype."""
    return to_device(host_xp().asarray(values).reshape(1, -1, 1, 1), images.dtype)


__all__ = ["MPPObjective"]
