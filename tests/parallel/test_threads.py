"""Data parallelism over CPU threads (minivit/parallel/threads.py): the split batch gives the
same loss and gradients as the whole batch, dropout stays reproducible, BLAS is limited to one
thread per replica, and bad thread counts are refused."""

import contextvars

import numpy as np
import pytest

import minivit.parallel.threads as P
from minivit.backend import get_backend, set_backend
from minivit.layers.loss import cross_entropy
from minivit.models.vit import create_model
from minivit.reference.numerical import rel_error
from minivit.training.objectives.classification import classify

TINY = dict(embed_dim=16, depth=2, num_heads=2, mlp_dim=32, image_size=16, patch_size=4)


@pytest.fixture(autouse=True)
def numpy_backend():
    previous = get_backend()
    set_backend("numpy")
    yield
    set_backend(previous)


def batch(n, seed=0, soft=False):
    g = np.random.default_rng(seed)
    images = g.standard_normal((n, 3, 16, 16))
    labels = g.integers(0, 10, size=n)
    if soft:
        t = g.random((n, 10))
        return images, t / t.sum(axis=1, keepdims=True)
    return images, labels


@pytest.mark.parametrize("batch_size, shards", [(8, 2), (7, 2), (7, 3), (10, 4), (3, 5), (1, 2)])
def test_shards_cover_the_batch_in_order_without_empty_pieces(batch_size, shards):
    slices = P.shard_slices(batch_size, shards)
    assert len(slices) == min(batch_size, shards)
    assert [i for s in slices for i in range(s.start, s.stop)] == list(range(batch_size))
    sizes = [s.stop - s.start for s in slices]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("threads, n", [(2, 8), (3, 7), (4, 3)])
@pytest.mark.parametrize("soft, smoothing", [(False, 0.0), (False, 0.1), (True, 0.0)])
def test_split_batch_gives_the_whole_batch_loss_and_gradients(threads, n, soft, smoothing):
    images, targets = batch(n, soft=soft)
    whole = create_model("cifar-nano", seed=1, dtype="float64", **TINY)
    logits = whole.forward(images, train=True)
    loss, dlogits = cross_entropy(logits, targets, smoothing)
    whole.backward(dlogits)

    split = create_model("cifar-nano", seed=1, dtype="float64", **TINY)
    with P.DataParallel(split, threads) as dp:
        loss_dp, logits_dp = classify(dp, images, targets, smoothing)
        assert rel_error(logits_dp, logits) < 1e-13
        assert abs(loss_dp - loss) < 1e-13 * abs(loss)
        assert list(split.grads) == list(whole.grads)              # timm order kept
        for k in whole.grads:
            assert rel_error(split.grads[k], whole.grads[k]) < 1e-12, k
        assert rel_error(dp.forward(images), whole.forward(images)) < 1e-13


def test_replicas_follow_parameters_the_optimizer_replaced():
    images, labels = batch(6)
    model = create_model("cifar-nano", seed=1, dtype="float64", **TINY)
    with P.DataParallel(model, 2) as dp:
        before = dp.forward(images)
        model.params["head.bias"] = model.params["head.bias"] + 1.0   # as AdamW does
        assert np.allclose(dp.forward(images), before + 1.0)


def test_dropout_masks_are_reproducible_and_drawn_from_model_rng():
    images, labels = batch(8)
    cfg = dict(TINY, drop_rate=0.2, drop_path_rate=0.3)
    runs = []
    for _ in range(2):
        model = create_model("cifar-nano", seed=3, dtype="float64", **cfg)
        state = model.rng.bit_generator.state
        with P.DataParallel(model, 2) as dp:
            classify(dp, images, labels)
            runs.append(model.grads)
        assert model.rng.bit_generator.state != state                # seeds came from it
    for k in runs[0]:
        assert np.array_equal(runs[0][k], runs[1][k]), k


def test_without_dropout_model_rng_is_untouched():
    model = create_model("cifar-nano", seed=3, dtype="float64", **TINY)
    state = model.rng.bit_generator.state
    with P.DataParallel(model, 2) as dp:
        classify(dp, *batch(4))
    assert model.rng.bit_generator.state == state


def test_patch_dropout_off_trains_as_the_model_without_it_and_leaves_model_rng():
    images, labels = batch(8)
    plain = create_model("cifar-nano", seed=3, dtype="float64", **TINY)
    with P.DataParallel(plain, 2) as dp:
        loss, _ = classify(dp, images, labels)
    model = create_model("cifar-nano", seed=3, dtype="float64", **TINY, patch_drop_rate=0.5)
    state = model.rng.bit_generator.state
    with P.DataParallel(model, 2) as dp:
        loss_off, _ = classify(dp, images, labels, patch_dropout=False)
        assert model.rng.bit_generator.state == state              # nothing stochastic left
        assert model.config.patch_drop_rate == 0.5                 # the config is untouched
        assert loss_off == loss
        for k in plain.grads:
            assert np.array_equal(model.grads[k], plain.grads[k]), k
        classify(dp, images, labels)                        # on again: masks drawn
        assert model.rng.bit_generator.state != state


