"""Files, all or nothing: atomic writes, JSON, and raw tensor files with their metadata.

    atomic_write_bytes(path, data)         temporary file next to ``path``, then os.replace
    write_json(path, obj) / read_json(path)
    write_arrays(path, arrays, meta)       {name: host array} + {str: str}, by suffix:
    read_arrays(path) -> (arrays, meta)      .safetensors (JSON header, raw little-endian
                                             tensors) or .npz (metadata entry k stored as a
                                             uint8 array of UTF-8 bytes named ``__k__``)

A .safetensors file written here has ``minivit_sha256_v2`` (CHECKSUM_KEY), a SHA-256 of every
tensor's name, dtype, shape and bytes and of the other metadata (config, checkpoint state): a byte
flipped anywhere raises CorruptFileError instead of loading silently (safetensors has no checksum,
.npz only the zip's CRC-32).  Older files have ``minivit_sha256`` (the tensors only), still checked;
a file with neither (from PyTorch, say) loads unchecked.  .npz is read with ``allow_pickle=False``,
each member's sizes checked against the zip directory before it is inflated (``check_npz_members``).

A failed write (disk full, say) raises WriteError naming the file; the old file is intact.  A
symbolic link where minivit would write or append (``open_for_append``) is refused: nothing is
ever written through a link to a file elsewhere.  Temporary files are named
``.NAME.minivit-tmp.XXXXXXXX.tmp`` (TEMP_TAG), a pattern no user file is likely to have.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import math
import os
import stat
import tempfile
import threading
import zipfile
from contextlib import contextmanager
from pathlib import Path

from minivit.backend import host_xp
from minivit.install import install_hint
from minivit.io.json_files import read_json_file

FORMATS = (".safetensors", ".npz")
CHECKSUM_KEY = "minivit_sha256_v2"       # tensors and metadata
OLD_CHECKSUM_KEY = "minivit_sha256"      # tensors only (files written before)
MAX_NPZ_RATIO = 200       # a member inflating more than this (zeros, a zip bomb) is refused
NPZ_RATIO_FLOOR = 1 << 20  # ... when it inflates to more than this many bytes
TEMP_TAG = "minivit-tmp"  # temporary files: .NAME.minivit-tmp.XXXXXXXX.tmp


class WriteError(OSError):
    """A write that failed (disk full, read-only, ...): one line naming the file."""

    def __str__(self):
        return self.args[0] if self.args else super().__str__()


@contextmanager
def naming_write_errors(path):
    """Turn an OSError inside the block into a WriteError naming ``path`` (the write was
    atomic, so the previous file is as it was)."""
    try:
        yield
    except WriteError:
        raise
    except OSError as e:
        hint = ("free some space on that disk or write elsewhere" if e.errno == errno.ENOSPC
                else "check the directory exists and is writable")
        raise WriteError(f"cannot write {path}: {e.strerror or e}; {hint} (any previous "
                         "version of the file is unchanged)") from None


# ---------------------------------------------------------------------------- bytes and JSON
_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask.  It can only be read by setting it, so the set-and-restore is done
    under a lock (threads of this module never see the temporary value)."""
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def refuse_symlink(path) -> None:
    """WriteError when ``path`` is a symbolic link (minivit never writes through one)."""
    if os.path.islink(path):
        raise WriteError(f"refusing to write {path}: it is a symbolic link (to "
                         f"{os.readlink(path)}), and minivit writes only plain files in place; "
                         "remove the link or choose another path")


def open_for_append(path):
    """``open(path, "a")`` that refuses a symbolic link (O_NOFOLLOW) and anything but a plain
    file (a FIFO would block the writer): WriteError naming the file."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP or os.path.islink(path):
            refuse_symlink(path)
        if e.errno == errno.ENXIO:                     # a FIFO without a reader
            raise WriteError(f"refusing to write {path}: it is not a plain file; remove it "
                             "or choose another --run-dir") from None
        raise
    try:
        check_plain_file(fd, path)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "a")


def check_plain_file(fd: int, path) -> None:
    """WriteError unless the open ``fd`` is a regular file."""
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        raise WriteError(f"refusing to write {path}: it is not a plain file (a FIFO, device "
                         "or folder); remove it or choose another path")


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path``, then os.replace it into place:
    readers see the old file or the new one, never half of one.  The file gets the mode a
    plain ``open(path, "w")`` would give it (0o666 less the umask), not mkstemp's 0o600.
    A symbolic link at ``path`` is refused (WriteError), not followed or replaced."""
    path = Path(path)
    refuse_symlink(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{TEMP_TAG}.",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if hasattr(os, "fchmod"):                   # not on Windows
                os.fchmod(f.fileno(), 0o666 & ~current_umask())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_figure(fig, path, **savefig_kw) -> None:
    """A matplotlib figure saved to ``path`` atomically (never through a symbolic link)."""
    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".").lower() or "png", **savefig_kw)
    with naming_write_errors(path):
        atomic_write_bytes(path, buf.getvalue())


