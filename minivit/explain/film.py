"""Training as a film: what the explain page's epoch slider replays (panels 2, 4 and 5).

A run trained with ``minivit train --snapshots N`` keeps the model after N epochs
(``minivit.training.snapshots``).  Each frame is one of them, or the model at initialisation
(epoch 0, the run's own seed): per image its attention, its logits and its heads' attention
distance, computed by the model's own forward pass.  At most MAX_FRAMES frames, evenly chosen,
keep the page small.
"""

from __future__ import annotations

from minivit.analysis import attention as analysis
from minivit.backend import host_xp, to_device, to_numpy
from minivit.data.batches import normalize
from minivit.explain.manifest import encode_array
from minivit.io.serialization import load as load_model
from minivit.training.snapshots import list_snapshots

MAX_FRAMES = 8


def frame_story(model, images, mean, std) -> list:
    """[per image: probs (L, h, T, T) float16, logits (K,), attention_distance (L, h)]."""
    np, cfg, stories = host_xp(), model.config, []
    for _, image in images:
        x = normalize(to_device(image[None]), mean, std, model.dtype)
        logits, probs = analysis.capture_attention(model, x)
        distance = analysis.mean_attention_distance(probs, cfg.grid_size, cfg.patch_size,
                                                    cfg.num_prefix_tokens)
        stories.append({"probs": encode_array(np.stack([to_numpy(a)[0] for a in probs]), "f16"),
                        "logits": encode_array(to_numpy(logits)[0]),
                        "attention_distance": encode_array(distance)})
    return stories


def pick(items: list, k: int) -> list:
    """At most k of ``items``, evenly spread, the first and the last kept."""
    if len(items) <= k:
        return items
    return [items[round(i * (len(items) - 1) / (k - 1))] for i in range(k)]


def film(run_dir, initial, images, mean, std) -> dict | None:
    """The film of ``run_dir``'s snapshots, with ``initial`` (the model at initialisation) as
    epoch 0; None when the run kept no snapshots."""
    snapshots = list_snapshots(run_dir) if run_dir is not None else []
    if not snapshots:
        return None
    frames = pick([(0, None), *snapshots], MAX_FRAMES)
    out = []
    for epoch, path in frames:
        model = initial if path is None else load_model(path)
        out.append({"epoch": epoch, "images": frame_story(model, images, mean, std)})
    return {"frames": out}


__all__ = ["MAX_FRAMES", "film", "frame_story", "pick"]
