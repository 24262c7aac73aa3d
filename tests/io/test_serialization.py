"""Weights in and out: exact round trips, atomic writes, clear errors, PyTorch/timm interop."""

import json
import sys

import numpy as np
import pytest

import minivit
from minivit.backend import to_device, to_numpy
from minivit.io.files import write_arrays
from minivit.models.init import param_shapes
from minivit.models.resample import resample_pos_embed
from minivit.models.vit_config import ViTConfig
from minivit.reference.numerical import rel_error

CFG = ViTConfig(image_size=16, patch_size=4, num_classes=5, embed_dim=12, depth=2, num_heads=3,
                mlp_dim=20, name="test")
SUFFIXES = [".safetensors", ".npz"]


def _model(dtype="float64", seed=0, **overrides):
    return minivit.create_model(CFG.replace(**overrides), seed=seed, dtype=dtype)


def _images(cfg=CFG, dtype="float64", B=2, seed=1):
    rng = np.random.default_rng(seed)
    return to_device(rng.standard_normal((B, cfg.in_chans, cfg.image_size, cfg.image_size)), dtype)


def _host(params):
    return {k: to_numpy(v) for k, v in params.items()}


def _assert_same_params(a, b):
    assert list(a) == list(b)
    for k in a:
        x, y = to_numpy(a[k]), to_numpy(b[k])
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), k


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_is_exact(tmp_path, suffix, dtype, xp):
    model = _model(dtype)
    path = tmp_path / f"m{suffix}"
    minivit.save(model, path)
    back = minivit.load(path)
    _assert_same_params(model.params, back.params)
    assert type(back.params["pos_embed"]) is type(model.params["pos_embed"])   # on the backend
    assert back.config == model.config and back.config.name == "test" and back.dtype == dtype
    x = _images(dtype=dtype)
    assert np.array_equal(to_numpy(back(x)), to_numpy(model(x)))


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_config_is_preserved(tmp_path, suffix):
    model = _model(pool="mean", gelu="tanh", qkv_bias=False, drop_path_rate=0.1,
                   head_init="zeros", name="special")
    minivit.save(model, tmp_path / f"m{suffix}")
    back = minivit.load(tmp_path / f"m{suffix}")
    assert back.config.to_dict() == model.config.to_dict()
    _assert_same_params(model.params, back.params)


def test_files_hold_timm_names_and_json_config(tmp_path):
    import safetensors
    model = _model()
    minivit.save(model, tmp_path / "m.npz")
    minivit.save(model, tmp_path / "m.safetensors")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:          # no pickle needed
        names = [k for k in z.files if not k.startswith("__")]
        cfg = json.loads(z["__minivit_config__"].tobytes().decode())
        assert z["__minivit_config__"].dtype == np.uint8
    assert sorted(names) == sorted(param_shapes(CFG)) and cfg == CFG.to_dict()
    with safetensors.safe_open(str(tmp_path / "m.safetensors"), framework="numpy") as f:
        meta = f.metadata()
        assert sorted(f.keys()) == sorted(param_shapes(CFG))
        assert all(tuple(f.get_tensor(k).shape) == s for k, s in param_shapes(CFG).items())
    assert meta["format"] == "minivit" and json.loads(meta["minivit_config"]) == CFG.to_dict()


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_dtype_conversion(tmp_path, suffix):
    path = tmp_path / f"m{suffix}"
    minivit.save(_model("float64"), path)
    m32 = minivit.load(path, dtype="float32")
    assert m32.dtype == np.float32 and all(p.dtype == np.float32 for p in m32.params.values())
    arrays = {k: v.astype(np.float16) for k, v in _host(_model().params).items()}
    write_arrays(path, arrays, {})
    assert minivit.load(path, config=CFG).dtype == np.float32          # float16 -> float32
    with pytest.raises(ValueError, match="dtype must be one of"):
        minivit.load(path, config=CFG, dtype="int8")


