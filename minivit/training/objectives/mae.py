"""The masked autoencoder's objective (He et al. 2021): the mean squared error of the
reconstructed masked patches (minivit/models/mae.py computes it in its forward).  Each
image's masking noise is drawn for the whole batch, so a batch splits over threads."""

from __future__ import annotations

from minivit.io.pretrained import save_mae
from minivit.layers.masking import masking_noise
from minivit.models.mae import create_mae
from minivit.parallel.threads import resolve_threads
from minivit.training.objectives.pretraining import Pretraining


class MAEObjective(Pretraining):
    kind, has_accuracy = "mae", False

    def __init__(self, cfg, data, ranks=None):
        super().__init__(cfg, data, create_mae, resolve_threads(cfg.threads), ranks)

    def draw(self, gen, images, part=None):
        """Masking noise (B, N); over ranks, this process's rows of the whole batch's."""
        B, N = images.shape[0], self.model.config.encoder.num_patches
        if part is None:
            return masking_noise(gen, B, N, self.model.dtype)
        return masking_noise(gen, part[1], N, self.model.dtype)[part[0]:part[0] + B]

    def shard_loss(self, model, images, draws, keep_cache=True):
        return model.forward(images, noise=draws, keep_cache=keep_cache)[0], None

    def write_model(self, path):
        save_mae(self.model, path)

    def summary(self) -> str:
        c = self.model.config
        return f"MAE: reconstruct the {c.mask_ratio:.0%} masked patches (mean squared error)"


__all__ = ["MAEObjective"]
