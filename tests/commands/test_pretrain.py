"""``minivit pretrain`` (MAE and MPP in the training loop: run files, bit-identical resume),
``train --init-from``, ``linprobe``, ``reconstruct``, and their one-line errors.

Tiny synthetic CIFAR-10 files (100 training images) and a one-block encoder, as in
tests/training/test_loop.py, so each test takes a second or two."""

import json

import numpy as np
import pytest

safe_open = pytest.importorskip("safetensors",
                                reason="runs save .safetensors files (.[io])").safe_open
load_file = pytest.importorskip("safetensors.numpy").load_file

import minivit.io.rundir as R
import minivit.training as T
from minivit.cli import main
from minivit.data.cifar10 import load_cifar10
from minivit.data.synthetic import write_cifar10_like
from minivit.io.pretrained import load_mae, load_pretrained
from minivit.models.mae import MaskedAutoencoder
from minivit.models.masked_patch_prediction import MaskedPatchPrediction
from minivit.training.objectives import make_objective

TINY = {"embed_dim": 16, "depth": 1, "num_heads": 2, "mlp_dim": 32}
DECODER = ["--decoder-dim", "16", "--decoder-depth", "1", "--decoder-heads", "2",
           "--decoder-mlp-dim", "32"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_cifar10_like(tmp_path_factory.mktemp("cifar"), n_train_per_batch=20, n_test=30)


def flags(data_dir, run_dir, *extra, objective="mae"):
    sets = [f for k, v in TINY.items() for f in ("--set", f"{k}={v}")]
    obj = ["--objective", objective] + (DECODER if objective == "mae" else [])
    return ["pretrain", "--data-dir", str(data_dir), "--run-dir", str(run_dir), "--batch-size",
            "16", "--val-size", "20", "--epochs", "2", "--no-progress", *sets, *obj, *extra]


def checkpoint(run_dir):
    path = str(run_dir / R.CHECKPOINT_FILE)
    with safe_open(path, framework="np") as f:
        state = json.loads(f.metadata()["state"])
    return load_file(path), state


def one_line_error(capsys, prog="pretrain"):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"minivit {prog}: error:"), err
    return err[0]


