"""The device array of the stand-in: a NumPy array held inside (never a subclass), reachable
only through what ``cupy.ndarray`` offers.  A host NumPy array in a device operation is a
TypeError, as on CuPy; implicit device -> host copies are allowed but logged (``_sync``)."""

import copy as _copy

import numpy as np

from . import _sync
from ._names import NAMES, VERSION

_NDARRAY_NAMES = NAMES["cupy.ndarray"]
_SCALARS = (bool, int, float, complex, np.generic)


def _unsupported(v):
    return TypeError(f"Unsupported type {type(v)}")


class ndarray:
    """A device array.  ``ndarray(shape, dtype)`` makes an uninitialised one, as on CuPy."""

    __slots__ = ("_a",)
    __array_priority__ = 100.0
    __hash__ = None

    def __init__(self, shape, dtype=float, order="C"):
        self._a = np.empty(shape, dtype=dtype, order=order)

    # -- attributes: only CuPy's names ------------------------------------------------
    def __getattr__(self, name):
        if name not in _NDARRAY_NAMES:
            raise AttributeError(f"'cupy.ndarray' object has no attribute '{name}' "
                                 f"(CuPy {VERSION} has no such attribute)")
        if name in _SYNCING_METHODS:
            _sync.record(f".{name}()")
        try:
            v = getattr(self._a, name)
        except AttributeError:
            raise AttributeError(f"the CuPy stand-in does not implement ndarray.{name} "
                                 "(real CuPy has it)") from None
        if callable(v):
            return _wrap_callable(v)
        return wrap(v)

    @property
    def device(self):
        from ._cuda import Device
        return Device(0)

    def get(self, stream=None, order="C", out=None, blocking=True):
        _sync.record(".get()")
        if out is not None:
            out[...] = self._a
            return out
        return np.array(self._a, order=order)

    def set(self, arr, stream=None):
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"Only numpy.ndarray can be set to cupy.ndarray, got {type(arr)}")
        self._a[...] = arr

    def item(self, *args):
        _sync.record(".item()")
        return self._a.item(*args)

    def tolist(self):
        _sync.record(".tolist()")
        return self._a.tolist()

    def tobytes(self, order="C"):
        _sync.record(".tobytes()")
        return self._a.tobytes(order)

    # -- conversions: each one a device -> host copy ----------------------------------
    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    def __float__(self):
        _sync.record("float()")
        return float(self._a)

    def __int__(self):
        _sync.record("int()")
        return int(self._a)

    def __complex__(self):
        _sync.record("complex()")
        return complex(self._a)

    def __bool__(self):
        _sync.record("bool()")
        return bool(self._a)

    def __bytes__(self):
        _sync.record("bytes()")
        return bytes(self._a)

    def __repr__(self):
        _sync.record("repr()")
        return repr(self._a)

    def __str__(self):
        _sync.record("str()")
        return str(self._a)

    def __format__(self, spec):
        _sync.record("format()")
        return format(self._a, spec) if self._a.ndim == 0 else format(str(self._a), spec)

    def __reduce__(self):
        _sync.record("pickle")
        return (_from_host, (np.array(self._a),))

    # -- no sync: sizes are known on the host; iteration yields device views ---------
    def __len__(self):
        return len(self._a)

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self._a.shape[0]))

    def __copy__(self):
        return wrap(self._a.copy())

    def __deepcopy__(self, memo):
        return wrap(self._a.copy())

    # -- indexing ---------------------------------------------------------------------
    def __getitem__(self, key):
        return wrap(self._a[_index(key)])

    def __setitem__(self, key, value):
        if isinstance(value, ndarray):
            value = value._a
        elif not isinstance(value, (np.ndarray, list, tuple) + _SCALARS):
            raise _unsupported(value)
        self._a[_index(key)] = value

    # -- NumPy's protocols, answered the way CuPy answers them ------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        from . import _namespace
        mine = _namespace.lookup("cupy", ufunc.__name__)
        if mine is None:
            return NotImplemented
        return mine(*inputs, **kwargs) if method == "__call__" else \
            getattr(mine, method)(*inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        from . import _namespace
        module = "cupy" + func.__module__[len("numpy"):] if func.__module__.startswith("numpy") \
            else None
        mine = _namespace.lookup(module, func.__name__) if module else None
        if mine is None:
            return NotImplemented
        return mine(*args, **kwargs)


ndarray.__module__ = "cupy"   # type(x).__module__ == "cupy", as for the real one
ndarray.__qualname__ = "ndarray"

# methods whose answer needs the data on the host
_SYNCING_METHODS = frozenset({"nonzero", "tofile", "dump", "dumps"})


def _from_host(a):
    return wrap(a)


def wrap(v):
    """NumPy result -> device result (NumPy scalars become 0-d device arrays, as on CuPy)."""
    if isinstance(v, np.ndarray):
        out = ndarray.__new__(ndarray)
        out._a = v
        return out
    if isinstance(v, np.generic):
        return wrap(np.asarray(v))
    if type(v) is tuple:
        return tuple(wrap(x) for x in v)
    return v


def operand(v):
    """An operand of an elementwise operation: a device array or a scalar; a host array or a
    list is a TypeError, as in CuPy's kernels."""
    if isinstance(v, ndarray):
        return v._a
    if isinstance(v, _SCALARS) or v is None:
        return v
    raise _unsupported(v)


def unwrap(v):
    """Arguments of a general routine: device arrays inside (nested) lists and tuples are
    unwrapped; a host array anywhere is a TypeError."""
    if isinstance(v, ndarray):
        return v._a
    if isinstance(v, np.ndarray):
        raise _unsupported(v)
    if type(v) in (list, tuple):
        return type(v)(unwrap(x) for x in v)
    return v


def _index(key):
    """An index: device arrays unwrapped (a boolean mask needs its count: a sync); host
    arrays and lists are allowed, CuPy copies them to the device."""
    if type(key) is tuple:
        return tuple(_index(k) for k in key)
    if isinstance(key, ndarray):
        if key._a.dtype == np.bool_:
            _sync.record("boolean mask index")
        return key._a
    if isinstance(key, np.ndarray) and key.dtype == np.bool_:
        return key
    if isinstance(key, list):
        return np.asarray(unwrap(key))
    return key


def _wrap_callable(f):
    def method(*args, **kwargs):
        out = kwargs.get("out")
        r = f(*unwrap(args), **{k: unwrap(v) for k, v in kwargs.items()})
        return out if isinstance(out, ndarray) else wrap(r)
    method.__name__ = getattr(f, "__name__", "method")
    return method


def _binary(name):
    def op(self, other):
        try:
            o = operand(other)
        except TypeError:
            if isinstance(other, (np.ndarray, list)):
                raise
            return NotImplemented
        r = getattr(self._a, name)(o)
        if r is NotImplemented:
            return NotImplemented
        if name.startswith("__i"):
            return self
        return wrap(r)
    op.__name__ = name
    return op


def _unary(name):
    def op(self):
        return wrap(getattr(self._a, name)())
    op.__name__ = name
    return op


for _n in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or",
           "xor", "lshift", "rshift", "divmod"):
    setattr(ndarray, f"__{_n}__", _binary(f"__{_n}__"))
    setattr(ndarray, f"__r{_n}__", _binary(f"__r{_n}__"))
    if _n not in ("divmod", "matmul"):
        setattr(ndarray, f"__i{_n}__", _binary(f"__i{_n}__"))
