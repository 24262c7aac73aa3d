"""``minivit linprobe CHECKPOINT``: a linear classifier on frozen features (linear probing).

    minivit linprobe runs/mae-cifar-tiny-20250101-120000 --features mean --epochs 90

The encoder of CHECKPOINT (a pre-training run, a training run, or a model file) sees every
image once, whole (no masking), in evaluation mode; the feature of an image is the class token,
or the mean of the patch tokens, after the final LayerNorm:

    f = LN(z_L)^0      or      f = mean_n LN(z_L)^n               (D,)

Features are standardised with the training features' mean and variance (as the MAE probe's
BatchNorm without affine parameters), then only a linear head y = f W^T + b (W (K, D)) is
trained, with AdamW on softmax cross-entropy, warmup-free cosine learning rate, shuffled
mini-batches.  Reports train / val / test accuracy; for a run directory also writes
RUN_DIR/linprobe.json (or --out).  A progress bar follows the feature extraction and the
head's epochs (--no-progress: a line per stage).
"""

from __future__ import annotations

from minivit.analysis.evaluation import predict_logits
from minivit.backend import host_rng, host_xp, to_device, to_numpy
from minivit.commands.outputs import add_run_arguments, check_output_file, report_path, write_result
from minivit.console import plural, progress_bar
from minivit.data.batches import batch_indices, iterate_batches, normalize
from minivit.data.cifar10 import load_cifar10
from minivit.io.pretrained import encoder_of, load_pretrained
from minivit.layers.linear import linear_backward, linear_forward
from minivit.layers.loss import cross_entropy
from minivit.models.mae import vit_from_encoder
from minivit.parallel.threads import DataParallel, resolve_threads
from minivit.training.optim import AdamW
from minivit.training.schedule import warmup_cosine


def add_arguments(parser):
    parser.add_argument("checkpoint", metavar="CHECKPOINT",
                        help="run directory or model file (MAE, MPP or ViT)")
    parser.add_argument("--features", choices=("token", "mean"), default="token",
                        help="class token (default) or mean of the patch tokens, after the "
                             "final norm")
    parser.add_argument("--epochs", type=int, default=50, help="default 50")
    parser.add_argument("--batch-size", type=int, default=256, help="default 256")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak AdamW lr (default 1e-3)")
    parser.add_argument("--weight-decay", type=float, default=0.0, help="default 0")
    parser.add_argument("--seed", type=int, default=0, help="default 0")
    parser.add_argument("--eval-batch-size", type=int, default=500, help="default 500")
    add_run_arguments(parser, "linprobe.json", "result", threads="extract features with N threads")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bar")


def extract_features(parallel, x, mean, std, batch_size, bar=None):
    """host uint8 images (n, C, H, W) -> host features (n, D): ``parallel`` is a
    DataParallel of a ViT whose head is the identity; ``bar`` (tqdm) counts the images."""
    np = host_xp()
    vit = parallel.model
    out = []
    for xb, _ in iterate_batches(x, np.zeros(len(x)), batch_size):
        out.append(to_numpy(predict_logits(vit, normalize(to_device(xb), mean, std, vit.dtype),
                                           parallel=parallel)))
        if bar is not None:
            bar.update(len(xb))
    return np.concatenate(out) if out else np.zeros((0, vit.config.embed_dim))


def accuracy(W, b, f, y) -> float | None:
    if not len(y):
        return None
    logits, _ = linear_forward(to_device(f), W, b)
    return float((to_numpy(logits).argmax(axis=1) == y).mean())


def run(args) -> int:
    for name in ("epochs", "batch_size", "eval_batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got "
                             f"{getattr(args, name)}")
    if not args.lr > 0 or args.weight_decay < 0:
        raise ValueError("--lr must be positive and --weight-decay >= 0")
    np = host_xp()
    model, run_dir, info = load_pretrained(args.checkpoint)
    out = report_path(args.out, run_dir, "linprobe.json")          # checked before the work
    if args.json:
        check_output_file(args.json)
    enc, params = encoder_of(model)
    train_cfg, stats = info.get("train", {}), info.get("data", {})
    val_size = args.val_size if args.val_size is not None else train_cfg.get("val_size", 5000)
    data = load_cifar10(args.data_dir or train_cfg.get("data_dir"), val_size)
    mean, std = stats.get("mean", data.mean), stats.get("std", data.std)
    D, K = enc.embed_dim, data.num_classes
    # the ViT's own forward pass, with the head set to the identity, gives the features
    vit = vit_from_encoder(enc.replace(pool=args.features), params, num_classes=D)
    vit.params["head.weight"] = to_device(np.eye(D), vit.dtype)
    print(f"minivit linprobe: {enc.name} encoder of {args.checkpoint} "
          f"({type(model).__name__}), {args.features} features, D={D}")
    splits = (("train", data.train_x), ("val", data.val_x), ("test", data.test_x))
    n_images = sum(len(x) for _, x in splits)
    bar = progress_bar(args.progress, n_images, desc="features", unit="img")
    if bar is None:
        print(f"  extracting the features of {plural(n_images, 'image')} ...", flush=True)
    with DataParallel(vit, resolve_threads(args.threads)) as parallel:
        feats = {split: extract_features(parallel, x, mean, std, args.eval_batch_size, bar)
                 for split, x in splits}
    if bar is not None:
        bar.close()
    mu, sd = feats["train"].mean(0), np.sqrt(feats["train"].var(0) + 1e-6)
    feats = {k: ((f - mu) / sd).astype(vit.dtype) for k, f in feats.items()}
    # the linear head, trained with AdamW
    W = to_device(np.zeros((K, D)), vit.dtype)
    b = to_device(np.zeros(K), vit.dtype)
    head = {"weight": W, "bias": b}
    opt = AdamW(head, lr=args.lr, weight_decay=args.weight_decay)
    n, B = len(data.train_y), min(args.batch_size, len(data.train_y))
    steps_per_epoch = max(n // B, 1)
    total, step = args.epochs * steps_per_epoch, 0
    gen = host_rng(args.seed)
    bar = progress_bar(args.progress, args.epochs, desc="linear head", unit="epoch")
    if bar is None:
        print(f"  training the linear head: {plural(args.epochs, 'epoch')} of "
              f"{plural(steps_per_epoch, 'step')}", flush=True)
    for epoch in range(args.epochs):
        for idx in list(batch_indices(n, B, gen, drop_last=True))[:steps_per_epoch]:
            logits, cache = linear_forward(to_device(feats["train"][idx]), head["weight"],
                                           head["bias"])
            loss, dlogits = cross_entropy(logits, to_device(data.train_y[idx]))
            _, dW, db = linear_backward(dlogits, cache)
            opt.step(head, {"weight": dW, "bias": db},
                     lr=warmup_cosine(step, args.lr, total, 0, 0.0))
            step += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix({"loss": f"{loss:.3f}"}, refresh=False)
    if bar is not None:
        bar.close()
    result = {"checkpoint": str(args.checkpoint), "model": type(model).__name__,
              "features": args.features, "epochs": args.epochs, "lr": args.lr,
              "final_train_loss": loss,
              **{f"{s}_acc": accuracy(head["weight"], head["bias"], feats[s], y)
                 for s, y in (("train", data.train_y), ("val", data.val_y),
                              ("test", data.test_y))}}
    print("  " + "  ".join(f"{s} acc {100 * result[f'{s}_acc']:.2f}%"
                           for s in ("train", "val", "test") if result[f"{s}_acc"] is not None))
    write_result(result, out, args.json)
    return 0
