"""``minivit exercise``: write the backward passes of the ViT by hand, and have them graded.

    minivit exercise list                          the exercises, in order
    minivit exercise new linear --out ex1.py       a stub: statement, forward, your function
    minivit exercise check ex1.py                  grade it (exit 0: every gradient right)
    minivit exercise solution linear --out a1.py   the library's own answer

``check`` exits 0 when every gradient is within its threshold, 1 when the learner's code is
not done, raises, or is wrong (which gradient, by how much), 2 when the file is no exercise.
"""

from __future__ import annotations

from pathlib import Path

from minivit.errors import UserError
from minivit.exercises.grader import COLUMNS, LearnerError, NotImplementedYet, check_file
from minivit.exercises.registry import EXERCISES, get_exercise, number_of
from minivit.exercises.text import exercise_file
from minivit.io.files import atomic_write_bytes, naming_write_errors


def add_arguments(parser):
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.add_parser("list", help="the exercises, in order: name, difficulty, title")
    for action, what in (("new", "a stub to fill in"), ("solution", "the library's solution")):
        p = sub.add_parser(action, help=f"write {what} for exercise NAME")
        p.add_argument("name", metavar="NAME", help="an exercise (minivit exercise list)")
        p.add_argument("--out", required=True, metavar="FILE", help="the Python file to write")
        p.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    p = sub.add_parser("check", help="grade FILE: every gradient against finite differences, "
                                     "minivit and PyTorch")
    p.add_argument("file", metavar="FILE", help="a file written by 'minivit exercise new'")
    p.add_argument("--no-torch", action="store_true",
                   help="skip the comparison with PyTorch even if it is installed")
    p.add_argument("--seed", type=int, default=0, help="seed of the random cases (default: 0)")


def run(args) -> int:
    if args.action is None:
        raise UserError("name an action: list, new, check or solution (see minivit exercise "
                        "--help)")
    if args.action == "list":
        return list_exercises()
    if args.action == "check":
        return check(args.file, not args.no_torch, args.seed)
    return write(args.name, args.out, solved=args.action == "solution", force=args.force)


def list_exercises() -> int:
    width = max(len(name) for name in EXERCISES)
    for ex in EXERCISES.values():
        print(f"{ex.name:<{width}}  {ex.difficulty:<6}  {ex.title}")
    return 0


def write(name: str, out: str, solved: bool, force: bool) -> int:
    exercise = get_exercise(name)
    path = Path(out)
    if path.exists() and not force:
        raise UserError(f"{path} exists; pass --force to overwrite it")
    if path.suffix != ".py":
        raise UserError(f"{path}: the exercise file must end in .py")
    text = exercise_file(exercise, number_of(name), len(EXERCISES), solved, path.name)
    with naming_write_errors(path):
        atomic_write_bytes(path, text.encode("utf-8"))
    what = "the library's solution" if solved else "a stub"
    print(f"wrote {what} of exercise {name} to {path}")
    if not solved:
        print(f"fill in {exercise.function_name}, then: minivit exercise check {path}")
    return 0


def _fmt(error) -> str:
    return "-" if error is None else f"{error[0]:.2e}"


def check(file: str, use_torch: bool, seed: int) -> int:
    try:
        report = check_file(file, use_torch=use_torch, seed=seed)
    except NotImplementedYet as e:
        print(e)
        return 1
    except LearnerError as e:
        print(f"FAIL: {e}")
        return 1
    ex = report.exercise
    print(f"exercise {number_of(ex.name)} of {len(EXERCISES)}, {ex.name}: {ex.title} -- {file}")
    for i, case in enumerate(report.cases, 1):
        print(f"case {i}: {case}")
    if report.torch_missing:
        print(f"PyTorch not compared: {report.torch_missing}")
    columns = [(col, f"{title} (< {tol:g})") for col, title, tol in COLUMNS
               if col != "torch" or report.torch_used]
    width = max([len("gradient")] + [len(r.label) for r in report.rows])
    header = f"{'gradient':<{width}}  " + "  ".join(f"{t:>22}" for _, t in columns) + "  status"
    print(header)
    print("-" * len(header))
    for row in report.rows:
        cells = "  ".join(f"{_fmt(row.errors.get(col)):>22}" for col, _ in columns)
        print(f"{row.label:<{width}}  {cells}  {'FAIL' if row.failures() else 'ok'}")
    print("-" * len(header))
    if report.ok:
        n = sum(not r.is_value for r in report.rows)
        values = "".join(f" and the {r.name}" for r in report.rows if r.is_value)
        print(f"PASS: {n} gradient{'s' * (n != 1)}{values} right on {len(report.cases)} cases "
              f"({report.seconds:.1f} s)")
        return 0
    for row in report.rows:
        for column, error, case, tol in row.failures():
            title = {c: t for c, t, _ in COLUMNS}[column]
            print(f"FAIL: {row.label} is wrong: relative error {error:.1e} against {title} "
                  f"(threshold {tol:g}), case {case} ({report.cases[case - 1]})")
            break
    return 1
