"""Write walkthroughs/assets/cifar10_sample.npz: the first 64 CIFAR-10 test images (uint8).

    python walkthroughs/assets/make_cifar10_sample.py path/to/cifar-10-batches-py

The walkthroughs and their tests use this small sample so that they run without the data set.
It holds x uint8 (64, 3, 32, 32), y int64 (64,), label_names (10,) str, and the per-channel
mean/std (float64 (3,), [0, 1] units) of the 45,000 training images that ``minivit train``
normalises with (val_size 5000).  Read with minivit's own (restricted-unpickler) reader.
"""

import os
import sys
from pathlib import Path

import numpy as np

from minivit.data.cifar10 import load_cifar10
from minivit.data.cifar_format import read_batch, read_label_names

N = 64


def main(folder) -> Path:
    folder = Path(folder)
    x, y = read_batch(folder / "test_batch")
    data = load_cifar10(folder, val_size=5000)              # for the training mean / std
    names = read_label_names(folder / "batches.meta")
    out = Path(__file__).with_name("cifar10_sample.npz")
    np.savez_compressed(out, x=x[:N], y=y[:N], label_names=np.array(names),
                        mean=data.mean, std=data.std)
    print(f"wrote {out} ({out.stat().st_size} bytes): {N} test images, classes "
          f"{np.bincount(y[:N], minlength=10).tolist()}, mean {data.mean.round(4).tolist()}, "
          f"std {data.std.round(4).tolist()}")
    return out


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("MINIVIT_DATA", "cifar-10-batches-py"))
