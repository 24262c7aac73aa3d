"""``cupy.random``: ``default_rng`` -> a ``Generator`` over an ``XORWOW`` bit generator whose
state is a device int8 array ``_state`` (as CuPy's cuRAND state is).  Here the bytes hold a
NumPy PCG64 state, so writing them back restores the stream exactly.  Only the methods CuPy's
Generator has exist; their argument rules follow CuPy's (e.g. ``beta`` takes a Python float
or int or a device array, not a NumPy float)."""

import threading

import numpy as np

from . import _array
from ._names import NAMES, VERSION

_GEN_NAMES = NAMES["cupy.random.Generator"]


class BitGenerator:
    def __init__(self, seed=None):
        self.lock = threading.Lock()
        if isinstance(seed, np.random.SeedSequence):
            self._seed_seq = seed
        else:
            if isinstance(seed, _array.ndarray):
                from . import _namespace
                seed = _namespace.lookup("cupy", "asnumpy")(seed)
            self._seed_seq = np.random.SeedSequence(seed)


class XORWOW(BitGenerator):
    def __init__(self, seed=None, *, size=-1):
        super().__init__(seed)
        self._pcg = np.random.PCG64(self._seed_seq)
        self._state = _array.wrap(np.zeros(48, dtype=np.int8))
        self._store()

    def _store(self):
        s = self._pcg.state
        raw = (s["state"]["state"].to_bytes(16, "little") + s["state"]["inc"].to_bytes(16, "little")
               + int(s["has_uint32"]).to_bytes(8, "little")
               + int(s["uinteger"]).to_bytes(8, "little"))
        self._state._a[...] = np.frombuffer(raw, dtype=np.int8)

    def _load(self):
        raw = self._state._a.tobytes()
        self._pcg.state = {"bit_generator": "PCG64",
                           "state": {"state": int.from_bytes(raw[0:16], "little"),
                                     "inc": int.from_bytes(raw[16:32], "little")},
                           "has_uint32": int.from_bytes(raw[32:40], "little"),
                           "uinteger": int.from_bytes(raw[40:48], "little")}

    def _draw(self, f):
        with self.lock:
            self._load()
            out = f(np.random.Generator(self._pcg))
            self._store()
        return out

    def _state_size(self):
        return 48


def _size(size):
    return () if size is None else size


def _float_dtype(dtype):
    dt = np.dtype(dtype)
    if dt.char not in "fd":
        raise TypeError(f"Unsupported dtype {dt.name}")
    return dt


class Generator:
    def __init__(self, bit_generator):
        self.bit_generator = bit_generator

    def __getattr__(self, name):
        if name in _GEN_NAMES:
            raise AttributeError(f"the CuPy stand-in does not implement Generator.{name} "
                                 "(real CuPy has it)")
        raise AttributeError(f"'Generator' object has no attribute '{name}' "
                             f"(CuPy {VERSION}'s Generator has no such method)")

    def _floats(self, draw, size, dtype, out):
        dt = _float_dtype(dtype)
        y = self.bit_generator._draw(lambda g: getattr(g, draw)(_size(size), dtype=dt))
        if out is not None:
            out._a[...] = y
            return out
        return _array.wrap(np.asarray(y))

    def random(self, size=None, dtype=np.float64, out=None):
        return self._floats("random", size, dtype, out)

    def standard_normal(self, size=None, dtype=np.float64, out=None):
        return self._floats("standard_normal", size, dtype, out)

    def uniform(self, low=0.0, high=1.0, size=None, dtype=np.float64):
        lo, hi = _array.asarray_arg(low), _array.asarray_arg(high)
        dt = _float_dtype(dtype)
        shape = np.broadcast(np.asarray(lo), np.asarray(hi)).shape if size is None else size
        y = self.bit_generator._draw(lambda g: g.random(shape))
        return _array.wrap(np.asarray(lo + (hi - lo) * y).astype(dt, copy=False))

    def integers(self, low, high=None, size=None, dtype=np.int64, endpoint=False):
        lo, hi = (0, int(low)) if high is None else (int(low), int(high))  # int(): a sync
        y = self.bit_generator._draw(
            lambda g: g.integers(lo, hi, size=_size(size), dtype=np.int64, endpoint=endpoint))
        return _array.wrap(np.asarray(y).astype(dtype))

    def beta(self, a, b, size=None, dtype=np.float64):
        for name, v in (("a", a), ("b", b)):
            if not isinstance(v, _array.ndarray) and type(v) not in (float, int):
                raise TypeError(f"{name} is required to be a cupy.ndarray or a scalar")
        a_ = a._a if isinstance(a, _array.ndarray) else np.float64(a)
        b_ = b._a if isinstance(b, _array.ndarray) else np.float64(b)
        shape = np.broadcast(a_, b_).shape if size is None else (
            size if isinstance(size, tuple) else (size,))
        y = self.bit_generator._draw(lambda g: g.beta(a_, b_, size=shape))
        return _array.wrap(np.asarray(y, dtype=np.float64).astype(dtype, copy=False))


def default_rng(seed=None):
    if isinstance(seed, Generator):
        return seed
    if isinstance(seed, BitGenerator):
        return Generator(seed)
    return Generator(XORWOW(seed))


for _c in (BitGenerator, XORWOW, Generator):
    _c.__module__ = "cupy.random._generator_api"

IMPLEMENTED = {"default_rng": default_rng, "BitGenerator": BitGenerator,
               "XORWOW": XORWOW}
