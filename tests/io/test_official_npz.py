"""The official google-research/vision_transformer .npz layout (Flax names) <-> minivit.

The official file is written here by hand from a minivit model, with einsum index names
spelling out each layout, independently of minivit.io.official_npz."""

import numpy as np
import pytest

import minivit
from minivit.backend import to_device, to_numpy
from minivit.models.vit_config import ViTConfig

CFG = ViTConfig(image_size=16, patch_size=4, num_classes=5, embed_dim=12, depth=2, num_heads=3,
                mlp_dim=20, name="test")


def _model(dtype="float64", **overrides):
    return minivit.create_model(CFG.replace(**overrides), seed=0, dtype=dtype)


def _images(cfg=CFG, dtype="float64"):
    x = np.random.default_rng(1).standard_normal((2, cfg.in_chans, cfg.image_size, cfg.image_size))
    return to_device(x, dtype)


def official_layout(model, prefix=""):
    """{Flax name: array} of the official checkpoint holding ``model``'s weights."""
    p = {k: to_numpy(v) for k, v in model.params.items()}
    D, h, d = model.config.embed_dim, model.config.num_heads, model.config.head_dim
    w = {"embedding/kernel": np.einsum("dcij->ijcd", p["patch_embed.proj.weight"]),  # (P, P, C, D)
         "embedding/bias": p["patch_embed.proj.bias"],
         "cls": p["cls_token"],
         "Transformer/posembed_input/pos_embedding": p["pos_embed"],
         "Transformer/encoder_norm/scale": p["norm.weight"],
         "Transformer/encoder_norm/bias": p["norm.bias"],
         "head/kernel": np.einsum("ki->ik", p["head.weight"]),                   # (D, K)
         "head/bias": p["head.bias"]}
    for i in range(model.config.depth):
        b, o = f"Transformer/encoderblock_{i}/", f"blocks.{i}."
        a = b + "MultiHeadDotProductAttention_1/"
        qkv = p[o + "attn.qkv.weight"].reshape(3, h, d, D)           # rows: q|k|v, head, d
        qkv_b = p[o + "attn.qkv.bias"].reshape(3, h, d)
        for j, n in enumerate(("query", "key", "value")):
            w[a + n + "/kernel"] = np.einsum("hec->che", qkv[j])       # (D, h, d)
            w[a + n + "/bias"] = qkv_b[j]                              # (h, d)
        w[a + "out/kernel"] = np.einsum("che->hec", p[o + "attn.proj.weight"].reshape(D, h, d))
        w[a + "out/bias"] = p[o + "attn.proj.bias"]
        for flax, timm in (("LayerNorm_0", "norm1"), ("LayerNorm_2", "norm2")):
            w[b + flax + "/scale"] = p[o + timm + ".weight"]
            w[b + flax + "/bias"] = p[o + timm + ".bias"]
        for r in range(2):
            w[b + f"MlpBlock_3/Dense_{r}/kernel"] = p[o + f"mlp.fc{r + 1}.weight"].T
            w[b + f"MlpBlock_3/Dense_{r}/bias"] = p[o + f"mlp.fc{r + 1}.bias"]
    return {prefix + k: v for k, v in w.items()}


def _write(path, arrays):
    np.savez(path, **arrays)
    return path


def _assert_same_params(a, b):
    assert list(a) == list(b)
    for k in a:
        assert np.array_equal(to_numpy(a[k]), to_numpy(b[k])), k


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_official_npz_loads_with_the_same_logits(tmp_path, dtype, xp):
    model = _model(dtype)
    path = _write(tmp_path / "ViT-test.npz", official_layout(model))
    back = minivit.load_official_npz(path)
    assert back.config == CFG.replace(name="official") and back.dtype == dtype
    _assert_same_params(back.params, model.params)
    x = _images(dtype=dtype)
    assert np.array_equal(to_numpy(back(x)), to_numpy(model(x)))