@pytest.fixture(scope="module")
def mae_run(data_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "mae"
    assert main(flags(data_dir, run, "--norm-pix-loss", "--eval-test")) == 0
    return run


@pytest.mark.parametrize("objective", ["mae", "mpp"])
def test_pretrain_writes_the_run_files_and_resumes_bit_identically(data_dir, tmp_path,
                                                                  objective, capsys):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(flags(data_dir, straight, objective=objective)) == 0
    records = R.read_metrics(straight)
    assert [r["step"] for r in records] == [5, 10]
    assert all(np.isfinite(r["train_loss"]) and np.isfinite(r["val_loss"]) for r in records)
    assert all((r["val_acc"] is None) == (objective == "mae") for r in records)
    model, run_dir, info = load_pretrained(straight)
    kind = MaskedAutoencoder if objective == "mae" else MaskedPatchPrediction
    assert isinstance(model, kind) and info["train"]["objective"] == objective
    assert main(flags(data_dir, resumed, "--max-steps", "3", objective=objective)) == 0
    assert f"minivit pretrain --resume {resumed}" in capsys.readouterr().out
    assert main(["pretrain", "--resume", str(resumed), "--no-progress"]) == 0
    (ta, sa), (tb, sb) = checkpoint(straight), checkpoint(resumed)
    assert sorted(ta) == sorted(tb) and sa["rng"] == sb["rng"] and sa["step"] == sb["step"]
    for k in ta:
        assert np.array_equal(ta[k], tb[k]), k
    strip = [[{k: v for k, v in r.items() if k not in ("images_per_sec", "elapsed")}
              for r in R.read_metrics(d)] for d in (straight, resumed)]
    assert strip[0] == strip[1]


def test_init_from_reuses_the_encoder_with_a_zero_head(data_dir, mae_run, tmp_path, capsys):
    mae = load_mae(mae_run / R.MODEL_FILE)
    cfg = T.TrainConfig(data_dir=str(data_dir), val_size=20, batch_size=16, progress=False,
                        init_from=str(mae_run))
    from minivit.io.pretrained import with_pretrained_architecture
    cfg = with_pretrained_architecture(cfg)                 # the checkpoint's architecture
    assert {k: cfg.model_overrides[k] for k in TINY} == TINY
    data = load_cifar10(cfg.data_dir, cfg.val_size)
    model = make_objective(cfg, data).model
    for k, v in mae.encoder_params().items():
        assert np.array_equal(model.params[k], v), k
    assert not model.params["head.weight"].any() and not model.params["head.bias"].any()
    run = tmp_path / "ft"
    assert main(["train", "--init-from", str(mae_run), "--data-dir", str(data_dir), "--run-dir",
                 str(run), "--batch-size", "16", "--val-size", "20", "--epochs", "1",
                 "--no-progress"]) == 0
    assert R.read_metrics(run)[0]["val_acc"] is not None
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0    # no re-reading
    capsys.readouterr()
    assert main(["train", "--init-from", str(mae_run), "--set", "depth=3", "--data-dir",
                 str(data_dir), "--run-dir", str(tmp_path / "x"), "--no-progress"]) == 2
    assert "contradict the pre-trained encoder" in one_line_error(capsys, "train")


@pytest.mark.parametrize("features", ["token", "mean"])
def test_linprobe(mae_run, features, capsys, tmp_path):
    out = tmp_path / "probe.json"
    assert main(["linprobe", str(mae_run), "--features", features, "--epochs", "3",
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["features"] == features and result["model"] == "MaskedAutoencoder"
    assert all(0 <= result[f"{s}_acc"] <= 1 for s in ("train", "val", "test"))
    assert json.loads((mae_run / "linprobe.json").read_text()) == result
    assert "test acc" in capsys.readouterr().out


def test_reconstruct_writes_one_figure_per_image(mae_run, tmp_path, capsys):
    from PIL import Image
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"img{i}.png")
        pixels = np.random.default_rng(i).integers(0, 256, size=(40, 40, 3)).astype(np.uint8)
        Image.fromarray(pixels).save(paths[-1])
    out = tmp_path / "figs"
    assert main(["reconstruct", str(mae_run), *map(str, paths), "--out", str(out),
                 "--mask-ratio", "0.5"]) == 0
    for p in paths:
        fig = out / f"{p.stem}-mae.png"
        assert fig.is_file() and fig.stat().st_size > 1000
        assert Image.open(fig).size[0] > 300
    assert "mean loss on hidden patches" in capsys.readouterr().out
    old = tmp_path / "old-flag"                             # --out-dir: the old name, hidden
    assert main(["reconstruct", str(mae_run), str(paths[0]), "--out-dir", str(old)]) == 0
    assert (old / "img0-mae.png").is_file()


def test_linprobe_out_writes_outside_the_run(mae_run, tmp_path, capsys):
    before = (mae_run / "linprobe.json").stat().st_mtime_ns \
        if (mae_run / "linprobe.json").exists() else None
    assert main(["linprobe", str(mae_run), "--epochs", "1", "--no-progress", "--out",
                 str(tmp_path / "probe")]) == 0
    assert json.loads((tmp_path / "probe" / "linprobe.json").read_text())["epochs"] == 1
    after = (mae_run / "linprobe.json").stat().st_mtime_ns \
        if (mae_run / "linprobe.json").exists() else None
    assert before == after
    out = capsys.readouterr().out
    assert "extracting the features of" in out and "training the linear head: 1 epoch of" in out


def test_unnormalise_with_the_visible_patches_statistics():
    from minivit.commands.reconstruct import unnormalise_with_visible
    gen = np.random.default_rng(0)
    base = gen.standard_normal((1, 1, 12))
    base = (base - base.mean()) / np.sqrt(base.var(ddof=1) + 1e-6)   # a normalised patch
    patches = 2.0 + 3.0 * np.repeat(base, 5, axis=1)     # every patch: mean 2, std ~3
    mask = np.array([[1.0, 0.0, 1.0, 0.0, 0.0]])
    back = unnormalise_with_visible(np.repeat(base, 5, axis=1), patches, mask)
    assert np.allclose(back, patches, atol=1e-5)


@pytest.mark.parametrize("extra, message", [
    (["--mask-ratio", "1.5"], "mask_ratio must be in (0, 1)"),
    (["--mask-ratio", "0.001"], "hide at least one"),
    (["--decoder-dim", "10"], "divisible by"),
    (["--mixup", "0.8"], "unrecognized arguments: --mixup"),
    (["--init-from", "x"], "unrecognized arguments: --init-from"),
    (["--corrupt-ratio", "0.5"], "--corrupt-ratio do(es) not apply to --objective mae"),
    (["--set", "drop_path_rate=0.1"], "no dropout, stochastic depth"),
    (["--set", "patch_drop_rate=0.5"], "patch_drop_rate of the encoder"),
])
def test_bad_pretrain_flags_give_one_line_and_exit_2(data_dir, tmp_path, extra, message,
                                                    capsys):
    assert main(flags(data_dir, tmp_path / "run", *extra)) == 2
    assert message in one_line_error(capsys)


def test_bad_inputs_of_the_other_commands(mae_run, data_dir, tmp_path, capsys):
    assert main(["pretrain", "--resume", str(mae_run), "--mask-ratio", "0.5"]) == 2
    assert "cannot be changed" in one_line_error(capsys)
    assert main(["linprobe", str(tmp_path / "nothing")]) == 2
    assert "not found" in one_line_error(capsys, "linprobe")
    assert main(["linprobe", str(mae_run), "--epochs", "0"]) == 2
    assert "--epochs must be a positive integer" in one_line_error(capsys, "linprobe")
    assert main(["reconstruct", str(mae_run), str(tmp_path / "missing.png")]) == 2
    assert "missing.png not found" in one_line_error(capsys, "reconstruct")
    assert main(["reconstruct", str(mae_run), "x.png", "--mask-ratio", "2"]) == 2
    assert "mask_ratio must be in (0, 1)" in one_line_error(capsys, "reconstruct")
    vit_run = tmp_path / "vit"
    sets = [f for k, v in TINY.items() for f in ("--set", f"{k}={v}")]
    assert main(["train", "--data-dir", str(data_dir), "--run-dir", str(vit_run), "--steps",
                 "1", "--batch-size", "16", "--val-size", "20", "--no-progress", *sets]) == 0
    capsys.readouterr()
    assert main(["reconstruct", str(vit_run), "x.png"]) == 2
    assert "not a masked autoencoder" in one_line_error(capsys, "reconstruct")


def test_plot_of_a_pretraining_run_has_no_accuracy_panel(mae_run, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from PIL import Image
    assert main(["plot", str(mae_run), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "pre-training run (no classes)" in out and not (tmp_path / "confusion.png").exists()
    with Image.open(tmp_path / "curves.png") as img:     # loss and lr: 9 inches at 120 dpi
        assert img.size[0] == 9 * 120


def test_eval_of_a_pretraining_run_says_to_fine_tune_first(tmp_path, capsys):
    from minivit.cli import main
    from minivit.data.synthetic import write_cifar10_like
    data = write_cifar10_like(tmp_path / "data", n_train_per_batch=20, n_test=20)
    run = tmp_path / "mae"
    assert main(["pretrain", "--objective", "mae", "--data-dir", str(data), "--run-dir", str(run),
                 "--steps", "1", "--batch-size", "8", "--val-size", "10", "--set", "embed_dim=16",
                 "--set", "depth=1", "--set", "num_heads=2", "--set", "mlp_dim=16",
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--data-dir", str(data), "--val-size", "10"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'mae' pre-training run" in err and "--init-from" in err
