"""A restricted, bounded unpickler for data files: plain containers, numbers, bytes and NumPy
arrays of plain numeric or bytes dtypes, nothing else.

A pickle is a small program, and even without calling anything dangerous it can ask for
unbounded memory or build objects that crash the interpreter. ``safe_loads`` therefore

* runs only the few callables the CIFAR-10 format needs, each a checked stand-in:
  ``numpy.dtype`` accepts only a type code such as ``'u1'``, ``'<i8'`` or ``'S10'`` (no
  object, void or structured dtypes, and the dtype's pickled state -- fields, flags -- is
  checked, never handed to NumPy); NumPy's ``_reconstruct`` builds an array whose state is
  checked before NumPy sees it: a shape of non-negative ints, a checked dtype and exactly
  ``prod(shape) * itemsize`` bytes of data, so every array owns real bytes of the file;
  ``numpy.ndarray`` itself may only be named, never called (no shape/strides/buffer tricks);
  ``_codecs.encode`` (Python 3's protocol-2 bytes) only turns a str into latin-1 bytes, and
  ``bytes()`` only makes the empty bytes;
* before unpickling, reads the opcode stream (``pickletools.genops``) and refuses memo
  indices beyond ``MAX_MEMO``, containers nested deeper than ``MAX_DEPTH`` and more than
  ``MAX_STACK`` objects under construction at once.

Failures raise ``PickleRefused`` (a forbidden global: nothing was run) or ``PickleCorrupt``
(not a pickle, outside the limits, or an invalid array); their messages describe untrusted
values (type, length, shape) and never format them. Callers add the file name.
"""

from __future__ import annotations

import io
import math
import pickle
import pickletools
import re

from minivit.backend import host_xp

np = host_xp()

MAX_MEMO = 1_000_000   # memo indices (the official batches use about 10,000)
MAX_DEPTH = 100        # container nesting (the official batches: 3)
MAX_STACK = 100_000    # objects on the unpickler's stack at once (the official batches: 1,004)
MAX_DIMS = 32          # NumPy's own limit on array dimensions


class PickleRefused(Exception):
    """The pickle asked for a global outside the allow-list; nothing was called."""


class PickleCorrupt(Exception):
    """Not a readable pickle, beyond the limits, or an array that does not add up."""


def _describe_name(text) -> str:
    """A global's name for a message: shown only if it looks like a dotted identifier."""
    if isinstance(text, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]{0,100}", text):
        return text
    return f"<a {type(text).__name__} of length {len(text) if hasattr(text, '__len__') else '?'}>"


# --------------------------------------------------------------------------- checked stand-ins

class _StandIn:
    """A function a pickle may fetch as a global: callable with positional arguments, but it
    takes no state (BUILD) and has no attributes to set."""

    __slots__ = ("_fn",)

    def __init__(self, fn):
        self._fn = fn

    def __call__(self, *args):
        return self._fn(*args)

    def __setstate__(self, state):
        raise PickleRefused("state for one of NumPy's functions")


def _ndarray_called(*args):
    raise PickleRefused("numpy.ndarray called directly (a shape, strides or buffer of its own "
                        "choosing)")


_NDARRAY = _StandIn(_ndarray_called)  # for ``numpy.ndarray``: a name for _reconstruct only
_TYPE_CODE = re.compile(r"[<>|=]?(b1|[iu][1248]|f[248]|c(8|16)|S[1-9][0-9]{0,5})")


class _Dtype:
    """A pickle's ``numpy.dtype(code)``; ``.dtype`` is the real one once its state checks out."""

    __slots__ = ("code", "dtype")

    def __init__(self, code: str):
        self.code, self.dtype = code, None

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4)):
            raise PickleCorrupt(f"a dtype's state is a {type(state).__name__}, not NumPy's "
                                f"8- or 9-tuple of version 3 or 4")
        byteorder, subarray, names, fields, elsize = state[1:6]
        if subarray is not None or names is not None or fields is not None:
            raise PickleCorrupt("a dtype with fields or a sub-array; only plain numeric and "
                                "bytes dtypes are allowed")
        if not (isinstance(byteorder, (str, bytes)) and len(byteorder) == 1
                and byteorder in ("<", ">", "|", "=", b"<", b">", b"|", b"=")):
            raise PickleCorrupt("a dtype with an invalid byte order")
        dt = np.dtype(self.code)
        order = byteorder.decode() if isinstance(byteorder, bytes) else byteorder
        if order in "<>":
            dt = dt.newbyteorder(order)
        if not (type(elsize) is int and elsize in (-1, dt.itemsize)):
            raise PickleCorrupt("a dtype whose state gives another item size than its code")
        self.dtype = dt


def _dtype(code, align=False, copy=False):
    if isinstance(code, bytes) and len(code) <= 16:
        code = code.decode("latin1")
    if not (isinstance(code, str) and _TYPE_CODE.fullmatch(code)):
        raise PickleRefused(f"a NumPy dtype other than a plain numeric or bytes type (asked "
                            f"with a {type(code).__name__})")
    return _Dtype(code)


