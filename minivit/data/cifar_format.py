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

A pickle can run any code while it loads, so the files are read with the restricted,
bounded unpickler of ``safe_pickle``. Every problem raises a one-line CIFARFormatError (a
ValueError) naming the file; messages describe what a file holds (types, lengths, shapes)
and never print its values. Everything here stays on the host (NumPy, through
``backend.host_xp()``).
"""

from __future__ import annotations

from pathlib import Path

from minivit.backend import host_xp
from minivit.data.safe_pickle import PickleCorrupt, PickleRefused, safe_loads

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

HOW_TO_FIX = (f"Re-download CIFAR-10 (delete the damaged folder, then --download "
               f"(download=True from Python) fetches {CIFAR10_URL} into the cache) or point "
               f"--data-dir / "
               f"{ENV_VAR} at an intact copy of the official 'python version'.")


class CIFARFormatError(ValueError):
    """A CIFAR-10 file exists but is not a valid batch (truncated, corrupt, wrong content)."""


class UnsafePickleError(CIFARFormatError):
    """A pickle asked for a global that the CIFAR-10 format never uses; nothing was run."""


# --------------------------------------------------------------------------- reading

def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


def load_pickle(path, verified: bool = False) -> object:
    """Unpickle one CIFAR-10 file with ``safe_pickle.safe_loads`` (str keys are not forced here).

    ``verified=True`` (the file's MD5 is the official one) skips the opcode scan. Raises
    FileNotFoundError (missing), UnsafePickleError (forbidden global) or CIFARFormatError
    (truncated / corrupt / beyond the limits), each naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"CIFAR-10 file {path} is missing. The folder {path.parent} should hold "
            f"{', '.join(ALL_FILES)}. {HOW_TO_FIX}")
    try:
        return safe_loads(path.read_bytes(), scan_first=not verified)
    except PickleRefused as e:
        raise UnsafePickleError(
            f"{path}: refused to load: the pickle asks for {e}, which a CIFAR-10 file never "
            f"needs (only NumPy's array rebuild functions are allowed). The file is corrupt or "
            f"was tampered with; delete it. {HOW_TO_FIX}") from None
    except Exception as e:  # truncated files raise EOFError/UnpicklingError/ValueError/...
        why = str(e) if isinstance(e, PickleCorrupt) else f"{type(e).__name__}: {_one_line(e)}"
        raise CIFARFormatError(
            f"{path}: cannot be read as a CIFAR-10 pickle ({why}); the file is truncated or "
            f"corrupt. {HOW_TO_FIX}") from None


def _key_name(k) -> str:
    return k if isinstance(k, str) and k.isidentifier() and len(k) <= 40 else f"<{len(k)} chars>"


def _str_keys(obj, path: Path) -> dict:
    if not isinstance(obj, dict):
        raise CIFARFormatError(f"{path}: expected a pickled dict, found {type(obj).__name__}. "
                               f"{HOW_TO_FIX}")
    if not all(isinstance(k, (bytes, str)) for k in obj):
        raise CIFARFormatError(f"{path}: the dict has keys that are not strings. {HOW_TO_FIX}")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _int_text(v) -> str:
    return str(v) if -2**63 <= v < 2**63 else f"a {v.bit_length()}-bit int"


def _labels(labels, bad):
    """The labels as int64 (n,): a flat list/tuple of Python ints or a 1-d int array."""
    if isinstance(labels, np.ndarray):
        labels = np.asarray(labels)  # the checked subclass of safe_pickle -> a plain ndarray
        if labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iu"):
            raise bad(f"'labels' must be a flat list of ints, got dtype {labels.dtype} shape "
                      f"{labels.shape}")
        lo, hi = (int(labels.min()), int(labels.max())) if labels.size else (0, 0)
    elif isinstance(labels, (list, tuple)):
        others = {type(v).__name__ for v in labels if type(v) is not int}
        if others:
            raise bad(f"'labels' must be a flat list of ints, found a {min(others)} among them")
        lo, hi = (min(labels), max(labels)) if labels else (0, 0)
    else:
        raise bad(f"'labels' is a {type(labels).__name__}, expected a list of ints")
    if lo < 0 or hi >= NUM_CLASSES:
        raise bad(f"labels must lie in 0..{NUM_CLASSES - 1}, found {_int_text(lo)}.."
                  f"{_int_text(hi)}")
    return np.asarray(labels).astype(np.int64)


def read_batch(path, verified: bool = False):
    """Read and check one batch file -> (x uint8 (n, 3, 32, 32), y int64 (n,))."""
    path = Path(path)
    d = _str_keys(load_pickle(path, verified), path)

    def bad(problem):
        return CIFARFormatError(f"{path}: {problem}. {HOW_TO_FIX}")

    missing = [k for k in ("data", "labels") if k not in d]
    if missing:
        raise bad(f"missing key(s) {missing}; found {sorted(map(_key_name, d))}")
    data = d["data"]
    if not isinstance(data, np.ndarray):
        raise bad(f"'data' is a {type(data).__name__}, expected a uint8 array")
    data = np.asarray(data)  # the checked subclass of safe_pickle -> a plain ndarray
    if data.dtype != np.uint8:
        raise bad(f"'data' has dtype {data.dtype}, expected uint8")
    if data.ndim != 2 or data.shape[1] != ROW_SIZE:
        raise bad(f"'data' has shape {data.shape}, expected (n, {ROW_SIZE}) "
                  f"(3 x 32 x 32 bytes per image)")
    y = _labels(d["labels"], bad)
    if len(y) != len(data):
        raise bad(f"{len(y)} labels for {len(data)} images")
    return data.reshape(-1, *IMAGE_SHAPE), y


def read_label_names(path, verified: bool = False) -> list[str]:
    """Read ``batches.meta`` -> the 10 class names as str (distinct, one line each)."""
    path = Path(path)
    d = _str_keys(load_pickle(path, verified), path)
    names = d.get("label_names")
    expected = f"expected 'label_names', a list of {NUM_CLASSES} distinct one-line strings"
    if not isinstance(names, (list, tuple)):
        raise CIFARFormatError(f"{path}: {expected}, found a {type(names).__name__}. "
                               f"{HOW_TO_FIX}")
    if len(names) != NUM_CLASSES or not all(isinstance(n, (bytes, str)) for n in names):
        kinds = sorted({type(n).__name__ for n in names})
        raise CIFARFormatError(f"{path}: {expected}, found {len(names)} values of type(s) "
                               f"{', '.join(kinds)}. {HOW_TO_FIX}")
    names = [n.decode("latin1") if isinstance(n, bytes) else n for n in names]
    for i, n in enumerate(names):
        if not (0 < len(n) <= 100 and n.isprintable()):
            raise CIFARFormatError(f"{path}: {expected}; name {i} is empty, longer than 100 "
                                   f"characters or not printable. {HOW_TO_FIX}")
        if n in names[:i]:
            raise CIFARFormatError(f"{path}: {expected}; names {names.index(n)} and {i} are the "
                                   f"same. {HOW_TO_FIX}")
    return names
