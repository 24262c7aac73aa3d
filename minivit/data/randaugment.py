"""A light RandAugment (Cubuk et al. 2019) on a batch of uint8 images, on the device.

    images = randaugment(images, rng, n=2, magnitude=9)   # (B, C, H, W) uint8 -> uint8

Each of ``n`` rounds gives every image one operation drawn uniformly from ``OPS``, at the
fixed ``magnitude`` M on RandAugment's 0-10 scale (timm's "increasing" variants, so that
M = 0 changes nothing and a larger M always changes more):

    autocontrast   stretch each channel to 0..255 (no magnitude)
    brightness     blend with black:                      factor 1 +/- 0.9 M/10
    color          blend with the grey image (saturation): factor 1 +/- 0.9 M/10
    contrast       blend with the mean grey level:        factor 1 +/- 0.9 M/10
    solarize       invert the pixels >= 256 (1 - M/10)
    posterize      keep the top 8 - int(4 M/10) bits
    translate_x/y  shift by round(0.45 M/10 * size) pixels (sign random), fill grey 128
    cutout         a square of side round(M/10 * size / 2), grey 128, centred anywhere

The formulas are PIL's (ImageEnhance's blends rounding down as PIL's blend does,
ImageOps.autocontrast / solarize / posterize, the ITU-R 601 grey of ``convert("L")``); no
PIL is used.  Pixel values stay whole numbers in 0..255 all along (float32 holds them
exactly), so an operation is the identity on the images that did not draw it, and each
operation runs once per round on the whole batch with per-image parameters: no Python loop
over images, no read back from the device.  On one core of a 2-core CPU, N = 2 costs about
20 ms per batch of 128 (crop and flip: 4 ms; a training step of the CPU recipe: 200-400 ms).

Every round draws, in this order, B operation indices, B signs and B cutout centres (rows,
then columns) from ``rng`` (the run's augmentation generator, which a checkpoint stores), so
a run is reproducible, a resume bit-identical, and the result does not depend on how a
batch is later split over threads.  The loop applies it after the crop and flip, before
normalisation (minivit/training/objectives/classification.py ``prepare_batch``).
"""

from __future__ import annotations

from minivit.backend import array_module

OPS = ("autocontrast", "brightness", "color", "contrast", "solarize", "posterize",
       "translate_x", "translate_y", "cutout")
MAX_MAGNITUDE = 10
DEFAULT_N = 2
MAX_N = 10
FILL = 128.0                    # translate and cutout fill (PIL's fillcolor in timm)
GREY = (19595, 38470, 7471)     # PIL's L = (19595 R + 38470 G + 7471 B + 2^15) >> 16


def check_randaugment(value) -> None:
    """ValueError unless value is [N, M]: 1 <= N <= MAX_N rounds, 0 <= M <= 10."""
    ok = isinstance(value, (list, tuple)) and len(value) == 2
    if ok:
        n, m = value
        ok = (isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_N
              and isinstance(m, (int, float)) and not isinstance(m, bool)
              and 0 <= m <= MAX_MAGNITUDE)
    if not ok:
        raise ValueError(f"randaugment must be N,M with N ops per image (1-{MAX_N}) and "
                         f"magnitude M in 0-{MAX_MAGNITUDE}, got {value!r}")


