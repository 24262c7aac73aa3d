"""minivit.analysis.heads: a distilled student's two heads against the labels, each other and
the teacher, counted batch by batch over threads; and the counts summed over ranks."""

import numpy as np
import pytest
from support import randomise

import minivit
from minivit.analysis.heads import (
    HEAD_AGREEMENT,
    head_agreement,
    split_head_classes,
    teacher_predictions,
)
from minivit.data.batches import normalize
from minivit.parallel.ranks import sum_evaluations
from minivit.parallel.threads import DataParallel

MEAN, STD = np.array([0.5, 0.4, 0.3]), np.array([0.25, 0.2, 0.3])


@pytest.fixture(scope="module")
def models():
    student = minivit.create_model("cifar-nano", seed=0, depth=1, embed_dim=16, num_heads=2,
                                   mlp_dim=32, distilled=True, pool="token")
    randomise(student, scale=0.5, seed=4)
    noise = np.random.default_rng(5).standard_normal(student.params["head.weight"].shape)
    student.params["head_dist.weight"] = (student.params["head.weight"]        # heads that
                                          + 0.5 * noise.astype(np.float32))   # mostly agree
    student.params["head_dist.bias"] = student.params["head.bias"].copy()
    teacher = student            # the heads' mean: it agrees with each head on some images
    gen = np.random.default_rng(0)
    x = gen.integers(0, 256, (16, 3, 32, 32), dtype=np.uint8)
    cls, dist = student.forward(normalize(x, MEAN, STD, "float32"), split_heads=True,
                                keep_cache=False).argmax(axis=2)
    y = np.concatenate([cls[:6], dist[6:12], gen.integers(0, 10, 4)])   # labels each head hits
    return student, teacher, x, y


def expected_counts(student, teacher, x, y):
    images = normalize(x, MEAN, STD, "float32")
    cls, dist = student.forward(images, split_heads=True, keep_cache=False).argmax(axis=2)
    t = teacher.forward(images, keep_cache=False).argmax(axis=1)
    return {"cls_acc": (cls == y).sum(), "dist_acc": (dist == y).sum(),
            "heads_agree": (cls == dist).sum(), "cls_teacher_agree": (cls == t).sum(),
            "dist_teacher_agree": (dist == t).sum(), "teacher_acc": (t == y).sum()}, t


@pytest.mark.parametrize("threads,batch_size", [(1, 500), (2, 3)])
def test_head_agreement_counts_what_the_heads_and_the_teacher_answer(models, threads,
                                                                     batch_size):
    student, teacher, x, y = models
    want, want_t = expected_counts(student, teacher, x, y)
    assert 0 < want["heads_agree"] < len(y), want           # the check is not vacuous
    with DataParallel(student, threads) as sp, DataParallel(teacher, threads) as tp:
        t = teacher_predictions(tp, x, MEAN, STD, batch_size)
        got = head_agreement(sp, x, y, t, MEAN, STD, batch_size)
        both = split_head_classes(sp, normalize(x, MEAN, STD, "float32"))
    np.testing.assert_array_equal(t, want_t)
    assert list(got) == list(HEAD_AGREEMENT) and got == {k: int(v) for k, v in want.items()}
    assert both.shape == (2, len(y))
    with pytest.raises(ValueError, match="teacher answers"):
        head_agreement(DataParallel(student, 1), x, y, t[:5], MEAN, STD)


def test_without_the_teacher_only_the_heads_are_counted(models):
    student, teacher, x, y = models
    want, _ = expected_counts(student, teacher, x, y)
    with DataParallel(student, 2) as sp:
        got = head_agreement(sp, x, y, None, MEAN, STD, batch_size=3)
    assert got == {k: int(want[k]) for k in HEAD_AGREEMENT[:3]}


class TwoEqualRanks:
    """Rank 0 of two, whose partner evaluated the same numbers: every sum doubles."""
    rank, size = 0, 2

    def sum_(self, values, what):
        values *= 2


def test_the_counts_are_summed_over_ranks_with_the_confusion_matrix():
    def evaluate(x, y, mean, std, batch_size):
        return {"loss": 0.5, "acc": 0.25, "n": len(y), "counts": {"cls_acc": 1, "dist_acc": 3},
                "confusion": np.array([[1, 0], [2, 1]])}
    out = sum_evaluations(TwoEqualRanks(), evaluate, np.zeros((8, 1)), np.zeros(8), 0, 1, 4)
    assert out["n"] == 8 and out["counts"] == {"cls_acc": 2, "dist_acc": 6}
    np.testing.assert_array_equal(out["confusion"], [[2, 0], [4, 2]])
    assert out["acc"] == 4 / 8
