"""Figures of what a ViT learned (``minivit inspect``, walkthrough 03), as PNG files.

The ViT paper's Figure 7 (left: principal components of the patch-embedding filters; center:
position-embedding similarity; right: mean attention distance per head and layer) and Figure 6
(attention rollout maps), computed by ``minivit.analysis.attention``.  Each function takes
host or device arrays (moved to the host here), writes one PNG and returns its path.  Several
models (say trained and untrained) go side by side as ``panels``: a list of (title, data) pairs.

matplotlib is imported only when a figure is drawn, through ``minivit.analysis.plots._matplotlib``:
the object API on the Agg canvas, no window, no pyplot state.
"""

from __future__ import annotations

from pathlib import Path

from minivit.analysis.plots import _matplotlib
from minivit.backend import host_xp, to_numpy
from minivit.io.files import write_figure

DPI = 90
COLUMN_CHARS = 22        # characters of a 7-point caption that fit over a 1.45-inch column
MAP_CMAP = "inferno"


def _figure(figsize, layout="constrained"):
    """A Figure on the Agg canvas.  Grids of images use layout=None and fixed spacing:
    constrained layout costs about a second per figure with dozens of axes."""
    Figure, FigureCanvasAgg = _matplotlib()
    fig = Figure(figsize=figsize, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path, dpi=DPI) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_figure(fig, path, dpi=dpi)
    return path


def to_hwc(image):
    """(C, H, W) -> (H, W, C) host array (uint8 stays uint8)."""
    return to_numpy(image).transpose(1, 2, 0)


def _rescale(x):
    """Min-max to [0, 1] (a constant array -> 0.5)."""
    np = host_xp()
    x = to_numpy(x).astype("float64")
    lo, hi = float(x.min()), float(x.max())
    return np.full_like(x, 0.5) if hi <= lo else (x - lo) / (hi - lo)


def overlay(ax, image, amap, alpha=0.6, title=None, smooth=False, relative=None):
    """Draw image (C, H, W) uint8 with a (g, g) attention map stretched over it.

    Colours: by default the map divided by its maximum (places compare within one map).  With
    ``relative=r`` the map is divided by its mean instead and the colour scale runs from 0 to
    r times the average patch's weight: maps then compare across images and models (a uniform
    map is one flat colour).  One flat square per patch (``smooth=True``: bilinearly
    interpolated, prettier but less literal, and PNGs three times larger).  Returns the map's
    image, for a colour bar (``colour_bar``)."""
    img = to_hwc(image)
    H, W = img.shape[:2]
    m = to_numpy(amap).astype("float64")
    if relative:
        m = m / m.mean() / relative if m.mean() > 0 else m
    else:
        m = m / m.max() if m.max() > 0 else m
    ax.imshow(img, interpolation="nearest")
    shown = ax.imshow(m, cmap=MAP_CMAP, alpha=alpha, vmin=0, vmax=1,
                      interpolation="bilinear" if smooth else "nearest",
                      extent=(-0.5, W - 0.5, H - 0.5, -0.5))
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)
    return shown


def montage(tiles, gap=1, fill=float("nan")):
    """(rows, cols, h, w[, c]) tiles -> one (rows*(h+gap)-gap, cols*(w+gap)-gap[, c]) image."""
    np = host_xp()
    t = to_numpy(tiles)
    R, Cn, h, w = t.shape[:4]
    rest = t.shape[4:]
    out = np.full((R * (h + gap) - gap, Cn * (w + gap) - gap) + rest, fill,
                  dtype="float64")
    for r in range(R):
        for c in range(Cn):
            out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = t[r, c]
    return out


# --------------------------------------------------------------------------- Fig. 7 left

