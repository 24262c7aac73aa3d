"""minivit.special.erf_numpy: accuracy against math.erf, special values, symmetry,
dtype/shape handling, and the transcription of the fdlibm coefficients."""

from __future__ import annotations

import math
import pathlib
import struct
import warnings

import numpy as np
import pytest

from minivit import special, special_tables
from minivit.special import erf_numpy


def _ref(x) -> np.ndarray:
    """math.erf elementwise, in float64 (the reference; CPython uses libm's erf)."""
    return np.array([math.erf(float(v)) for v in np.ravel(x)], dtype=np.float64).reshape(np.shape(x))


def _same_bits(a, b) -> bool:
    """Identical values including the sign of zero and nan positions."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# Range boundaries of fdlibm and their neighbours, both precisions.
_BOUNDS64 = [2.0**-28, 0.84375, 1.25, special._C64.tail_limit, 1 / 0.35, 6.0]
_BOUNDS32 = [2.0**-14, 0.84375, 1.25, special._C32.tail_limit, 1 / 0.35, 4.0]


def _around(bounds, dtype, k=3):
    out = []
    for b in bounds:
        v = dtype(b)
        lo = hi = v
        out.append(v)
        for _ in range(k):
            lo, hi = np.nextafter(lo, dtype(0)), np.nextafter(hi, dtype(np.inf))
            out += [lo, hi]
    a = np.array(out, dtype=dtype)
    return np.concatenate([a, -a])


# ----------------------------------------------------------------------------- coefficients

def test_coefficients_match_their_bit_patterns():
    # Each constant was copied from fdlibm/FreeBSD together with its hex bit pattern.
    assert len(special_tables.BITS64) == 54 and len(special_tables.BITS32) == 27
    for name, value, bits in special_tables.BITS64:
        assert struct.unpack("<Q", struct.pack("<d", value))[0] == bits, name
    for name, value, bits in special_tables.BITS32:
        assert struct.unpack("<I", struct.pack("<f", value))[0] == bits, name
        assert float(np.float32(value)) == struct.unpack("<f", struct.pack("<I", bits))[0], name


def test_module_does_not_import_numpy_or_cupy():
    src = pathlib.Path(special.__file__).read_text() + pathlib.Path(special_tables.__file__).read_text()
    for line in src.splitlines():
        words = line.split()
        assert words[:2] not in (["import", "numpy"], ["import", "cupy"]), line
        assert words[:2] not in (["from", "numpy"], ["from", "cupy"]), line


# ----------------------------------------------------------------------------- float64

def test_float64_dense_grid_vs_math_erf():
    rng = np.random.default_rng(0)
    x = np.concatenate([
        np.linspace(-10.0, 10.0, 200_001),
        rng.standard_normal(50_000),
        rng.uniform(-1e-6, 1e-6, 5_000),
        _around(_BOUNDS64, np.float64),
    ])
    y = erf_numpy(x)
    ref = _ref(x)
    err = np.abs(y - ref)
    assert err.max() < 1e-15
    # ... in fact at most one unit in the last place of math.erf's result.
    ulp = np.spacing(np.abs(ref))
    assert np.all(err <= ulp), (x[np.argmax(err / ulp)], (err / ulp).max())


def test_float64_special_values():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-300, -1e-300, 5e-324, -5e-324,
                  2.2250738585072014e-308, 1e-20, 1e300, -1e300, np.finfo(np.float64).max,
                  np.finfo(np.float64).min, 6.0, -6.0, 27.0, 1e5])
    y = erf_numpy(x)
    assert y.dtype == np.float64
    assert y[0] == 0.0 and not np.signbit(y[0])
    assert y[1] == 0.0 and np.signbit(y[1])
    assert y[2] == 1.0 and y[3] == -1.0
    assert np.isnan(y[4])
    fin = np.isfinite(x) & ~np.isnan(x)
    ref = _ref(x[fin])
    assert np.all(np.abs(y[fin] - ref) <= np.spacing(np.abs(ref)))
    assert y[5] == math.erf(1e-300) and y[6] == -math.erf(1e-300)


def test_no_floating_point_warnings_even_with_errors_raised():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, 1e-300, 1e-30,
                  1e30, 3.4e38, np.finfo(np.float64).max, -np.finfo(np.float64).max, 2.0, 5.9])
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        erf_numpy(x)
        with np.errstate(all="ignore"):  # the cast itself overflows / underflows
            x32 = x.astype(np.float32)
        erf_numpy(x32)


# ----------------------------------------------------------------------------- float32

def test_float32_accuracy_vs_math_erf():
    rng = np.random.default_rng(1)
    x = np.concatenate([
        np.linspace(-6.0, 6.0, 100_001, dtype=np.float32),
        rng.standard_normal(30_000).astype(np.float32),
        _around(_BOUNDS32, np.float32),
        np.array([0.0, 1e-40, 1e-30, 1e-10, 3.99, 4.0, 4.01, 10.0, 1e30, 3.4e38], np.float32),
    ])
    y = erf_numpy(x)
    assert y.dtype == np.float32
    err = np.abs(y.astype(np.float64) - _ref(x))
    assert err.max() < 2e-7


def test_float32_special_values():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan], np.float32)
    y = erf_numpy(x)
    assert y.dtype == np.float32
    assert _same_bits(y[:2], x[:2])
    assert y[2] == 1.0 and y[3] == -1.0 and np.isnan(y[4])


# ----------------------------------------------------------------------------- symmetry, shapes

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_odd_symmetry_exact(dtype):
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.standard_normal(20_000) * 3, np.linspace(0, 8, 4001),
                        [0.0, np.inf, 1e-300, 5e-324]]).astype(dtype)
    assert _same_bits(erf_numpy(-x), -erf_numpy(x))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), (1,), (7,), (4, 5), (2, 3, 4)])
def test_shape_and_dtype_preserved(dtype, shape):
    x = np.random.default_rng(3).normal(0, 2, size=shape).astype(dtype)
    y = erf_numpy(x)
    assert isinstance(y, np.ndarray)
    assert y.shape == x.shape and y.dtype == x.dtype
    if x.size:
        assert np.allclose(y.astype(np.float64), _ref(x), rtol=0, atol=2e-7)


def test_non_contiguous_and_read_only_input():
    base = np.random.default_rng(4).normal(0, 2, size=(6, 8))
    for x in (base.T, base[::2, 1::3], np.asfortranarray(base)):
        y = erf_numpy(x)
        assert y.shape == x.shape
        assert _same_bits(y, erf_numpy(np.ascontiguousarray(x)))
    ro = base.copy()
    ro.flags.writeable = False
    erf_numpy(ro)
    assert _same_bits(ro, base)


def test_other_input_types():
    assert erf_numpy(0.5).shape == () and erf_numpy(0.5) == math.erf(0.5)
    y = erf_numpy(np.float32(0.5))
    assert y.dtype == np.float32 and y.shape == ()
    yi = erf_numpy(np.array([-2, 0, 3]))
    assert yi.dtype == np.float64 and np.array_equal(yi, erf_numpy(np.array([-2.0, 0.0, 3.0])))
    yh = erf_numpy(np.array([0.5, -1.5, 3.0], np.float16))
    assert yh.dtype == np.float16
    assert np.array_equal(yh, _ref([0.5, -1.5, 3.0]).astype(np.float16))
    big = np.array([-3.0, -0.5, 0.25, 2.0], dtype=">f8")
    assert _same_bits(erf_numpy(big), erf_numpy(big.astype(np.float64)))
    with pytest.raises(TypeError):
        erf_numpy(np.array([1j]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blocked_evaluation_matches_single_pass(dtype, monkeypatch):
    x = np.random.default_rng(5).normal(0, 2, size=(37, 101)).astype(dtype)
    whole = erf_numpy(x)  # 3737 elements <= _BLOCK: one pass
    monkeypatch.setattr(special, "_BLOCK", 256)  # now 15 blocks, the last one partial
    assert _same_bits(erf_numpy(x), whole)


def test_erf_dispatches_to_erf_numpy_for_numpy():
    from minivit.special import erf

    x = np.linspace(-5, 5, 1001)
    assert _same_bits(erf(x), erf_numpy(x))
