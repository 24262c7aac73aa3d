"""Test-time augmentation by flips and translations (airbench's ``tta_level``): the logits
of an image are averaged over shifted and mirrored copies of it.

    level 0:  f(x)
    level 1:  mirror(x) = (f(x) + f(flip x)) / 2                        flip: left-right
    level 2:  mirror(x) / 2 + (mirror(x_up_left) + mirror(x_down_right)) / 4

where x_up_left / x_down_right are x moved by one pixel diagonally, cut from x padded by one
pixel reflected at the border (PyTorch's ``F.pad(x, (1,) * 4, "reflect")``): rows and columns
0..H-1 and 2..H+1 of the padded image.  Six forward passes at level 2, two at level 1.
"""

from minivit.backend import array_module

TTA_LEVELS = (0, 1, 2)


def mirror_logits(predict, images):
    """(predict(x) + predict(x flipped left-right)) / 2; images (B, C, H, W)."""
    return 0.5 * predict(images) + 0.5 * predict(images[..., ::-1].copy())


def tta_logits(predict, images, level: int = 2):
    """predict: normalised images (B, C, H, W) -> logits (B, K); the averaged logits."""
    if level not in TTA_LEVELS:
        raise ValueError(f"test-time augmentation level must be one of {TTA_LEVELS}, "
                         f"got {level!r}")
    if level == 0:
        return predict(images)
    logits = mirror_logits(predict, images)
    if level == 1:
        return logits
    H, W = images.shape[2:]
    padded = array_module(images).pad(images, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
    shifted = [mirror_logits(predict, padded[:, :, a:a + H, a:a + W].copy()) for a in (0, 2)]
    return 0.5 * logits + 0.25 * (shifted[0] + shifted[1])


__all__ = ["TTA_LEVELS", "mirror_logits", "tta_logits"]
