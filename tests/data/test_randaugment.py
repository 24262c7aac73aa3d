"""RandAugment (minivit/data/randaugment.py): each operation on small known images, the
identity on the images that did not draw it, ranges, determinism, and the flag's parsing."""

import numpy as np
import pytest

from minivit.backend import rng, to_numpy
from minivit.data.randaugment import (
    OPS,
    apply_ops,
    autocontrast,
    blend,
    check_randaugment,
    cutout,
    grey_level,
    parse_randaugment,
    posterize,
    randaugment,
    shifted,
    solarize,
)


def _image(xp, values, shape=(1, 3, 4, 4)):
    return xp.asarray(np.broadcast_to(np.asarray(values, np.float32), shape).copy())


def _one_op(xp, f, name, magnitude, sign=1.0, cy=0, cx=0):
    """apply_ops with every image drawing ``name``."""
    B = f.shape[0]
    op = xp.full(B, OPS.index(name), dtype="int64")
    return to_numpy(apply_ops(f, op, xp.full(B, sign, dtype="float32"),
                              xp.full(B, cy, dtype="int64"), xp.full(B, cx, dtype="int64"),
                              magnitude))


def test_solarize_brightness_posterize_on_known_pixels(xp):
    f = _image(xp, [0, 100, 127, 128, 200, 255], (1, 1, 1, 6))
    # solarize M=5: the pixels >= 128 are inverted
    assert _one_op(xp, f, "solarize", 5).ravel().tolist() == [0, 100, 127, 127, 55, 0]
    # brightness M=5: factor 1 +/- 0.45, clipped to 255 and rounded down
    assert _one_op(xp, f, "brightness", 5).ravel().tolist() == [0, 145, 184, 185, 255, 255]
    assert _one_op(xp, f, "brightness", 5, sign=-1).ravel().tolist() == [0, 55, 69, 70, 110, 140]
    # posterize M=10 keeps the top 4 bits, M=5 the top 6
    g = _image(xp, [183, 255, 15], (1, 1, 1, 3))
    assert _one_op(xp, g, "posterize", 10).ravel().tolist() == [176, 240, 0]
    assert _one_op(xp, g, "posterize", 5).ravel().tolist() == [180, 252, 12]


def test_autocontrast_color_contrast_and_grey(xp):
    f = _image(xp, [50, 100, 150, 150], (1, 1, 1, 4))
    assert _one_op(xp, f, "autocontrast", 0).ravel().tolist() == [0, 127, 255, 255]
    flat = _image(xp, 77.0, (1, 1, 2, 2))
    assert (_one_op(xp, flat, "autocontrast", 0) == 77).all()       # a flat channel stays
    rgb = xp.asarray(np.array([255, 0, 0], np.float32).reshape(1, 3, 1, 1))
    assert to_numpy(grey_level(rgb)).item() == 76                   # PIL: L of pure red
    grey = _image(xp, 90.0, (1, 3, 2, 2))
    assert (_one_op(xp, grey, "color", 10, sign=-1) == 90).all()    # grey has no colour
    # colour M=10, sign -1: factor 0.1 towards the grey level 76 of red
    assert _one_op(xp, rgb, "color", 10, sign=-1).ravel().tolist() == [93, 68, 68]
    # contrast: towards the mean grey level, int(mean + 0.5) = 100 here
    c = _image(xp, [0, 200], (1, 3, 1, 2))
    assert _one_op(xp, c, "contrast", 10, sign=-1).ravel().tolist() == [90, 110] * 3


def test_translate_and_cutout(xp):
    f = xp.asarray(np.arange(32, dtype=np.float32)[None, None, None, :].repeat(32, axis=2))
    out = _one_op(xp, f, "translate_x", 10)                         # 14 pixels to the left
    assert out[0, 0, 0, :18].tolist() == list(range(14, 32)) and (out[0, 0, :, 18:] == 128).all()
    out = _one_op(xp, f, "translate_y", 10, sign=-1)                # 14 rows down
    assert (out[0, 0, :14] == 128).all() and (out[0, 0, 14:] == to_numpy(f)[0, 0, :18]).all()
    out = _one_op(xp, f, "cutout", 10, cy=0, cx=0)                  # side 16 at a corner
    assert (out[0, 0, :8, :8] == 128).all() and (out[0, 0, 8:] == to_numpy(f)[0, 0, 8:]).all()
    assert (out[0, 0, :8, 8:] == to_numpy(f)[0, 0, :8, 8:]).all()
    assert (to_numpy(shifted(f, 40, 0)) == 128).all()
    assert (to_numpy(shifted(f, 0, -32)) == 128).all()
    assert to_numpy(shifted(f, 0, -3))[0, 0, 0, :5].tolist() == [128, 128, 128, 0, 1]


def test_each_op_is_the_identity_with_its_neutral_parameter(xp):
    gen = np.random.default_rng(0)
    f = xp.asarray(gen.integers(0, 256, (2, 3, 8, 8)).astype(np.float32))
    one = xp.ones((2, 1, 1, 1), dtype="float32")
    zero = xp.zeros(2, dtype="int64")
    outs = [blend(f, grey_level(f), one), blend(f, xp.zeros_like(f), one),
            autocontrast(f, xp.zeros((2, 1, 1, 1), dtype=bool)), solarize(f, one * 256),
            posterize(f, one), shifted(f, 0, 0), cutout(f, zero + 3, zero + 3, zero)]
    for out in outs:
        assert bool((out == f).all())
    # magnitude 0: every op but autocontrast changes nothing
    for name in OPS[1:]:
        assert (_one_op(xp, f, name, 0) == to_numpy(f)).all(), name


def test_randaugment_is_reproducible_in_range_and_uint8(xp):
    gen = np.random.default_rng(1)
    x = xp.asarray(gen.integers(0, 256, (16, 3, 8, 8)).astype(np.uint8))
    a = randaugment(x, rng(5, xp), 2, 9)
    b = randaugment(x, rng(5, xp), 2, 9)
    c = randaugment(x, rng(6, xp), 2, 9)
    assert a.dtype == x.dtype and a.shape == x.shape
    assert bool((a == b).all()) and not bool((a == c).all())
    assert not bool((a == x).all())
    extreme = xp.asarray(np.array([0, 255], np.uint8).reshape(1, 1, 1, 2).repeat(3, 1))
    for seed in range(20):                          # no wrap-around at 0 or 255
        out = to_numpy(randaugment(extreme, rng(seed, xp), 3, 10)).astype(int)
        assert out.min() >= 0 and out.max() <= 255


def test_the_flag_s_forms():
    assert parse_randaugment("2,9") == [2, 9] and parse_randaugment("9") == [2, 9]
    assert parse_randaugment(" 3 , 4.5 ") == [3, 4.5]
    for bad in ("x", "2,11", "0,5", "1,2,3", "2.5,3", ""):
        with pytest.raises(ValueError, match="randaugment must be N,M"):
            parse_randaugment(bad)
    with pytest.raises(ValueError):
        check_randaugment([True, 3])
