"""The log of implicit device -> host synchronisations, each with the minivit line behind it."""

import os
import sys
import threading

_log: list = []           # (kind, "minivit/file.py:line")
_lock = threading.Lock()
_HERE = os.path.dirname(os.path.abspath(__file__))


def _minivit_dir():
    try:
        import minivit
        return os.path.dirname(os.path.abspath(minivit.__file__)) + os.sep
    except ImportError:  # pragma: no cover
        return None


def _where(frame) -> str:
    pkg = _minivit_dir()
    first_outside = None
    while frame is not None:
        path = frame.f_code.co_filename
        if not path.startswith(_HERE):
            if pkg is not None and path.startswith(pkg):
                return f"minivit/{os.path.relpath(path, pkg)}:{frame.f_lineno}"
            if first_outside is None:
                first_outside = f"{os.path.basename(path)}:{frame.f_lineno}"
        frame = frame.f_back
    return f"(outside minivit) {first_outside}"


def record(kind: str) -> None:
    where = _where(sys._getframe(1))
    with _lock:
        _log.append((kind, where))


def reset() -> None:
    with _lock:
        _log.clear()


def log() -> list:
    """[(kind, "minivit/file.py:line"), ...] since the last reset, in order."""
    with _lock:
        return list(_log)
