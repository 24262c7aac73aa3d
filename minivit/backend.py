"""The one place that picks the array backend: NumPy (CPU) or CuPy (NVIDIA GPU).

Every other module of minivit reaches arrays through this file and never imports
``numpy`` or ``cupy`` itself (``tests/backend/test_backend.py`` scans the sources to prove it).

Two questions, two answers:

* "Which library does *this array* belong to?"  ->  ``array_module(x)``.
  Layer code asks this of its inputs, so an op runs wherever its inputs live and
  needs no global switch at all.
* "Where should *new* arrays go?" (parameters, data batches, random numbers)
  ->  the *active backend*: ``"numpy"`` by default, or ``"cupy"`` when the
  environment variable ``MINIVIT_BACKEND=cupy`` is set or ``set_backend("cupy")``
  is called.  ``get_xp()`` returns its module; ``to_device`` / ``to_numpy`` move
  arrays between host and device.

Default dtype is float32 for training; gradient checks use float64.
"""

from __future__ import annotations

import os
from types import ModuleType

import numpy as _np

from minivit.install import install_hint

BACKENDS = ("numpy", "cupy")
DTYPES = ("float32", "float64")
DEFAULT_DTYPE = "float32"

_active = {"name": None}  # resolved lazily from MINIVIT_BACKEND on first use


class BackendError(RuntimeError):
    """The requested backend cannot be used here (CuPy missing, or no GPU)."""


_CUPY_FIX = (f"Install CuPy with its CUDA libraries: `{install_hint('gpu')}` for a CUDA 12 "
             f"driver, `{install_hint('gpu-cuda13')}` for a CUDA 13 driver (`nvidia-smi` "
             "shows the driver's CUDA version), or use MINIVIT_BACKEND=numpy")
_cupy = {"module": None, "error": None}  # the outcome of the first _load_cupy(), kept


def _one_line(e: BaseException, limit: int = 300) -> str:
    text = " ".join(str(e).split()) or "no message"
    return f"{type(e).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


def _probe_cupy(cupy) -> None:
    """A tiny computation through every part of CuPy that minivit uses: an elementwise
    kernel (compiled by NVRTC), a matmul (cuBLAS), a draw from ``default_rng`` (cuRAND),
    ``cupyx.scipy.special.erf`` and a copy back to the host.  Raises whatever fails."""
    from cupyx.scipy.special import erf as _cupy_erf  # noqa: F401 (the GPU kernel)
    x = cupy.arange(6, dtype="float32").reshape(2, 3)                     # (2, 3)
    y = (x * 0.5 + 1.0) @ x.T                                           # (2, 2)
    r = cupy.random.default_rng(0).random((2, 3), dtype="float32")
    out = cupy.asnumpy(y + (r + _cupy_erf(x)).sum())
    if out.shape != (2, 2) or not _np.isfinite(out).all():
        raise RuntimeError(f"a test computation gave {out!r}")


def _load_cupy() -> ModuleType:
    """Import CuPy and prove, once, that it computes on a GPU; one clear error otherwise."""
    if _cupy["module"] is not None:
        return _cupy["module"]
    if _cupy["error"] is None:
        _cupy["error"] = _try_cupy()
        if _cupy["error"] is None:
            return _cupy["module"]
    raise BackendError(_cupy["error"])


def _try_cupy() -> str | None:
    """None when CuPy works (and is kept in ``_cupy``), else the one-line reason."""
    try:
        import cupy  # noqa: F401  (the one allowed import of cupy)
    except ImportError as e:  # pragma: no cover - depends on the machine
        return f"backend 'cupy' was requested but CuPy is not installed ({e}). {_CUPY_FIX}."
    except Exception as e:  # pragma: no cover - a broken CuPy install
        return (f"backend 'cupy' was requested but CuPy fails to import ({_one_line(e)}). "
                f"{_CUPY_FIX}.")
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # pragma: no cover - depends on the machine
        return (f"backend 'cupy' was requested but no usable NVIDIA GPU was found "
                f"({_one_line(e)}). Use MINIVIT_BACKEND=numpy to run on the CPU.")
    if n < 1:  # pragma: no cover
        return ("backend 'cupy' was requested but CUDA reports 0 GPUs. "
                "Use MINIVIT_BACKEND=numpy to run on the CPU.")
    try:
        _probe_cupy(cupy)
    except Exception as e:  # pragma: no cover - e.g. CuPy without its CUDA libraries
        return (f"backend 'cupy' was requested but CuPy cannot compute on the GPU "
                f"({_one_line(e)}). {_CUPY_FIX}.")
    _cupy["module"] = cupy
    return None