def write_json(path, obj) -> None:
    with naming_write_errors(path):
        atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def read_json(path):
    """The JSON in ``path``, bounded in size and depth (minivit.io.json_files.read_json_file);
    FileNotFoundError or ValueError naming the file."""
    return read_json_file(path)


# ---------------------------------------------------------------------------- checksums
def tensors_sha256(arrays: dict) -> str:
    """SHA-256 of {name: host array}: names in sorted order, each with dtype, shape and bytes."""
    np = host_xp()
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def content_sha256(arrays: dict, meta: dict) -> str:
    """SHA-256 of the tensors (as ``tensors_sha256``) and of every metadata entry but the
    checksums themselves, as sorted JSON."""
    rest = {k: v for k, v in meta.items() if k not in (CHECKSUM_KEY, OLD_CHECKSUM_KEY)}
    h = hashlib.sha256(tensors_sha256(arrays).encode())
    h.update(json.dumps(rest, sort_keys=True).encode())
    return h.hexdigest()


class CorruptFileError(ValueError):
    """A file whose tensors or metadata do not match the SHA-256 written with them."""


class UnreadableDtypeError(ValueError):
    """A tensor in a dtype NumPy has no type for (bfloat16, say)."""


def check_sha256(path, arrays: dict, meta: dict) -> None:
    """Raise CorruptFileError naming ``path`` if ``meta`` holds a checksum that ``arrays``
    and ``meta`` fail: CHECKSUM_KEY covers both, OLD_CHECKSUM_KEY the tensors only."""
    odd = [k for k in meta if k.startswith(OLD_CHECKSUM_KEY) and k not in (CHECKSUM_KEY,
                                                                           OLD_CHECKSUM_KEY)]
    if CHECKSUM_KEY in meta:
        ok = content_sha256(arrays, meta) == meta[CHECKSUM_KEY]
    elif OLD_CHECKSUM_KEY in meta:
        ok = tensors_sha256(arrays) == meta[OLD_CHECKSUM_KEY]
    else:
        ok = not odd                      # a checksum key whose name was damaged
    if not ok:
        raise CorruptFileError(f"{path}: file is corrupt: its tensors or metadata do not match "
                               "the SHA-256 written with them (damaged on disk or in transfer); "
                               "use another copy")


# ---------------------------------------------------------------------------- tensor files
def weights_suffix(path: Path) -> str:
    """".safetensors" or ".npz"; ValueError naming the file for any other suffix."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{path}: unknown weights format {suffix!r}; use a file name ending "
                         f"in {' or '.join(FORMATS)}")
    return suffix


def safetensors_module():
    """The safetensors package, or an ImportError that says how to install it."""
    try:
        import safetensors.numpy  # noqa: F401
    except ImportError as e:
        raise ImportError(f".safetensors files need the `safetensors` package ({e}), a "
                          f"dependency of minivit: reinstall with `{install_hint()}`, or use a "
                          ".npz file (NumPy only)") from None
    return safetensors


def safetensors_bytes(arrays: dict, meta: dict) -> bytes:
    """A .safetensors file's bytes, with CHECKSUM_KEY added to the metadata."""
    meta = {**meta, CHECKSUM_KEY: content_sha256(arrays, meta)}
    return safetensors_module().numpy.save(arrays, metadata=meta)


def npz_bytes(arrays: dict, meta: dict) -> bytes:
    """A .npz file's bytes; each metadata entry k is a uint8 array of UTF-8 bytes ``__k__``."""
    np = host_xp()
    extra = {f"__{k}__": np.frombuffer(v.encode("utf-8"), dtype=np.uint8) for k, v in meta.items()}
    buf = io.BytesIO()
    np.savez(buf, **arrays, **extra)
    return buf.getvalue()


def write_arrays(path, arrays: dict, meta: dict) -> None:
    """Write {name: host array} + {str: str} metadata to ``path``, all or nothing."""
    path = Path(path)
    suffix = weights_suffix(path)
    if suffix == ".safetensors":
        safetensors_module()              # fail before touching the disk
    np = host_xp()
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    encode = safetensors_bytes if suffix == ".safetensors" else npz_bytes
    with naming_write_errors(path):
        atomic_write_bytes(path, encode(arrays, meta))


