"""minivit.erf.fdlibm: erf_fdlibm (accuracy against math.erf, special values, symmetry,
dtype/shape handling, the transcription of the fdlibm coefficients), erf_float32 (its
measured error bound) and erf_numpy's dispatch between them."""

from __future__ import annotations

import math
import pathlib
import struct
import warnings

import numpy as np
import pytest

from minivit.erf import coefficients as special_tables
from minivit.erf import fdlibm as special
from minivit.erf import float32 as special_float32
from minivit.erf.fdlibm import erf_fdlibm, erf_float32, erf_numpy


def _ref(x) -> np.ndarray:
    """math.erf elementwise, in float64 (the reference; CPython uses libm's erf)."""
    return np.array([math.erf(float(v)) for v in np.ravel(x)],
                    dtype=np.float64).reshape(np.shape(x))


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
    src = (pathlib.Path(special.__file__).read_text()
           + pathlib.Path(special_tables.__file__).read_text())
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
    y = erf_fdlibm(x)
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
    y = erf_fdlibm(x)
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
        erf_fdlibm(x)
        with np.errstate(all="ignore"):  # the cast itself overflows / underflows
            x32 = x.astype(np.float32)
        erf_fdlibm(x32)


# ----------------------------------------------------------------------------- float32

def test_float32_accuracy_vs_math_erf():
    rng = np.random.default_rng(1)
    x = np.concatenate([
        np.linspace(-6.0, 6.0, 100_001, dtype=np.float32),
        rng.standard_normal(30_000).astype(np.float32),
        _around(_BOUNDS32, np.float32),
        np.array([0.0, 1e-40, 1e-30, 1e-10, 3.99, 4.0, 4.01, 10.0, 1e30, 3.4e38], np.float32),
    ])
    y = erf_fdlibm(x)
    assert y.dtype == np.float32
    err = np.abs(y.astype(np.float64) - _ref(x))
    assert err.max() < 2e-7


def test_float32_special_values():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan], np.float32)
    y = erf_fdlibm(x)
    assert y.dtype == np.float32
    assert _same_bits(y[:2], x[:2])
    assert y[2] == 1.0 and y[3] == -1.0 and np.isnan(y[4])


# ----------------------------------------------------------------------------- symmetry, shapes

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_odd_symmetry_exact(dtype):
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.standard_normal(20_000) * 3, np.linspace(0, 8, 4001),
                        [0.0, np.inf, 1e-300, 5e-324]]).astype(dtype)
    assert _same_bits(erf_fdlibm(-x), -erf_fdlibm(x))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), (1,), (7,), (4, 5), (2, 3, 4)])
def test_shape_and_dtype_preserved(dtype, shape):
    x = np.random.default_rng(3).normal(0, 2, size=shape).astype(dtype)
    y = erf_fdlibm(x)
    assert isinstance(y, np.ndarray)
    assert y.shape == x.shape and y.dtype == x.dtype
    if x.size:
        assert np.allclose(y.astype(np.float64), _ref(x), rtol=0, atol=2e-7)


def test_non_contiguous_and_read_only_input():
    base = np.random.default_rng(4).normal(0, 2, size=(6, 8))
    for x in (base.T, base[::2, 1::3], np.asfortranarray(base)):
        y = erf_fdlibm(x)
        assert y.shape == x.shape
        assert _same_bits(y, erf_fdlibm(np.ascontiguousarray(x)))
    ro = base.copy()
    ro.flags.writeable = False
    erf_fdlibm(ro)
    assert _same_bits(ro, base)


