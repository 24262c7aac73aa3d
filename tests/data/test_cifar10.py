"""CIFAR-10 data layer: format, safe loading, clear errors, lookup order, safe download."""

import hashlib
import io
import os
import pickle
import pickletools
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from minivit.backend import host_rng
from minivit.data import (
    CIFARFormatError,
    UnsafePickleError,
    batch_indices,
    channel_stats,
    download_and_extract,
    find_cifar10,
    iterate_batches,
    load_cifar10,
    normalize,
    read_batch,
    renormalize,
    save_py2_pickle,
    write_cifar10_like,
)
from minivit.data import download as download_mod
from minivit.data import verify as verify_mod
from minivit.data.safe_pickle import MAX_DEPTH, MAX_MEMO

N_BATCH, N_TEST = 40, 30  # 200 training images, 30 test images
ROOT = Path(__file__).resolve().parents[2]
REAL = os.environ.get("MINIVIT_DATA")  # read before the fixture below hides it
REAL = next((p for p in (Path(REAL), Path(REAL) / "cifar-10-batches-py")
             if (p / "data_batch_1").is_file()), None) if REAL else None
needs_real = pytest.mark.skipif(REAL is None, reason="real CIFAR-10 not found ($MINIVIT_DATA "
                                                     "names no folder holding data_batch_1)")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No test sees the user's MINIVIT_DATA or real cache."""
    monkeypatch.delenv("MINIVIT_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.fixture
def cifar_dir(tmp_path):
    return write_cifar10_like(tmp_path / "cifar-10-batches-py", N_BATCH, N_TEST, seed=0)


def _raw(path):
    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")


# ------------------------------------------------------------------ format and round trip

def test_synthetic_round_trip(cifar_dir):
    d = load_cifar10(cifar_dir, val_size=50)
    assert d.train_x.shape == (150, 3, 32, 32) and d.train_x.dtype == np.uint8
    assert d.val_x.shape == (50, 3, 32, 32) and d.test_x.shape == (N_TEST, 3, 32, 32)
    for y, n in ((d.train_y, 150), (d.val_y, 50), (d.test_y, N_TEST)):
        assert y.shape == (n,) and y.dtype == np.int64 and 0 <= y.min() and y.max() <= 9
    assert d.label_names[:2] == ["airplane", "automobile"] and d.num_classes == 10
    # val = the LAST 50 training images, in file order; pixels decoded as R, G, B planes
    raw = [_raw(cifar_dir / f"data_batch_{i}") for i in range(1, 6)]
    all_x = np.concatenate([r[b"data"] for r in raw]).reshape(-1, 3, 32, 32)
    all_y = np.concatenate([r[b"labels"] for r in raw])
    np.testing.assert_array_equal(d.val_x, all_x[150:])
    np.testing.assert_array_equal(d.train_y, all_y[:150])
    assert d.train_x[7, 1, 2, 3] == raw[0][b"data"][7, 1024 + 2 * 32 + 3]
    # mean/std on the training split only, float64 (3,)
    ref = d.train_x.astype(np.float64) / 255
    assert d.mean.dtype == np.float64 and d.mean.shape == (3,)
    np.testing.assert_allclose(d.mean, ref.mean(axis=(0, 2, 3)), atol=1e-12)
    np.testing.assert_allclose(d.std, ref.std(axis=(0, 2, 3)), atol=1e-12)


def test_val_size_zero_and_too_large(cifar_dir):
    d = load_cifar10(cifar_dir, val_size=0)
    assert len(d.train_y) == 200 and d.val_x.shape == (0, 3, 32, 32)
    with pytest.raises(ValueError, match="val_size"):
        load_cifar10(cifar_dir, val_size=200)


def test_train_size_keeps_the_first_images_of_each_class(cifar_dir):
    full = load_cifar10(cifar_dir, val_size=50)
    d = load_cifar10(cifar_dir, val_size=50, train_size=23)     # 2 of each class, 3 of 0-2
    counts = np.bincount(d.train_y, minlength=10)
    assert counts.tolist() == [3, 3, 3] + [2] * 7
    keep = np.sort(np.concatenate([np.flatnonzero(full.train_y == c)[:counts[c]]
                                   for c in range(10)]))
    np.testing.assert_array_equal(d.train_x, full.train_x[keep])   # file order kept
    np.testing.assert_array_equal(d.train_y, full.train_y[keep])
    np.testing.assert_array_equal(d.val_x, full.val_x)             # val and test untouched
    np.testing.assert_array_equal(d.test_y, full.test_y)
    ref = d.train_x.astype(np.float64) / 255                       # stats of the kept images
    np.testing.assert_allclose(d.mean, ref.mean(axis=(0, 2, 3)), atol=1e-12)
    # the synthetic split has 14 to 16 of each class: 147 is the most that stays balanced
    assert len(load_cifar10(cifar_dir, val_size=50, train_size=147).train_y) == 147


@pytest.mark.parametrize("size, expect", [
    (151, "train_size must be an int in 10..150"), (9, "train_size must be an int in 10..150"),
    (True, "got True"), (148, "needs 15 images of class 7"),
])
def test_bad_train_size_names_the_folder(cifar_dir, size, expect):
    with pytest.raises(ValueError, match=expect) as e:
        load_cifar10(cifar_dir, val_size=50, train_size=size)
    assert str(cifar_dir) in str(e.value)


def test_synthetic_files_use_the_official_pickle_format(cifar_dir):
    raw = _raw(cifar_dir / "data_batch_1")  # plain pickle with bytes keys, like torchvision
    assert list(raw) == [b"batch_label", b"labels", b"data", b"filenames"]
    assert raw[b"data"].dtype == np.uint8 and raw[b"data"].shape == (N_BATCH, 3072)
    meta = _raw(cifar_dir / "batches.meta")
    assert set(meta) == {b"label_names", b"num_cases_per_batch", b"num_vis"}
    ops = list(pickletools.genops((cifar_dir / "test_batch").read_bytes()))
    assert ops[0][1] == 2  # protocol 2
    globals_ = {arg for op, arg, _ in ops if op.name == "GLOBAL"}
    assert globals_ == {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}


def test_python3_protocol2_copy_also_loads(cifar_dir):
    """A copy re-saved by Python 3 (bytes via _codecs.encode, numpy._core names) loads too."""
    raw = _raw(cifar_dir / "data_batch_2")
    (cifar_dir / "data_batch_2").write_bytes(pickle.dumps(raw, protocol=2))
    assert b"_codecs" in (cifar_dir / "data_batch_2").read_bytes()
    d = load_cifar10(cifar_dir, val_size=0)
    np.testing.assert_array_equal(d.train_x[N_BATCH:2 * N_BATCH].reshape(N_BATCH, -1),
                                  raw[b"data"])


def test_synthetic_classes_are_learnable(cifar_dir):
    d = load_cifar10(cifar_dir, val_size=0)
    feats = lambda x: x.reshape(len(x), -1).astype(np.float64)  # noqa: E731
    means = np.stack([feats(d.train_x[d.train_y == k]).mean(0) for k in range(10)])
    dist = ((feats(d.test_x)[:, None, :] - means[None]) ** 2).sum(-1)
    assert (dist.argmin(1) == d.test_y).mean() > 0.5  # chance is 0.1


# ------------------------------------------------------------------ lookup order

def test_lookup_order_arg_env_cache(tmp_path, monkeypatch):
    arg = write_cifar10_like(tmp_path / "arg" / "cifar-10-batches-py", 2, 2)
    env = write_cifar10_like(tmp_path / "env" / "cifar-10-batches-py", 2, 2)
    cache = write_cifar10_like(tmp_path / "xdg-cache" / "minivit" / "cifar-10-batches-py", 2, 2)
    monkeypatch.setenv("MINIVIT_DATA", str(tmp_path / "env"))  # the parent is accepted too
    assert find_cifar10(arg) == arg
    assert find_cifar10(tmp_path / "arg") == arg
    assert find_cifar10() == env
    monkeypatch.delenv("MINIVIT_DATA")
    assert find_cifar10() == cache
    # without XDG_CACHE_HOME the cache is ~/.cache/minivit
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    home_cache = write_cifar10_like(tmp_path / "home/.cache/minivit/cifar-10-batches-py", 2, 2)
    assert find_cifar10() == home_cache


def test_wrong_explicit_dir_falls_back_with_a_warning(tmp_path):
    cache = write_cifar10_like(tmp_path / "xdg-cache" / "minivit" / "cifar-10-batches-py", 2, 2)
    (tmp_path / "empty").mkdir()
    with pytest.warns(UserWarning, match="not found"):
        assert find_cifar10(tmp_path / "empty") == cache


def test_not_found_lists_every_place(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIVIT_DATA", str(tmp_path / "nowhere-env"))
    with pytest.raises(FileNotFoundError) as e:
        load_cifar10(tmp_path / "nowhere-arg")
    msg = str(e.value)
    for place in ("nowhere-arg", "nowhere-env", str(tmp_path / "xdg-cache" / "minivit"),
                  "--data-dir", "MINIVIT_DATA", "download=True"):
        assert place in msg


# ------------------------------------------------------------------ safety and clear errors

class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_not_run(cifar_dir, tmp_path):
    marker = tmp_path / "pwned"
    save_py2_pickle({b"data": _Evil(marker), b"labels": []}, cifar_dir / "data_batch_1")
    with pytest.raises(UnsafePickleError, match="system") as e:
        load_cifar10(cifar_dir, val_size=0)
    assert "data_batch_1" in str(e.value) and not marker.exists()
    # the same payload at the newest protocol (STACK_GLOBAL) is refused the same way
    (cifar_dir / "test_batch").write_bytes(pickle.dumps(_Evil(marker)))
    with pytest.raises(UnsafePickleError, match="test_batch"):
        read_batch(cifar_dir / "test_batch")
    assert not marker.exists()


def _rewrite(path, **changes):
    raw = _raw(path)
    for k, v in changes.items():
        if v is None:
            del raw[k.encode()]
        else:
            raw[k.encode()] = v
    save_py2_pickle(raw, path)


@pytest.mark.parametrize("name, change, expect", [
    ("data_batch_4", {"data": np.zeros((N_BATCH, 1024), np.uint8)}, "3072"),
    ("data_batch_4", {"data": np.zeros((N_BATCH, 3072), np.float32)}, "uint8"),
    ("data_batch_5", {"labels": [10] * N_BATCH}, "0..9"),
    ("data_batch_5", {"labels": [-1] * N_BATCH}, "0..9"),
    ("test_batch", {"labels": [0] * (N_TEST - 1)}, "labels for"),
    ("test_batch", {"data": None}, "missing key"),
])
def test_bad_content_names_the_file(cifar_dir, name, change, expect):
    _rewrite(cifar_dir / name, **change)
    with pytest.raises(CIFARFormatError) as e:
        load_cifar10(cifar_dir, val_size=0)
    assert name in str(e.value) and expect in str(e.value) and "Re-download" in str(e.value)


def test_missing_file_names_the_file(cifar_dir):
    (cifar_dir / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3.*missing"):
        load_cifar10(cifar_dir, val_size=0)


def test_truncated_file_names_the_file(cifar_dir):
    path = cifar_dir / "data_batch_2"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CIFARFormatError, match="data_batch_2.*truncated or corrupt"):
        load_cifar10(cifar_dir, val_size=0)


def test_not_a_dict_names_the_file(cifar_dir):
    save_py2_pickle([1, 2, 3], cifar_dir / "batches.meta")
    with pytest.raises(CIFARFormatError, match="batches.meta.*dict"):
        load_cifar10(cifar_dir, val_size=0)


# ------------------------------------------------------------------ download

def _tar(path, files: dict, extra=()):
    """Write a .tar.gz with {name: bytes} plus raw TarInfo members ``extra``; return its MD5."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def test_download_and_extract_checks_md5(cifar_dir, tmp_path):
    files = {f"cifar-10-batches-py/{p.name}": p.read_bytes() for p in cifar_dir.iterdir()}
    archive = tmp_path / "cifar.tar.gz"
    md5 = _tar(archive, files)
    dest = tmp_path / "dest"
    assert download_and_extract(archive, dest, md5) == dest
    assert load_cifar10(dest, val_size=0).train_x.shape == (200, 3, 32, 32)
    bad = tmp_path / "bad-dest"
    with pytest.raises(ValueError, match="MD5 mismatch"):
        download_and_extract(archive.as_uri(), bad, "0" * 32)
    assert list(bad.iterdir()) == []


def _member(name, size=1, type_=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.size, info.type, info.linkname = (size if type_ == tarfile.REGTYPE else 0), type_, link
    return info


@pytest.mark.parametrize("member, why", [
    (_member("../evil"), "'..'"),
    (_member("cifar-10-batches-py/../../evil"), "'..'"),
    (_member("/tmp/minivit-evil-absolute"), "absolute"),
    (_member("cifar-10-batches-py/link", type_=tarfile.SYMTYPE, link="/etc/passwd"), "link"),
    (_member("cifar-10-batches-py/hard", type_=tarfile.LNKTYPE, link="../../x"), "link"),
])
def test_hostile_archive_is_refused(tmp_path, member, why):
    archive = tmp_path / "evil.tar.gz"
    md5 = _tar(archive, {"cifar-10-batches-py/test_batch": b"ok"}, extra=[member])
    dest = tmp_path / "a" / "dest"
    with pytest.raises(ValueError, match=why):
        download_and_extract(archive, dest, md5)
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "a" / "evil").exists() and not (tmp_path / "evil").exists()
    assert not Path("/tmp/minivit-evil-absolute").exists()


def test_find_with_download_uses_the_cache(cifar_dir, tmp_path, monkeypatch):
    files = {f"cifar-10-batches-py/{p.name}": p.read_bytes() for p in cifar_dir.iterdir()}
    md5 = _tar(tmp_path / "c.tar.gz", files)
    monkeypatch.setattr(download_mod, "CIFAR10_URL", str(tmp_path / "missing.tar.gz"))
    with pytest.raises(FileNotFoundError, match="download failed"):
        find_cifar10(tmp_path / "nowhere", download=True)
    monkeypatch.setattr(download_mod, "CIFAR10_URL", str(tmp_path / "c.tar.gz"))
    monkeypatch.setattr(download_mod, "CIFAR10_MD5", md5)
    d = load_cifar10(download=True, val_size=10)
    assert d.path == tmp_path / "xdg-cache" / "minivit" / "cifar-10-batches-py"
    assert len(d.train_y) == 190


# ------------------------------------------------------------------ batching, normalisation

def test_batch_indices_cover_everything_once():
    batches = list(batch_indices(10, 4, rng=host_rng(3)))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(np.concatenate(batches)) == list(range(10))
    again = list(batch_indices(10, 4, rng=3))  # an int seed means host_rng(seed)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))
    assert not np.array_equal(np.concatenate(batches), np.arange(10))
    assert [len(b) for b in batch_indices(10, 4, rng=3, drop_last=True)] == [4, 4]
    np.testing.assert_array_equal(np.concatenate(list(batch_indices(10, 4))), np.arange(10))


def test_iterate_batches_pairs_images_with_labels():
    x = np.arange(12, dtype=np.uint8).reshape(12, 1, 1, 1).repeat(3, 1)
    y = np.arange(12, dtype=np.int64)
    for xb, yb in iterate_batches(x, y, 5, rng=host_rng(0)):
        np.testing.assert_array_equal(xb[:, 0, 0, 0], yb)
    with pytest.raises(ValueError):
        next(iterate_batches(x, y[:5], 5))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_normalize(dtype):
    x = host_rng(0).integers(0, 256, size=(4, 3, 8, 8)).astype(np.uint8)
    mean, std = np.array([0.5, 0.4, 0.3]), np.array([0.2, 0.25, 0.3])
    out = normalize(x, mean, std, dtype)
    assert out.dtype == np.dtype(dtype) and out.shape == x.shape
    ref = (x / 255.0 - mean[None, :, None, None]) / std[None, :, None, None]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_renormalize_moves_images_to_other_statistics():
    x = np.random.default_rng(0).integers(0, 256, (5, 3, 4, 4), dtype=np.uint8)
    a, b = ((0.4, 0.5, 0.6), (0.2, 0.25, 0.3)), ((0.45, 0.4, 0.5), (0.3, 0.2, 0.26))
    moved = renormalize(normalize(x, *a, "float64"), *a, *b)
    np.testing.assert_allclose(moved, normalize(x, *b, "float64"), rtol=0, atol=1e-12)
    same = normalize(x, *a, "float32")
    assert renormalize(same, *a, *a) is same                   # nothing to do: no copy
    assert renormalize(same, *a, *b).dtype == np.float32


def test_channel_stats_matches_float_computation():
    x = host_rng(1).integers(0, 256, size=(20, 3, 5, 5)).astype(np.uint8)
    mean, std = channel_stats(x)
    np.testing.assert_allclose(mean, (x / 255).mean(axis=(0, 2, 3)), atol=1e-12)
    np.testing.assert_allclose(std, (x / 255).std(axis=(0, 2, 3)), atol=1e-12)


# ------------------------------------------------------------------ the real data set

@pytest.mark.slow
@needs_real
def test_real_cifar10():
    d = load_cifar10(REAL)
    assert (len(d.train_y), len(d.val_y), len(d.test_y)) == (45000, 5000, 10000)
    assert d.label_names[0] == "airplane" and d.label_names[9] == "truck"
    mean, std = channel_stats(np.concatenate([d.train_x, d.val_x]))  # the full 50k
    np.testing.assert_allclose(mean, [0.4914, 0.4822, 0.4465], atol=1e-4)
    np.testing.assert_allclose(std, [0.2470, 0.2435, 0.2616], atol=1e-4)
    assert np.bincount(np.concatenate([d.train_y, d.val_y])).tolist() == [5000] * 10


@needs_real
def test_real_cifar10_is_verified_once_and_a_flipped_byte_is_caught(tmp_path, monkeypatch):
    monkeypatch.setattr(verify_mod, "_verified_here", set())
    hashed = []
    real_md5 = verify_mod.file_md5
    monkeypatch.setattr(verify_mod, "file_md5", lambda p: hashed.append(p.name) or real_md5(p))
    assert verify_mod.verify_official(REAL) == set(verify_mod.OFFICIAL_FILES)
    assert sorted(hashed) == sorted(verify_mod.OFFICIAL_FILES)
    verify_mod._verified_here.clear()                   # a new process: the stamp remembers
    assert verify_mod.verify_official(REAL) == set(verify_mod.OFFICIAL_FILES) and len(hashed) == 7
    assert list((tmp_path / "xdg-cache" / "minivit" / "verified").glob("*.json"))
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in verify_mod.OFFICIAL_FILES:
        (copy / name).symlink_to(REAL / name)
    (copy / "batches.meta").unlink()
    meta = bytearray((REAL / "batches.meta").read_bytes())
    meta[60] ^= 1                                       # inside the name 'airplane'
    (copy / "batches.meta").write_bytes(bytes(meta))
    with pytest.raises(CIFARFormatError, match=r"batches.meta: has the size of the official"):
        load_cifar10(copy)


# ------------------------------------------------------------------ crafted hostile files
# Small pickles written opcode by opcode (pickletools names in the comments).

def _s(b: bytes) -> bytes:
    return b"U" + bytes([len(b)]) + b                                    # SHORT_BINSTRING


def _global(module: bytes, name: bytes) -> bytes:
    return b"c" + module + b"\n" + name + b"\n"                          # GLOBAL


def _int(v: int) -> bytes:
    return b"J" + struct.pack("<i", v)                                   # BININT


def _dtype(code: bytes, fields: bytes = b"NN", flags: int = 0, elsize: int = -1) -> bytes:
    """numpy.dtype(code, False, True) then BUILD with the state (3, '|', None, names, fields,
    elsize, alignment, flags), as NumPy pickles a dtype."""
    return (_global(b"numpy", b"dtype") + _s(code)
            + b"\x89\x88\x87R"                                     # NEWFALSE NEWTRUE TUPLE3 REDUCE
            + b"(K\x03" + _s(b"|") + b"N" + fields + _int(elsize) + _int(-1 if elsize < 0 else 1)
            + _int(flags) + b"tb")                                 # MARK ... TUPLE BUILD


def _array(shape: bytes, dtype: bytes, raw: bytes) -> bytes:
    """_reconstruct(ndarray, (0,), 'b') then BUILD with (1, shape, dtype, False, raw)."""
    return (_global(b"numpy.core.multiarray", b"_reconstruct") + _global(b"numpy", b"ndarray")
            + b"K\x00\x85" + _s(b"b") + b"\x87R" + b"(K\x01" + shape + dtype + b"\x89" + _s(raw)
            + b"tb")


def _dict(**items: bytes) -> bytes:
    """protocol 2, {b'key': <ops>, ...}"""
    return b"\x80\x02}(" + b"".join(_s(k.encode()) + v for k, v in items.items()) + b"u."


# A dtype with one object field and its flags zeroed (so NumPy keeps no references), filled
# from raw bytes: the array holds the pointer 0x4141414141414141, and printing it crashes.
OBJECT_FIELD = b"(" + _s(b"f") + b"t}" + _s(b"f") + _dtype(b"O", flags=63) + b"K\x00\x86s"
POINTER_META = _dict(label_names=_array(b"K\x01\x85", _dtype(b"V8", OBJECT_FIELD, 0, 8), b"A" * 8))
# A plain type code whose pickled state adds a field list: refused on the state alone.
PLAIN_FIELD = b"(" + _s(b"f") + b"t}" + _s(b"f") + _dtype(b"u8") + b"K\x00\x86s"
FIELDS_META = _dict(label_names=_array(b"K\x01\x85", _dtype(b"u8", PLAIN_FIELD, 0, 8), b"A" * 8))
# numpy.ndarray((10**6, 3072), uint8, b'A', 0, (0, 0)): 2.9 GiB of images over one byte.
ZERO_STRIDES = _dict(
    data=_global(b"numpy", b"ndarray") + b"(" + _int(10**6) + b"M\x00\x0c\x86" + _dtype(b"u1")
    + _s(b"A") + b"K\x00K\x00K\x00\x86tR",
    labels=b"]")
MEMO_BOMB = b"\x80\x02Nr" + struct.pack("<I", 2**27) + b"."               # LONG_BINPUT 2**27
DEEP = 10**6
DEEP_META = _dict(label_names=b"]" * DEEP + b"a" * (DEEP - 1))            # [[[...]]] 10**6 deep


def _run_isolated(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (a crash there cannot take the tests down)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.mark.parametrize("meta, expect", [(POINTER_META, "dtype other than a plain"),
                                          (FIELDS_META, "dtype with fields")],
                         ids=["object-field", "fields-in-state"])
def test_object_dtype_pickle_is_refused_without_a_crash(tmp_path, meta, expect):
    assert len(POINTER_META) < 256
    path = tmp_path / "batches.meta"
    path.write_bytes(meta)
    got = _run_isolated(
        "import sys\nfrom minivit.data import CIFARFormatError, read_label_names\n"
        f"try:\n    read_label_names({str(path)!r})\nexcept CIFARFormatError as e:\n"
        "    print(e)\n    sys.exit(3)\n")
    assert got.returncode == 3, (got.returncode, got.stderr[-2000:])
    lines = got.stdout.splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and expect in lines[0]


@pytest.mark.parametrize("name, payload, expect", [
    ("data_batch_1", ZERO_STRIDES, "numpy.ndarray called directly"),
    ("data_batch_2", MEMO_BOMB, f"memo index {2**27} is beyond the limit of {MAX_MEMO}"),
    ("batches.meta", DEEP_META, "nested too deep"),
    ("batches.meta", _dict(label_names=(b"]" * 200 + b"a" * 199)),
     f"nested more than {MAX_DEPTH} deep"),
    ("data_batch_3", _dict(data=_array(b"K\x02\x85", _dtype(b"u1"), b"A"), labels=b"]"),
     "needs 2 bytes of data, the file holds 1"),
    ("data_batch_4", _dict(data=_array(_int(-1) + b"\x85", _dtype(b"u1"), b""), labels=b"]"),
     "shape is not a tuple of non-negative ints"),
    ("data_batch_5", _dict(data=_global(b"_codecs", b"encode") + _s(b"x") + _s(b"rot13")
                           + b"\x86R", labels=b"]"), "'latin1'"),
    ("test_batch", _dict(data=_global(b"__builtin__", b"bytes") + b"K\x05\x85R", labels=b"]"),
     "bytes() with arguments"),
    ("test_batch", _dict(data=_global(b"numpy", b"dtype") + b"}" + _s(b"__defaults__")
                         + b"K\x01\x85sb", labels=b"]"), "state for one of NumPy's functions"),
], ids=["zero-strides", "memo-bomb", "deep-nesting", "nesting-200", "short-data", "negative-shape",
        "codecs-rot13", "bytes-call", "state-for-a-function"])
def test_crafted_pickles_give_one_line_errors(cifar_dir, name, payload, expect):
    (cifar_dir / name).write_bytes(payload)
    with pytest.raises(CIFARFormatError) as e:
        load_cifar10(cifar_dir, val_size=0)
    msg = str(e.value)
    assert "\n" not in msg and str(cifar_dir / name) in msg and expect in msg, msg


def test_python3_copy_with_empty_bytes_loads(cifar_dir):
    raw = _raw(cifar_dir / "data_batch_1")
    raw[b"batch_label"] = b""
    raw[b"filenames"][0] = b""
    (cifar_dir / "data_batch_1").write_bytes(pickle.dumps(raw, protocol=2))
    assert b"bytes" in (cifar_dir / "data_batch_1").read_bytes()  # bytes() for the empty ones
    d = load_cifar10(cifar_dir, val_size=0)
    np.testing.assert_array_equal(d.train_x[:N_BATCH].reshape(N_BATCH, -1), raw[b"data"])


def test_loaded_arrays_are_plain_writable_ndarrays(cifar_dir):
    x, y = read_batch(cifar_dir / "test_batch")
    assert type(x) is np.ndarray and type(y) is np.ndarray and x.flags.writeable


@pytest.mark.parametrize("names, expect", [
    ([b"cat"] * 10, "names 0 and 1 are the same"),
    ([b"a", b"b", b"c", b"d", b"e", b"f", b"g", b"h", b"i", b"a"], "names 0 and 9 are the same"),
    ([b"line\nbreak"] + [bytes([65 + i]) for i in range(9)], "name 0 is empty"),
    ([1] * 10, "type(s) int"),
])
def test_bad_class_names_are_refused(cifar_dir, names, expect):
    _rewrite(cifar_dir / "batches.meta", label_names=names)
    with pytest.raises(CIFARFormatError) as e:
        load_cifar10(cifar_dir, val_size=0)
    assert "batches.meta" in str(e.value) and expect in str(e.value)


# ------------------------------------------------------------------ official checksums

def _as_official(folder, monkeypatch):
    """Make the files of ``folder`` the 'official release' of this test."""
    table = {p.name: (p.stat().st_size, hashlib.md5(p.read_bytes()).hexdigest())
             for p in folder.iterdir()}
    monkeypatch.setattr(verify_mod, "OFFICIAL_FILES", table)
    monkeypatch.setattr(verify_mod, "_verified_here", set())
    hashed = []
    real_md5 = verify_mod.file_md5
    monkeypatch.setattr(verify_mod, "file_md5", lambda p: hashed.append(p.name) or real_md5(p))
    return hashed


def test_official_files_are_checked_once(cifar_dir, monkeypatch):
    hashed = _as_official(cifar_dir, monkeypatch)
    load_cifar10(cifar_dir, val_size=0)
    assert sorted(hashed) == sorted(verify_mod.OFFICIAL_FILES)
    load_cifar10(cifar_dir, val_size=0)                 # the same process: remembered
    verify_mod._verified_here.clear()
    load_cifar10(cifar_dir, val_size=0)                 # a new process: the stamp file
    assert len(hashed) == 7
    assert sorted(p.name for p in cifar_dir.iterdir()) == sorted(verify_mod.OFFICIAL_FILES)
    os.utime(cifar_dir / "test_batch", ns=(1, 1))       # touched: hashed again
    load_cifar10(cifar_dir, val_size=0)
    assert hashed[7:] == ["test_batch"]


def test_a_flipped_byte_in_an_official_file_is_caught(cifar_dir, monkeypatch):
    _as_official(cifar_dir, monkeypatch)
    path = cifar_dir / "data_batch_3"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10                        # inside the pixels: still a valid pickle
    path.write_bytes(bytes(data))
    with pytest.raises(CIFARFormatError, match="data_batch_3: has the size of the official "
                                               "data_batch_3 but not its content"):
        load_cifar10(cifar_dir, val_size=0)


def test_folders_that_are_not_the_release_are_not_checksummed(cifar_dir, monkeypatch):
    hashed = _as_official(cifar_dir, monkeypatch)
    table = dict(verify_mod.OFFICIAL_FILES)
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                 "data_batch_5", "test_batch"):
        table[name] = (table[name][0] + 1, table[name][1])  # no batch has its official size
    (cifar_dir / "batches.meta").write_bytes(b"\x80\x02" + (cifar_dir / "batches.meta")
                                             .read_bytes()[2:])
    monkeypatch.setattr(verify_mod, "OFFICIAL_FILES", table)
    assert load_cifar10(cifar_dir, val_size=0).num_classes == 10 and hashed == []