def plot_filter_pca(panels, path, cols=7, dpi=DPI) -> Path:
    """panels: [(title, (components (k, C, P, P), explained_variance_ratio (k,)))].

    Each component is min-max scaled to [0, 1] and shown as an RGB (or grey) P x P image,
    in order of explained variance (left to right, top to bottom), as in the paper."""
    np = host_xp()
    n = len(panels)
    k = len(to_numpy(panels[0][1][0]))
    rows = -(-k // cols)
    fig = _figure((3.4 * n, 0.55 * rows + 0.8))
    subs = fig.subfigures(1, n, squeeze=False)[0]
    for sub, (title, (comps, ratio)) in zip(subs, panels):
        comps, ratio = to_numpy(comps), to_numpy(ratio)
        tiles = np.stack([_rescale(c) for c in comps]).transpose(0, 2, 3, 1)   # (k, P, P, C)
        if tiles.shape[-1] == 1:
            tiles = np.repeat(tiles, 3, axis=-1)
        pad = rows * cols - len(tiles)
        tiles = np.concatenate([tiles, np.ones((pad,) + tiles.shape[1:])]) if pad else tiles
        P = tiles.shape[1]
        img = montage(tiles.reshape(rows, cols, P, P, 3), fill=1.0)
        ax = sub.subplots()
        ax.imshow(img, interpolation="nearest")
        ax.set_axis_off()
        sub.suptitle(f"{title}\nfirst {len(comps)} PCs: {100 * float(ratio.sum()):.0f}% "
                     "of the variance", fontsize=9)
    return _save(fig, path, dpi)


# --------------------------------------------------------------------------- Fig. 7 center

def plot_position_similarity(panels, path, dpi=DPI) -> Path:
    """panels: [(title, sim (g, g, g, g))], from ``position_embedding_similarity``.

    Tile (i, j) shows the cosine similarity of patch (i, j)'s position embedding with all
    patches' (colour scale -1 .. 1, as in the paper)."""
    n = len(panels)
    fig = _figure((3.3 * n + 0.6, 3.6))
    axes = fig.subplots(1, n, squeeze=False)[0]
    im = None
    for ax, (title, sim) in zip(axes, panels):
        sim = to_numpy(sim)
        gh, gw = sim.shape[:2]
        im = ax.imshow(montage(sim), cmap="viridis", vmin=-1, vmax=1, interpolation="nearest")
        h = sim.shape[2]
        w = sim.shape[3]
        ax.set_xticks([(w + 1) * c + (w - 1) / 2 for c in range(gw)], range(1, gw + 1),
                      fontsize=7)
        ax.set_yticks([(h + 1) * r + (h - 1) / 2 for r in range(gh)], range(1, gh + 1),
                      fontsize=7)
        ax.tick_params(length=0)
        ax.set_xlabel("input patch column", fontsize=8)
        ax.set_ylabel("input patch row", fontsize=8)
        ax.set_title(title, fontsize=9)
        for s in ax.spines.values():
            s.set_visible(False)
    fig.colorbar(im, ax=list(axes), shrink=0.8, label="cosine similarity")
    return _save(fig, path, dpi)


# --------------------------------------------------------------------------- Fig. 7 right

def plot_attention_distance(panels, path, image_size=None, reference=None, dpi=DPI) -> Path:
    """panels: [(title, distances (layers, heads))] from ``mean_attention_distance``.

    x = network depth (layer, from 1), y = mean attention distance in pixels, one dot per head,
    as the paper's Fig. 7 right.  ``reference``: a distance (e.g. uniform attention's, the mean
    distance between two patches) drawn as a dashed line; ``image_size`` sets the y range."""
    np = host_xp()
    n = len(panels)
    fig = _figure((3.6 * n, 3.2))
    axes = fig.subplots(1, n, squeeze=False, sharey=True)[0]
    top = 0.0
    for ax, (title, dist) in zip(axes, panels):
        d = to_numpy(dist)
        L, H = d.shape
        for h in range(H):
            ax.scatter(np.arange(1, L + 1), d[:, h], s=16, alpha=0.8, label=f"head {h + 1}")
        if reference is not None:
            ax.axhline(reference, ls="--", lw=1, color="grey", label="uniform attention")
        ax.set_xticks(range(1, L + 1))
        ax.set_xlabel("network depth (layer)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        top = max(top, float(d.max()))
    axes[0].set_ylabel("mean attention distance (pixels)")
    if image_size:
        top = max(top, image_size / 2)
    axes[0].set_ylim(0, 1.1 * top)
    if H <= 8:
        axes[-1].legend(fontsize=7, loc="lower right")
    return _save(fig, path, dpi)


# --------------------------------------------------------------------------- attention maps

COLOUR_BAR_WIDTH = 1.0      # inches added on the right of a grid for its colour bar
# tick labels of the colour bars: a map divided by its maximum, or by its mean (relative=r)
MAX_TICKS = {0.0: "0", 0.5: "half", 1.0: "max"}


def relative_ticks(scale=None) -> dict:
    """{position on the 0..1 colour scale: label} for maps drawn with ``relative=scale``."""
    scale = scale or ROLLOUT_SCALE
    return {0.0: "0", 1 / scale: "average\npatch", 1.0: f"{scale:g}x"}


def _grid_figure(figsize_wh, rows, title, caption_lines=2, colour_bar=False):
    """A figure for a grid of images with small captions and a title of any number of lines,
    with fixed margins (inches -> figure fractions); colour_bar: room on the right for one."""
    w, h = figsize_wh
    w += COLOUR_BAR_WIDTH if colour_bar else 0.0
    title_lines = title.count("\n") + 1 if title else 0
    h += 0.17 * max(title_lines - 1, 0)
    fig = _figure((w, h), layout=None)
    _grid_spacing(fig, rows, h, caption_lines, title_lines)
    if colour_bar:
        fig.subplots_adjust(right=1 - (COLOUR_BAR_WIDTH + 0.05) / w)
    if title:              # a fixed 0.05 inch from the top (y=0.98 drops lower on tall figures)
        fig.suptitle(title, fontsize=9, y=1 - 0.05 / h, va="top")
    return fig


def _grid_spacing(fig, rows, height, caption_lines=2, title_lines=1):
    """Fixed margins for a grid of images with small titles (inches -> figure fractions)."""
    gap = 0.13 * caption_lines + 0.08                  # room for a title above each row
    top = 1 - (0.05 + 0.17 * title_lines + gap) / height
    bottom = 0.02
    usable = height * (top - bottom)
    axes_h = max((usable - (rows - 1) * gap) / rows, 0.1)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=bottom, top=top, wspace=0.08,
                        hspace=gap / axes_h)


def colour_bar(fig, shown, label, ticks):
    """A colour bar in the room _grid_figure(colour_bar=True) left on the right: shown is an
    overlay's map (colours 0..1), ticks {position: label}."""
    w = fig.get_figwidth()
    sp = fig.subplotpars
    cax = fig.add_axes((1 - (COLOUR_BAR_WIDTH - 0.15) / w, sp.bottom, 0.12 / w,
                        sp.top - sp.bottom), label="colour bar")
    bar = fig.colorbar(shown, cax=cax)
    bar.set_ticks(list(ticks), labels=list(ticks.values()), fontsize=7)
    bar.set_label(label, fontsize=7)
    return bar


def plot_attention_heads(images, maps, path, row_titles=None, title="", dpi=DPI) -> Path:
    """images (B, C, H, W) uint8, maps (B, heads, g, g): the class token's attention in one
    layer, one column per head."""
    images, maps = to_numpy(images), to_numpy(maps)
    B, H = maps.shape[:2]
    fig = _grid_figure((1.25 * (H + 1), 1.45 * B + 0.45), B, title, colour_bar=True)
    axes = fig.subplots(B, H + 1, squeeze=False)
    for b in range(B):
        _image_cell(axes[b, 0], images[b], row_titles[b] if row_titles else None)
        for h in range(H):
            shown = overlay(axes[b, h + 1], images[b], maps[b, h],
                            title=f"head {h + 1}" if b == 0 else None)
    colour_bar(fig, shown, "attention weight / the map's largest", MAX_TICKS)
    return _save(fig, path, dpi)


def _image_cell(ax, image, title=None):
    """The first column of a row: the image itself, with its row title."""
    ax.imshow(to_hwc(image), interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=7)


ROLLOUT_SCALE = 2.0   # rollout colours: 0 .. 2x the average patch weight (uniform: the middle)


def plot_rollout(images, panels, path, row_titles=None, title="", dpi=DPI) -> Path:
    """images (B, C, H, W) uint8; panels [(column title, maps (B, g, g))], e.g. the rollout
    of a trained and of an untrained model: one row per image.  Colours are relative to each
    map's mean (``overlay(relative=ROLLOUT_SCALE)``), so panels compare: uniform is flat."""
    import textwrap
    images = to_numpy(images)
    B = len(images)
    n = len(panels)
    # column titles wrapped to the width of a column, so that neighbours never overlap
    names = [textwrap.fill(name, COLUMN_CHARS) for name, _ in panels]
    lines = max([t.count("\n") + 1 for t in names + list(row_titles or [])] + [2])
    fig = _grid_figure((1.45 * (n + 1), 1.45 * B + 0.45), B, title, caption_lines=lines,
                       colour_bar=True)
    axes = fig.subplots(B, n + 1, squeeze=False)
    for b in range(B):
        _image_cell(axes[b, 0], images[b], row_titles[b] if row_titles else None)
        for j, (_, maps) in enumerate(panels):
            shown = overlay(axes[b, j + 1], images[b], to_numpy(maps)[b], relative=ROLLOUT_SCALE)
            if b == 0:
                axes[b, j + 1].set_title(names[j], fontsize=7)
    colour_bar(fig, shown, "rollout weight", relative_ticks())
    return _save(fig, path, dpi)


def plot_mistakes(images, maps, captions, path, title="", dpi=DPI) -> Path:
    """Images a model got wrong (B, C, H, W) uint8, their rollout maps (B, g, g) and one
    caption each ("true cat / said dog 0.93"): images on the top row, maps below (colours
    relative to each map's mean, as ``plot_rollout``)."""
    images, maps = to_numpy(images), to_numpy(maps)
    B = len(images)
    fig = _grid_figure((max(1.35 * B, 4.0), 3.3), 2, title, colour_bar=True)
    axes = fig.subplots(2, B, squeeze=False)
    for b in range(B):
        axes[0, b].imshow(to_hwc(images[b]), interpolation="nearest")
        axes[0, b].set_axis_off()
        axes[0, b].set_title(captions[b], fontsize=7)
        shown = overlay(axes[1, b], images[b], maps[b], relative=ROLLOUT_SCALE)
    colour_bar(fig, shown, "rollout weight", relative_ticks())
    return _save(fig, path, dpi)


__all__ = ["plot_filter_pca", "plot_position_similarity", "plot_attention_distance",
           "plot_attention_heads", "plot_rollout", "plot_mistakes", "overlay", "montage",
           "to_hwc", "colour_bar", "relative_ticks"]
