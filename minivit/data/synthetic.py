"""Small synthetic CIFAR-10 look-alikes, written in exactly the official file format.

Tests and demos use them where the real data set is absent. Each class gets its own
colour cast and stripe direction, drowned in per-image noise, so a model can learn the
classes (a nearest-class-mean classifier already does well) but not trivially.

The files are written the way Python 2's cPickle wrote the originals: protocol 2, bytes
as Python-2 ``str`` opcodes (not protocol-2 calls to ``_codecs.encode``) and NumPy's
array rebuild function named ``numpy.core.multiarray._reconstruct``.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

from minivit.backend import host_rng, host_xp
from minivit.data.cifar_format import META_FILE, TEST_FILE, TRAIN_FILES

np = host_xp()
_reconstruct = np.zeros(0).__reduce__()[0]  # NumPy's array rebuild function, whatever its module

LABEL_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck")


class _Py2Pickler(pickle._Pickler):  # the pure-Python pickler lets us change how bytes are saved
    """Protocol-2 pickler that writes pickles the way Python 2's cPickle did."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj: bytes):
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str

    def save_global(self, obj, name=None):
        if obj is _reconstruct:  # the module name NumPy 1.x (and the official files) use
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def save_py2_pickle(obj, path) -> None:
    """Pickle ``obj`` to ``path`` as the official CIFAR-10 files are pickled."""
    with open(path, "wb") as f:
        _Py2Pickler(f, protocol=2).dump(obj)


def make_images(labels, rng, strength: float = 1.0):
    """Class-dependent uint8 images (N, 3, 32, 32) for int ``labels`` (N,).

    image = 128 + per-image brightness + strength * (class colour + class stripes) + noise.
    """
    labels = np.asarray(labels)
    n = len(labels)
    fixed = host_rng(1234)  # the class "look" does not depend on the seed
    colours = fixed.uniform(-40, 40, size=(10, 3))                       # (K, 3)
    angles = np.arange(10) * np.pi / 10                                  # stripe direction
    yy, xx = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    stripes = 25 * np.sin(2 * np.pi / 8 * (np.cos(angles)[:, None, None] * xx
                                           + np.sin(angles)[:, None, None] * yy))  # (K, 32, 32)
    signal = colours[:, :, None, None] + stripes[:, None]                # (K, 3, 32, 32)
    amount = strength * rng.uniform(0.5, 1.0, size=(n, 1, 1, 1))
    brightness = rng.normal(0, 20, size=(n, 1, 1, 1))
    noise = rng.normal(0, 40, size=(n, 3, 32, 32))
    img = 128 + brightness + amount * signal[labels] + noise
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _batch(labels, rng, batch_label: str, start: int) -> dict:
    x = make_images(labels, rng)
    return {
        b"batch_label": batch_label.encode(),
        b"labels": [int(v) for v in labels],
        b"data": np.ascontiguousarray(x.reshape(len(x), -1)),           # (n, 3072)
        b"filenames": [f"synthetic_{LABEL_NAMES[v]}_s_{start + i:06d}.png".encode()
                       for i, v in enumerate(labels)],
    }


def write_cifar10_like(dest_dir, n_train_per_batch: int = 100, n_test: int = 100,
                       seed: int = 0) -> Path:
    """Write data_batch_1..5, test_batch and batches.meta into ``dest_dir``; return it.

    ``dest_dir`` plays the role of ``cifar-10-batches-py/`` (created if needed). Labels
    cycle through all 10 classes in a seeded shuffled order.
    """
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    rng = host_rng(seed)

    def labels(n):
        return rng.permutation(np.arange(n) % 10)

    for i, name in enumerate(TRAIN_FILES):
        batch = _batch(labels(n_train_per_batch), rng, f"training batch {i + 1} of 5",
                       i * n_train_per_batch)
        save_py2_pickle(batch, dest / name)
    save_py2_pickle(_batch(labels(n_test), rng, "testing batch 1 of 1", 0), dest / TEST_FILE)
    save_py2_pickle({b"num_cases_per_batch": n_train_per_batch,
                     b"label_names": [n.encode() for n in LABEL_NAMES],
                     b"num_vis": 3 * 32 * 32}, dest / META_FILE)
    return dest


__all__ = ["write_cifar10_like", "save_py2_pickle", "make_images", "LABEL_NAMES"]
