"""Data: CIFAR-10 loading (host), batching, normalisation and augmentation (device).

    data = load_cifar10(data_dir, val_size=5000)          # uint8 (N, 3, 32, 32) on the host
    for xb, yb in iterate_batches(data.train_x, data.train_y, 128, rng=host_rng(0)):
        xb = random_crop_flip(to_device(xb), gen)          # gen = backend.rng(seed, xp)
        xb = normalize(xb, data.mean, data.std)             # float (B, 3, 32, 32)
"""

from minivit.data.augment import cutmix, cutmix_box, mix_batch, mixup, one_hot, random_crop_flip
from minivit.data.batches import (
    batch_indices,
    channel_stats,
    iterate_batches,
    normalize,
    renormalize,
)
from minivit.data.cifar10 import CIFAR10Data, load_cifar10
from minivit.data.cifar_format import (
                                  CIFAR10_MD5,
                                  CIFAR10_URL,
                                  CIFARFormatError,
                                  UnsafePickleError,
                                  load_pickle,
                                  read_batch,
                                  read_label_names,
)
from minivit.data.download import cache_dir, download_and_extract, find_cifar10
from minivit.data.synthetic import LABEL_NAMES, save_py2_pickle, write_cifar10_like

__all__ = [
    "CIFAR10_MD5", "CIFAR10_URL", "CIFAR10Data", "CIFARFormatError", "LABEL_NAMES",
    "UnsafePickleError", "batch_indices", "cache_dir", "channel_stats", "cutmix", "cutmix_box",
    "download_and_extract", "find_cifar10", "iterate_batches", "load_cifar10", "load_pickle",
    "mix_batch", "mixup", "normalize", "one_hot", "random_crop_flip", "read_batch", "renormalize",
    "read_label_names", "save_py2_pickle", "write_cifar10_like",
]
