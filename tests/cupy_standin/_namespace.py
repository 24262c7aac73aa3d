"""The stand-in's modules (``cupy``, ``cupy.random``, ``cupy.linalg``, ``cupy.cuda``,
``cupy.cuda.runtime``, ``cupyx``, ``cupyx.scipy``, ``cupyx.scipy.special``).

Each is a plain module object whose attributes are exactly CuPy 14's public names
(``names_cupy14.txt``): a name CuPy lacks is an AttributeError even where NumPy has it.
NumPy functions and ufuncs behind CuPy's names are wrapped on first use, so that they take
and return device arrays and refuse host arrays."""

import sys
import types

import numpy as np

from . import _array, _cuda, _random, _sync
from ._array import asarray_arg, ndarray, unwrap, wrap
from ._names import NAMES, VERSION

# routines whose output size depends on the data: the device must tell the host (a sync)
_SYNCING = frozenset({"nonzero", "flatnonzero", "argwhere", "unique", "bincount", "compress",
                      "extract"})
# NumPy answers these with a Python bool, CuPy with a 0-d device array
_BOOL_ARRAYS = frozenset({"allclose", "array_equal", "array_equiv"})


def _asarray(a, dtype=None, order=None, *, blocking=False):
    return wrap(np.asarray(asarray_arg(a), dtype=dtype, order=order))


def _array_(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    return wrap(np.array(asarray_arg(obj), dtype=dtype, copy=copy, order=order, ndmin=ndmin))


def _ascontiguousarray(a, dtype=None):
    return wrap(np.ascontiguousarray(asarray_arg(a), dtype=dtype))


def asnumpy(a, stream=None, order="C", out=None, *, blocking=True):
    if isinstance(a, ndarray):
        _sync.record("asnumpy()")
        if out is not None:
            out[...] = a._a
            return out
        return np.array(a._a, order=order)
    return np.asarray(a, order=order)


def get_array_module(*args):
    return sys.modules["cupy"] if any(isinstance(a, ndarray) for a in args) else np


def show_config(*, _full=False):
    print(f"CuPy Version          : {VERSION} (stand-in: NumPy {np.__version__} on the CPU)")


def is_available():
    return True


def _where(condition, *xy):
    if not xy:
        _sync.record("where(condition)")
    return wrap(np.where(*unwrap((condition,) + xy)))


def _function(name, f):
    def routine(*args, **kwargs):
        if name in _SYNCING:
            _sync.record(f"{name}()")
        out = kwargs.get("out")
        r = f(*unwrap(args), **{k: unwrap(v) for k, v in kwargs.items()})
        if isinstance(out, ndarray):
            return out
        if name in _BOOL_ARRAYS:
            return wrap(np.asarray(r))
        return wrap(r)
    routine.__name__ = routine.__qualname__ = name
    routine.__module__ = "cupy"
    return routine


def _from_numpy(name, v):
    if isinstance(v, types.ModuleType):
        return None
    if isinstance(v, np.ufunc):
        return _array.ufunc(v, name)
    if isinstance(v, type) or not callable(v):
        return v                          # dtypes, scalar types, constants: CuPy shares them
    return _function(name, v)


def _module(qualname, names, implemented, numpy_source=None, package=False):
    m = types.ModuleType(qualname, f"CuPy {VERSION} stand-in: {qualname}")
    extra = set(implemented) - set(names)
    assert not extra, f"the stand-in defines names CuPy's {qualname} lacks: {sorted(extra)}"
    m.__dict__.update(implemented)
    if package:
        m.__path__ = []

    def __getattr__(name):
        if name.startswith("__"):
            raise AttributeError(name)
        if name not in names:
            raise AttributeError(f"module '{qualname}' has no attribute '{name}' "
                                 f"(CuPy {VERSION} has no such name)")
        v = _from_numpy(name, getattr(numpy_source, name)) \
            if numpy_source is not None and hasattr(numpy_source, name) else None
        if v is None:
            raise AttributeError(f"the CuPy stand-in does not implement {qualname}.{name} "
                                 "(real CuPy has it)")
        m.__dict__[name] = v
        return v

    m.__getattr__ = __getattr__
    return m


def _erf():
    try:
        from scipy.special import erf
        return _array.ufunc(erf, "erf")
    except ImportError:  # pragma: no cover - scipy is optional
        from minivit.erf.fdlibm import erf_numpy
        return _function("erf", erf_numpy)


def build() -> dict:
    """{module name: module} of a fresh stand-in."""
    runtime = _module("cupy.cuda.runtime", NAMES["cupy.cuda.runtime"] | {"is_hip"}, _cuda.RUNTIME)
    cuda = _module("cupy.cuda", NAMES["cupy.cuda"], {**_cuda.CUDA, "runtime": runtime},
                   package=True)
    random = _module("cupy.random", NAMES["cupy.random"], _random.IMPLEMENTED, package=True)
    linalg = _module("cupy.linalg", NAMES["cupy.linalg"], {}, np.linalg, package=True)
    special = _module("cupyx.scipy.special", NAMES["cupyx.scipy.special"], {"erf": _erf()})
    scipy = _module("cupyx.scipy", {"special"}, {"special": special}, package=True)
    cupyx = _module("cupyx", NAMES["cupyx"], {"scipy": scipy}, package=True)
    cupy = _module("cupy", NAMES["cupy"], {
        "ndarray": ndarray, "ufunc": _array.ufunc, "asarray": _asarray, "array": _array_,
        "asanyarray": _asarray, "ascontiguousarray": _ascontiguousarray, "asnumpy": asnumpy,
        "get_array_module": get_array_module, "show_config": show_config,
        "is_available": is_available, "where": _where,
        "random": random, "linalg": linalg, "cuda": cuda,
    }, np, package=True)
    cupy.__version__ = VERSION
    return {"cupy": cupy, "cupy.random": random, "cupy.linalg": linalg, "cupy.cuda": cuda,
            "cupy.cuda.runtime": runtime, "cupyx": cupyx, "cupyx.scipy": scipy,
            "cupyx.scipy.special": special}


def lookup(module, name):
    """The stand-in's ``module.name`` (installed modules), or None."""
    m = sys.modules.get(module)
    if m is None or not getattr(m, "__doc__", "").startswith("CuPy "):
        return None
    try:
        return getattr(m, name)
    except AttributeError:
        return None
