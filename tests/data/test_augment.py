"""Batched augmentation: crops are windows of the padded image, flips, Mixup/CutMix targets."""

import numpy as np
import pytest

from minivit.backend import rng, to_numpy
from minivit.data import cutmix, mix_batch, mixup, one_hot, random_crop_flip

# Tests taking ``xp`` (tests/conftest.py) run on NumPy, and on CuPy where a GPU is present.


def _images(B=16, C=3, H=8, W=8, dtype=np.float32, seed=0):
    """Images whose pixel values are all distinct, so every window is recognisable."""
    x = np.random.default_rng(seed).permutation(B * C * H * W).reshape(B, C, H, W) + 1
    return x.astype(dtype) if dtype != np.uint8 else (x % 255 + 1).astype(np.uint8)


def _labels_differing_from_mirror(B):
    """Labels (B,) with y[i] != y[B-1-i] (B even): 0..4 in the first half, 5..9 mirrored."""
    y = np.arange(B) % 5
    y[B // 2:] = y[:B // 2][::-1] + 5
    return y


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_crop_flip_keeps_shape_dtype_and_is_seeded(xp, dtype):
    x = xp.asarray(_images(dtype=dtype))
    a = random_crop_flip(x, rng(0, xp))
    assert a.shape == x.shape and a.dtype == x.dtype and type(a) is type(x)
    np.testing.assert_array_equal(to_numpy(a), to_numpy(random_crop_flip(x, rng(0, xp))))
    assert not np.array_equal(to_numpy(a), to_numpy(random_crop_flip(x, rng(1, xp))))


def test_crop_is_a_shifted_window_of_the_padded_image(xp):
    p, x = 4, _images(B=64)
    out = to_numpy(random_crop_flip(xp.asarray(x), rng(5, xp), padding=p, flip=True))
    padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    seen = []
    for i in range(len(x)):  # find the (top, left, flipped) window that each output is
        windows = {(t, left): padded[i, :, t:t + 8, left:left + 8]
                   for t in range(2 * p + 1) for left in range(2 * p + 1)}
        hits = [(t, left, f) for (t, left), w in windows.items() for f in (0, 1)
                if np.array_equal(out[i], w[..., ::-1] if f else w)]
        assert len(hits) == 1, f"sample {i} is not a window of its padded input"
        seen.append(hits[0])
    tops = {t for t, _, _ in seen}
    flips = [f for _, _, f in seen]
    assert len(tops) > 4 and 0.25 < np.mean(flips) < 0.75  # offsets and flips really vary


def test_flip_only_mirrors_about_half_and_no_flip_is_identity(xp):
    x = _images(B=200, H=4, W=4)
    out = to_numpy(random_crop_flip(xp.asarray(x), rng(2, xp), padding=0, flip=True))
    same = np.all(out == x, axis=(1, 2, 3))
    mirrored = np.all(out == x[..., ::-1], axis=(1, 2, 3))
    assert np.all(same ^ mirrored) and 0.35 < mirrored.mean() < 0.65
    same = random_crop_flip(xp.asarray(x), rng(2, xp), padding=0, flip=False)
    np.testing.assert_array_equal(to_numpy(same), x)


def test_one_hot_with_smoothing():
    t = one_hot(np.array([2, 0]), 4, smoothing=0.1)
    np.testing.assert_allclose(t, [[0.025, 0.025, 0.925, 0.025], [0.925, 0.025, 0.025, 0.025]])


def test_mixup_targets_and_ratio(xp):
    B, K = 10, 10
    x, y = _images(B=B), _labels_differing_from_mirror(B)
    xm, t = mixup(xp.asarray(x), xp.asarray(y), rng(0, xp), alpha=0.8, num_classes=K)
    assert type(xm) is type(t) is type(xp.asarray(x))
    xm, t = to_numpy(xm), to_numpy(t)
    assert xm.shape == x.shape and xm.dtype == x.dtype and t.shape == (B, K)
    assert t.dtype == np.float32
    np.testing.assert_allclose(t.sum(1), 1, rtol=1e-6)
    lam = t[0, y[0]]
    np.testing.assert_allclose(t[np.arange(B), y], lam, rtol=1e-6)
    np.testing.assert_allclose(t[np.arange(B), y[::-1]], 1 - lam, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(xm, lam * x + (1 - lam) * x[::-1], rtol=1e-5)
    xm2, t2 = mixup(xp.asarray(x), xp.asarray(y), rng(0, xp), alpha=0.8, num_classes=K)
    np.testing.assert_array_equal(xm, to_numpy(xm2))
    np.testing.assert_array_equal(t, to_numpy(t2))
    with pytest.raises(TypeError):
        mixup(xp.asarray(x.astype(np.uint8)), xp.asarray(y), rng(0, xp))


def test_mixup_lam_follows_beta():
    x, y = _images(B=2, H=2, W=2), np.array([0, 1])
    g = rng(0, np)
    lams = [mixup(x, y, g, alpha=0.4)[1][0, 0] for _ in range(400)]
    assert abs(np.mean(lams) - 0.5) < 0.05  # Beta(a, a) has mean 1/2, variance 1/(4(2a+1))
    assert abs(np.var(lams) - 1 / (4 * 1.8)) < 0.03


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_cutmix_pastes_one_box_and_lam_is_its_area(xp, dtype):
    B, K, H, W = 8, 10, 16, 16
    x, y = _images(B=B, H=H, W=W, dtype=dtype), _labels_differing_from_mirror(B)
    g = rng(3, xp)
    for _ in range(20):
        xm, t = cutmix(xp.asarray(x), xp.asarray(y), g, alpha=1.0, num_classes=K)
        xm, t = to_numpy(xm), to_numpy(t)
        assert xm.shape == x.shape and xm.dtype == x.dtype and t.shape == (B, K)
        np.testing.assert_allclose(t.sum(1), 1, rtol=1e-6)
        changed = np.any(xm != x, axis=1)                                # (B, H, W)
        assert np.all(changed == changed[0])                             # one box per batch
        rows, cols = np.nonzero(changed[0])
        area = changed[0].sum()
        if area:
            box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
            assert area == box                                           # a rectangle
            np.testing.assert_array_equal(xm[:, :, changed[0]], x[::-1][:, :, changed[0]])
        np.testing.assert_allclose(t[0, y[0]], 1 - area / (H * W), rtol=1e-6)


def test_soft_targets_pass_through_and_mix_batch_switches():
    B = 6
    x, y = _images(B=B), _labels_differing_from_mirror(B)
    soft = one_hot(y, 10, smoothing=0.1)
    _, t = mixup(x, soft, rng(0, np), num_classes=10)
    np.testing.assert_allclose(t.sum(1), 1, rtol=1e-6)
    g = rng(0, np)
    kinds = set()
    for _ in range(20):
        xm, t = mix_batch(x, y, g, num_classes=10)
        np.testing.assert_allclose(t.sum(1), 1, rtol=1e-6)
        kinds.add("cutmix" if np.any(xm == x) else "mixup")
    assert kinds == {"cutmix", "mixup"}
    xm, t = mix_batch(x, y, g, mixup_alpha=0, cutmix_alpha=0)
    assert xm is x and np.array_equal(t, one_hot(y, 10))
