"""The CIFAR-10 "python version" file format: what the release holds, and a safe reader.

The official release is a folder ``cifar-10-batches-py/`` with

    data_batch_1 .. data_batch_5   10,000 training images each
    test_batch                     10,000 test images
    batches.meta                   the 10 class names

Each batch is a Python-2 (protocol 2) pickle of a dict::

    b'batch_label'  b'training batch 1 of 5'
    b'labels'       list of 10,000 ints in 0..9
    b'data'         uint8 array (10000, 3072): 1024 red, 1024 green, 1024 blue values,
                    each a row-major 32 x 32 plane  ->  reshape to (10000, 3, 32, 32)
    b'filenames'    list of 10,000 bytes

A pickle can run any code while it loads, so the files are read with a *restricted*
unpickler that knows only the few NumPy names the format needs. Everything here stays
on the host (NumPy, through ``backend.host_xp()``).
"""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path

from minivit.backend import host_xp

np = host_xp()

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER_NAME = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
ALL_FILES = TRAIN_FILES + (TEST_FILE, META_FILE)
NUM_CLASSES = 10
IMAGE_SHAPE = (3, 32, 32)          # (C, H, W)
ROW_SIZE = 3 * 32 * 32             # 3072 bytes per image in the files
ENV_VAR = "MINIVIT_DATA"

_HOW_TO_FIX = (f"Re-download CIFAR-10 (delete the damaged folder, then load_cifar10("
               f"download=True) fetches {CIFAR10_URL} into the cache) or point --data-dir / "
               f"{ENV_VAR} at an intact copy of the official 'python version'.")


class CIFARFormatError(ValueError):
    """A CIFAR-10 file exists but is not a valid batch (truncated, corrupt, wrong content)."""


class UnsafePickleError(CIFARFormatError):
    """A pickle asked for a global that the CIFAR-10 format never uses; nothing was run."""


# --------------------------------------------------------------------------- pickles

# The function NumPy rebuilds arrays with (numpy.core.multiarray._reconstruct in NumPy 1,
# numpy._core.multiarray._reconstruct in NumPy 2): ask an array instead of importing it.
_reconstruct = np.zeros(0).__reduce__()[0]

_ALLOWED_GLOBALS = {}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED_GLOBALS[(_mod, "_reconstruct")] = _reconstruct
    _ALLOWED_GLOBALS[(_mod, "ndarray")] = np.ndarray
    _ALLOWED_GLOBALS[(_mod, "dtype")] = np.dtype
_ALLOWED_GLOBALS[("numpy", "ndarray")] = np.ndarray
_ALLOWED_GLOBALS[("numpy", "dtype")] = np.dtype
# Python 3 writes bytes at protocol 2 as _codecs.encode(str, 'latin1') (re-saved copies).
_ALLOWED_GLOBALS[("_codecs", "encode")] = codecs.encode


class _RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only the globals in ``_ALLOWED_GLOBALS``.

    Every object a pickle *calls* (REDUCE) must first be fetched as a global, so
    refusing unknown globals means a hostile file cannot run ``os.system`` & co.
    """

    def __init__(self, file, path: Path):
        super().__init__(file, encoding="bytes")
        self.path = path

    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self.path}: refused to load: the pickle asks for the global "
                f"'{module}.{name}', which a CIFAR-10 file never needs (only NumPy's array "
                f"rebuild functions are allowed). The file is corrupt or was tampered with; "
                f"delete it. {_HOW_TO_FIX}") from None


def load_pickle(path) -> object:
    """Unpickle one CIFAR-10 file with the restricted unpickler (str keys are not forced here).

    Raises FileNotFoundError (missing), UnsafePickleError (forbidden global) or
    CIFARFormatError (truncated / corrupt), each naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"CIFAR-10 file {path} is missing. The folder {path.parent} should hold "
            f"{', '.join(ALL_FILES)}. {_HOW_TO_FIX}")
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f, path).load()
    except UnsafePickleError:
        raise
    except Exception as e:  # truncated files raise EOFError/UnpicklingError/ValueError/...
        raise CIFARFormatError(
            f"{path}: cannot be read as a CIFAR-10 pickle ({type(e).__name__}: {e}); the file "
            f"is truncated or corrupt. {_HOW_TO_FIX}") from None


def _str_keys(obj, path: Path) -> dict:
    if not isinstance(obj, dict):
        raise CIFARFormatError(f"{path}: expected a pickled dict, found {type(obj).__name__}. "
                               f"{_HOW_TO_FIX}")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def read_batch(path):
    """Read and check one batch file -> (x uint8 (n, 3, 32, 32), y int64 (n,))."""
    path = Path(path)
    d = _str_keys(load_pickle(path), path)

    def bad(problem):
        return CIFARFormatError(f"{path}: {problem}. {_HOW_TO_FIX}")

    missing = [k for k in ("data", "labels") if k not in d]
    if missing:
        raise bad(f"missing key(s) {missing}; found {sorted(map(str, d))}")
    data, labels = d["data"], d["labels"]
    if not isinstance(data, np.ndarray):
        raise bad(f"'data' is a {type(data).__name__}, expected a uint8 array")
    if data.dtype != np.uint8:
        raise bad(f"'data' has dtype {data.dtype}, expected uint8")
    if data.ndim != 2 or data.shape[1] != ROW_SIZE:
        raise bad(f"'data' has shape {data.shape}, expected (n, {ROW_SIZE}) "
                  f"(3 x 32 x 32 bytes per image)")
    if not isinstance(labels, (list, tuple, np.ndarray)):
        raise bad(f"'labels' is a {type(labels).__name__}, expected a list of ints")
    y = np.asarray(labels)
    if y.ndim != 1 or (y.size and y.dtype.kind not in "iu"):
        raise bad(f"'labels' must be a flat list of ints, got dtype {y.dtype} shape {y.shape}")
    if len(y) != len(data):
        raise bad(f"{len(y)} labels for {len(data)} images")
    if y.size and (y.min() < 0 or y.max() >= NUM_CLASSES):
        raise bad(f"labels must lie in 0..{NUM_CLASSES - 1}, found {y.min()}..{y.max()}")
    return data.reshape(-1, *IMAGE_SHAPE), y.astype(np.int64)


def read_label_names(path) -> list[str]:
    """Read ``batches.meta`` -> the 10 class names as str."""
    path = Path(path)
    d = _str_keys(load_pickle(path), path)
    names = d.get("label_names")
    if not isinstance(names, (list, tuple)) or len(names) != NUM_CLASSES \
            or not all(isinstance(n, (bytes, str)) for n in names):
        raise CIFARFormatError(f"{path}: expected 'label_names', a list of {NUM_CLASSES} "
                               f"strings, found {names!r:.200}. {_HOW_TO_FIX}")
    return [n.decode("latin1") if isinstance(n, bytes) else n for n in names]
