"""Position-embedding resampling (ViT section 3.2) against torch.nn.functional.interpolate."""

import numpy as np
import pytest

from minivit.backend import to_numpy
from minivit.models.resample import interpolation_matrix, resample_pos_embed
from minivit.reference.numerical import rel_error

GRIDS = [  # (old (h, w), new (h, w)): up, down, square, non-square, extremes
    ((4, 4), (7, 7)), ((8, 8), (3, 3)), ((6, 6), (12, 12)), ((14, 14), (24, 24)),
    ((5, 7), (9, 4)), ((3, 8), (6, 5)), ((7, 7), (1, 1)), ((1, 1), (4, 4)), ((2, 3), (2, 6)),
]


def _pos(old, D=6, prefix=1, seed=0, dtype="float64"):
    gh, gw = old
    return np.random.default_rng(seed).standard_normal((1, prefix + gh * gw, D)).astype(dtype)


@pytest.mark.torch
@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("old,new", GRIDS)
def test_matches_torch_interpolate(mode, old, new):
    torch = pytest.importorskip("torch", reason="torch is the reference for interpolation")
    pe = _pos(old)
    out = resample_pos_embed(pe, new, mode=mode, old_grid=old)
    grid = torch.from_numpy(pe[:, 1:].reshape(1, *old, -1)).permute(0, 3, 1, 2)   # (1, D, gh, gw)
    ref = torch.nn.functional.interpolate(grid, size=new, mode=mode, align_corners=False)
    ref = ref.permute(0, 2, 3, 1).reshape(1, new[0] * new[1], -1).numpy()
    assert out.shape == (1, 1 + new[0] * new[1], pe.shape[-1])
    assert rel_error(out[:, 1:], ref) < 1e-12
    assert np.array_equal(out[:, :1], pe[:, :1])


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_identity_when_the_grid_is_unchanged(mode, xp):
    pe = xp.asarray(_pos((5, 5)))
    out = resample_pos_embed(pe, 5, mode=mode)
    assert type(out) is type(pe) and np.array_equal(to_numpy(out), to_numpy(pe))
    assert np.array_equal(interpolation_matrix(4, 4, mode), np.eye(4))


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_prefix_tokens_untouched_and_dtype_kept(mode, xp):
    pe = xp.asarray(_pos((4, 4), prefix=2, dtype="float32"))
    out = resample_pos_embed(pe, (6, 3), num_prefix_tokens=2, mode=mode)
    assert out.dtype == pe.dtype and out.shape == (1, 2 + 18, 6)
    assert np.array_equal(to_numpy(out[:, :2]), to_numpy(pe[:, :2]))


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_rows_of_the_interpolation_matrix_sum_to_one(mode):
    for old, new in [(3, 7), (7, 3), (10, 16), (16, 10)]:
        M = interpolation_matrix(old, new, mode)
        assert M.shape == (new, old)
        assert np.allclose(M.sum(axis=1), 1.0, atol=1e-14)      # constants are preserved


def test_bad_arguments():
    pe = _pos((4, 4))
    with pytest.raises(ValueError, match="not a square grid"):
        resample_pos_embed(pe[:, :-1], 5)
    with pytest.raises(ValueError, match="old_grid 3x5 needs 15"):
        resample_pos_embed(pe, 5, old_grid=(3, 5))
    with pytest.raises(ValueError, match="mode must be one of"):
        resample_pos_embed(pe, 5, mode="nearest")
    with pytest.raises(ValueError, match="new_grid"):
        resample_pos_embed(pe, (0, 3))
