"""``minivit gradcheck``: passes on the real model, lists every tensor, fails on a broken backward.

A tiny model (8 px images, one block, D 16) keeps each run to about a second.
"""

import numpy as np
import pytest

import minivit.layers.block
import minivit.models.vit
from minivit.cli import main
from minivit.layers.layernorm import layernorm_backward
from minivit.layers.patch_dropout import patch_dropout_backward
from minivit.models.init import param_shapes
from minivit.models.vit import create_model
from minivit.models.vit_config import get_config
from minivit.reference.gradcheck import IMAGES, StagedLoss, check_deterministic, gradcheck

TINY = ["--image-size", "8", "--embed-dim", "16", "--depth", "2", "--num-heads", "2",
        "--mlp-dim", "32", "--samples", "8", "--batch", "2"]
TINY_CONFIG = get_config("cifar-nano", image_size=8, embed_dim=16, depth=2, num_heads=2,
                         mlp_dim=32)


def table_rows(out):
    """{tensor name: status} from the printed table."""
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[-1] in ("ok", "FAIL"):
            rows[parts[0]] = parts[-1]
    return rows


def test_gradcheck_passes_and_lists_every_parameter(capsys):
    assert main(["gradcheck", *TINY]) == 0
    out = capsys.readouterr().out
    rows = table_rows(out)
    assert list(rows) == list(param_shapes(TINY_CONFIG)) + [IMAGES]
    assert set(rows.values()) == {"ok"}
    assert out.splitlines()[-1].startswith("PASS: ")
    assert "worst FD rel error" in out


