"""A strict CuPy stand-in for machines without a GPU: NumPy underneath, CuPy's rules on top.

``install()`` puts it in ``sys.modules`` as ``cupy`` / ``cupyx`` / ``cupyx.scipy.special``, so
code that imports CuPy gets it.  It behaves like a device library where that matters for
catching bugs a GPU would catch:

* device arrays wrap (do not subclass) NumPy arrays; ``numpy.asarray(device_array)`` is a
  TypeError, and so is a host NumPy array (or a list) inside a device operation;
* only the names the real CuPy 14 has exist (``names_cupy14.txt``, read from the wheel);
* every implicit device -> host synchronisation (``float()`` / ``int()`` / ``bool()``,
  ``.item()``, ``.get()``, ``cupy.asnumpy``, ``.tolist()``, printing, boolean-mask indexing,
  data-dependent sizes such as ``nonzero``) is logged with the minivit file:line behind it:
  ``reset_syncs()``, ``syncs()``, ``sync_counts()``.  ``len()`` and iteration are not syncs.

Used by ``tests/conftest.py`` when ``MINIVIT_CUPY_STANDIN=1`` and no real CuPy works.
"""

import collections
import sys

from . import _sync
from ._names import VERSION

__all__ = ["install", "is_installed", "reset_syncs", "syncs", "sync_counts", "VERSION"]


def install() -> None:
    """Replace any (unusable) CuPy in ``sys.modules`` by the stand-in."""
    from . import _namespace
    for name in [n for n in sys.modules if n.split(".")[0] in ("cupy", "cupyx", "cupy_backends")]:
        del sys.modules[name]
    sys.modules.update(_namespace.build())


def is_installed() -> bool:
    mod = sys.modules.get("cupy")
    return mod is not None and (getattr(mod, "__doc__", "") or "").startswith("CuPy ")


def reset_syncs() -> None:
    _sync.reset()


def syncs() -> list:
    """[(kind, "minivit/file.py:line"), ...] since the last ``reset_syncs()``."""
    return _sync.log()


def sync_counts() -> collections.Counter:
    """Counter of "minivit/file.py:line (kind)" over the syncs since the last reset."""
    return collections.Counter(f"{where} ({kind})" for kind, where in _sync.log())