def cupy_available() -> tuple[bool, str]:
    """(True, "") when CuPy imports and computes on a GPU, else (False, reason)."""
    try:
        _load_cupy()
        return True, ""
    except BackendError as e:
        return False, str(e)


def set_backend(name: str) -> ModuleType:
    """Make ``name`` ("numpy" or "cupy") the active backend; return its module."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; expected one of {BACKENDS}")
    mod = _np if name == "numpy" else _load_cupy()
    _active["name"] = name
    return mod


def get_backend() -> str:
    """Name of the active backend ("numpy" unless MINIVIT_BACKEND or set_backend say otherwise)."""
    if _active["name"] is None:
        name = os.environ.get("MINIVIT_BACKEND", "numpy").strip().lower() or "numpy"
        if name not in BACKENDS:
            raise ValueError(f"MINIVIT_BACKEND={name!r} is not a backend; "
                             f"expected one of {BACKENDS}")
        set_backend(name)
    return _active["name"]


def get_xp() -> ModuleType:
    """The array module (numpy or cupy) of the active backend."""
    return _np if get_backend() == "numpy" else _load_cupy()


def is_cupy_array(x) -> bool:
    return type(x).__module__.split(".")[0] == "cupy"


def is_array(x) -> bool:
    return isinstance(x, _np.ndarray) or is_cupy_array(x)


def array_module(*arrays) -> ModuleType:
    """numpy, or cupy if any argument is a CuPy array (like cupy.get_array_module)."""
    for a in arrays:
        if is_cupy_array(a):
            return _load_cupy()
    return _np


def resolve_dtype(dtype=None):
    """"float32" / "float64" / a NumPy dtype / None (-> float32) -> numpy dtype object."""
    if dtype is None:
        dtype = DEFAULT_DTYPE
    dt = _np.dtype(dtype)
    if dt.name not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dt.name!r}")
    return dt


def to_device(x, dtype=None):
    """Copy a host array (or nested list) onto the active backend; optionally cast."""
    xp = get_xp()
    if is_cupy_array(x) and xp is _np:
        x = x.get()
    out = xp.asarray(x)
    if dtype is not None:
        out = out.astype(_np.dtype(dtype), copy=False)
    return out


def to_numpy(x):
    """Return a NumPy array (copying from the GPU when needed). Scalars pass through."""
    if is_cupy_array(x):
        return x.get()
    return _np.asarray(x)


def rng(seed=None, xp: ModuleType | None = None):
    """A seeded random generator on the given (default: active) backend.

    Both NumPy's and CuPy's ``default_rng`` return Generators with ``random``,
    ``standard_normal`` and ``integers``; layers only use those three.
    """
    xp = xp or get_xp()
    return xp.random.default_rng(seed)


def host_rng(seed=None):
    """A seeded NumPy generator, for things that stay on the host (data order)."""
    return _np.random.default_rng(seed)


def cupy_special() -> ModuleType:
    """``cupyx.scipy.special`` (CuPy's special-function kernels), for CuPy arrays only."""
    import cupyx.scipy.special  # the GPU kernels; only reached with a CuPy array
    return cupyx.scipy.special


def cupy_nccl():
    """``cupy.cuda.nccl`` (NCCL collectives between GPUs: minivit/parallel/mpi.py), or None
    where CuPy was built without NCCL."""
    try:
        import cupy.cuda.nccl as nccl
    except (ImportError, AttributeError):
        return None
    return nccl


def device_name() -> str:
    """Human-readable device of the active backend."""
    if get_backend() == "numpy":
        import platform
        return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    cp = _load_cupy()  # pragma: no cover - GPU only
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    return f"GPU {props['name'].decode()}"


def synchronize() -> None:
    """Wait for queued GPU work (for honest timings); a no-op on NumPy."""
    if get_backend() == "cupy":  # pragma: no cover - GPU only
        _load_cupy().cuda.Stream.null.synchronize()


def host_xp() -> ModuleType:
    """NumPy itself, for code that must stay on the host (file formats, data order)."""
    return _np
