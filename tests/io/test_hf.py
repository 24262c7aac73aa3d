"""Hugging Face transformers' ViT <-> minivit: logits through transformers itself, bit-identical
round trips, and the one-line refusals.  Small configs; nothing is downloaded (the HF models
are built from a ViTConfig here).  Tests that run transformers skip where it is missing."""

import json
import warnings

import numpy as np
import pytest

import minivit
from minivit.io import hf

TINY = {"image_size": 16, "patch_size": 4, "num_classes": 5, "embed_dim": 32, "depth": 2,
        "num_heads": 4, "mlp_dim": 64}
LABELS = ["cat", "dog", "ship", "frog", "truck"]


def tiny_model(seed=0, **overrides):
    return minivit.create_model(minivit.ViTConfig(**{**TINY, **overrides}), seed=seed,
                                dtype="float32")


def images(n=3, size=16, seed=1):
    return np.random.default_rng(seed).standard_normal((n, 3, size, size)).astype("float32")


def trained_from_scratch(steps=3):
    """A tiny class-token model after a few AdamW steps on random images and labels."""
    model = tiny_model(seed=2)
    opt = minivit.AdamW(model.params, lr=1e-2)
    x, y = images(8, seed=3), np.arange(8) % TINY["num_classes"]
    for _ in range(steps):
        _, dlogits = minivit.cross_entropy(model.forward(x, train=True), y)
        model.backward(dlogits)
        opt.step(model.params, model.grads)
    return model


def hf_logits(folder, x):
    transformers = pytest.importorskip("transformers", reason="transformers not installed")
    torch = pytest.importorskip("torch")
    tm = transformers.ViTForImageClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        return tm(pixel_values=torch.from_numpy(x)).logits.numpy(), tm


def rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


# ------------------------------------------------------------------ minivit -> HF
@pytest.mark.parametrize("overrides", [{}, {"gelu": "tanh"}, {"qkv_bias": False}],
                         ids=["erf", "tanh", "no-qkv-bias"])
def test_minivit_to_hf_logits(tmp_path, overrides):
    pytest.importorskip("transformers", reason="transformers not installed")
    model = tiny_model(**overrides)
    minivit.save_hf(model, tmp_path / "hf", label_names=LABELS)
    x = images()
    logits, tm = hf_logits(tmp_path / "hf", x)
    assert rel(logits, minivit.to_numpy(model.forward(x))) < 1e-5
    assert tm.config.id2label[2] == "ship" and tm.config.layer_norm_eps == 1e-6


def test_config_json(tmp_path):
    minivit.save_hf(tiny_model(gelu="tanh"), tmp_path / "hf")
    c = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert c["model_type"] == "vit" and c["architectures"] == ["ViTForImageClassification"]
    assert (c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"],
            c["intermediate_size"], c["image_size"], c["patch_size"]) == (32, 2, 4, 64, 16, 4)
    assert c["hidden_act"] == "gelu_pytorch_tanh" and c["layer_norm_eps"] == 1e-6
    assert c["id2label"]["4"] == "LABEL_4"


# ------------------------------------------------------------------ HF -> minivit
def hf_model(seed=0, **kw):
    transformers = pytest.importorskip("transformers", reason="transformers not installed")
    torch = pytest.importorskip("torch")
    torch.manual_seed(seed)
    cfg = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
           "intermediate_size": 64, "image_size": 16, "patch_size": 4, "num_labels": 5,
           "layer_norm_eps": 1e-6}
    tm = transformers.ViTForImageClassification(transformers.ViTConfig(**{**cfg, **kw})).eval()
    with torch.no_grad():                  # weights of a trained size, not 0.02-std noise
        for p in tm.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return tm


@pytest.mark.parametrize("act", ["gelu", "gelu_pytorch_tanh"])
def test_hf_save_pretrained_to_minivit(tmp_path, act):
    torch = pytest.importorskip("torch")
    tm = hf_model(hidden_act=act)
    tm.save_pretrained(tmp_path / "hf")
    x = images()
    with torch.no_grad():
        want = tm(pixel_values=torch.from_numpy(x)).logits.numpy()
    for path in (tmp_path / "hf", tmp_path / "hf" / "model.safetensors"):
        model = minivit.load(path)
        assert model.config.gelu == ("erf" if act == "gelu" else "tanh")
        assert rel(minivit.to_numpy(model.forward(x)), want) < 1e-5


def test_hf_default_eps_warns(tmp_path):
    torch = pytest.importorskip("torch")
    tm = hf_model(layer_norm_eps=1e-12)
    tm.save_pretrained(tmp_path / "hf")
    with pytest.warns(UserWarning, match="layer_norm_eps is 1e-12"):
        model = minivit.load(tmp_path / "hf")
    x = images()
    with torch.no_grad():
        want = tm(pixel_values=torch.from_numpy(x)).logits.numpy()
    assert rel(minivit.to_numpy(model.forward(x)), want) < 1e-4


