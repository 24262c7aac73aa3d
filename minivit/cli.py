"""The ``minivit`` command line.  Each subcommand lives in ``minivit/commands/<name>.py`` and
defines ``add_arguments(parser)`` and ``run(args) -> int``.

Bad arguments or files end with one line on stderr (``minivit <cmd>: error: ...``) and exit
status 2, never a traceback; set MINIVIT_DEBUG=1 to see the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

from minivit.errors import UserError

# name -> one-line help; the module minivit.commands.<name> implements it.
COMMANDS = {
    "info": "backend, device, dtype and every named config with its parameter count",
    "gradcheck": "check every gradient against finite differences (and PyTorch, if installed)",
    "train": "train a ViT on CIFAR-10",
    "eval": "evaluate a checkpoint: accuracy, per-class accuracy, confusion matrix",
    "predict": "top-5 classes for PNG/JPEG images",
    "plot": "loss/accuracy/learning-rate curves and confusion matrix of a run, as PNG",
    "inspect": "figures of what a trained ViT learned: filters, position embeddings, attention",
    "pretrain": "self-supervised pre-training on CIFAR-10 images: MAE or masked patch prediction",
    "linprobe": "train a linear classifier on the frozen features of a checkpoint",
    "reconstruct": "MAE reconstructions of images: original, masked, reconstruction, pasted",
}


# Commands that split batches over threads (minivit.parallel) and the variables that set the
# number of BLAS threads when the BLAS library loads.
THREADED_COMMANDS = ("train", "pretrain", "eval", "linprobe")
BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument is reported on one line (not the whole usage block)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = OneLineParser(
        prog="minivit", description="A Vision Transformer written by hand in NumPy/CuPy.")
    parser.add_argument("--backend", choices=("numpy", "cupy"), default=None,
                        help="array backend (default: $MINIVIT_BACKEND or numpy)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = {}
    for name, help_text in COMMANDS.items():
        try:
            mod = importlib.import_module(f"minivit.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"minivit.commands.{name}":
                continue                       # command not built yet
            raise
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod.add_arguments(p)
        modules[name] = mod
    return parser, modules


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    return f"minivit: warning: {message}\n"


def main(argv=None) -> int:
    previous_format = warnings.formatwarning
    warnings.formatwarning = _one_line_warning          # the CLI prints warnings on one line
    try:
        return _main(argv)
    finally:
        warnings.formatwarning = previous_format


def _main(argv) -> int:
    parser, modules = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:                     # name the command whose flags these are not
        prog = "minivit" if args.command is None else f"minivit {args.command}"
        print(f"{prog}: error: unrecognized arguments: {' '.join(unknown)} (see {prog} --help)",
              file=sys.stderr)
        return 2
    if args.command is None:
        parser.print_help()
        return 2
    if argv is None and _wants_one_blas_thread(args):
        _restart_with_one_blas_thread()                 # does not return
    from minivit.backend import BackendError, set_backend
    try:
        if args.backend is not None:
            set_backend(args.backend)
        return int(modules[args.command].run(args) or 0)
    except (UserError, ValueError, FileNotFoundError, BackendError, OSError) as e:
        if os.environ.get("MINIVIT_DEBUG"):
            raise
        print(f"minivit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"minivit {args.command}: interrupted", file=sys.stderr)
        return 130


def _wants_one_blas_thread(args) -> bool:
    """Will this command split its batches over several threads, with BLAS not yet told to
    use one thread each?  Each replica must run one-threaded BLAS.  threadpoolctl can lower
    OpenBLAS's threads once it is loaded, but measured here that left two threads 15-30%
    slower than OPENBLAS_NUM_THREADS=1 set before NumPy loads (OpenBLAS's own worker threads
    stay), so the command line starts itself again with it set."""
    if args.command not in THREADED_COMMANDS or any(v in os.environ for v in BLAS_THREAD_VARS):
        return False
    backend = args.backend or os.environ.get("MINIVIT_BACKEND", "numpy")
    threads = getattr(args, "threads", None) or 0
    if backend != "numpy" or threads < 0 or threads == 1:
        return False
    from minivit.parallel import available_cores
    return (threads or available_cores()) > 1


def restart_env(environ) -> dict:
    """``environ`` with BLAS limited to one thread (what the command line restarts itself with)."""
    return {**environ, **{v: "1" for v in BLAS_THREAD_VARS}}


def _restart_with_one_blas_thread():
    """Run this same command line again in a fresh interpreter, BLAS limited to one thread."""
    env = restart_env(os.environ)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "minivit", *sys.argv[1:]], env)


if __name__ == "__main__":
    sys.exit(main())