# ------------------------------------------------------------------ atomic writes
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_failed_write_keeps_the_old_file(tmp_path, suffix, monkeypatch):
    path = tmp_path / f"m{suffix}"
    old = _model(seed=0)
    minivit.save(old, path)
    before = path.read_bytes()

    def crash(fd):                          # the temporary file is written, then the disk fails
        raise RuntimeError("disk full")

    from minivit.io import files
    monkeypatch.setattr(files.os, "fsync", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        minivit.save(_model(seed=1), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]          # no temp file left
    _assert_same_params(minivit.load(path).params, old.params)


def test_save_replaces_an_existing_file(tmp_path):
    path = tmp_path / "m.npz"
    minivit.save(_model(seed=0), path)
    new = _model(seed=1)
    minivit.save(new, path)
    _assert_same_params(minivit.load(path).params, new.params)
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_saved_files_get_the_user_s_umask(tmp_path, umask, mode):
    import os
    previous = os.umask(umask)
    try:
        minivit.save(_model(), tmp_path / "m.npz")
    finally:
        os.umask(previous)
    assert (tmp_path / "m.npz").stat().st_mode & 0o777 == mode


# ------------------------------------------------------------------ bad files
def test_missing_file(tmp_path):
    for suffix in SUFFIXES:
        with pytest.raises(FileNotFoundError, match=f"nope{suffix}"):
            minivit.load(tmp_path / f"nope{suffix}")


def test_unknown_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"\.safetensors or \.npz"):
        minivit.save(_model(), tmp_path / "m.pt")


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("damage", ["half", "header_only", "empty", "random"])
def test_corrupt_or_truncated_file(tmp_path, suffix, damage):
    path = tmp_path / f"m{suffix}"
    minivit.save(_model(), path)
    data = path.read_bytes()
    path.write_bytes({"half": data[: len(data) // 2], "header_only": data[:8], "empty": b"",
                      "random": np.random.default_rng(0).bytes(len(data))}[damage])
    with pytest.raises(ValueError, match=r"m\.(npz|safetensors).*corrupt or truncated"):
        minivit.load(path)


def test_corrupt_npz_member_is_caught_by_its_checksum(tmp_path):
    path = tmp_path / "m.npz"
    minivit.save(_model(), path)
    data = bytearray(path.read_bytes())
    i = data.index(b"\x93NUMPY", data.index(b"pos_embed")) + 200          # inside pos_embed's data
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt or truncated"):
        minivit.load(path)


def test_flipped_byte_in_safetensors_data_is_caught_by_the_sha256(tmp_path):
    path = tmp_path / "m.safetensors"
    minivit.save(_model(), path)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01                                   # inside the last tensor's bytes
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"m\.safetensors: file is corrupt: .*SHA-256"):
        minivit.load(path)


def test_safetensors_without_a_checksum_still_load(tmp_path):
    from safetensors.numpy import save_file
    model = _model()
    path = tmp_path / "foreign.safetensors"
    save_file(_host(model.params), str(path))            # as PyTorch or timm would write it
    back = minivit.load(path, num_heads=model.config.num_heads)
    for k, v in model.params.items():
        assert np.array_equal(to_numpy(back.params[k]), to_numpy(v))


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_key_problems_are_all_listed(tmp_path, suffix):
    arrays = _host(_model().params)
    del arrays["blocks.0.norm1.bias"], arrays["head.bias"]
    arrays["blocks.0.extra"] = np.zeros(3)
    arrays["fc_norm.weight"] = np.zeros(12)
    arrays["blocks.1.mlp.fc1.weight"] = np.zeros((21, 12))
    arrays["pos_embed"] = np.zeros((1, 16, 12))
    meta = {"format": "minivit", "minivit_config": json.dumps(CFG.to_dict())}
    path = tmp_path / f"bad{suffix}"
    write_arrays(path, arrays, meta)
    with pytest.raises(ValueError) as e:
        minivit.load(path)
    msg = str(e.value)
    assert f"bad{suffix}" in msg
    for k in ("blocks.0.norm1.bias", "head.bias", "blocks.0.extra", "fc_norm.weight",
              "blocks.1.mlp.fc1.weight: got (21, 12), expected (20, 12)",
              "pos_embed: got (1, 16, 12), expected (1, 17, 12)"):
        assert k in msg, k


def test_optimizer_file_is_not_a_model_and_vice_versa(tmp_path):
    model = _model()
    minivit.save_optimizer(minivit.SGD(model.params), tmp_path / "o.npz")
    with pytest.raises(ValueError, match="optimizer state, not a model"):
        minivit.load(tmp_path / "o.npz")
    minivit.save(model, tmp_path / "m.npz")
    with pytest.raises(ValueError, match="not a minivit optimizer state file"):
        minivit.load_optimizer(minivit.SGD(model.params), tmp_path / "m.npz")


# ------------------------------------------------------------------ changing the model on load
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_num_classes_change_needs_new_head(tmp_path, suffix):
    model = _model()
    path = tmp_path / f"m{suffix}"
    minivit.save(model, path)
    with pytest.raises(ValueError, match="new_head=True"):
        minivit.load(path, num_classes=7)
    ft = minivit.load(path, num_classes=7, new_head=True)
    assert ft.config.num_classes == 7 and ft.params["head.weight"].shape == (7, 12)
    assert not ft.params["head.weight"].any() and not ft.params["head.bias"].any()
    for k in model.params:
        if not k.startswith("head."):
            assert np.array_equal(to_numpy(ft.params[k]), to_numpy(model.params[k])), k
    assert ft(_images()).shape == (2, 7)
    assert minivit.load(path, num_classes=5).config == model.config       # same count: fine


@pytest.mark.parametrize("mode", ["bicubic", "bilinear"])
def test_image_size_change_resamples_pos_embed(tmp_path, mode):
    model = _model()
    minivit.save(model, tmp_path / "m.npz")
    big = minivit.load(tmp_path / "m.npz", image_size=24, resample=mode)
    assert big.config.image_size == 24 and big.config.num_patches == 36
    expect = resample_pos_embed(to_numpy(model.params["pos_embed"]), 6, mode=mode)
    assert np.array_equal(to_numpy(big.params["pos_embed"]), expect)
    assert big(_images(big.config)).shape == (2, 5)
    with pytest.raises(ValueError, match="does not divide"):
        minivit.load(tmp_path / "m.npz", image_size=18)