def read_safetensors(path: Path) -> tuple[dict, dict]:
    """-> (arrays, metadata without the checksum), the checksum checked."""
    st = safetensors_module()
    arrays = {}
    with st.safe_open(str(path), framework="numpy") as f:
        meta = dict(f.metadata() or {})
        for k in f.keys():
            try:
                arrays[k] = f.get_tensor(k)
            except TypeError as e:        # e.g. bfloat16, which NumPy has no dtype for
                raise UnreadableDtypeError(
                    f"{path}: tensor {k!r} has a dtype NumPy cannot read ({e}); convert the "
                    "file to float32 first (e.g. in PyTorch: {k: v.float() ...})") from None
    check_sha256(path, arrays, meta)
    meta.pop(CHECKSUM_KEY, None)
    meta.pop(OLD_CHECKSUM_KEY, None)
    return arrays, meta


def read_npz(path: Path) -> tuple[dict, dict]:
    """-> (arrays, metadata), never unpickling."""
    np = host_xp()
    with open(path, "rb") as f:
        if f.read(2) != b"PK":            # every zip archive (so every .npz) starts with "PK"
            raise ValueError("not a zip archive")
    check_npz_members(path)
    data = np.load(path, allow_pickle=False)
    arrays, meta = {}, {}
    try:
        for k in data.files:
            a = data[k]
            if k.startswith("__") and k.endswith("__"):             # metadata, not a parameter
                meta[k[2:-2]] = str(a.item()) if a.dtype.kind == "U" else a.tobytes().decode()
            else:
                arrays[k] = a
    finally:
        data.close()
    return arrays, meta


def check_npz_members(path: Path) -> None:
    """Before anything is inflated: each member's sizes in the zip directory must agree with
    its .npy header (shape x itemsize), and a compressed member may not inflate more than
    MAX_NPZ_RATIO times (a few KB that declare gigabytes).  ValueError otherwise."""
    np = host_xp()
    fmt = np.lib.format
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            if info.compress_type != zipfile.ZIP_STORED and info.file_size > max(
                    NPZ_RATIO_FLOOR, MAX_NPZ_RATIO * info.compress_size):
                raise ValueError(f"member {info.filename!r} inflates from {info.compress_size} "
                                 f"to {info.file_size} bytes (more than {MAX_NPZ_RATIO}x: a zip "
                                 "bomb?); if the file is genuine, re-save it uncompressed "
                                 "(np.savez)")
            if not info.filename.endswith(".npy"):
                continue
            with z.open(info) as f:
                version = fmt.read_magic(f)
                header = (fmt.read_array_header_1_0 if version == (1, 0)
                          else fmt.read_array_header_2_0)(f, max_header_size=10000)
                shape, _, dtype = header
                offset = f.tell()
            need = offset + math.prod(shape) * dtype.itemsize
            if dtype.hasobject or need != info.file_size:
                raise ValueError(f"member {info.filename!r} declares shape {shape} {dtype} "
                                 f"({need} bytes) but holds {info.file_size} bytes")


def read_arrays(path) -> tuple[dict, dict]:
    """path -> ({name: NumPy array}, {str: str} metadata).

    FileNotFoundError when there is no such file; ValueError naming the file when it is not a
    valid file of its format (truncated, corrupt, random bytes)."""
    path = Path(path)
    suffix = weights_suffix(path)
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, "no such weights file", str(path))
    reader = read_safetensors if suffix == ".safetensors" else read_npz
    try:
        return reader(path)
    except (ImportError, UnreadableDtypeError, CorruptFileError):
        raise
    except Exception as e:
        raise ValueError(f"{path}: file is corrupt or truncated, not a valid {suffix} file "
                         f"({type(e).__name__}: {e})") from None


__all__ = ["CHECKSUM_KEY", "FORMATS", "OLD_CHECKSUM_KEY", "TEMP_TAG", "CorruptFileError",
           "UnreadableDtypeError", "WriteError", "atomic_write_bytes", "check_npz_members",
           "check_plain_file", "check_sha256", "content_sha256", "naming_write_errors",
           "npz_bytes", "open_for_append", "read_arrays", "read_json", "refuse_symlink",
           "read_npz", "read_safetensors", "safetensors_bytes", "safetensors_module",
           "tensors_sha256", "weights_suffix", "write_arrays", "write_figure", "write_json"]
