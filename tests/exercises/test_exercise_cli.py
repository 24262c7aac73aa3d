"""``minivit exercise list/new/check/solution``: the stub fails, the solution passes, and
every kind of bad file gets a clear message and no traceback from minivit."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from minivit.cli import main
from minivit.exercises.registry import EXERCISES

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path, action, name, file_name=None):
    path = tmp_path / (file_name or f"{action}_{name}.py")
    assert main(["exercise", action, name, "--out", str(path)]) == 0
    return path


def check(path, *flags):
    return main(["exercise", "check", str(path), "--no-torch", *flags])


def no_minivit_traceback(text):
    return "minivit/exercises" not in text and "minivit/cli.py" not in text


def test_list_names_every_exercise_in_order(capsys):
    assert main(["exercise", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(EXERCISES)
    assert len(lines) >= 10
    assert lines[0].split()[:2] == ["linear", "easy"]
    assert lines[-1].split()[0] == "vit"


def test_the_exercises_cover_the_design_card():
    # patch projection, softmax attention, LayerNorm, GELU MLP, cross-entropy
    assert {"patch_embed", "attention_core", "attention", "layernorm", "gelu", "mlp",
            "cross_entropy", "softmax"} <= set(EXERCISES)


def test_stub_says_not_implemented(tmp_path, capsys):
    path = write(tmp_path, "new", "linear")
    text = path.read_text()
    assert text.startswith("# minivit exercise: linear\n")
    assert 'raise NotImplementedError("linear_backward: your code here")' in text
    capsys.readouterr()
    assert check(path) == 1
    out = capsys.readouterr()
    assert out.out.startswith("not implemented yet: linear_backward")
    assert "Traceback" not in out.out + out.err


def test_solution_passes_with_one_row_per_gradient(tmp_path, capsys):
    path = write(tmp_path, "solution", "layernorm")
    capsys.readouterr()
    assert check(path) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.endswith(" ok")]
    assert [r[0] for r in rows] == ["dx", "dweight", "dbias"]
    assert "finite differences (< 1e-06)" in out and "minivit (< 1e-10)" in out
    assert out.splitlines()[-1].startswith("PASS: 3 gradients right on 3 cases")


def test_wrong_answer_names_the_gradient(tmp_path, capsys):
    path = write(tmp_path, "solution", "linear")
    path.write_text(path.read_text().replace("dx = (dy2 @ weight)", "dx = 2 * (dy2 @ weight)"))
    capsys.readouterr()
    assert check(path) == 1
    out = capsys.readouterr().out
    fails = [line for line in out.splitlines() if line.startswith("FAIL: ")]
    assert fails and fails[0].startswith("FAIL: dx is wrong: relative error ")
    assert "against finite differences (threshold 1e-06)" in fails[0]
    rows = {line.split()[0]: line.split()[-1] for line in out.splitlines()
            if line.endswith((" ok", " FAIL"))}
    assert rows == {"dx": "FAIL", "dweight": "ok", "dbias": "ok"}


def test_learner_exception_shows_only_the_learners_traceback(tmp_path, capsys):
    path = write(tmp_path, "new", "softmax")
    path.write_text(path.read_text().replace(
        'raise NotImplementedError("softmax_backward: your code here")',
        "return helper(dp)\n\n\ndef helper(a):\n    return a @ a.T @ a.T"))
    capsys.readouterr()
    assert check(path) == 1
    out = capsys.readouterr()
    text = out.out + out.err
    assert "softmax_backward raised an error:" in text
    assert f'File "{path}"' in text and "in helper" in text
    assert "ValueError" in text and no_minivit_traceback(text)


@pytest.mark.parametrize("edit, message", [
    (("def linear_backward(dy, cache):", "def linear_backward(dy):"),
     "cannot be called as linear_backward(dy, cache)"),
    (("def linear_backward(", "def linear_backwards("), "defines no function linear_backward"),
    (('raise NotImplementedError("linear_backward: your code here")', "return dy"),
     "linear_backward returned ndarray; expected a tuple of 3: (dx, dweight, dbias)"),
    (('raise NotImplementedError("linear_backward: your code here")',
      "x, w, _ = cache\n    return x, w.T, dy[0]"),
     "dweight has shape"),
    (('raise NotImplementedError("linear_backward: your code here")',
      "x, w, _ = cache\n    return x * float('nan'), w, w[0]"), "dx has NaN or infinite entries"),
    (('raise NotImplementedError("linear_backward: your code here")',
      "x, w, _ = cache\n    return x, w, None"), "linear_backward gave no dbias"),
    (("def linear_backward(dy, cache):", "def linear_backward(dy, cache) oops:"),
     "does not compile"),
    (("from minivit.layers.sums import column_sum", "import no_such_module_here"),
     "raised an error when imported"),
])
def test_bad_learner_code_gets_one_clear_message(tmp_path, capsys, edit, message):
    path = write(tmp_path, "new", "linear")
    text = path.read_text()
    assert text.count(edit[0]) == 1
    path.write_text(text.replace(*edit))
    capsys.readouterr()
    assert check(path) == 1
    out = capsys.readouterr()
    assert message in out.out, out.out
    assert no_minivit_traceback(out.out + out.err)


def test_any_file_name_is_graded(tmp_path, capsys):
    path = write(tmp_path, "solution", "tokens")
    renamed = path.rename(tmp_path / "my tokens.txt")
    assert check(renamed) == 0
    assert "PASS: 3 gradients right" in capsys.readouterr().out


def test_syntax_error_names_the_line(tmp_path, capsys):
    path = write(tmp_path, "new", "gelu")
    lines = path.read_text().splitlines()
    n = next(i for i, line in enumerate(lines) if line.startswith("def gelu_backward"))
    lines[n] = lines[n].replace("):", ")")
    path.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert check(path) == 1
    out = capsys.readouterr().out
    assert f'File "{path}", line {n + 1}' in out and "SyntaxError" in out


@pytest.mark.parametrize("text, message", [
    ("def linear_backward(dy, cache):\n    pass\n", "is not a minivit exercise"),
    ("# minivit exercise: no_such_one\n", "no exercise called 'no_such_one'"),
])
def test_a_file_that_is_no_exercise(tmp_path, capsys, text, message):
    path = tmp_path / "mine.py"
    path.write_text(text)
    assert check(path) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("minivit exercise: error: ") and message in err
    assert "\n" not in err


def test_missing_file_and_bad_arguments(tmp_path, capsys):
    assert check(tmp_path / "nope.py") == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["exercise", "new", "no_such_one", "--out", str(tmp_path / "a.py")]) == 2
    assert "the exercises are linear, softmax" in capsys.readouterr().err
    assert main(["exercise", "new", "linear", "--out", str(tmp_path / "a.txt")]) == 2
    assert "must end in .py" in capsys.readouterr().err
    assert main(["exercise"]) == 2
    assert "name an action" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_new_does_not_overwrite_the_learners_work(tmp_path, capsys):
    path = write(tmp_path, "new", "mlp")
    path.write_text("my work")
    assert main(["exercise", "solution", "mlp", "--out", str(path)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert path.read_text() == "my work"
    assert main(["exercise", "solution", "mlp", "--out", str(path), "--force"]) == 0
    assert "def mlp_backward" in path.read_text()


def run_without_torch(args, cwd):
    """``minivit exercise ...`` in a fresh interpreter where ``import torch`` fails; prints
    whether torch got imported."""
    code = ("import sys; sys.modules['torch'] = None\n"
            "from minivit.cli import main\n"
            f"rc = main({args!r})\n"
            "print('torch imported:', sys.modules.get('torch') is not None); sys.exit(rc)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], check=False, cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=120)


def test_grading_works_without_pytorch(tmp_path):
    path = write(tmp_path, "solution", "attention_core")
    done = run_without_torch(["exercise", "check", str(path)], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PyTorch not compared: PyTorch is not installed" in done.stdout
    assert "torch imported: False" in done.stdout
    assert "PyTorch (<" not in done.stdout