def parse_randaugment(text: str) -> list:
    """"2,9" -> [2, 9]; "9" -> [DEFAULT_N, 9] (the command line's form)."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        n = int(parts[0]) if len(parts) == 2 else DEFAULT_N
        m = float(parts[-1])
        value = [n, int(m) if m.is_integer() else m] if len(parts) <= 2 else None
    except ValueError:
        value = None
    check_randaugment(value if value is not None else text)
    return value


def randaugment(x, rng, n: int = DEFAULT_N, magnitude: float = 9):
    """``n`` rounds of one random op per image. x: (B, C, H, W) uint8 -> same, uint8."""
    check_randaugment([n, magnitude])
    xp = array_module(x)
    B = x.shape[0]
    f = x.astype("float32")
    for _ in range(n):
        op = rng.integers(0, len(OPS), size=B)                  # (B,) an op per image
        sign = xp.where(rng.random(B) < 0.5, -1.0, 1.0).astype("float32")      # (B,)
        cy = rng.integers(0, x.shape[2], size=B)                # (B,) cutout centres
        cx = rng.integers(0, x.shape[3], size=B)
        f = apply_ops(f, op, sign, cy, cx, magnitude)
    return f.astype(x.dtype)


def apply_ops(f, op, sign, cy, cx, magnitude: float):
    """One round: image b gets OPS[op[b]]. f: (B, C, H, W) float32 whole numbers 0..255.

    The pixel operations run on the (B, C, H * W) view with per-image parameters (B, 1, 1),
    long rows that NumPy's loops go through fast."""
    xp = array_module(f)
    B, C, H, W = f.shape
    m, one = magnitude / MAX_MAGNITUDE, f.dtype.type(1.0)

    def chosen(name):                                           # (B, 1, 1) bool
        return (op == OPS.index(name))[:, None, None]

    v = autocontrast(f.reshape(B, C, H * W), chosen("autocontrast"))
    # brightness, color and contrast: one blend, with black, the grey image or its mean
    grey = grey_level(v)                                        # (B, 1, H * W)
    mean = xp.floor(grey.mean(axis=2, keepdims=True) + 0.5)     # (B, 1, 1)
    degenerate = xp.where(chosen("color"), grey,
                          xp.where(chosen("contrast"), mean, f.dtype.type(0.0)))
    enhance = chosen("brightness") | chosen("color") | chosen("contrast")
    factor = (1.0 + 0.9 * m * sign)[:, None, None]              # (B, 1, 1)
    v = blend(v, degenerate, xp.where(enhance, factor, one))
    v = solarize(v, xp.where(chosen("solarize"), f.dtype.type(256 * (1 - m)),
                             f.dtype.type(256.0)))
    v = posterize(v, xp.where(chosen("posterize"), f.dtype.type(2 ** int(4 * m)), one))
    f = v.reshape(B, C, H, W)
    for name, axis in (("translate_y", 2), ("translate_x", 3)):
        pixels = round(0.45 * m * f.shape[axis])
        for s in ((pixels, -pixels) if pixels else ()):         # the batch moved both ways
            move = chosen(name) & (sign == (1.0 if s > 0 else -1.0))[:, None, None]
            moved = shifted(f, s if axis == 2 else 0, s if axis == 3 else 0)
            f = xp.where(move, moved.reshape(B, C, H * W),
                         f.reshape(B, C, H * W)).reshape(B, C, H, W)
    side = xp.where(op == OPS.index("cutout"), round(m * H / 2), 0)
    return cutout(f, cy - side // 2, cx - side // 2, side)


# -------------------------------------------------------------------- the operations
# Each takes per-image parameters that make it the identity on the images not chosen; the
# pixel operations take any (B, C, ...) layout, with parameters that broadcast over it.

def grey_level(f):
    """PIL's ``convert("L")`` of (B, 3, ...) whole-number pixels -> (B, 1, ...); the
    channel mean for another channel count.  Exact in float32 (the sums stay below 2^24)."""
    xp = array_module(f)
    if f.shape[1] != 3:
        return xp.floor(f.mean(axis=1, keepdims=True))
    r, g, b = GREY
    return xp.floor((f[:, 0:1] * r + f[:, 1:2] * g + f[:, 2:3] * b + 32768.0) / 65536.0)


def blend(f, degenerate, factor):
    """PIL's ImageEnhance: degenerate + factor (image - degenerate), clipped to 0..255 and
    rounded down; factor (B, 1, 1, 1) = 1 is the identity."""
    xp = array_module(f)
    return xp.floor(xp.clip(degenerate + factor * (f - degenerate), 0.0, 255.0))


def autocontrast(f, chosen):
    """Map each chosen image's channel from [min, max] to [0, 255] (PIL's autocontrast,
    cutoff 0, rounded down); a flat channel is left as it is.  f: (B, C, ...) pixels."""
    xp = array_module(f)
    pixels = tuple(range(2, f.ndim))
    lo, hi = f.min(axis=pixels, keepdims=True), f.max(axis=pixels, keepdims=True)
    on = chosen & (hi > lo)                                     # (B, C, 1, ...)
    scale = xp.where(on, 255.0 / xp.maximum(hi - lo, 1.0), 1.0).astype(f.dtype)
    offset = xp.where(on, -lo * scale, 0.0).astype(f.dtype)
    return xp.floor(xp.clip(f * scale + offset, 0.0, 255.0))


def solarize(f, threshold):
    """Invert the pixels >= threshold (per image, broadcast); 256 is the identity.  Written
    as f + [f >= threshold] (255 - 2 f): exact on whole numbers, and faster on NumPy than a
    ``where`` on a mask that changes from pixel to pixel."""
    return f + (f >= threshold) * (255.0 - 2.0 * f)


def posterize(f, step):
    """Round down to a multiple of step = 2 ** (bits dropped) (B, 1, 1, 1); 1 is the
    identity."""
    xp = array_module(f)
    return xp.floor(f / step) * step


def shifted(f, dy: int, dx: int, fill: float = FILL):
    """The whole batch translated: out[..., i, j] = f[..., i + dy, j + dx] (PIL's affine
    translate by whole pixels), ``fill`` outside the image; (0, 0) is a copy."""
    xp = array_module(f)
    H, W = f.shape[-2:]
    (ys, yd), (xs, xd) = _span(dy, H), _span(dx, W)
    out = xp.full(f.shape, fill, dtype=f.dtype)
    out[..., yd, xd] = f[..., ys, xs]
    return out


def _span(d: int, n: int):
    """(source, destination) slices of a shift by d along an axis of length n."""
    d = max(-n, min(n, d))
    return (slice(d, n), slice(0, n - d)) if d >= 0 else (slice(0, n + d), slice(-d, n))


def cutout(f, top, left, side, fill: float = FILL):
    """Fill the square [top, top + side) x [left, left + side) of each image (clipped to
    it) with ``fill``; top, left, side: (B,) whole pixels, side 0 is the identity."""
    xp = array_module(f)
    _, _, H, W = f.shape
    r, c = xp.arange(H)[None, :], xp.arange(W)[None, :]
    in_rows = (r >= top[:, None]) & (r < (top + side)[:, None])           # (B, H)
    in_cols = (c >= left[:, None]) & (c < (left + side)[:, None])         # (B, W)
    box = in_rows[:, :, None] & in_cols[:, None, :]                        # (B, H, W)
    B, C = f.shape[:2]
    return xp.where(box.reshape(B, 1, H * W), f.dtype.type(fill),
                    f.reshape(B, C, H * W)).reshape(f.shape)


__all__ = ["DEFAULT_N", "MAX_MAGNITUDE", "OPS", "apply_ops", "autocontrast", "blend",
           "check_randaugment", "cutout", "grey_level", "parse_randaugment", "posterize",
           "randaugment", "shifted", "solarize"]
