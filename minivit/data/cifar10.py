"""CIFAR-10 on the host: ``load_cifar10`` finds the folder, reads and checks every file and
splits off a validation set.

The file format and its safe reader are in ``cifar_format``, finding and downloading the
data in ``download``, batching and normalisation in ``batches``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from minivit.backend import host_xp
from minivit.data.batches import channel_stats
from minivit.data.cifar_format import (
    ALL_FILES,
    META_FILE,
    TEST_FILE,
    TRAIN_FILES,
    load_pickle,
    read_batch,
    read_label_names,
)
from minivit.data.download import find_cifar10
from minivit.data.verify import verify_official

np = host_xp()


@dataclass(repr=False)
class CIFAR10Data:
    """CIFAR-10 on the host. Images uint8 (N, 3, 32, 32), labels int64 (N,).

    ``mean`` / ``std``: float64 (3,), per channel in [0, 1] units, of ``train_x`` only.
    """
    train_x: object
    train_y: object
    val_x: object
    val_y: object
    test_x: object
    test_y: object
    label_names: list
    mean: object
    std: object
    path: Path | None = None

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def __repr__(self):
        return (f"CIFAR10Data(train={len(self.train_y)}, val={len(self.val_y)}, "
                f"test={len(self.test_y)}, classes={self.num_classes}, path={self.path})")


def load_cifar10(data_dir=None, val_size: int = 5000, download: bool = False,
                 train_size: int | None = None) -> CIFAR10Data:
    """Load CIFAR-10 (see ``find_cifar10`` for where it is looked for).

    The validation split is the LAST ``val_size`` training images (0 allowed). ``train_size``
    keeps only that many of the remaining training images, the same number of each class (the
    first ones in file order; see ``balanced_subset``), for data-efficiency studies; None keeps
    them all. ``mean`` and ``std`` are computed on the training images kept. Every file is
    checked; problems raise FileNotFoundError / CIFARFormatError (a ValueError) naming the file.
    """
    folder = find_cifar10(data_dir, download=download)
    for name in ALL_FILES:  # report a missing file before reading 150 MB of the others
        if not (folder / name).is_file():
            load_pickle(folder / name)  # raises the clear FileNotFoundError
    official = verify_official(folder)  # the files that are the official ones (MD5-checked)
    label_names = read_label_names(folder / META_FILE, META_FILE in official)
    parts = [read_batch(folder / name, name in official) for name in TRAIN_FILES]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    test_x, test_y = read_batch(folder / TEST_FILE, TEST_FILE in official)

    if isinstance(val_size, bool) or not isinstance(val_size, (int, np.integer)) \
            or not 0 <= val_size < len(x):
        raise ValueError(f"val_size must be an int in 0..{len(x) - 1} (the training set in "
                         f"{folder} has {len(x)} images), got {val_size!r}")
    n_train = len(x) - val_size
    train_x, train_y = x[:n_train], y[:n_train]
    if train_size is not None:
        keep = balanced_subset(train_y, train_size, len(label_names), folder)
        train_x, train_y = train_x[keep], train_y[keep]
    mean, std = channel_stats(train_x)
    return CIFAR10Data(train_x, train_y, x[n_train:], y[n_train:], test_x, test_y,
                       label_names, mean, std, folder)


def balanced_subset(labels, size: int, num_classes: int, folder=None):
    """Indices (sorted) of ``size`` images with the same number of each class: the first
    ``size // num_classes`` of every class in file order, and one more of each of the first
    ``size % num_classes`` classes. ValueError if a class has too few images."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) \
            or not num_classes <= size <= len(labels):
        raise ValueError(f"train_size must be an int in {num_classes}..{len(labels)} (the "
                         f"training split in {folder} has {len(labels)} images), got {size!r}")
    per_class, extra = divmod(int(size), num_classes)
    keep = []
    for c in range(num_classes):
        want = per_class + (c < extra)
        found = np.flatnonzero(labels == c)[:want]
        if len(found) < want:
            raise ValueError(f"train_size {size} needs {want} images of class {c}, but the "
                             f"training split in {folder} has {len(found)}")
        keep.append(found)
    return np.sort(np.concatenate(keep))