for _n in ("lt", "le", "eq", "ne", "gt", "ge"):
    setattr(ndarray, f"__{_n}__", _binary(f"__{_n}__"))
for _n in ("neg", "pos", "abs", "invert"):
    setattr(ndarray, f"__{_n}__", _unary(f"__{_n}__"))


class ufunc:
    """An elementwise function (``cupy.exp``, ``cupy.add``...), with ``at`` / ``reduce`` /
    ``accumulate`` / ``outer`` like CuPy's."""

    def __init__(self, np_ufunc, name=None):
        self._u = np_ufunc
        self.__name__ = name or np_ufunc.__name__

    def __repr__(self):
        return f"<ufunc '{self.__name__}'>"

    @property
    def name(self):
        return self.__name__

    nin = property(lambda self: self._u.nin)
    nout = property(lambda self: self._u.nout)
    nargs = property(lambda self: self._u.nargs)
    types = property(lambda self: self._u.types)

    def __call__(self, *args, **kwargs):
        out = kwargs.get("out")
        if isinstance(out, tuple) and len(out) == 1:
            out = out[0]
        if out is not None:
            if not isinstance(out, ndarray):
                raise TypeError(f"Output arguments must be cupy.ndarray, got {type(out)}")
            kwargs["out"] = out._a
        if "where" in kwargs:
            kwargs["where"] = operand(kwargs["where"])
        r = self._u(*(operand(a) for a in args), **kwargs)
        return out if out is not None else wrap(r)

    def at(self, a, indices, b=None):
        if not isinstance(a, ndarray):
            raise TypeError(f"a must be cupy.ndarray, got {type(a)}")
        if self.__name__ not in ("add", "subtract", "maximum", "minimum", "bitwise_or",
                                 "bitwise_and", "bitwise_xor"):
            raise NotImplementedError(f"cupy.{self.__name__}.at is not supported")
        if b is None:
            self._u.at(a._a, _index(indices))
        else:
            self._u.at(a._a, _index(indices), operand(b))

    def _method(self, name, a, *args, **kwargs):
        out = kwargs.get("out")
        if isinstance(out, ndarray):
            kwargs["out"] = out._a
        r = getattr(self._u, name)(operand(a), *(unwrap(x) for x in args), **kwargs)
        return out if isinstance(out, ndarray) else wrap(r)

    def reduce(self, a, *args, **kwargs):
        return self._method("reduce", a, *args, **kwargs)

    def accumulate(self, a, *args, **kwargs):
        return self._method("accumulate", a, *args, **kwargs)

    def reduceat(self, a, *args, **kwargs):
        return self._method("reduceat", a, *args, **kwargs)

    def outer(self, a, b, **kwargs):
        return wrap(self._u.outer(operand(a), operand(b), **kwargs))


ufunc.__module__ = "cupy"


def asarray_arg(v):
    """What ``cupy.asarray`` / ``cupy.array`` accept: host data (copied to the device),
    device arrays, and lists of either."""
    if isinstance(v, ndarray):
        return v._a
    if type(v) in (list, tuple):
        return type(v)(asarray_arg(x) for x in v)
    return v


def copy_of(a):
    return _copy.copy(a)
