"""How a distilled student's two heads agree: with the labels, with each other, and with the
teacher they learn from.  ``minivit train --teacher`` logs these at every validation
(metrics.jsonl: val_cls_acc, val_dist_acc, ...), and walkthrough 07 reads them.

    t = teacher_predictions(teacher_parallel, x, mean, std)        # host (N,) classes
    counts = head_agreement(student_parallel, x, y, t, mean, std)  # {"cls_acc": int, ...}
    rates = {k: v / len(y) for k, v in counts.items()}

The student's heads are read with ``split_heads=True`` in evaluation mode (no dropout, no
test-time augmentation), the teacher's answers are its argmax in evaluation mode: the
distillation head's target in hard distillation, on clean images.
"""

from __future__ import annotations

from minivit.backend import array_module, host_xp, to_device, to_numpy
from minivit.data.batches import iterate_batches, normalize

# what head_agreement counts, in this order
HEAD_AGREEMENT = ("cls_acc", "dist_acc", "heads_agree", "cls_teacher_agree",
                  "dist_teacher_agree", "teacher_acc")


def split_head_classes(parallel, images):
    """The class head's and the distillation head's argmax (2, B) on normalised ``images``
    (B, C, H, W), split over ``parallel``'s threads (a DataParallel of a distilled ViT)."""
    outs = parallel.map_shards(lambda r, x, w: r.forward(x, train=False, keep_cache=False,
                                                         split_heads=True), images, train=False)
    logits = array_module(images).concatenate(outs, axis=1) if len(outs) > 1 else outs[0]
    return logits.argmax(axis=2)                                          # (2, B)


def teacher_predictions(parallel, x, mean, std, batch_size: int = 500):
    """The teacher's classes (N,) on host uint8 images x, as a host int64 array."""
    np = host_xp()
    dtype = parallel.model.dtype
    preds = [to_numpy(parallel.forward(normalize(to_device(xb), mean, std, dtype)).argmax(1))
             for xb, _ in iterate_batches(x, np.zeros(len(x)), batch_size)]
    return np.concatenate(preds).astype(np.int64) if preds else np.zeros(0, np.int64)


def head_agreement(parallel, x, y, teacher_classes, mean, std, batch_size: int = 500) -> dict:
    """Counts over host uint8 images x (N, C, H, W) with labels y (N,): images where the
    class head / the distillation head / the teacher (teacher_classes, (N,)) is right, where
    the two heads agree, and where each head agrees with the teacher ({name: int} for each
    name of HEAD_AGREEMENT).  With teacher_classes None, the heads' counts only (the first
    three names)."""
    np = host_xp()
    if teacher_classes is not None and len(teacher_classes) != len(y):
        raise ValueError(f"{len(teacher_classes)} teacher answers for {len(y)} images")
    counts = dict.fromkeys(HEAD_AGREEMENT if teacher_classes is not None else HEAD_AGREEMENT[:3],
                           0)
    dtype, start = parallel.model.dtype, 0
    for xb, yb in iterate_batches(x, y, batch_size):
        cls, dist = to_numpy(split_head_classes(parallel, normalize(to_device(xb), mean, std,
                                                                    dtype)))
        hits = {"cls_acc": cls == yb, "dist_acc": dist == yb, "heads_agree": cls == dist}
        if teacher_classes is not None:
            t = np.asarray(teacher_classes[start:start + len(yb)])
            hits.update(cls_teacher_agree=cls == t, dist_teacher_agree=dist == t,
                        teacher_acc=t == yb)
        start += len(yb)
        for name in counts:
            counts[name] += int(hits[name].sum())
    return counts


__all__ = ["HEAD_AGREEMENT", "head_agreement", "split_head_classes", "teacher_predictions"]
