"""``minivit eval CHECKPOINT``: accuracy, per-class accuracy and confusion matrix.

    minivit eval runs/cifar-nano-20250101-120000              # test split
    minivit eval runs/.../model.safetensors --split val --json val.json

CHECKPOINT is a run directory or a model file.  The run's config.json (if there is one) gives
the validation split size, the data folder and the normalisation mean/std it was trained with.
For a run directory the report is also saved as RUN_DIR/eval-<split>.json (``minivit plot``
draws its confusion matrix), or wherever --out says (a file, or a folder for
eval-<split>.json), for any checkpoint.

A distilled student (DeiT) also gets its two heads' report: each head's accuracy, how often
the heads agree and, when the run's teacher can be read, how often each head agrees with it
(minivit/analysis/heads.py; clean images, no test-time augmentation).
"""

from __future__ import annotations

import math

from minivit.analysis.evaluation import eval_report, evaluate, load_trained
from minivit.analysis.heads import head_agreement, teacher_predictions
from minivit.commands.outputs import add_run_arguments, check_output_file, report_path, write_result
from minivit.console import plural
from minivit.data.cifar10 import load_cifar10
from minivit.errors import UserError
from minivit.parallel.threads import DataParallel, resolve_threads
from minivit.training.objectives.distillation import load_teacher


def add_arguments(parser):
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="run directory or model file")
    parser.add_argument("--split", choices=("test", "val"), default="test",
                        help="which split to evaluate (default test)")
    parser.add_argument("--batch-size", type=int, default=500, help="default 500")
    parser.add_argument("--tta", type=int, choices=(0, 1, 2),
                        help="test-time augmentation: 0 none, 1 mirror, 2 mirror and shifts "
                             "(default: the run's --tta, else 0)")
    add_run_arguments(parser, "eval-<split>.json", threads="split each batch over N threads")


def format_report(report: dict) -> str:
    """Accuracy, a per-class table and the confusion matrix (rows true, columns predicted)."""
    names = report["label_names"]
    w = max(len(n) for n in names)
    lines = [f"accuracy {100 * report['accuracy']:.2f}% on "
             f"{plural(report['n'], report['split'] + ' image')} (loss {report['loss']:.4f})",
             "",
             f"{'class':<{w}}  {'images':>6}  {'correct':>7}  {'accuracy':>8}"]
    if "heads" in report:
        lines[1:1] = [format_heads(report["heads"])]
    for name, c in report["per_class"].items():
        acc = "-" if c["acc"] is None else f"{100 * c['acc']:.2f}%"
        lines.append(f"{name:<{w}}  {c['n']:>6}  {c['correct']:>7}  {acc:>8}")
    lines += ["", "confusion matrix (rows: true class, columns: predicted class)",
              " " * w + "".join(f"{n[:5]:>6}" for n in names)]
    for name, row in zip(names, report["confusion"]):
        lines.append(f"{name:<{w}}" + "".join(f"{v:>6}" for v in row))
    return "\n".join(lines)


def heads_report(parallel, teacher_path, x, y, mean, std, batch_size, threads) -> dict:
    """A distilled student's heads on (x, y): {"teacher": path or None, "<name>": rate} for
    the names of minivit.analysis.heads.HEAD_AGREEMENT (the teacher's three when it is read)."""
    teacher_classes = None
    if teacher_path:
        try:
            teacher = load_teacher(teacher_path, parallel.model.dtype,
                                   parallel.model.config.num_classes, parallel.model.config,
                                   mean, std)
        except (OSError, ValueError) as e:
            print(f"the run's teacher is not read ({e}): the heads alone", flush=True)
            teacher_path = None
        else:
            with DataParallel(teacher.model, threads) as tp:
                teacher_classes = teacher_predictions(tp, x, teacher.mean, teacher.std,
                                                      batch_size)
    counts = head_agreement(parallel, x, y, teacher_classes, mean, std, batch_size)
    return {"teacher": teacher_path, **{k: v / len(y) for k, v in counts.items()}}


def format_heads(heads: dict) -> str:
    line = (f"heads (clean images): class head {100 * heads['cls_acc']:.2f}%, distillation "
            f"head {100 * heads['dist_acc']:.2f}%, the two agree on "
            f"{100 * heads['heads_agree']:.1f}%")
    if heads["teacher"] is None:
        return line
    return (line + f"\nagreement with the teacher {heads['teacher']} (right on "
            f"{100 * heads['teacher_acc']:.2f}%): class head "
            f"{100 * heads['cls_teacher_agree']:.1f}%, distillation head "
            f"{100 * heads['dist_teacher_agree']:.1f}%")


def run(args) -> int:
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be a positive integer, got {args.batch_size}")
    model, run_dir, info = load_trained(args.checkpoint)
    out = report_path(args.out, run_dir, f"eval-{args.split}.json")   # checked before the work
    if args.json:
        check_output_file(args.json)
    print(f"minivit eval: {model!r}", flush=True)
    train_cfg = info.get("train", {})
    val_size = args.val_size if args.val_size is not None else train_cfg.get("val_size", 5000)
    data = load_cifar10(args.data_dir or train_cfg.get("data_dir"), val_size)
    if args.split == "val" and not len(data.val_y):
        raise ValueError("the validation split is empty (val_size 0); use --split test")
    if model.config.num_classes != data.num_classes:
        raise ValueError(f"the model has {model.config.num_classes} classes, the data set "
                         f"{data.num_classes}")
    stats = info.get("data", {})
    mean, std = stats.get("mean", data.mean), stats.get("std", data.std)
    x, y = (data.test_x, data.test_y) if args.split == "test" else (data.val_x, data.val_y)
    tta = args.tta if args.tta is not None else train_cfg.get("tta", 0)
    print(f"evaluating {plural(len(y), args.split + ' image')}"
          f"{f' with test-time augmentation {tta}' if tta else ''} ...", flush=True)
    threads = resolve_threads(args.threads)
    with DataParallel(model, threads) as parallel:
        result = evaluate(model, x, y, mean, std, args.batch_size, parallel, tta)
        heads = (heads_report(parallel, train_cfg.get("teacher"), x, y, mean, std, args.batch_size,
                              threads) if getattr(model.config, "distilled", False) else None)
    report = {"checkpoint": str(args.checkpoint),
              **eval_report(result, data.label_names, args.split)}
    if not math.isfinite(report["loss"]):
        raise UserError(f"the loss on the {args.split} split is not finite ({report['loss']}): "
                        "the checkpoint's weights or the normalisation are broken")
    if heads is not None:
        report["heads"] = heads
    print(format_report(report))
    write_result(report, out, args.json)
    return 0
