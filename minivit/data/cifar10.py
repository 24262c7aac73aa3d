"""CIFAR-10 on the host: find it, download it safely, read its pickles safely, batch it.

The official "python version" of CIFAR-10 is a folder ``cifar-10-batches-py/`` with

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
unpickler that knows only the few NumPy names the format needs.

Everything here stays on the host (NumPy, through ``backend.host_xp()``); a training
loop takes index batches from ``iterate_batches``, moves them with ``to_device`` and
calls ``normalize`` on the device.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import pickle
import shutil
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

from minivit.backend import array_module, host_rng, host_xp, resolve_dtype

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


# --------------------------------------------------------------------------- finding

def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/minivit`` (default ``~/.cache/minivit``): where downloads go."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "minivit"


def _holds_cifar(folder: Path) -> bool:
    return folder.is_dir() and any((folder / f).exists() for f in ALL_FILES)


def find_cifar10(data_dir=None, download: bool = False) -> Path:
    """Return the ``cifar-10-batches-py`` folder to read.

    Looks, in this order, at: ``data_dir``; the ``MINIVIT_DATA`` environment variable;
    the cache ``cache_dir()/cifar-10-batches-py``. Each may name the folder itself or
    its parent. With ``download=True`` and nothing found, the official archive is
    downloaded into the cache (MD5-checked). Otherwise FileNotFoundError lists every
    place looked and how to point minivit at a copy.
    """
    sources = []
    if data_dir is not None:
        sources.append(("data_dir argument / --data-dir", Path(data_dir).expanduser()))
    if os.environ.get(ENV_VAR):
        sources.append((f"${ENV_VAR}", Path(os.environ[ENV_VAR]).expanduser()))
    cache = cache_dir() / FOLDER_NAME
    sources.append(("cache", cache))

    looked = []
    for i, (what, base) in enumerate(sources):
        for folder in (base,) if base == cache else (base, base / FOLDER_NAME):
            looked.append(f"{folder} ({what})")
            if _holds_cifar(folder):
                if i > 0:
                    skipped = ", ".join(f"{w} = {p}" for w, p in sources[:i])
                    warnings.warn(f"CIFAR-10 not found at {skipped}; using {folder} instead")
                return folder

    reason = ""
    if download:
        try:
            download_and_extract(CIFAR10_URL, cache.parent, CIFAR10_MD5)
            if _holds_cifar(cache):
                return cache
            reason = f" The download finished but {cache} holds no CIFAR-10 files."
        except (OSError, ValueError) as e:
            reason = f" The download failed: {e}"
    raise FileNotFoundError(
        "CIFAR-10 ('python version') was not found. Looked in: " + "; ".join(looked) + "." +
        reason + f" Point minivit at a copy with --data-dir PATH or {ENV_VAR}=PATH "
        f"(the folder holding data_batch_1..5, test_batch, batches.meta, or its parent), "
        f"or download it into the cache with --download (download=True).")


# --------------------------------------------------------------------------- download

def _as_url(url_or_path) -> str:
    s = str(url_or_path)
    if "://" in s:
        return s
    return Path(s).expanduser().resolve().as_uri()


def _fetch(url: str, dest: Path) -> str:
    """Copy ``url`` (http, https or file) to ``dest``; return its MD5 hex digest."""
    if urllib.parse.urlparse(url).scheme not in ("http", "https", "file"):
        raise ValueError(f"cannot fetch {url!r}: only http(s):// and file:// URLs or paths")
    md5 = hashlib.md5()
    if not url.startswith("file:"):
        print(f"minivit: downloading {url} ...", file=sys.stderr, flush=True)
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(dest, "wb") as f:
            while chunk := r.read(1 << 20):
                md5.update(chunk)
                f.write(chunk)
    except OSError as e:  # URLError, HTTPError, timeouts and disk errors are OSErrors
        raise OSError(f"could not fetch {url}: {e}") from None
    return md5.hexdigest()


def _check_members(tar: tarfile.TarFile, archive: str, root: Path) -> list:
    """Refuse the whole archive if any member could land outside ``root``."""
    members = tar.getmembers()
    for m in members:
        p = Path(m.name)
        problem = None
        if m.name.startswith(("/", "\\")) or p.is_absolute():
            problem = "has an absolute path"
        elif ".." in p.parts:
            problem = "contains '..'"
        elif m.issym() or m.islnk():
            problem = "is a link"
        elif not (m.isfile() or m.isdir()):
            problem = "is not a regular file or folder"
        elif not (root / p).resolve().is_relative_to(root):
            problem = "resolves outside the target folder"
        if problem:
            raise ValueError(f"refusing to extract {archive}: member {m.name!r} {problem}")
    return members


def download_and_extract(url_or_path, dest, md5: str | None = CIFAR10_MD5) -> Path:
    """Fetch a .tar.gz (URL or local path), check its MD5, extract it safely into ``dest``.

    Works in a temporary folder inside ``dest`` and only moves the extracted top-level
    entries into ``dest`` once everything succeeded, so a failed download, a wrong MD5
    or a hostile archive (absolute paths, ``..``, links) leaves ``dest`` as it was.
    Returns ``dest``.
    """
    dest = Path(dest).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    url = _as_url(url_or_path)
    tmp = Path(tempfile.mkdtemp(prefix=".minivit-download-", dir=dest))
    try:
        archive = tmp / "archive.tar.gz"
        got = _fetch(url, archive)
        if md5 is not None and got != md5.lower():
            raise ValueError(f"MD5 mismatch for {url}: expected {md5}, got {got}; the "
                             f"download is incomplete or not the expected file")
        out = (tmp / "extracted").resolve()
        out.mkdir()
        try:
            with tarfile.open(archive, "r:gz") as tar:
                members = _check_members(tar, url, out)
                extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tar.extractall(out, members=members, **extra)
        except (tarfile.TarError, EOFError) as e:
            raise ValueError(f"{url} is not a valid .tar.gz archive ({e})") from None
        entries = list(out.iterdir())
        for e in entries:
            if (dest / e.name).exists():
                raise FileExistsError(f"{dest / e.name} already exists; remove it (it may "
                                      f"be a damaged copy) and download again")
        for e in entries:
            e.rename(dest / e.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


# --------------------------------------------------------------------------- loading

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


def channel_stats(x):
    """Per-channel mean and std in [0, 1] units of uint8 images (N, C, H, W) -> two (C,) float64.

    Uses a 256-bin histogram per channel: exact, and no float copy of the images.
    """
    if x.dtype != np.uint8 or x.ndim != 4 or len(x) == 0:
        raise ValueError(f"channel_stats needs uint8 images (N>0, C, H, W), got {x.dtype} {x.shape}")
    levels = np.arange(256, dtype=np.float64) / 255.0
    mean, std = np.empty(x.shape[1]), np.empty(x.shape[1])
    for c in range(x.shape[1]):
        counts = np.bincount(x[:, c].ravel(), minlength=256).astype(np.float64)
        p = counts / counts.sum()
        mean[c] = p @ levels
        std[c] = np.sqrt(p @ (levels - mean[c]) ** 2)
    return mean, std


def load_cifar10(data_dir=None, val_size: int = 5000, download: bool = False) -> CIFAR10Data:
    """Load CIFAR-10 (see ``find_cifar10`` for where it is looked for).

    The validation split is the LAST ``val_size`` training images (0 allowed); ``mean`` and
    ``std`` are computed on the remaining training images. Every file is checked; problems
    raise FileNotFoundError / CIFARFormatError (a ValueError) naming the file.
    """
    folder = find_cifar10(data_dir, download=download)
    for name in ALL_FILES:  # report a missing file before reading 150 MB of the others
        if not (folder / name).is_file():
            load_pickle(folder / name)  # raises the clear FileNotFoundError
    label_names = read_label_names(folder / META_FILE)
    parts = [read_batch(folder / name) for name in TRAIN_FILES]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    test_x, test_y = read_batch(folder / TEST_FILE)

    if isinstance(val_size, bool) or not isinstance(val_size, (int, np.integer)) \
            or not 0 <= val_size < len(x):
        raise ValueError(f"val_size must be an int in 0..{len(x) - 1} (the training set in "
                         f"{folder} has {len(x)} images), got {val_size!r}")
    n_train = len(x) - val_size
    train_x, train_y = x[:n_train], y[:n_train]
    mean, std = channel_stats(train_x)
    return CIFAR10Data(train_x, train_y, x[n_train:], y[n_train:], test_x, test_y,
                       label_names, mean, std, folder)


# --------------------------------------------------------------------------- batching

def batch_indices(n: int, batch_size: int, rng=None, drop_last: bool = False):
    """Yield host int64 index arrays of length ``batch_size`` covering range(n).

    ``rng``: None -> in order (evaluation); an int seed or a NumPy Generator
    (``backend.host_rng``) -> a shuffled order. ``drop_last`` drops a short final batch.
    """
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if rng is None:
        order = np.arange(n)
    else:
        if isinstance(rng, (int, np.integer)):
            rng = host_rng(int(rng))
        order = rng.permutation(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start:start + batch_size]


def iterate_batches(x, y, batch_size: int, rng=None, drop_last: bool = False):
    """Yield host batches ``(x[idx], y[idx])``: x (B, 3, 32, 32) uint8, y (B,) int64.

    Same ``rng`` / ``drop_last`` meaning as ``batch_indices``.
    """
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} images but y has {len(y)} labels")
    for idx in batch_indices(len(x), batch_size, rng, drop_last):
        yield x[idx], y[idx]


def normalize(x, mean, std, dtype=None):
    """uint8 images (B, C, H, W) on any backend -> float ``(x / 255 - mean) / std`` per channel.

    ``mean``, ``std``: (C,) in [0, 1] units (e.g. ``CIFAR10Data.mean``); ``dtype``: float32
    (default) or float64. Runs where ``x`` lives (NumPy or CuPy).
    """
    xp = array_module(x)
    dt = resolve_dtype(dtype)
    if x.ndim != 4:
        raise ValueError(f"normalize expects images (B, C, H, W), got shape {x.shape}")
    mean = xp.asarray(mean, dtype=dt).reshape(1, -1, 1, 1)
    std = xp.asarray(std, dtype=dt).reshape(1, -1, 1, 1)
    return (x.astype(dt) / dt.type(255) - mean) / std