def test_other_input_types():
    assert erf_fdlibm(0.5).shape == () and erf_fdlibm(0.5) == math.erf(0.5)
    y = erf_fdlibm(np.float32(0.5))
    assert y.dtype == np.float32 and y.shape == ()
    yi = erf_fdlibm(np.array([-2, 0, 3]))
    assert yi.dtype == np.float64 and np.array_equal(yi, erf_fdlibm(np.array([-2.0, 0.0, 3.0])))
    yh = erf_fdlibm(np.array([0.5, -1.5, 3.0], np.float16))
    assert yh.dtype == np.float16
    assert np.array_equal(yh, _ref([0.5, -1.5, 3.0]).astype(np.float16))
    big = np.array([-3.0, -0.5, 0.25, 2.0], dtype=">f8")
    assert _same_bits(erf_fdlibm(big), erf_fdlibm(big.astype(np.float64)))
    with pytest.raises(TypeError):
        erf_fdlibm(np.array([1j]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blocked_evaluation_matches_single_pass(dtype, monkeypatch):
    x = np.random.default_rng(5).normal(0, 2, size=(37, 101)).astype(dtype)
    whole = erf_fdlibm(x)  # 3737 elements <= _BLOCK: one pass
    monkeypatch.setattr(special, "_BLOCK", 256)  # now 15 blocks, the last one partial
    assert _same_bits(erf_fdlibm(x), whole)


def test_erf_dispatches_to_erf_numpy_for_numpy():
    from minivit.erf.fdlibm import erf

    x = np.linspace(-5, 5, 1001)
    assert _same_bits(erf(x), erf_numpy(x))


# ----------------------------------------------------------------------------- erf_float32

# The bound erf_float32 promises (special_tables.ERF32_TANH): 8 float32 ulp of the exact value.
# Measured on every 211th float32 bit pattern (20 million values, all binades, subnormals
# included) against float64 erf, 2026-12-06 with NumPy's tanh: 3.3 ulp, absolute error 1.7e-7.
ERF32_MAX_ULP = 8.0


def _ulp32(ref):
    """Spacing of float32 at the exact value (its ulp), as float64."""
    return np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)


def _every_float32(step):
    """Every ``step``-th non-negative finite float32 bit pattern (subnormals included), both
    signs."""
    bits = np.arange(0, np.float32(np.inf).view(np.uint32), step, dtype=np.uint32)
    x = bits.view(np.float32)
    return np.concatenate([x, -x])


def test_float32_fast_erf_error_bound_over_the_float32_range():
    rng = np.random.default_rng(11)
    x = np.concatenate([
        _every_float32(4099),                                       # every binade, ~2M values
        np.linspace(-4.5, 4.5, 300_001, dtype=np.float32),           # where erf is not +-1
        rng.standard_normal(100_000).astype(np.float32) * 2,         # GELU's inputs
        (rng.standard_normal(20_000) * 1e-40).astype(np.float32),    # subnormals
        _around(_BOUNDS32 + [3.9, 3.92, 4.5], np.float32),
    ])
    y = erf_float32(x)
    assert y.dtype == np.float32 and y.shape == x.shape
    ref = erf_fdlibm(x.astype(np.float64))                          # within 1 ulp of float64
    err = np.abs(y.astype(np.float64) - ref)
    ulps = err / _ulp32(ref)
    assert ulps.max() <= ERF32_MAX_ULP, (x[np.argmax(ulps)], ulps.max())
    assert err.max() < 5e-7
    assert np.abs(y).max() <= 1.0


def test_float32_fast_erf_against_math_erf_sample():
    x = np.concatenate([np.linspace(-5, 5, 4001, dtype=np.float32),
                        np.float32([1e-45, -1e-45, 1e-38, 1e-30, -1e-7, 0.5, 3.9])])
    ref = _ref(x)                                                   # math.erf, float64
    ulps = np.abs(erf_float32(x).astype(np.float64) - ref) / _ulp32(ref)
    assert ulps.max() <= ERF32_MAX_ULP


def test_float32_fast_erf_special_values():
    x = np.float32([0.0, -0.0, np.inf, -np.inf, np.nan, 4.5, -4.5, 1e30, -3.4e38, 4.0, -4.0])
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        y = erf_float32(x)
    assert y[0] == 0.0 and not np.signbit(y[0])
    assert y[1] == 0.0 and np.signbit(y[1])
    assert list(y[2:4]) == [1.0, -1.0] and np.isnan(y[4])
    assert list(y[5:9]) == [1.0, -1.0, 1.0, -1.0]
    # erf(4) = 1 - 1.5e-8: 1.0 or the float32 just below (NumPy's own tanh saturates later)
    assert np.float32(0.99999994) <= y[9] <= 1.0 and y[10] == -y[9]


def test_float32_fast_erf_is_odd_blocked_and_leaves_its_input_alone(monkeypatch):
    x = np.random.default_rng(3).normal(0, 2, size=(37, 101)).astype(np.float32)
    keep = x.copy()
    whole = erf_float32(x)
    assert _same_bits(x, keep)
    assert _same_bits(erf_float32(-x), -whole)
    monkeypatch.setattr(special_float32, "_BLOCK32", 256)           # 15 blocks, last partial
    assert _same_bits(erf_float32(x), whole)
    assert _same_bits(erf_float32(x.T), whole.T)                    # non-contiguous input


def test_erf_numpy_uses_the_fast_float32_path_and_fdlibm_otherwise():
    x = np.linspace(-5, 5, 1001)
    assert _same_bits(erf_numpy(x), erf_fdlibm(x))
    x32 = x.astype(np.float32)
    assert _same_bits(erf_numpy(x32), erf_float32(x32))
    assert erf_numpy(np.float32(0.5)).dtype == np.float32
    assert erf_numpy(np.array([0.5], np.float16)).dtype == np.float16


# ----------------------------------------------------------------------------- normal_cdf

def test_normal_cdf_float32_is_within_4e7_of_the_exact_value_and_blocked_alike(monkeypatch):
    from minivit.erf.fdlibm import normal_cdf
    rng = np.random.default_rng(5)
    x = np.concatenate([np.linspace(-9, 9, 200_001, dtype=np.float32),
                        rng.standard_normal(50_000).astype(np.float32) * 2,
                        np.float32([0.0, -0.0, 1e-40, 6.3, -6.3, 1e30, -1e30])])
    y = normal_cdf(x)
    assert y.dtype == np.float32 and y.shape == x.shape
    ref = 0.5 * (1.0 + erf_fdlibm(x.astype(np.float64) / math.sqrt(2.0)))
    assert np.abs(y - ref).max() < 4e-7
    assert y.min() >= 0.0 and y.max() <= 1.0
    assert list(normal_cdf(np.float32([np.inf, -np.inf]))) == [1.0, 0.0]
    assert np.isnan(normal_cdf(np.float32([np.nan]))).all()
    monkeypatch.setattr(special_float32, "_BLOCK32", 256)           # many blocks, one partial
    assert _same_bits(normal_cdf(x), y)


def test_normal_cdf_float64_is_exact_to_rounding():
    from minivit.erf.fdlibm import normal_cdf
    x = np.linspace(-8, 8, 10_001)
    ref = np.array([0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x])
    assert np.abs(normal_cdf(x) - ref).max() < 4e-16