class _CheckedArray(np.ndarray):
    """An ndarray whose pickled state is checked before NumPy's ``__setstate__`` sees it."""

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise PickleCorrupt(f"an array's state is a {type(state).__name__}, not NumPy's tuple")
        shape, dt, fortran, raw = state[-4:]
        if not (isinstance(shape, tuple) and len(shape) <= MAX_DIMS
                and all(type(s) is int and s >= 0 for s in shape)):
            raise PickleCorrupt("an array's shape is not a tuple of non-negative ints")
        if not (isinstance(dt, _Dtype) and dt.dtype is not None):
            raise PickleCorrupt(f"an array's dtype is a {type(dt).__name__}, not a checked dtype")
        if type(fortran) is not bool or not isinstance(raw, bytes):
            raise PickleCorrupt(f"an array's data is a {type(raw).__name__}, not bytes")
        need = math.prod(shape) * dt.dtype.itemsize
        if len(raw) != need:
            raise PickleCorrupt(f"an array of shape {shape} ({dt.dtype}) needs {need} bytes of "
                                f"data, the file holds {len(raw)}")
        super().__setstate__((1, shape, dt.dtype, fortran, raw))


# NumPy rebuilds arrays with numpy.core.multiarray._reconstruct (NumPy 1) or
# numpy._core.multiarray._reconstruct (NumPy 2); pickles name either.
def _reconstruct(cls, shape, typecode):
    if cls is not _NDARRAY:
        raise PickleRefused(f"NumPy's array rebuild asked for a {type(cls).__name__}, "
                            f"not numpy.ndarray")
    return np.ndarray.__new__(_CheckedArray, (0,), "b")


def _encode(text, encoding="utf-8"):
    """Python 3 writes bytes at protocol 2 as ``_codecs.encode(str, 'latin1')``."""
    if not (isinstance(text, str) and encoding in ("latin1", "latin-1")):
        raise PickleRefused("_codecs.encode with anything but a str and 'latin1'")
    return text.encode("latin1")


def _bytes(*args):
    """Python 3 writes the empty bytes at protocol 2 as ``bytes()``."""
    if args:
        raise PickleRefused("bytes() with arguments")
    return b""


_ALLOWED_GLOBALS = {("_codecs", "encode"): _StandIn(_encode),
                    ("__builtin__", "bytes"): _StandIn(_bytes),
                    ("builtins", "bytes"): _StandIn(_bytes),
                    ("numpy", "ndarray"): _NDARRAY, ("numpy", "dtype"): _StandIn(_dtype)}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED_GLOBALS.update({(_mod, "_reconstruct"): _StandIn(_reconstruct),
                             (_mod, "ndarray"): _NDARRAY, (_mod, "dtype"): _StandIn(_dtype)})


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals in ``_ALLOWED_GLOBALS``: every object a pickle calls (REDUCE)
    must first be fetched as a global, so nothing else can run."""

    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except (KeyError, TypeError):
            raise PickleRefused(f"the global '{_describe_name(module)}.{_describe_name(name)}'"
                                ) from None

    def persistent_load(self, pid):
        raise PickleRefused("a persistent id")


# --------------------------------------------------------------------------- the opcode scan

_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}
_GETS = {"GET", "BINGET", "LONG_BINGET"}
_FILLS = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"}  # in place


def scan(data: bytes) -> None:
    """Refuse memo indices beyond MAX_MEMO and nesting deeper than MAX_DEPTH, reading the
    opcodes only (nothing is built).

    Simulates the unpickler's stack with the nesting depth of each entry (0 for a number
    or a string, 1 + the deepest part for a container). A depth recorded in the memo is
    that of the object when it was stored; the checks after loading never recurse, so this
    is a bound on work and memory, not the only line of defence.
    """
    mark = None
    stack: list = []
    memo: dict[int, int] = {}
    try:
        for op, arg, _ in pickletools.genops(data):
            name = op.name
            if name in _PUTS or name == "MEMOIZE":
                idx = len(memo) if name == "MEMOIZE" else arg
                if idx > MAX_MEMO or len(memo) > MAX_MEMO:
                    raise PickleCorrupt(f"memo index {idx} is beyond the limit of {MAX_MEMO}")
                memo[idx] = stack[-1]
                if stack[-1] is mark:
                    raise PickleCorrupt("a mark stored in the memo")
                continue
            if name in _GETS:
                stack.append(memo.get(arg, 0))
                continue
            before = op.stack_before
            items = []
            if pickletools.markobject in before:
                while stack[-1] is not mark:
                    items.append(stack.pop())
                stack.pop()
                before = before[:before.index(pickletools.markobject)]
            base = [stack.pop() for _ in before][::-1]
            if any(d is mark for d in base):
                raise PickleCorrupt("an opcode applied to a mark")
            if name in _FILLS:
                pushed = [max([base[0]] + [1 + d for d in base[1:] + items])]
            elif name == "DUP":
                pushed = base * 2
            else:
                depth = 1 + max(base + items, default=-1)
                pushed = [mark if a is pickletools.markobject else depth for a in op.stack_after]
            if any(d is not mark and d > MAX_DEPTH for d in pushed):
                raise PickleCorrupt(f"containers nested more than {MAX_DEPTH} deep")
            stack += pushed
            if len(stack) > MAX_STACK:
                raise PickleCorrupt(f"more than {MAX_STACK} objects open at once (nested too "
                                    f"deep)")
    except IndexError:
        raise PickleCorrupt("the opcodes use more of the stack than they built") from None
    except ValueError as e:  # genops: unknown opcode, truncated argument, no STOP
        raise PickleCorrupt(f"not a valid pickle ({str(e).splitlines()[0][:120]})") from None


def safe_loads(data: bytes, scan_first: bool = True) -> object:
    """Unpickle ``data`` with the restrictions above (``scan_first=False`` skips the opcode
    scan, for bytes already known to be good, e.g. by their checksum). Arrays come back as
    a checked ndarray subclass (``numpy.asarray`` gives the plain ndarray, without a copy).
    Raises PickleRefused, PickleCorrupt, or whatever the unpickler raises on a broken stream.
    """
    if scan_first:
        scan(data)
    return _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
