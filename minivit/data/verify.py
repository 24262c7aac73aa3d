"""Checking CIFAR-10 files against the official release's per-file MD5 checksums.

The rule: a folder claims to be the official release when one of its six batch files has
the official size of its name (31 MB to the byte, which no re-saved or synthetic batch
matches by chance). In such a folder every file of its official size must have its
official MD5, so a flipped byte is caught; files of other sizes, and every file of a folder
that makes no such claim (re-saved copies, small synthetic folders), are checked by the
format checks of ``cifar_format`` only, which catch truncation and damage to the structure.

Hashing 180 MB costs about half a second, so a file that matched is remembered by its
size and modification time, in a stamp file in the user cache (``cache_dir()/verified``,
one per data folder; the data folder itself is never written to) and in memory for the
running process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path

from minivit.data.cifar_format import (
    ALL_FILES,
    HOW_TO_FIX,
    TEST_FILE,
    TRAIN_FILES,
    CIFARFormatError,
)
from minivit.data.download import cache_dir

# name -> (size in bytes, MD5) of the files of the official cifar-10-python.tar.gz
OFFICIAL_FILES = {
    "data_batch_1": (31035704, "c99cafc152244af753f735de768cd75f"),
    "data_batch_2": (31035320, "d4bba439e000b95fd0a9bffe97cbabec"),
    "data_batch_3": (31035999, "54ebc095f3ab1f0389bbae665268c751"),
    "data_batch_4": (31035696, "634d18415352ddfa80567beed471001a"),
    "data_batch_5": (31035623, "482c414d41f54cd18b22e5b47cb7c3cb"),
    "test_batch": (31035526, "40351d587109b95175f43aff81a1287e"),
    "batches.meta": (158, "5ff9c542aee3614f3951f8cda6e48888"),
}

_verified_here: set[tuple[str, int, int]] = set()  # (resolved path, size, mtime_ns)


def file_md5(path: Path) -> str:
    md5 = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            md5.update(chunk)
    return md5.hexdigest()


def _stamp_file(folder: Path) -> Path:
    key = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:16]
    return cache_dir() / "verified" / f"{key}.json"


def _read_stamps(folder: Path) -> dict:
    try:
        got = json.loads(_stamp_file(folder).read_text())
    except (OSError, ValueError):
        return {}
    if not (isinstance(got, dict) and got.get("folder") == str(folder.resolve())
            and isinstance(got.get("files"), dict)):
        return {}
    return {k: v for k, v in got["files"].items() if k in OFFICIAL_FILES}


def _write_stamps(folder: Path, files: dict) -> None:
    """Write the stamp atomically; where the cache is not writable, memory is all there is."""
    stamp, tmp = _stamp_file(folder), None
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".minivit-", dir=stamp.parent)
        with os.fdopen(fd, "w") as f:
            json.dump({"folder": str(folder.resolve()), "files": files}, f, indent=1)
        os.replace(tmp, stamp)
    except OSError:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def verify_official(folder) -> set[str]:
    """Check the files of ``folder`` against the official MD5s (the rule above).

    Returns the names of the files that are the official ones (their opcode scan can be
    skipped); raises CIFARFormatError naming the first file that has an official size but
    not the official content. Missing files are left to the reader.
    """
    folder = Path(folder)
    sized = {}  # name -> stat of the files that have their official size
    for name in ALL_FILES:
        try:
            st = (folder / name).stat()
        except OSError:
            continue
        if st.st_size == OFFICIAL_FILES[name][0]:
            sized[name] = st
    if not set(sized) & set(TRAIN_FILES + (TEST_FILE,)):
        return set()  # not a copy of the official release
    stamps = _read_stamps(folder)
    official, changed = set(), False
    for name, st in sized.items():
        path = folder / name
        md5 = OFFICIAL_FILES[name][1]
        seen = [st.st_size, st.st_mtime_ns]
        here = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        if here not in _verified_here and stamps.get(name) != seen:
            got = file_md5(path)
            if got != md5:
                raise CIFARFormatError(
                    f"{path}: has the size of the official {name} but not its content (MD5 "
                    f"{got}, expected {md5}); the file is damaged. {HOW_TO_FIX}")
            stamps[name], changed = seen, True
        _verified_here.add(here)
        official.add(name)
    if changed:
        _write_stamps(folder, stamps)
    return official