@pytest.mark.torch
def test_gradcheck_compares_with_torch_when_installed(capsys):
    pytest.importorskip("torch", reason="PyTorch not installed")
    assert main(["gradcheck", *TINY, "--pool", "mean", "--label-smoothing", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "outputs vs PyTorch: logits" in out
    assert "worst torch rel error" in out


def test_gradcheck_without_torch_shows_dashes(capsys):
    assert main(["gradcheck", *TINY, "--no-torch", "--gelu", "tanh"]) == 0
    out = capsys.readouterr().out
    assert "torch not compared" in out
    head_row = next(line for line in out.splitlines() if line.startswith("head.weight"))
    assert head_row.split()[-2] == "-"


def test_gradcheck_float32(capsys):
    assert main(["gradcheck", *TINY, "--dtype", "float32"]) == 0
    assert "float32" in capsys.readouterr().out


def _broken_layernorm_backward(dy, cache):
    dx, dweight, dbias = layernorm_backward(dy, cache)
    return dx * 1.01, dweight, dbias


@pytest.mark.parametrize("torch_flag", [[], ["--no-torch"]])
def test_broken_backward_makes_it_fail(capsys, monkeypatch, torch_flag):
    # block.py did `from minivit.layers.layernorm import layernorm_backward`: patch that name,
    # where block_backward looks it up (patching minivit.layers.layernorm would change nothing).
    monkeypatch.setattr(minivit.layers.block, "layernorm_backward", _broken_layernorm_backward)
    assert main(["gradcheck", *TINY, *torch_flag]) == 1
    out = capsys.readouterr().out
    rows = table_rows(out)
    assert out.splitlines()[-1].startswith("FAIL (")
    # the 1 % error enters below the blocks' LayerNorms: everything upstream of them is wrong ...
    assert rows["images"] == rows["blocks.0.norm1.weight"] == rows["cls_token"] == "FAIL"
    # ... while the head and the final norm, downstream of every block, are still right
    assert rows["head.weight"] == rows["norm.weight"] == "ok"


def test_zero_gradients_are_judged_by_absolute_error(capsys):
    # With one entry per tensor and this seed, the entry sampled from blocks.0.attn.qkv.bias is
    # a key bias, whose gradient is exactly zero (softmax ignores a shift of a row of scores):
    # its relative error would be pure rounding noise, so it is held to the noise floor instead.
    assert main(["gradcheck", *TINY, "--samples", "1", "--seed", "2", "--no-torch"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("blocks.0.attn.qkv.bias"))
    assert "*" in row and row.split()[-1] == "ok"
    assert "noise floor" in out


@pytest.mark.parametrize("pool,patch_drop", [("token", 0.0), ("mean", 0.0), ("mean", 0.5)])
def test_staged_loss_is_the_model_loss(pool, patch_drop):
    model = create_model(TINY_CONFIG, dtype="float64", pool=pool, patch_drop_rate=patch_drop)
    gen = np.random.default_rng(0)
    images, labels = gen.standard_normal((2, 3, 8, 8)), gen.integers(0, 10, size=2)
    staged = StagedLoss(model, images, labels, label_smoothing=0.1)
    for start in range(model.config.depth + 1):
        assert staged.from_stage(start) == pytest.approx(staged.loss0, rel=1e-14, abs=0)


def test_bad_arguments_exit_2(capsys):
    assert main(["gradcheck", "--samples", "0"]) == 2
    assert "--samples must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["gradcheck", "--config", "no-such-config"])


def test_gradcheck_a_hybrid_lists_the_stem(capsys):
    assert main(["gradcheck", *TINY, "--conv-stem", "3,4", "--pool", "mean"]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert list(rows) == list(param_shapes(TINY_CONFIG.replace(conv_stem=(3, 4)))) + [IMAGES]
    assert rows["patch_embed.backbone.0.conv.weight"] == "ok" and set(rows.values()) == {"ok"}
    assert main(["gradcheck", *TINY, "--conv-stem", "3"]) == 2      # 2**1 != patch size 4
    assert "patch_size == 2**len(conv_stem)" in capsys.readouterr().err


@pytest.mark.slow
def test_the_default_is_the_recipes_model_and_says_so(capsys):
    assert main(["gradcheck", "--samples", "1", "--depth", "1", "--batch", "1", "--no-torch"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "cifar-nano: 32px" in out[0] and "pool=mean" in out[0]
    assert out[1] == ("model: the default recipe's, cifar-nano with pool=mean, "
                      "patch_drop_rate=0.5; changed: depth=1; "
                      "patch dropout 0.5 with one fixed mask (seed 0)")
    assert out[-1].startswith("PASS: ")


def test_another_config_gets_the_recipes_options_and_says_so(capsys):
    assert main(["gradcheck", *TINY, "--config", "cifar-tiny", "--no-torch"]) == 0
    line = capsys.readouterr().out.splitlines()[1]
    assert line.startswith("model: cifar-tiny with the recipe's pool=mean, patch_drop_rate=0.5")
    assert main(["gradcheck", *TINY, "--pool", "token", "--patch-drop", "0", "--no-torch"]) == 0
    line = capsys.readouterr().out.splitlines()[1]
    assert line.startswith("model: cifar-nano with pool=token, patch_drop_rate=0.0 (the recipe")
    assert line.endswith("every token (no patch dropout)")


def _broken_patch_dropout_backward(dout, cache, num_prefix=1):
    dz = patch_dropout_backward(dout, cache, num_prefix)
    return dz if cache is None else dz * 1.01          # wrong only where tokens were dropped


def test_patch_dropout_backward_is_checked(capsys, monkeypatch):
    """The default checks patch dropout's backward (a 1 % error in it fails); without patch
    dropout the same error goes unseen."""
    monkeypatch.setattr(minivit.models.vit, "patch_dropout_backward",
                        _broken_patch_dropout_backward)
    assert main(["gradcheck", *TINY, "--no-torch"]) == 1
    rows = table_rows(capsys.readouterr().out)
    assert rows["pos_embed"] == rows["images"] == "FAIL" and rows["head.weight"] == "ok"
    assert main(["gradcheck", *TINY, "--no-torch", "--patch-drop", "0"]) == 0


def test_random_layers_are_refused():
    check_deterministic(TINY_CONFIG.replace(patch_drop_rate=0.5))       # a fixed mask: fine
    with pytest.raises(ValueError, match="turn off drop_path_rate=0.1"):
        check_deterministic(TINY_CONFIG.replace(drop_path_rate=0.1))
    model = create_model(TINY_CONFIG, dtype="float64", drop_rate=0.1)
    images, labels = np.zeros((1, 3, 8, 8)), np.zeros(1, dtype=int)
    with pytest.raises(ValueError, match="drop_rate=0.1"):
        gradcheck(model, images, labels, use_torch=False)