@pytest.mark.parametrize("prefix", ["", "opt/target/"])
def test_load_recognises_the_official_layout(tmp_path, prefix):
    model = _model()
    path = _write(tmp_path / "official.npz", official_layout(model, prefix))
    _assert_same_params(minivit.load(path).params, model.params)


def test_export_writes_the_official_layout_and_reads_back(tmp_path):
    model = _model()
    minivit.export_official_npz(model, tmp_path / "out.npz")
    expect = official_layout(model)
    with np.load(tmp_path / "out.npz", allow_pickle=False) as z:
        assert sorted(z.files) == sorted(expect)
        for k in expect:
            assert z[k].shape == expect[k].shape and np.array_equal(z[k], expect[k]), k
    _assert_same_params(minivit.load_official_npz(tmp_path / "out.npz").params, model.params)
    with pytest.raises(ValueError, match=r"\.npz"):
        minivit.export_official_npz(model, tmp_path / "out.safetensors")


def test_pool_and_gelu_come_from_a_given_config(tmp_path):
    model = _model(pool="mean", gelu="tanh")
    minivit.export_official_npz(model, tmp_path / "m.npz")
    x = _images()
    back = minivit.load_official_npz(tmp_path / "m.npz", config=model.config)
    assert np.array_equal(to_numpy(back(x)), to_numpy(model(x)))
    default = minivit.load(tmp_path / "m.npz")                      # not in the file: defaults
    assert (default.config.pool, default.config.gelu) == ("token", "erf")
    with pytest.raises(ValueError, match="have 3 heads"):
        minivit.load_official_npz(tmp_path / "m.npz", config=CFG.replace(num_heads=4))


def test_model_without_qkv_bias_exports_zero_biases(tmp_path):
    model = _model(qkv_bias=False)
    minivit.export_official_npz(model, tmp_path / "m.npz")
    back = minivit.load_official_npz(tmp_path / "m.npz")
    assert back.config.qkv_bias and not to_numpy(back.params["blocks.0.attn.qkv.bias"]).any()
    x = _images()
    assert np.array_equal(to_numpy(back(x)), to_numpy(model(x)))


def test_pre_logits_needs_new_head(tmp_path):
    model = _model()
    w = official_layout(model)
    w["pre_logits/kernel"], w["pre_logits/bias"] = np.ones((12, 12)), np.ones(12)
    path = _write(tmp_path / "in21k.npz", w)
    with pytest.raises(ValueError, match="in21k.npz.*pre_logits.*new_head=True"):
        minivit.load_official_npz(path)
    ft = minivit.load(path, num_classes=7, new_head=True)
    assert ft.config.num_classes == 7 and not to_numpy(ft.params["head.weight"]).any()
    for k in model.params:
        if not k.startswith("head."):
            assert np.array_equal(to_numpy(ft.params[k]), to_numpy(model.params[k])), k
    del w["head/kernel"], w["head/bias"]                      # a checkpoint without any head
    with pytest.raises(ValueError, match="pass num_classes"):
        minivit.load_official_npz(_write(tmp_path / "nohead.npz", w), new_head=True)


def test_unknown_and_missing_names_are_all_listed(tmp_path):
    w = official_layout(_model())
    del w["Transformer/encoderblock_1/LayerNorm_2/bias"], w["cls"]
    w["Transformer/encoderblock_0/MlpBlock_3/Dense_2/kernel"] = np.zeros((3, 3))
    w["opt/state/step"] = np.zeros(1)
    with pytest.raises(ValueError) as e:
        minivit.load_official_npz(_write(tmp_path / "odd.npz", w))
    msg = str(e.value)
    for k in ("odd.npz", "Transformer/encoderblock_1/LayerNorm_2/bias", "'cls'",
              "Transformer/encoderblock_0/MlpBlock_3/Dense_2/kernel", "opt/state/step"):
        assert k in msg, k


