"""Wrong answers are caught: for every exercise, mutants of the library's own solution (an
operator flipped, a term dropped, a transpose missing, a sum over the wrong axis, a cache or
a slice mixed up) each fail the grader.  The solution text is the library's code, so each
mutation is checked to apply exactly once."""

import pytest

from minivit.exercises.grader import LearnerError, check_file
from minivit.exercises.registry import EXERCISES, number_of
from minivit.exercises.text import exercise_file

# exercise -> [(what is wrong, text of the solution, the wrong text)]
MUTANTS = {
    "linear": [
        ("dx sign flipped", "dx = (dy2 @ weight)", "dx = -(dy2 @ weight)"),
        ("dweight transposed", "dweight = dy2.T @ x2", "dweight = x2.T @ dy2"),
        ("dx with the weight transposed", "(dy2 @ weight)", "(dy2 @ weight.T)"),
        ("bias sum over the wrong axis", "column_sum(dy2) if", "dy2.sum(axis=1) if"),
        ("bias gradient of the input", "column_sum(dy2) if", "column_sum(x2) if"),
    ],
    "softmax": [
        ("minus flipped", "xp.subtract(dp, inner, out=dx)", "xp.add(dp, inner, out=dx)"),
        ("the inner sum dropped", "xp.subtract(dp, inner, out=dx)", "dx[...] = dp"),
        ("the sum over the wrong axis", "sum_over(dx, axis)", "sum_over(dx, -1)"),
        ("the factor p dropped", "dx *= p ", "dx *= 1.0 "),
        ("the inner sum without p", "dx = dp * p ", "dx = dp * 1.0 "),
    ],
    "cross_entropy": [
        ("the targets' sign flipped", "keepdims=True) - t)", "keepdims=True) + t)"),
        ("1/B dropped", "keepdims=True) - t) / B", "keepdims=True) - t)"),
        ("targets summed over the batch", "t.sum(axis=-1, keepdims=True)",
         "t.sum(axis=0, keepdims=True)"),
        ("the targets' sum dropped", "xp.exp(logp) * t.sum(axis=-1, keepdims=True)",
         "xp.exp(logp)"),
        ("log p for p", "(xp.exp(logp) *", "(logp *"),
        ("the loss's sign flipped", "loss = -(t * logp)", "loss = (t * logp)"),
    ],
    "layernorm": [
        ("mean(g) dropped", "    dx -= mean_g\n", ""),
        ("mean(g) added", "dx -= mean_g", "dx += mean_g"),
        ("the xhat term dropped", "    dx -= t\n", ""),
        ("rstd dropped", "dx *= rstd", "dx *= 1.0"),
        ("dweight without xhat", "dweight = column_sum(t)", "dweight = column_sum(dy)"),
        ("mean(g xhat) as mean(g)", "mean_gx = row_mean(t)", "mean_gx = row_mean(dx)"),
        ("dbias summed over one axis", "dbias = column_sum(dy)", "dbias = dy.sum(axis=0)"),
    ],
    "gelu": [
        ("exp(+x^2/2)", "d *= -0.5", "d *= 0.5"),
        ("Phi(x) dropped", "d += aux", "d += 0"),
        ("x phi(x) without x", "        d *= x\n", ""),
        ("dy dropped", "d *= dy", "d += 0"),
        ("tanh: 1 + t^2", "(1.0 - t * t)", "(1.0 + t * t)"),
        ("tanh: du/dx without the 3", "3.0 * TANH_C", "TANH_C"),
        ("tanh: 0.5 (1 + t) dropped", "0.5 * (1.0 + t) + ", ""),
    ],
    "mlp": [
        ("the GELU skipped", "dh = gelu_backward(da, cache.gelu)", "dh = da"),
        ("fc2's input taken as h", "a = gelu_output(cache.gelu)", "a = cache.gelu.x"),
        ("fc1 given da", "linear_backward(dh, cache.fc1)", "linear_backward(da, cache.fc1)"),
        ("gradients in the wrong order", "return dx, dfc1_w, dfc1_b, dfc2_w, dfc2_b",
         "return dx, dfc2_w, dfc2_b, dfc1_w, dfc1_b"),
    ],
    "patch_embed": [
        ("the kernel's transpose missing", "dW.reshape(D, P, P, C).transpose(0, 3, 1, 2)",
         "dW.reshape(D, C, P, P)"),
        ("kernel rows and columns swapped", ".transpose(0, 3, 1, 2)", ".transpose(0, 3, 2, 1)"),
        ("dimages sign flipped", "dimages = patchify_backward(", "dimages = -patchify_backward("),
        ("dbias halved", "return dimages, dweight, dbias", "return dimages, dweight, dbias / 2"),
    ],
    "tokens": [
        ("dpos a mean over the batch", "dpos = dz0.sum(axis=0", "dpos = dz0.mean(axis=0"),
        ("dprefix summed over the tokens", ":num_prefix, :].sum(axis=0",
         ":num_prefix, :].sum(axis=1"),
        ("the patch tokens' slice shifted", "return dz0[:, num_prefix:, :]",
         "return dz0[:, :-num_prefix, :]"),
        ("dpos from the first image only", "dpos = dz0.sum(axis=0, keepdims=True)",
         "dpos = dz0[:1]"),
    ],
    "attention_core": [
        ("1/sqrt(d) dropped from dq", "    dq *= c.scale\n", ""),
        ("dv from A instead of A^T", "dv = c.dropped_t @ dout", "dv = _t(c.dropped_t) @ dout"),
        ("softmax backward over the wrong axis", "c.probs_t, axis=-2)", "c.probs_t, axis=-1)"),
        ("dq's transpose missing", "dq = _t(dscores_t) @ c.k", "dq = dscores_t @ c.k"),
        ("dk with dS instead of dS^T", "dk = dscores_t @ c.qs", "dk = _t(dscores_t) @ c.qs"),
        ("dA^T transposed", "ddropped_t = c.v @ _t(dout)", "ddropped_t = dout @ _t(c.v)"),
    ],
    "attention": [
        ("q and k mixed up", "dqkv[:, :, 1] = dk", "dqkv[:, :, 1] = dq"),
        ("merge_heads' transpose missing",
         "dmerged.reshape(B, T, num_heads, D // num_heads).transpose(0, 2, 1, 3)",
         "dmerged.reshape(B, num_heads, T, D // num_heads)"),
        ("dv reshaped, not transposed", "dqkv[:, :, 2] = dv.transpose(0, 2, 1, 3)",
         "dqkv[:, :, 2] = dv.reshape(dv.shape[0], dv.shape[2], dv.shape[1], dv.shape[3])"),
        ("dqkv sign flipped", "linear_backward(dqkv, cache.qkv)",
         "linear_backward(-dqkv, cache.qkv)"),
    ],
    "block": [
        ("the MLP residual dropped", "dm += dz_out", "dm *= 1"),
        ("the attention residual dropped", "da += dz1", "da *= 1"),
        ("LayerNorm 2 given LayerNorm 1's cache", "layernorm_backward(dm, c.ln2)",
         "layernorm_backward(dm, c.ln1)"),
        ("norm1's weight and bias swapped", 'g["norm1.weight"], g["norm1.bias"] =',
         'g["norm1.bias"], g["norm1.weight"] ='),
        ("the MLP branch skipped", "da = drop_path_backward(dz1,",
         "da = drop_path_backward(dz_out,"),
    ],
    "vit": [
        ("the class token read from token 1", "dz[:, 0] = dpooled", "dz[:, 1] = dpooled"),
        ("the mean over T tokens", "(dpooled / (T - 1))", "(dpooled / T)"),
        ("the mean over the wrong tokens", "dz[:, 1:] = (dpooled", "dz[:, :-1] = (dpooled"),
        ("the final LayerNorm's dx dropped",
         'dz, g["norm.weight"], g["norm.bias"] = layernorm_backward',
         '_, g["norm.weight"], g["norm.bias"] = layernorm_backward'),
        ("the blocks' dz dropped", "dz, block_grads = encoder_backward",
         "_, block_grads = encoder_backward"),
        ("the class token's gradient dropped", 'g["cls_token"] = dprefix[:, :1]',
         'g["cls_token"] = 0 * dprefix[:, :1]'),
    ],
}

SLOW = {"vit"}              # a whole ViT: about 2 s per mutant

CASES = [pytest.param(name, *m, id=f"{name}: {m[0]}",
                      marks=[pytest.mark.slow] if name in SLOW else [])
         for name, ms in MUTANTS.items() for m in ms]


def test_every_exercise_has_mutants():
    assert set(MUTANTS) == set(EXERCISES)
    assert all(len(ms) >= 4 for ms in MUTANTS.values())


@pytest.mark.parametrize("name, what, old, new", CASES)
def test_mutant_is_caught(tmp_path, name, what, old, new):
    ex = EXERCISES[name]
    text = exercise_file(ex, number_of(name), len(EXERCISES), solved=True)
    assert text.count(old) == 1, f"{old!r} is not once in the solution of {name}"
    path = tmp_path / f"{name}_mutant.py"
    path.write_text(text.replace(old, new))
    try:
        report = check_file(path, use_torch=False)
    except LearnerError:
        return                                  # raised, or a gradient of the wrong shape
    assert not report.ok, f"{name}: mutant '{what}' passed the grader"
