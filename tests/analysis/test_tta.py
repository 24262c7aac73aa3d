"""Flip/translate test-time augmentation against airbench's formula written in PyTorch."""

import numpy as np
import pytest
from support import randn

from minivit.analysis.tta import tta_logits
from minivit.reference.numerical import rel_error


def _linear(weight):
    """A position-sensitive 'model': logits = flattened image @ weight."""
    return lambda x: x.reshape(x.shape[0], -1) @ weight


@pytest.mark.parametrize("level", [0, 1, 2])
def test_tta_matches_airbench_in_torch(level):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, w = randn(np, 3, 2, 5, 5, seed=1), randn(np, 50, 4, seed=2)
    f, ft = _linear(w), _linear(torch.from_numpy(w))
    xt = torch.from_numpy(x.copy())

    def mirror(v):
        return 0.5 * ft(v) + 0.5 * ft(v.flip(-1))
    want = [ft(xt), mirror(xt)][level] if level < 2 else None
    if level == 2:
        padded = F.pad(xt, (1,) * 4, "reflect")
        shifted = [mirror(padded[:, :, 0:5, 0:5]), mirror(padded[:, :, 2:7, 2:7])]
        want = 0.5 * mirror(xt) + 0.5 * torch.stack(shifted).mean(0)
    assert rel_error(tta_logits(f, x, level), want.numpy()) < 1e-13


def test_tta_refuses_an_unknown_level():
    with pytest.raises(ValueError, match="level must be one of"):
        tta_logits(lambda x: x, np.zeros((1, 1, 4, 4)), 3)
