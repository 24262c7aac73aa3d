"""The patch-whitening initialisation of a first convolution (airbench, after tysam-code's
hlb-CIFAR10): its k x k filters are the eigenvectors of the training images' patch covariance,
each divided by the square root of its eigenvalue, and their negatives.

For the d = C*k*k values of every k x k patch of the images (all positions, stride 1, no
padding), flattened in the order (c, u, v) of a PyTorch weight (F, C, k, k):

    Sigma = X^T X / n                    X (n, d): one patch per row, not centred
    Sigma = sum_i lambda_i e_i e_i^T     lambda_1 >= ... >= lambda_d
    filter i = e_i / sqrt(lambda_i + eps),  filter d + i = -filter i       (2d filters)

so the convolution maps patches to decorrelated coordinates of variance about 1 (less where
lambda_i ~ eps: the noise directions are not blown up), and the pair (+, -) lets the GELU that
follows keep both signs.  airbench computes it from 5,000 normalised training images with
eps = 5e-4.  The covariance is accumulated in float64 where the images are and decomposed
on the host (d = 12 for 2x2 patches of 3 channels).
"""

from minivit.backend import array_module, host_xp, to_numpy

WHITEN_EPS = 5e-4


def patch_matrix(images, k: int):
    """images (B, C, H, W) -> X (B*(H-k+1)*(W-k+1), C*k*k) float64, one patch per row,
    columns in (c, u, v) order."""
    xp = array_module(images)
    B, C, H, W = images.shape
    Ho, Wo = H - k + 1, W - k + 1
    taps = [images[:, :, u:u + Ho, v:v + Wo] for u in range(k) for v in range(k)]
    patches = xp.stack(taps, axis=-1).astype(xp.float64)         # (B, C, Ho, Wo, k*k)
    return patches.transpose(0, 2, 3, 1, 4).reshape(-1, C * k * k)


def patch_whitening_weights(images, k: int = 2, eps: float = WHITEN_EPS):
    """images (B, C, H, W) -> weight (2*C*k*k, C, k, k) in the images' dtype: the whitening
    filters (largest eigenvalue first) and their negatives."""
    xp = array_module(images)
    if images.ndim != 4 or images.shape[2] < k or images.shape[3] < k:
        raise ValueError(f"patch whitening: expected images (B, C, H, W) of at least {k}x{k} "
                         f"pixels, got shape {tuple(images.shape)}")
    np, C = host_xp(), images.shape[1]
    X = patch_matrix(images, k)
    covariance = to_numpy(X.T @ X / X.shape[0])                      # (d, d), on the host
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)          # ascending
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
    filters = (eigenvectors / np.sqrt(np.maximum(eigenvalues, 0) + eps)).T   # (d, d) rows
    filters = filters.reshape(-1, C, k, k)
    return xp.asarray(np.concatenate([filters, -filters])).astype(images.dtype)


__all__ = ["WHITEN_EPS", "patch_matrix", "patch_whitening_weights"]