def test_shape_problems_are_reported(tmp_path):
    w = official_layout(_model())
    w["Transformer/encoderblock_0/MlpBlock_3/Dense_1/bias"] = np.zeros(13)
    with pytest.raises(ValueError,
                       match=r"blocks\.0\.mlp\.fc2\.bias: got \(13,\), expected \(12,\)"):
        minivit.load_official_npz(_write(tmp_path / "bad.npz", w))


def test_higher_resolution_fine_tuning(tmp_path):
    path = _write(tmp_path / "m.npz", official_layout(_model()))
    big = minivit.load_official_npz(path, image_size=32, num_classes=3, new_head=True)
    assert big.config.image_size == 32 and big.params["pos_embed"].shape == (1, 65, 12)
    assert big(_images(big.config)).shape == (2, 3)


@pytest.mark.torch
def test_timm_procedure_on_the_same_file_gives_the_same_logits(tmp_path):
    """Load the exported file into the timm-named torch ViT the way timm's ``_load_weights``
    does (its ``_n2p``: 4-D transpose (3, 2, 0, 1), 3-D (2, 0, 1), 2-D .T) and compare."""
    torch = pytest.importorskip("torch", reason="the timm-named PyTorch ViT needs torch")
    from torch_vit import TorchViT

    def n2p(a, t=True):
        perm = {4: (3, 2, 0, 1), 3: (2, 0, 1), 2: (1, 0)}.get(a.ndim) if t else None
        return torch.from_numpy(np.ascontiguousarray(a.transpose(perm) if perm else a))

    model = _model(depth=3)
    minivit.export_official_npz(model, tmp_path / "m.npz")
    w = dict(np.load(tmp_path / "m.npz", allow_pickle=False))
    sd = {"patch_embed.proj.weight": n2p(w["embedding/kernel"]),
          "patch_embed.proj.bias": n2p(w["embedding/bias"]),
          "cls_token": n2p(w["cls"], t=False),
          "pos_embed": n2p(w["Transformer/posembed_input/pos_embedding"], t=False),
          "norm.weight": n2p(w["Transformer/encoder_norm/scale"]),
          "norm.bias": n2p(w["Transformer/encoder_norm/bias"]),
          "head.weight": n2p(w["head/kernel"]), "head.bias": n2p(w["head/bias"])}
    for i in range(3):
        b, o = f"Transformer/encoderblock_{i}/", f"blocks.{i}."
        m = b + "MultiHeadDotProductAttention_1/"
        sd[o + "attn.qkv.weight"] = torch.cat(
            [n2p(w[f"{m}{n}/kernel"], t=False).flatten(1).T for n in ("query", "key", "value")])
        sd[o + "attn.qkv.bias"] = torch.cat(
            [n2p(w[f"{m}{n}/bias"], t=False).reshape(-1) for n in ("query", "key", "value")])
        sd[o + "attn.proj.weight"] = n2p(w[f"{m}out/kernel"]).flatten(1)
        sd[o + "attn.proj.bias"] = n2p(w[f"{m}out/bias"])
        for r in range(2):
            sd[o + f"mlp.fc{r + 1}.weight"] = n2p(w[f"{b}MlpBlock_3/Dense_{r}/kernel"])
            sd[o + f"mlp.fc{r + 1}.bias"] = n2p(w[f"{b}MlpBlock_3/Dense_{r}/bias"])
        for flax, timm in (("LayerNorm_0", "norm1"), ("LayerNorm_2", "norm2")):
            sd[o + timm + ".weight"] = n2p(w[f"{b}{flax}/scale"])
            sd[o + timm + ".bias"] = n2p(w[f"{b}{flax}/bias"])
    tm = TorchViT(model.config).double().eval()
    tm.load_state_dict(sd, strict=True)
    x = _images()
    with torch.no_grad():
        ref = tm(torch.from_numpy(to_numpy(x))).numpy()
    assert minivit.rel_error(minivit.load(tmp_path / "m.npz")(x), ref) < 1e-10
