"""Limits checked before memory is spent (model size, attention maps, threads, float options
that become counts), MemoryError as one line, non-finite outputs refused, option ranges of
the help text checked, output paths checked before the work, unique output names."""

import numpy as np
import pytest

pytest.importorskip("safetensors", reason="model files are .safetensors (.[io])")

from support import cli, error_line, train_args

import minivit
import minivit.cli as C
import minivit.limits as L
import minivit.parallel.threads as P
from minivit.commands import info as info_command
from minivit.errors import UserError
from minivit.models.init import init_params, param_shapes
from minivit.models.vit_config import ViTConfig, get_config
from minivit.training.config import TrainConfig

CFG = ViTConfig(image_size=8, patch_size=4, num_classes=3, embed_dim=16, depth=1, num_heads=2,
                mlp_dim=32, name="t")
NORM = ["--mean", "0.5", "0.5", "0.5", "--std", "0.25", "0.25", "0.25", "--top", "1"]


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    Image = pytest.importorskip("PIL.Image", reason="images are read with Pillow (.[viz])")
    path = tmp_path_factory.mktemp("img") / "x.png"
    Image.new("RGB", (8, 8), (90, 120, 200)).save(path)
    return path


# ------------------------------------------------------------------ sizes against memory
def test_a_model_too_big_for_the_machine_is_refused_before_allocation(monkeypatch):
    monkeypatch.setattr(L, "machine_memory", lambda: 1 << 30)          # 1 GiB
    big = get_config("cifar-nano", embed_dim=4096, depth=16, num_heads=16, mlp_dim=16384)
    with pytest.raises(UserError, match=r"would have [\d,]+ parameters: [\d.,]+ GiB .* more "
                                        r"than this machine's 1.0 GiB"):
        init_params(big)
    head = get_config("cifar-nano", num_classes=1_000_000, embed_dim=1024, num_heads=16)
    with pytest.raises(UserError, match="num_classes"):
        init_params(head)
    assert sum(np.prod(s) for s in param_shapes(CFG).values()) == \
        L.check_params_fit(param_shapes(CFG), 4)                        # small: passes


@pytest.mark.parametrize("sets, message", [
    (["embed_dim=16384", "depth=256", "mlp_dim=65536", "num_heads=16"], "parameters"),
    (["num_classes=1000000", "embed_dim=16384", "num_heads=16"], "parameters"),
    (["image_size=4096", "patch_size=4"], "attention maps"),
])
def test_oversized_models_from_the_command_line(data_dir, tmp_path, sets, message):
    flags = [f for s in sets for f in ("--set", s)]
    r = cli(*train_args(data_dir, tmp_path / "run", "--max-steps", "1", *flags))
    assert message in error_line(r) and "memory" in r.stderr
    assert not (tmp_path / "run").exists()


def test_attention_maps_are_bounded_by_memory(monkeypatch):
    monkeypatch.setattr(L, "machine_memory", lambda: 1 << 30)
    cfg = get_config("cifar-nano")
    L.check_attention_fits(cfg, 128, 4, cfg.depth, "a batch")            # 65 tokens: fine
    big = get_config("cifar-nano", image_size=512, patch_size=4)
    with pytest.raises(UserError, match="16,385 tokens"):
        L.check_attention_fits(big, 128, 4, big.depth, "a batch")


def test_threads_are_bounded_by_the_cores():
    most = P.THREADS_PER_CORE * P.available_cores()
    assert P.resolve_threads(most) == most
    with pytest.raises(ValueError, match=rf"at most {most} \(4 per available core\), got"):
        P.resolve_threads(most + 1)


@pytest.mark.parametrize("field, value, message", [
    ("warmup_epochs", 1e308, "warmup-epochs must be at most"),
    ("unmasked_epochs", 1e308, "unmasked-epochs must be at most"),
    ("epochs", 10**20, "epochs must be at most"),
    ("steps", 10**20, "steps must be at most"),
    ("time_limit", 1e308, "time-limit must be at most"),
    ("time_budget", float("inf"), "time-budget must be a positive number"),
])
def test_float_options_that_become_counts_are_bounded(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{field: value, "model_overrides": {}})


