"""Finding CIFAR-10 on the host, and downloading and extracting the official archive safely."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
import warnings
from pathlib import Path

from minivit.data.cifar_format import ALL_FILES, CIFAR10_MD5, CIFAR10_URL, ENV_VAR, FOLDER_NAME

# --------------------------------------------------------------------------- finding

def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/minivit`` (default ``~/.cache/minivit``): where downloads go."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "minivit"


def _holds_cifar(folder: Path) -> bool:
    return folder.is_dir() and any((folder / f).exists() for f in ALL_FILES)


def find_cifar10(data_dir=None, download: bool = False) -> Path:
    """Return the ``cifar-10-batches-py`` folder to read.

    Looks, in this order, at: ``data_dir``; the ``MINIVIT_DATA`` environment variable;
    the cache ``cache_dir()/cifar-10-batches-py``. Each may name the folder itself or
    its parent. With ``download=True`` and nothing found, the official archive is
    downloaded into the cache (MD5-checked). Otherwise FileNotFoundError lists every
    place looked and how to point minivit at a copy.
    """
    sources = []
    if data_dir is not None:
        sources.append(("data_dir argument / --data-dir", Path(data_dir).expanduser()))
    if os.environ.get(ENV_VAR):
        sources.append((f"${ENV_VAR}", Path(os.environ[ENV_VAR]).expanduser()))
    cache = cache_dir() / FOLDER_NAME
    sources.append(("cache", cache))

    looked = []
    for i, (what, base) in enumerate(sources):
        for folder in (base,) if base == cache else (base, base / FOLDER_NAME):
            looked.append(f"{folder} ({what})")
            if _holds_cifar(folder):
                if i > 0:
                    skipped = ", ".join(f"{w} = {p}" for w, p in sources[:i])
                    warnings.warn(f"CIFAR-10 not found at {skipped}; using {folder} instead")
                return folder

    reason = ""
    if download:
        try:
            download_and_extract(CIFAR10_URL, cache.parent, CIFAR10_MD5)
            if _holds_cifar(cache):
                return cache
            reason = f" The download finished but {cache} holds no CIFAR-10 files."
        except (OSError, ValueError) as e:
            reason = f" The download failed: {e}"
    raise FileNotFoundError(
        "CIFAR-10 ('python version') was not found. Looked in: " + "; ".join(looked) + "." +
        reason + f" Point minivit at a copy with --data-dir PATH or {ENV_VAR}=PATH "
        f"(the folder holding data_batch_1..5, test_batch, batches.meta, or its parent), "
        f"or download it into the cache with --download (download=True from Python).")


# --------------------------------------------------------------------------- download

def _as_url(url_or_path) -> str:
    s = str(url_or_path)
    if "://" in s:
        return s
    return Path(s).expanduser().resolve().as_uri()


def _fetch(url: str, dest: Path) -> str:
    """Copy ``url`` (http, https or file) to ``dest``; return its MD5 hex digest."""
    if urllib.parse.urlparse(url).scheme not in ("http", "https", "file"):
        raise ValueError(f"cannot fetch {url!r}: only http(s):// and file:// URLs or paths")
    md5 = hashlib.md5()
    if not url.startswith("file:"):
        print(f"minivit: downloading {url} ...", file=sys.stderr, flush=True)
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(dest, "wb") as f:
            while chunk := r.read(1 << 20):
                md5.update(chunk)
                f.write(chunk)
    except OSError as e:  # URLError, HTTPError, timeouts and disk errors are OSErrors
        raise OSError(f"could not fetch {url}: {e}") from None
    return md5.hexdigest()


def _check_members(tar: tarfile.TarFile, archive: str, root: Path) -> list:
    """Refuse the whole archive if any member could land outside ``root``."""
    members = tar.getmembers()
    for m in members:
        p = Path(m.name)
        problem = None
        if m.name.startswith(("/", "\\")) or p.is_absolute():
            problem = "has an absolute path"
        elif ".." in p.parts:
            problem = "contains '..'"
        elif m.issym() or m.islnk():
            problem = "is a link"
        elif not (m.isfile() or m.isdir()):
            problem = "is not a regular file or folder"
        elif not (root / p).resolve().is_relative_to(root):
            problem = "resolves outside the target folder"
        if problem:
            raise ValueError(f"refusing to extract {archive}: member {m.name!r} {problem}")
    return members


def download_and_extract(url_or_path, dest, md5: str | None = CIFAR10_MD5) -> Path:
    """Fetch a .tar.gz (URL or local path), check its MD5, extract it safely into ``dest``.

    Works in a temporary folder inside ``dest`` and only moves the extracted top-level
    entries into ``dest`` once everything succeeded, so a failed download, a wrong MD5
    or a hostile archive (absolute paths, ``..``, links) leaves ``dest`` as it was.
    Returns ``dest``.
    """
    dest = Path(dest).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    url = _as_url(url_or_path)
    tmp = Path(tempfile.mkdtemp(prefix=".minivit-download-", dir=dest))
    try:
        archive = tmp / "archive.tar.gz"
        got = _fetch(url, archive)
        if md5 is not None and got != md5.lower():
            raise ValueError(f"MD5 mismatch for {url}: expected {md5}, got {got}; the "
                             f"download is incomplete or not the expected file")
        out = (tmp / "extracted").resolve()
        out.mkdir()
        try:
            with tarfile.open(archive, "r:gz") as tar:
                members = _check_members(tar, url, out)
                extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tar.extractall(out, members=members, **extra)
        except (tarfile.TarError, EOFError) as e:
            raise ValueError(f"{url} is not a valid .tar.gz archive ({e})") from None
        entries = list(out.iterdir())
        for e in entries:
            if (dest / e.name).exists():
                raise FileExistsError(f"{dest / e.name} already exists; remove it (it may "
                                      f"be a damaged copy) and download again")
        for e in entries:
            e.rename(dest / e.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