def test_trained_model_round_trip_is_bit_identical(tmp_path):
    model = trained_from_scratch()
    minivit.save_hf(model, tmp_path / "hf")
    back = minivit.load(tmp_path / "hf")
    assert back.config == model.config.replace(name="hf")
    for k, v in model.params.items():
        assert np.array_equal(back.params[k], v), k
    x = images()
    assert np.array_equal(back.forward(x), model.forward(x))


def test_trained_model_through_transformers_is_bit_identical(tmp_path):
    """minivit -> save_hf -> transformers from_pretrained / save_pretrained -> minivit."""
    model = trained_from_scratch()
    minivit.save_hf(model, tmp_path / "hf", label_names=LABELS)
    _, tm = hf_logits(tmp_path / "hf", images())
    tm.save_pretrained(tmp_path / "hf2")
    back = minivit.load(tmp_path / "hf2")
    for k, v in model.params.items():
        assert back.params[k].dtype == v.dtype and np.array_equal(back.params[k], v), k
    x = images()
    assert np.array_equal(back.forward(x), model.forward(x))


def test_vit_model_checkpoint_needs_new_head(tmp_path):
    minivit.save_hf(tiny_model(), tmp_path / "hf")
    arrays, _ = minivit.io.files.read_arrays(tmp_path / "hf" / "model.safetensors")
    body = {k.removeprefix("vit."): v for k, v in arrays.items() if not k.startswith("class")}
    body["pooler.dense.weight"] = np.zeros((32, 32), "float32")
    minivit.io.files.write_arrays(tmp_path / "hf" / "model.safetensors", body, {"format": "pt"})
    with pytest.raises(ValueError, match="no classifier .*new_head=True"):
        minivit.load(tmp_path / "hf")
    model = minivit.load(tmp_path / "hf", new_head=True, num_classes=7)
    assert model.config.num_classes == 7 and not model.params["head.weight"].any()


# ------------------------------------------------------------------ refusals, bad input
@pytest.mark.parametrize("overrides, why", [
    ({"pool": "mean"}, "classifies the class token only"),
    ({"distilled": True}, "distilled"),
    ({"conv_stem": (8, 8), "patch_size": 4}, "convolutional stem"),
])
def test_save_hf_refuses(tmp_path, overrides, why):
    with pytest.raises(ValueError, match=why) as e:
        minivit.save_hf(tiny_model(**overrides), tmp_path / "hf")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "hf").exists()


def test_bad_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json not found"):
        minivit.load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model": {}, "train": {}}))
    with pytest.raises(ValueError, match="not a Hugging Face ViT config"):
        minivit.load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(FileNotFoundError, match="model.safetensors not found"):
        minivit.load(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="pytorch_model.bin is read by transformers"):
        minivit.load(tmp_path)


def test_config_that_does_not_fit_the_weights(tmp_path):
    minivit.save_hf(tiny_model(), tmp_path / "hf")
    path = tmp_path / "hf" / "config.json"
    c = json.loads(path.read_text())
    path.write_text(json.dumps({**c, "num_hidden_layers": 3}))
    with pytest.raises(ValueError, match=r"missing \['vit.encoder.layer.2"):
        minivit.load(tmp_path / "hf")
    path.write_text(json.dumps({**c, "hidden_act": "relu"}))
    with pytest.raises(ValueError, match="hidden_act 'relu'"):
        minivit.load(tmp_path / "hf")
    path.write_text(json.dumps({**c, "hidden_size": 48}))
    with pytest.raises(ValueError, match="shape mismatches"):
        minivit.load(tmp_path / "hf")


def test_save_hf_target_is_a_file(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(ValueError, match="not a folder"):
        minivit.save_hf(tiny_model(), tmp_path / "f")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        minivit.save_hf(tiny_model(), tmp_path / "a" / "b")


def test_no_warning_for_own_eps(tmp_path):
    minivit.save_hf(tiny_model(), tmp_path / "hf")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        minivit.load(tmp_path / "hf")
    assert hf.is_hf(["vit.embeddings.cls_token"]) and not hf.is_hf(["cls_token"])


def test_state_dict_saved_from_memory(tmp_path):
    """transformers 5 names modules differently in memory (vit.layers.0.attention.q_proj);
    a state dict saved as it is loads as well."""
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    tm = hf_model(seed=3)
    (tmp_path / "hf").mkdir()
    safetensors_torch.save_file(tm.state_dict(), tmp_path / "hf" / "model.safetensors")
    tm.config.to_json_file(tmp_path / "hf" / "config.json")
    x = images()
    with torch.no_grad():
        want = tm(pixel_values=torch.from_numpy(x)).logits.numpy()
    assert rel(minivit.to_numpy(minivit.load(tmp_path / "hf").forward(x)), want) < 1e-5