@pytest.mark.slow                        # several processes
def test_threads_and_overflow_from_the_command_line(data_dir, tmp_path):
    assert "threads must be at most" in error_line(
        cli(*train_args(data_dir, tmp_path / "a", "--threads", "10000")))
    assert "warmup-epochs must be at most" in error_line(
        cli(*train_args(data_dir, tmp_path / "b", "--warmup-epochs", "1e308")))


def test_memory_error_anywhere_is_one_line(monkeypatch, capsys):
    def boom(args):
        raise MemoryError
    monkeypatch.setattr(info_command, "run", boom)
    monkeypatch.delenv("MINIVIT_DEBUG", raising=False)
    assert C.main(["info"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["minivit info: error: out of memory; use a smaller model, batch or --threads,"
                   " or a machine with more memory"]


# ------------------------------------------------------------------ outputs and ranges
def test_non_finite_probabilities_are_an_error(tmp_path, image):
    model = minivit.create_model(CFG, seed=0)
    model.params["head.bias"][...] = np.nan
    path = tmp_path / "nan.safetensors"
    minivit.save(model, path)
    line = error_line(cli("predict", path, image, *NORM))
    assert "probabilities are not finite" in line


@pytest.mark.parametrize("flags, message", [
    (["--mean", "5", "0.5", "0.5", "--std", "0.2", "0.2", "0.2"], "--mean values must be"),
    (["--mean", "0.5", "0.5", "0.5", "--std", "1e-30", "1e-30", "1e-30"], "--std values must"),
    (["--mean", "0.5", "0.5", "0.5", "--std", "2", "2", "2"], "--std values must"),
    (["--mean", "nan", "0.5", "0.5", "--std", "0.2", "0.2", "0.2"], "--mean values must"),
])
def test_normalisation_ranges_of_the_help_text(tmp_path, image, flags, message):
    path = tmp_path / "m.safetensors"
    minivit.save(minivit.create_model(CFG, seed=0), path)
    assert message in error_line(cli("predict", path, image, *flags, "--top", "1"))


@pytest.mark.slow                        # several processes
def test_bad_output_paths_are_refused_before_the_work(data_dir, tmp_path):
    path = tmp_path / "m.safetensors"
    minivit.save(minivit.create_model(get_config("cifar-nano", embed_dim=16, depth=1,
                                                 num_heads=2, mlp_dim=32), seed=0), path)
    (tmp_path / "afile").write_text("x")
    r = cli("eval", path, "--data-dir", data_dir, "--val-size", "20", "--threads", "1",
            "--out", tmp_path / "afile" / "report.json")
    assert "afile: it is a file" in error_line(r) and "evaluating" not in r.stdout
    r = cli("eval", path, "--data-dir", data_dir, "--val-size", "20", "--threads", "1",
            "--json", tmp_path)
    assert "it is a folder" in error_line(r) and "evaluating" not in r.stdout


@pytest.mark.slow                        # several processes
def test_reconstruct_names_two_images_with_one_stem_apart(tmp_path):
    Image = pytest.importorskip("PIL.Image", reason="images are read with Pillow (.[viz])")
    pytest.importorskip("matplotlib", reason="reconstruct draws with matplotlib (.[viz])")
    from minivit.io.pretrained import save_mae
    from minivit.models.mae import MAEConfig, create_mae
    enc = get_config("cifar-nano", image_size=8, patch_size=2, embed_dim=8, depth=1,
                     num_heads=2, mlp_dim=12)
    mae = create_mae(MAEConfig(encoder=enc, decoder_embed_dim=8, decoder_depth=1,
                               decoder_num_heads=2, decoder_mlp_dim=12), seed=0)
    save_mae(mae, tmp_path / "mae.safetensors")
    for folder, colour in (("a", (255, 0, 0)), ("b", (0, 0, 255))):
        (tmp_path / folder).mkdir()
        Image.new("RGB", (8, 8), colour).save(tmp_path / folder / "x.png")
    out = tmp_path / "out"
    r = cli("reconstruct", tmp_path / "mae.safetensors", tmp_path / "a" / "x.png",
            tmp_path / "b" / "x.png", "--out", out, *NORM[:-2])
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["x-2-mae.png", "x-mae.png"]
