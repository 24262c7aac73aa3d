"""``minivit inspect CHECKPOINT --image IMG...``: figures of what a ViT learned.

    minivit inspect runs/cifar-nano-cpu --image cat.png ship.jpg --out inspect/
    minivit inspect model.safetensors --data-dir path/to/cifar-10-batches-py

Writes into --out (default RUN_DIR/inspect, or <model file name>-inspect next to the file):

    filters_pca.png           ViT paper Fig. 7 left: principal components of the patch filters
    position_similarity.png   Fig. 7 center: cosine similarity of the position embeddings
    attention_distance.png    Fig. 7 right: mean attention distance per head (dots) and layer
    attention_heads.png       what the pooled feature reads (the class token's attention, or
                              the patch queries' mean for pool=mean), one column per head
    attention_rollout.png     Fig. 6: attention rollout (Abnar & Zuidema 2020) on the images
    mistakes.png              with CIFAR-10 found: the test images the model gets most wrong

Each figure puts the checkpoint next to an untrained model of the same config (same init as
``minivit train``, seed --seed), unless --no-compare-untrained.  The computations are
``minivit.analysis.attention``; the drawing is ``minivit.analysis.inspect_figures``.  Images
are resized to the model's input size and normalised with the run's mean/std (config.json),
--mean/--std, or CIFAR-10's training-set statistics.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from minivit.analysis.evaluation import predict_logits
from minivit.backend import host_xp, to_device, to_numpy
from minivit.commands.outputs import check_output_dir
from minivit.commands.predict import (
    add_normalisation_arguments,
    check_finite,
    class_names,
)
from minivit.console import shown
from minivit.data.batches import CIFAR10_MEAN, CIFAR10_STD, check_normalisation, normalize
from minivit.errors import UserError

# CIFAR-10 per-channel mean / std of the 45,000 training images (val_size 5000), [0, 1] units
READS = {"token": "class-token attention", "mean": "mean patch-query attention"}
DISTANCE_IMAGES = 128          # the paper's Fig. 7 right averages over 128 images


def add_arguments(parser):
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="run directory or model file")
    parser.add_argument("--image", dest="images", metavar="IMG", nargs="+", default=[],
                        help="PNG/JPEG images to show attention maps for (default: the first "
                             "test images, when CIFAR-10 is found)")
    parser.add_argument("--out", metavar="DIR",
                        help="output folder (default RUN_DIR/inspect or <model>-inspect)")
    parser.add_argument("--data-dir", help="CIFAR-10 folder for the test-set figures (default: "
                                           "the run's, then $MINIVIT_DATA, then the cache; "
                                           "skipped when none is found)")
    parser.add_argument("--compare-untrained", action=argparse.BooleanOptionalAction,
                        default=True, help="draw an untrained model of the same config beside "
                                           "it (default on)")
    parser.add_argument("--layer", type=int, default=-1,
                        help="block whose per-head attention maps to draw, counted from 0 "
                             "(figures count from 1); default -1, the last")
    parser.add_argument("--mistakes", type=int, default=8,
                        help="how many wrong test images to show (default 8; 0 = none)")
    parser.add_argument("--num-test", type=int, default=10000,
                        help="test images searched for mistakes (default 10000, all)")
    parser.add_argument("--discard-ratio", type=float, default=0.0,
                        help="attention rollout: drop this fraction of the smallest weights "
                             "of each row (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the untrained model")
    add_normalisation_arguments(parser)


def _out_dir(args, checkpoint: Path, run_dir) -> Path:
    if args.out:
        return Path(args.out)
    if checkpoint.is_dir():
        return checkpoint / "inspect"
    return checkpoint.parent / f"{checkpoint.stem}-inspect"


def _find_data(args, info):
    """CIFAR-10 test images and labels (host uint8, int64), or None when none is found.

    An explicit --data-dir that holds no CIFAR-10 is an error; otherwise not finding it only
    skips the test-set figures."""
    from minivit.data.cifar_format import TEST_FILE, read_batch
    from minivit.data.download import find_cifar10
    explicit = args.data_dir
    candidates = [explicit] if explicit else [info.get("train", {}).get("data_dir"), None]
    for d in candidates:
        try:
            folder = find_cifar10(d)
        except FileNotFoundError:
            if explicit:
                raise
            continue
        return read_batch(folder / TEST_FILE), folder
    return None, None


def _check_args(args):
    if args.mistakes < 0:
        raise ValueError(f"--mistakes must be >= 0, got {args.mistakes}")
    if args.num_test < 1:
        raise ValueError(f"--num-test must be a positive integer, got {args.num_test}")
    if not 0.0 <= args.discard_ratio < 1.0:
        raise ValueError(f"--discard-ratio must be in [0, 1), got {args.discard_ratio}")


def run(args) -> int:
    from minivit.analysis import attention as A
    from minivit.analysis import embeddings as E
    from minivit.analysis import inspect_figures as P
    from minivit.analysis.evaluation import load_trained
    from minivit.data.images import read_image
    from minivit.data.synthetic import LABEL_NAMES
    from minivit.models.vit import create_model

    _check_args(args)
    checkpoint = Path(args.checkpoint)
    model, run_dir, info = load_trained(checkpoint)
    check_output_dir(_out_dir(args, checkpoint, run_dir))          # before any work
    cfg, data_info = model.config, info.get("data", {})
    if not -cfg.depth <= args.layer < cfg.depth:
        raise ValueError(f"--layer must be in 0..{cfg.depth - 1} (or negative from the end), "
                         f"got {args.layer}")
    layer = args.layer % cfg.depth
    mean = args.mean or data_info.get("mean")
    std = args.std or data_info.get("std")
    if mean is None or std is None:
        print("no training mean/std (no run config.json, no --mean/--std): using CIFAR-10's")
        mean, std = mean or CIFAR10_MEAN, std or CIFAR10_STD
    check_normalisation(mean, std)
    names = class_names(info, cfg.num_classes, checkpoint) if data_info.get("label_names") \
        else list(LABEL_NAMES) if cfg.num_classes == 10 else class_names({}, cfg.num_classes,
                                                                         checkpoint)
    np = host_xp()
    images = [read_image(p, cfg.image_size) for p in args.images]     # errors: one line
    (test, folder) = _find_data(args, info)
    if test is not None:
        test_x, test_y = test[0][:args.num_test], test[1][:args.num_test]
        print(f"CIFAR-10 test images from {folder}")
    else:
        test_x = test_y = None
        print("CIFAR-10 not found (give --data-dir): no test-set figures; attention distance "
              "from the given images")
    if not images:
        if test_x is None:
            raise UserError("nothing to look at: give --image IMG... or --data-dir with CIFAR-10")
        images = list(test_x[:6])
        captions = [f"test {i}: {names[int(y)]}" for i, y in enumerate(test_y[:6])]
    else:
        captions = [shown(Path(p).name) for p in args.images]
    images = np.stack(images)                                          # (B, C, H, W) uint8

    if cfg.in_chans != 3:
        raise UserError(f"inspect reads RGB images; the model takes {cfg.in_chans} channels")
    out = _out_dir(args, checkpoint, run_dir)
    out.mkdir(parents=True, exist_ok=True)
    # "run 'first'", never a bare name: "rollout, first" would read as the first layer's
    title = (f"run '{checkpoint.name}'" if checkpoint.is_dir() else
             f"model '{checkpoint.stem}'")
    models = [(f"{title} (trained)", model)]
    if args.compare_untrained:
        models.append(("untrained", create_model(cfg, seed=args.seed, dtype=model.dtype)))

    def prepare(x):
        return normalize(to_device(x), mean, std, model.dtype)

    def wrote(path):                     # a line per figure, as it is written
        print(f"wrote {path}", flush=True)
    # Fig. 7 left and center: the weights alone
    # (with a convolutional stem, the filters that see pixels are the first conv's 3x3 kernels)
    pixel_filters = ("patch_embed.backbone.0.conv.weight" if cfg.conv_stem
                     else "patch_embed.proj.weight")
    fan = model.params[pixel_filters][0].size
    wrote(P.plot_filter_pca(
        [(t, E.patch_embedding_pca(m.params[pixel_filters],
                                   k=min(28, m.params[pixel_filters].shape[0], fan)))
         for t, m in models],
        out / "filters_pca.png"))
    wrote(P.plot_position_similarity(
        [(t, E.position_embedding_similarity(m.params["pos_embed"])) for t, m in models],
        out / "position_similarity.png"))

    # Fig. 7 right: mean attention distance over up to 128 images
    dist_images = test_x[:DISTANCE_IMAGES] if test_x is not None else images
    g, Pz = cfg.grid_size, cfg.patch_size
    dists = []
    for t, m in models:
        _, attn = A.capture_attention(m, prepare(dist_images))
        dists.append((t, A.mean_attention_distance(attn, g, Pz)))
    uniform = float(A.patch_distances(g, Pz).mean())
    wrote(P.plot_attention_distance(
        dists, out / "attention_distance.png", image_size=cfg.image_size, reference=uniform))

    # attention maps on the given images
    x = prepare(images)
    rollouts, predictions = [], []
    for t, m in models:
        logits, attn = A.capture_attention(m, x)
        rollouts.append((t, A.pooled_attention_map(
            A.attention_rollout(attn, discard_ratio=args.discard_ratio), g, m.config.pool)))
        predictions.append(to_numpy(logits))
        if m is model:                                       # (B, heads, g, g)
            heads = np.stack([to_numpy(A.pooled_attention_map(attn[layer], g, cfg.pool, head=h))
                              for h in range(cfg.num_heads)], axis=1)
    probs = _softmax(predictions[0])
    check_finite(probs, "probabilities")
    row_titles = [f"{c}\n-> {names[int(p.argmax())]} {float(p.max()):.2f}"
                  for c, p in zip(captions, probs)]
    wrote(P.plot_attention_heads(
        images, heads, out / "attention_heads.png", row_titles,
        title=f"{title}: {READS[cfg.pool]}, layer {layer + 1} of {cfg.depth}"))
    wrote(P.plot_rollout(
        images, [(f"rollout of {t}", r) for t, r in rollouts], out / "attention_rollout.png",
        row_titles, title="attention rollout (Abnar & Zuidema 2020)\n"
                          "colour: 0 .. 2x the average patch"))

    # the test images the model gets most wrong
    if test_x is not None and args.mistakes:
        print(f"classifying {len(test_x)} test images ...", flush=True)
        logits = _logits(model, test_x, prepare)
        acc = float((logits.argmax(axis=1) == test_y).mean())
        print(f"accuracy {100 * acc:.2f}% on {len(test_y)} test images")
        worst = A.confident_mistakes(logits, test_y, args.mistakes)
        if len(worst):
            _, attn = A.capture_attention(model, prepare(test_x[worst]))
            maps = A.pooled_attention_map(A.attention_rollout(attn, args.discard_ratio), g,
                                          cfg.pool)
            p = _softmax(logits[worst])
            caps = [f"true {names[int(test_y[i])]} {float(pi[test_y[i]]):.2f}\n"
                    f"said {names[int(pi.argmax())]} {float(pi.max()):.2f}"
                    for i, pi in zip(worst, p)]
            wrote(P.plot_mistakes(
                test_x[worst], maps, caps, out / "mistakes.png",
                title=f"{title}: the {len(worst)} most confident mistakes on {len(test_y)} "
                      f"test images (accuracy {100 * acc:.1f}%), with attention rollout"))

    for (t, d) in dists:
        print(f"mean attention distance (pixels) per layer, {t}: "
              + " ".join(f"{float(v):.1f}" for v in to_numpy(d).mean(axis=1)))
    for c, p in zip(captions, probs):
        print(f"{c.splitlines()[0]}: {names[int(p.argmax())]} {float(p.max()):.3f}")
    return 0


def _softmax(logits):
    from minivit.layers.softmax import softmax_forward
    return softmax_forward(to_numpy(logits).astype("float64"))[0]


def _logits(model, x, prepare, batch_size=500):
    """Host logits of uint8 images x, in batches."""
    np = host_xp()
    out = []
    for i in range(0, len(x), batch_size):
        out.append(to_numpy(predict_logits(model, prepare(x[i:i + batch_size]))))
    return np.concatenate(out)
