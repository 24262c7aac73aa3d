"""Cutting an image into patches and putting it back together.

ViT paper, section 3.1: "we reshape the image x in R^{H x W x C} into a sequence of flattened
2D patches x_p in R^{N x (P^2 C)}, where (P, P) is the resolution of each image patch, and
N = HW / P^2 is the resulting number of patches".

Patch order is row-major over the grid (left to right, then top to bottom), as in timm and the
official code; inside a patch the P*P*C values are ordered (row, column, channel), as in the MAE
reference code's ``patchify``.  Both directions are pure reshapes/transposes, so each is the
other's backward pass: ``patchify_forward`` / ``patchify_backward`` are the layer pair, the
cache being what ``unpatchify`` needs.
"""


def patchify(images, patch_size):
    """images (B, C, H, W) -> patches (B, N, P*P*C), N = (H/P)(W/P)."""
    B, C, H, W = images.shape
    P = patch_size
    if H % P or W % P:
        raise ValueError(f"patch size {P} does not divide the image size {H}x{W}")
    h, w = H // P, W // P
    x = images.reshape(B, C, h, P, w, P)          # (B, C, h, P, w, P)
    x = x.transpose(0, 2, 4, 3, 5, 1)             # (B, h, w, P, P, C)
    return x.reshape(B, h * w, P * P * C)


def unpatchify(patches, patch_size, channels, grid_hw=None):
    """patches (B, N, P*P*C) -> images (B, C, H, W); the inverse of ``patchify``.

    grid_hw = (h, w) patches per column/row; square (sqrt N, sqrt N) by default.
    """
    B, N, K = patches.shape
    P, C = patch_size, channels
    if K != P * P * C:
        raise ValueError(f"patch vectors have length {K}, expected P*P*C = {P * P * C}")
    if grid_hw is None:
        h = int(round(N ** 0.5))
        if h * h != N:
            raise ValueError(f"{N} patches do not form a square grid; pass grid_hw")
        grid_hw = (h, h)
    h, w = grid_hw
    x = patches.reshape(B, h, w, P, P, C)
    x = x.transpose(0, 5, 1, 3, 2, 4)             # (B, C, h, P, w, P)
    return x.reshape(B, C, h * P, w * P)


def patchify_forward(images, patch_size):
    """images (B, C, H, W) -> (patches (B, N, P*P*C), cache (P, C, (h, w)))."""
    B, C, H, W = images.shape
    return patchify(images, patch_size), (patch_size, C, (H // patch_size, W // patch_size))


def patchify_backward(dpatches, cache):
    """dpatches (B, N, P*P*C) -> dimages (B, C, H, W): each patch value back to its pixel."""
    patch_size, channels, grid_hw = cache
    return unpatchify(dpatches, patch_size, channels, grid_hw)
