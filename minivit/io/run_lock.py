"""One process per run directory: ``run_lock(run_dir)`` holds ``fcntl.flock`` on
RUN_DIR/.minivit.lock for the whole run (see its docstring), and a lock file that is a
symbolic link or not a plain file is refused, never followed."""

from __future__ import annotations

import errno
import os
import stat
from contextlib import contextmanager
from pathlib import Path

from minivit.errors import UserError
from minivit.io.files import WriteError, naming_write_errors, refuse_symlink

LOCK_FILE = ".minivit.lock"


class RunDirInUse(UserError):
    """Another process holds the run directory's lock."""


@contextmanager
def run_lock(run_dir, create: bool = True):
    """Hold an exclusive lock on RUN_DIR for the block: a second trainer on the same
    directory fails at once with RunDirInUse, naming the holder's PID.

    The lock is ``fcntl.flock`` on RUN_DIR/LOCK_FILE (created, with the directory, if need be;
    it holds the PID for the message).  The kernel releases a flock when its process exits,
    however it exits (kill -9 included), so a lock file left behind by a dead process blocks
    nothing: the next run locks it again.  A lock file that is a symbolic link (or not a
    plain file) is refused, never followed.  With ``create=False`` a missing RUN_DIR is not
    created (nothing is locked).

    When the block fails and RUN_DIR then holds nothing but the lock file this call made (a
    run refused before it started: a wrong --data-dir, say), the lock file, and the folder if
    this call made it, are removed.  A process that opened the file just before it went
    finds, once it holds the lock, that the name no longer leads to its file, and stops."""
    import fcntl
    run_dir = Path(run_dir)
    path = run_dir / LOCK_FILE
    if not create and not run_dir.is_dir():
        yield None                        # nothing to lock: the caller reports the missing run
        return
    full = run_dir.absolute()
    made_dirs = [p for p in (full, *full.parents) if not os.path.lexists(p)]
    made_lock = not os.path.lexists(path)
    with naming_write_errors(path):
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = _open_lock_file(path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise RunDirInUse(f"{run_dir} is in use by another minivit process (PID {holder}); "
                              "wait for it or choose another --run-dir") from None
        if not _same_file(fd, path):
            raise RunDirInUse(f"{run_dir}: another minivit process was just leaving it; try "
                              "again")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield path
        except BaseException:
            if made_lock:
                _discard_unstarted(run_dir, path, made_dirs)
            raise
    finally:
        os.close(fd)                      # releases the lock


def _open_lock_file(path: Path) -> int:
    """The lock file, opened read-write without following a symbolic link; a plain file."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENXIO) or os.path.islink(path):
            refuse_symlink(path)
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise WriteError(f"refusing to use {path} as a lock file: it is not a plain file; "
                         "remove it")
    return fd


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _discard_unstarted(run_dir: Path, lock: Path, made_dirs: list) -> None:
    """Remove the lock file, and the folders ``run_lock`` made (deepest first), of a run that
    wrote nothing."""
    try:
        if [p.name for p in run_dir.iterdir()] == [LOCK_FILE]:
            lock.unlink()
            for folder in made_dirs:
                folder.rmdir()
    except OSError:
        pass                              # left as it is: the refusal is what matters


__all__ = ["LOCK_FILE", "RunDirInUse", "run_lock"]
