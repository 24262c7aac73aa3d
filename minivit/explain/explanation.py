"""Everything the page shows, for a list of models and images: the manifest.

    build_manifest(models, images, mean, std, class_names) -> dict (manifest.py's format)

``models``: [(label, VisionTransformer)], e.g. the trained model and the same config at
initialisation; ``images``: [(name, uint8 (3, H, W))] at the model's input size.  Each
(model, image) gets its forward story, every class's backward story, the mean attention
distance of its heads; each model its position embeddings.  Pages for large models leave out
the heaviest per-token arrays (the scores and the A·V outputs) with a note.
"""

from __future__ import annotations

from minivit.analysis import attention as analysis
from minivit.analysis.embeddings import position_embedding_similarity
from minivit.backend import host_xp, to_device, to_numpy
from minivit.data.batches import normalize
from minivit.explain.backward_story import backward_story
from minivit.explain.forward_story import forward_story
from minivit.explain.manifest import encode_array, encoded_bytes

FORMAT = "minivit-explain-1"
MAX_BYTES = 5_500_000          # past this the heaviest per-token arrays are left out
HEAVY = ("scores", "head_outputs")
FLOAT16 = ("scores", "head_outputs", "patch_tokens", "embedded")


def stage_names(depth: int) -> list:
    """The backward pass's stages, in the order the page steps through them."""
    return (["loss -> logits", f"head, pooling, final LayerNorm -> z_{depth}"]
            + [f"block {b} -> z_{b - 1}" for b in range(depth, 0, -1)]
            + ["patch projection -> pixels"])


def image_story(model, image, mean, std) -> dict:
    """One (model, image): the forward and backward stories and the heads' attention
    distance, as manifest entries."""
    cfg = model.config
    x = normalize(to_device(image[None]), mean, std, model.dtype)
    forward = forward_story(model, x)
    backward = backward_story(model, x)
    distance = analysis.mean_attention_distance(list(forward["probs"][:, None]),
                                                cfg.grid_size, cfg.patch_size,
                                                cfg.num_prefix_tokens)
    entries = {k: encode_array(v, "f16" if k in FLOAT16 else "f32")
               for k, v in forward.items()}
    entries.update({k: encode_array(v) for k, v in backward.items() if k != "param_names"})
    entries["attention_distance"] = encode_array(distance)
    return entries


def model_story(label, model, images, mean, std) -> dict:
    """One model: its position embeddings, its parameter names and every image's story."""
    np = host_xp()
    pos = to_numpy(model.params["pos_embed"])
    similarity = to_numpy(position_embedding_similarity(pos, model.config.num_prefix_tokens))
    N = similarity.shape[0] * similarity.shape[1]
    return {
        "label": label,
        "pos_embed": encode_array(pos[0], "f16"),
        "pos_similarity": encode_array(np.reshape(similarity, (N, N)), "f16"),
        "param_names": list(model.params.keys()),
        "images": [image_story(model, img, mean, std) for _, img in images],
    }


def config_entry(cfg) -> dict:
    return {"name": cfg.name, "image_size": cfg.image_size, "patch_size": cfg.patch_size,
            "grid": cfg.grid_size, "depth": cfg.depth, "heads": cfg.num_heads,
            "embed_dim": cfg.embed_dim, "mlp_dim": cfg.mlp_dim,
            "num_classes": cfg.num_classes, "pool": cfg.pool,
            "prefix": cfg.num_prefix_tokens, "conv_stem": list(cfg.conv_stem)}


def drop_heavy(manifest: dict) -> list:
    """Leave out the HEAVY arrays when the page would pass MAX_BYTES; the notes to show."""
    if encoded_bytes(manifest) <= MAX_BYTES:
        return []
    for m in manifest["models"]:
        for story in m["images"]:
            for key in HEAVY:
                story.pop(key, None)
    note = ("This model is large: the page leaves out the scores before the softmax and the "
            f"A·V outputs to stay under {MAX_BYTES / 1e6:.1f} MB.")
    return [note]


def build_manifest(models, images, mean, std, class_names, title="minivit explain",
                   film=None) -> dict:
    """The manifest of the page (see the module's docstring); film: the epoch slider's frames
    (``film.film``), or None."""
    cfg = models[0][1].config
    manifest = {
        "format": FORMAT, "title": title, "config": config_entry(cfg),
        "class_names": list(class_names), "mean": list(mean), "std": list(std),
        "stages": stage_names(cfg.depth),
        "images": [{"name": name, "pixels": encode_array(img, "u8")} for name, img in images],
        "models": [model_story(label, m, images, mean, std) for label, m in models],
        "film": film,
    }
    manifest["notes"] = drop_heavy(manifest)
    return manifest


__all__ = ["FORMAT", "MAX_BYTES", "build_manifest", "image_story", "stage_names"]