# ------------------------------------------------------------------ foreign files
def test_file_without_metadata_needs_config_or_num_heads(tmp_path):
    model = _model()
    path = tmp_path / "plain.safetensors"
    write_arrays(path, _host(model.params), {})
    _assert_same_params(minivit.load(path, config=CFG).params, model.params)
    inferred = minivit.load(path, num_heads=3)
    assert inferred.config == CFG.replace(name="inferred")
    _assert_same_params(inferred.params, model.params)
    with pytest.raises(ValueError, match="num_heads"):
        minivit.load(path)
    with pytest.raises(ValueError, match="head.weight: got"):
        minivit.load(path, config="cifar-tiny")


def test_safetensors_missing_gives_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    model = _model()
    with pytest.raises(ImportError, match=r"a dependency of minivit: reinstall with `pip install"):
        minivit.save(model, tmp_path / "m.safetensors")
    assert not list(tmp_path.iterdir())
    minivit.save(model, tmp_path / "m.npz")                               # npz needs only NumPy
    _assert_same_params(minivit.load(tmp_path / "m.npz").params, model.params)


# ------------------------------------------------------------------ optimizer state
@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("opt_cls", [minivit.AdamW, minivit.SGD])
def test_optimizer_round_trip(tmp_path, suffix, opt_cls):
    model = _model()
    opt = opt_cls(model.params, lr=1e-2)
    x, labels = _images(), np.array([0, 3])
    for _ in range(3):
        loss, dlogits = minivit.cross_entropy(model(x, train=True), labels)
        model.backward(dlogits)
        opt.step(model.params, model.grads)
    path = tmp_path / f"opt{suffix}"
    minivit.save_optimizer(opt, path)
    fresh = opt_cls(model.params, lr=1e-2)
    minivit.load_optimizer(fresh, path)
    assert fresh.step_count == 3
    _assert_same_params(dict(sorted(opt.state.items())), dict(sorted(fresh.state.items())))
    a, b = dict(model.params), dict(model.params)                          # next steps agree
    opt.step(a, model.grads)
    fresh.step(b, model.grads)
    _assert_same_params(a, b)
    other = (minivit.SGD if opt_cls is minivit.AdamW else minivit.AdamW)(model.params)
    with pytest.raises(ValueError, match="cannot load it into"):
        minivit.load_optimizer(other, path)
    with pytest.raises(ValueError, match="does not have"):
        minivit.load_optimizer(opt_cls({"x": model.params["cls_token"]}), path)


def test_empty_optimizer_state(tmp_path):
    for suffix in SUFFIXES:
        opt = minivit.AdamW(_model().params)
        minivit.save_optimizer(opt, tmp_path / f"o{suffix}")
        fresh = minivit.AdamW(_model().params)
        fresh.step_count = 9
        minivit.load_optimizer(fresh, tmp_path / f"o{suffix}")
        assert fresh.step_count == 0 and fresh.state == {}


# ------------------------------------------------------------------ PyTorch / timm interop
@pytest.mark.torch
@pytest.mark.parametrize("pool,gelu", [("token", "erf"), ("mean", "tanh")])
def test_minivit_to_torch_and_back(tmp_path, pool, gelu):
    torch = pytest.importorskip("torch", reason="the timm-named PyTorch ViT needs torch")
    import safetensors.torch
    from torch_vit import TorchViT

    model = _model(pool=pool, gelu=gelu)
    minivit.save(model, tmp_path / "m.safetensors")
    tm = TorchViT(model.config).double().eval()
    tm.load_state_dict(safetensors.torch.load_file(tmp_path / "m.safetensors"), strict=True)
    x = _images()
    with torch.no_grad():
        ref = tm(torch.from_numpy(to_numpy(x))).numpy()
    assert rel_error(model(x), ref) < 1e-10

    safetensors.torch.save_file(tm.state_dict(), tmp_path / "t.safetensors")   # no minivit metadata
    back = minivit.load(tmp_path / "t.safetensors", config=model.config)
    _assert_same_params(back.params, model.params)
    assert np.array_equal(to_numpy(back(x)), to_numpy(model(x)))
    inferred = minivit.load(tmp_path / "t.safetensors", num_heads=3)
    assert inferred.config == model.config.replace(pool="token", gelu="erf", name="inferred")


@pytest.mark.torch
def test_bfloat16_file_gives_a_clear_error(tmp_path):
    torch = pytest.importorskip("torch", reason="writes a bfloat16 file with torch")
    import safetensors.torch
    if "ml_dtypes" in sys.modules:        # imported by transformers / onnx: NumPy reads bfloat16
        pytest.skip("ml_dtypes is loaded, which gives NumPy a bfloat16 type")
    safetensors.torch.save_file({"cls_token": torch.zeros(1, 1, 12, dtype=torch.bfloat16)},
                                tmp_path / "bf.safetensors")
    with pytest.raises(ValueError, match="bf.safetensors.*NumPy cannot read"):
        minivit.load(tmp_path / "bf.safetensors", config=CFG)