def test_a_non_finite_loss_is_returned_unread_with_its_gradients():
    images, labels = batch(4)
    images[0, 0, 0, 0] = np.nan
    model = create_model("cifar-nano", seed=1, dtype="float64", **TINY)
    with np.errstate(invalid="ignore"), P.DataParallel(model, 2) as dp:
        loss, _ = classify(dp, images, labels)
    assert not np.isfinite(loss) and not np.isfinite(model.flat_grads).all()
    assert all(r._cache is None for r in dp.replicas)        # each backward ran


def test_threads_run_in_the_callers_context():
    var = contextvars.ContextVar("var", default="unset")
    var.set("caller")
    model = create_model("cifar-nano", seed=1, dtype="float64", **TINY)
    with P.DataParallel(model, 2) as dp:
        assert dp._map(lambda a: (a, var.get()), [(1,), (2,)]) == [(1, "caller"), (2, "caller")]


def test_blas_is_limited_to_one_thread_while_open():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    blas = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    if not blas:
        pytest.skip("NumPy's BLAS is not visible to threadpoolctl")
    before = [i["num_threads"] for i in blas]
    model = create_model("cifar-nano", seed=1, dtype="float64", **TINY)
    with P.DataParallel(model, 2):
        inside = [i["num_threads"] for i in threadpoolctl.threadpool_info()
                  if i["user_api"] == "blas"]
        assert inside == [1] * len(blas)
    after = [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    assert after == before


def test_bad_thread_counts_are_refused():
    model = create_model("cifar-nano", seed=1, dtype="float64", **TINY)
    with pytest.raises(ValueError, match="threads >= 1"):
        P.DataParallel(model, 0)
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads must be an integer >= 0"):
            P.resolve_threads(bad)
    assert P.resolve_threads(0) == P.available_cores() >= 1
    assert P.resolve_threads(3) == 3


@pytest.mark.parametrize("norm_pix_loss", [False, True])
def test_split_mae_batch_gives_the_whole_batch_loss_and_gradients(norm_pix_loss):
    from minivit.layers.masking import masking_noise
    from minivit.models.mae import MAEConfig, create_mae
    from minivit.models.vit_config import get_config

    cfg = MAEConfig(encoder=get_config("cifar-nano", **TINY), decoder_embed_dim=8,
                    decoder_depth=1, decoder_num_heads=2, decoder_mlp_dim=16,
                    norm_pix_loss=norm_pix_loss)
    images, _ = batch(7)
    whole = create_mae(cfg, seed=2, dtype="float64")
    noise = masking_noise(whole.rng, 7, cfg.encoder.num_patches)
    loss, _, _ = whole.forward(images, noise=noise)
    whole.backward()

    split = create_mae(cfg, seed=2, dtype="float64")
    with P.DataParallel(split, 3) as dp:
        def shard(replica, x, nz, weight):
            shard_loss = replica.forward(x, noise=nz)[0]
            replica.backward(weight)
            return weight * shard_loss, replica.grads
        outs = dp.map_shards(shard, images, noise)
    assert len(outs) == 3
    assert abs(sum(weighted for weighted, _ in outs) - loss) < 1e-13 * loss
    grads = dp.sum_grads([g for _, g in outs])
    for k in whole.grads:
        assert rel_error(grads[k], whole.grads[k]) < 1e-12, k


BLAS = "blas"        # expected: one BLAS thread per replica, and malloc's settings
MALLOC = "malloc"    # expected: malloc's settings only


@pytest.mark.parametrize("argv, env, expected", [
    (["train"], {}, BLAS),
    (["train", "--threads", "2"], {}, BLAS),
    (["train", "--threads", "1"], {}, MALLOC),                 # BLAS keeps its threads
    (["train"], {"OPENBLAS_NUM_THREADS": "4"}, MALLOC),        # the user chose
    (["eval", "m.safetensors"], {"MALLOC_TOP_PAD_": "0"}, BLAS),   # the user's value kept
    (["--backend", "cupy", "train"], {}, None),
    (["predict", "m.safetensors", "x.png"], {}, None),         # no threads there
    (["pretrain", "--threads", "3"], {}, BLAS),
])
def test_the_command_line_restarts_with_one_blas_thread_only_when_it_splits_batches(
        argv, env, expected, monkeypatch):
    from minivit import cli
    for v in (*cli.BLAS_THREAD_VARS, *cli.MALLOC_VARS, "MINIVIT_BACKEND"):
        monkeypatch.delenv(v, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(P, "available_cores", lambda: 2)
    parser, _ = cli.build_parser()
    args, _ = parser.parse_known_args(argv)
    settings = cli._restart_settings(args)
    if expected is None:
        assert settings is None
        return
    wanted = {k: v for k, v in cli.MALLOC_VARS.items() if k not in env}
    if expected == BLAS:
        wanted.update({v: "1" for v in cli.BLAS_THREAD_VARS})
    assert settings == wanted
    # once restarted with them, it does not restart again
    for k, v in settings.items():
        monkeypatch.setenv(k, v)
    assert cli._restart_settings(args) is None


@pytest.mark.slow
def test_the_restarted_command_line_trains(tmp_path):
    import os
    import subprocess
    import sys

    from minivit.data.synthetic import write_cifar10_like
    data = write_cifar10_like(tmp_path / "data", n_train_per_batch=20, n_test=10)
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                        "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_TRIM_THRESHOLD_")}
    cmd = [sys.executable, "-m", "minivit.cli", "train", "--data-dir", str(data), "--run-dir",
           str(tmp_path / "run"), "--batch-size", "16", "--val-size", "20", "--steps", "2",
           "--threads", "2", "--no-progress", "--set", "embed_dim=16", "--set", "depth=1",
           "--set", "num_heads=2", "--set", "mlp_dim=32"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "done, 2 steps" in out.stdout and (tmp_path / "run" / "model.safetensors").is_file()

    # In the restarted interpreter a bad flag is still a one-line error, not a traceback
    # (the restart once ran minivit/cli.py as __main__, whose UserError nobody raised).
    resume = [sys.executable, "-m", "minivit", "train", "--resume", str(tmp_path / "run"),
              "--threads", "2", "--no-progress"]
    out = subprocess.run(resume + ["--lr", "0.1"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip().splitlines() == [
        "minivit train: error: --resume continues the run with its saved config; --lr cannot "
        "be changed (only --max-steps, --time-limit, --checkpoint-every, --no-progress, "
        "--threads, --data-dir)"]
    # where the data lives belongs to the session: a resume may name it (here, a copy)
    import shutil
    shutil.copytree(data, tmp_path / "data-copy")
    out = subprocess.run(resume + ["--data-dir", str(tmp_path / "data-copy"), "--steps", "3"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "--steps cannot be changed" in out.stderr, out.stderr
    out = subprocess.run(resume + ["--data-dir", str(tmp_path / "data-copy")], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "resuming at step 2" in out.stdout


@pytest.mark.parametrize("threads", [2, 3])
def test_every_thread_count_draws_the_same_masks(threads):
    """Dropout, attention dropout, drop-path and patch dropout: each image's masks are cut from
    draws made for the whole batch, so a split step is the one-thread step up to the rounding
    of the gradient sum (float64: ~1e-16)."""
    images, labels = batch(7)
    cfg = dict(TINY, drop_rate=0.2, attn_drop_rate=0.1, drop_path_rate=0.3, patch_drop_rate=0.25)
    results = []
    for t in (1, threads):
        model = create_model("cifar-nano", seed=3, dtype="float64", **cfg)
        with P.DataParallel(model, t) as dp:
            loss, logits = classify(dp, images, labels, 0.1)
            results.append((float(loss), logits.copy(), model.flat_grads.copy(),
                            model.rng.bit_generator.state))
    (l1, z1, g1, s1), (lt, zt, gt, st) = results
    assert abs(l1 - lt) < 1e-12 and rel_error(z1, zt) < 1e-12 and rel_error(g1, gt) < 1e-12
    assert s1 == st                                  # one seed a step, whatever the split


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("row", [(), (3,), (4, 5), (7, 3)], ids=str)
def test_a_shard_draws_exactly_its_rows_of_the_whole_batch(dtype, row):
    """Skipping the earlier rows' numbers (the generator's advance; half a 64-bit output per
    float32, odd counts included) gives the rows of a draw for the whole batch, bit for bit."""
    B = 9
    whole = np.random.default_rng([11, 0]).random((B,) + row, dtype=dtype)
    for start in range(B):
        for b in range(1, B - start + 1):
            rows = P.ShardGenerator(11, start, B).random((b,) + row, dtype=dtype)
            assert rows.dtype == whole.dtype and np.array_equal(rows, whole[start:start + b])


def test_a_shard_generator_draws_over_the_batch_axis_only():
    whole = P.ShardGenerator(5, 0, 6).random((6, 4))
    assert np.array_equal(P.ShardGenerator(5, 2, 6).random((3, 4)), whole[2:5])
    with pytest.raises(ValueError, match="batch axis first"):
        P.ShardGenerator(5, 4, 6).random((3, 4))           # rows 4..6 of a batch of 6
