"""Tiny training runs shared by the tests: a one-block ViT on synthetic CIFAR-10 files
(100 training images - 20 val = 80: 5 steps of 16 per epoch), each run about a second."""

from minivit.data.synthetic import write_cifar10_like
from minivit.train_config import TrainConfig

TINY = {"embed_dim": 16, "depth": 1, "num_heads": 2, "mlp_dim": 32}
TINY_FLAGS = [f for k, v in TINY.items() for f in ("--set", f"{k}={v}")]


def write_tiny_cifar(folder):
    return write_cifar10_like(folder, n_train_per_batch=20, n_test=30)


def make_cfg(data_dir, run_dir, threads=1, **kw):
    base = dict(model_overrides=dict(TINY), batch_size=16, val_size=20, epochs=2,
                data_dir=str(data_dir), run_dir=str(run_dir), progress=False, threads=threads)
    return TrainConfig(**{**base, **kw})
