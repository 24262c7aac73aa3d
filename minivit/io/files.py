"""Files, all or nothing: atomic writes, JSON, and raw tensor files with their metadata.

    atomic_write_bytes(path, data)         temporary file next to ``path``, then os.replace
    write_json(path, obj) / read_json(path)
    write_arrays(path, arrays, meta)       {name: host array} + {str: str}, by suffix:
    read_arrays(path) -> (arrays, meta)      .safetensors (JSON header, raw little-endian
                                             tensors) or .npz (metadata entry k stored as a
                                             uint8 array of UTF-8 bytes named ``__k__``)

A .safetensors file written here carries ``minivit_sha256`` (CHECKSUM_KEY), a SHA-256 of every
tensor's name, dtype, shape and bytes (safetensors itself has no checksum), so bytes flipped on
disk raise CorruptFileError instead of loading silently; a file without it loads unchecked.
(In .npz files the zip's CRC-32 of each member does this job.)  .npz files are always read
with ``allow_pickle=False``.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import tempfile
import threading
from pathlib import Path

from minivit.backend import host_xp

FORMATS = (".safetensors", ".npz")
CHECKSUM_KEY = "minivit_sha256"


# ---------------------------------------------------------------------------- bytes and JSON
_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask.  It can only be read by setting it, so the set-and-restore is done
    under a lock (threads of this module never see the temporary value)."""
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path``, then os.replace it into place:
    readers see the old file or the new one, never half of one.  The file gets the mode a
    plain ``open(path, "w")`` would give it (0o666 less the umask), not mkstemp's 0o600."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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


def write_json(path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def read_json(path) -> dict:
    """The JSON in ``path``; FileNotFoundError or ValueError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from None


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


class CorruptFileError(ValueError):
    """A file whose tensors do not match the SHA-256 written with them."""


class UnreadableDtypeError(ValueError):
    """A tensor in a dtype NumPy has no type for (bfloat16, say)."""


def check_sha256(path, arrays: dict, meta: dict) -> None:
    """Raise CorruptFileError naming ``path`` if ``meta`` holds a checksum ``arrays`` fail."""
    expected = meta.get(CHECKSUM_KEY)
    if expected is not None and tensors_sha256(arrays) != expected:
        raise CorruptFileError(f"{path}: file is corrupt: its tensor data do not match the "
                               "SHA-256 written with them (damaged on disk or in transfer); "
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
        raise ImportError(f".safetensors files need the `safetensors` package ({e}); install it "
                          'with `pip install -e ".[io]"`, or use a .npz file (NumPy only)') from None
    return safetensors


def safetensors_bytes(arrays: dict, meta: dict) -> bytes:
    """A .safetensors file's bytes, with CHECKSUM_KEY added to the metadata."""
    meta = {**meta, CHECKSUM_KEY: tensors_sha256(arrays)}
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
    return arrays, meta


def read_npz(path: Path) -> tuple[dict, dict]:
    """-> (arrays, metadata), never unpickling."""
    np = host_xp()
    with open(path, "rb") as f:
        if f.read(2) != b"PK":            # every zip archive (so every .npz) starts with "PK"
            raise ValueError("not a zip archive")
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


__all__ = ["CHECKSUM_KEY", "FORMATS", "CorruptFileError", "UnreadableDtypeError",
           "atomic_write_bytes", "check_sha256", "npz_bytes", "read_arrays", "read_json",
           "read_npz", "read_safetensors", "safetensors_bytes", "safetensors_module",
           "tensors_sha256", "weights_suffix", "write_arrays", "write_json"]
