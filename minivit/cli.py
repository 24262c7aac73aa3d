"""The ``minivit`` command line.  Each subcommand lives in ``minivit/commands/<name>.py`` and
defines ``add_arguments(parser)`` and ``run(args) -> int``.

Bad arguments or files end with one line on stderr (``minivit <cmd>: error: ...``) and exit
status 2, never a traceback; set MINIVIT_DEBUG=1 to see the traceback.  Running out of memory
is one line too (exit 2).  A newline or other control character in the message (from a file
name, say) is printed escaped, so the line stays one line.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import re
import sys
import warnings

from minivit import __version__
from minivit.errors import UserError

# name -> one-line help; the module minivit.commands.<name> implements it ("-" as "_").
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
    "exercise": "exercises: write a backward pass by hand, and have it graded",
    "convert": "a model to another format: Hugging Face, timm, official .npz, minivit",
    "export-onnx": "a trained ViT as an ONNX file (through PyTorch), checked with ONNX Runtime",
    "tensorboard": "the metrics of training runs as TensorBoard event files",
    "explain": "one self-contained HTML page of the forward and backward pass on images",
}


# Commands that split batches over threads (minivit.parallel.threads), the variables that set the
# number of BLAS threads when the BLAS library loads, and glibc malloc's settings (read when the
# process starts) that keep freed memory for the next array instead of handing it back to the
# kernel: without them every large temporary is a fresh mmap whose pages fault in on first
# touch, and the threads of one process queue on those faults (measured on 2 cores, cifar-nano
# recipe, 2 threads, 2026-12-02: 643-704 -> 729-792 images/s, kernel time 1.1 -> 0.3 s).
THREADED_COMMANDS = ("train", "pretrain", "eval", "linprobe")
BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
MALLOC_VARS = {"MALLOC_MMAP_THRESHOLD_": str(256 << 20),   # arrays under 256 MB: the heap
               "MALLOC_TOP_PAD_": str(256 << 20),          # grow the heap 256 MB at a time
               "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}     # give back only past 1 GB free


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument is reported on one line (not the whole usage block), with
    the closest valid choice for a misspelt one.  Options must be spelt out in full: build_parser
    turns argparse's abbreviations off (``--step`` is not taken for ``--steps``)."""

    def error(self, message):
        invalid = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)$", message)
        if invalid:
            choices = re.findall(r"'([^']*)'", invalid.group(2))
            message += did_you_mean(invalid.group(1), choices)
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def option_names(self) -> list[str]:
        """Every option string this parser accepts (``--steps``, ``-h``, ...)."""
        return [s for action in self._actions for s in action.option_strings]


def did_you_mean(word: str, choices) -> str:
    """"; did you mean 'X'?" for the choice closest to a misspelt ``word``, or ""."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = OneLineParser(
        prog="minivit", description="A Vision Transformer written by hand in NumPy/CuPy.",
        allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"minivit {__version__}")
    parser.add_argument("--backend", choices=("numpy", "cupy"), default=None,
                        help="array backend (default: $MINIVIT_BACKEND or numpy)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = {}
    for name, help_text in COMMANDS.items():
        mod = importlib.import_module(f"minivit.commands.{name.replace('-', '_')}")  # export_onnx
        p = sub.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        mod.add_arguments(p)
        modules[name] = mod
    parser.subcommands = sub.choices                  # name -> its OneLineParser
    return parser, modules


def one_line(text) -> str:
    """``text`` with its control characters (a newline in a file name) escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    return f"minivit: warning: {one_line(message)}\n"


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
        options = parser if args.command is None else parser.subcommands[args.command]
        hint = next((did_you_mean(a.split("=")[0], options.option_names()) for a in unknown
                     if a.startswith("-")), "")
        print(f"{prog}: error: unrecognized arguments: {' '.join(unknown)}{hint} "
              f"(see {prog} --help)", file=sys.stderr)
        return 2
    if args.command is None:
        parser.print_help()
        return 2
    if argv is None:
        restart = _restart_settings(args)
        if restart is not None:
            _restart(restart)                               # does not return
    from minivit.backend import BackendError, set_backend
    try:
        if args.backend is not None:
            set_backend(args.backend)
        return int(modules[args.command].run(args) or 0)
    except (UserError, ValueError, FileNotFoundError, BackendError, OSError) as e:
        if os.environ.get("MINIVIT_DEBUG"):
            raise
        print(f"minivit {args.command}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except MemoryError as e:
        if os.environ.get("MINIVIT_DEBUG"):
            raise
        print(f"minivit {args.command}: error: out of memory{f' ({one_line(e)})' if str(e) else ''}"
              "; use a smaller model, batch or --threads, or a machine with more memory",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"minivit {args.command}: interrupted", file=sys.stderr)
        return 130


def _restart_settings(args) -> dict | None:
    """The variables this command should run with and does not have yet (None: none).

    A NumPy command that computes (THREADED_COMMANDS) gets MALLOC_VARS.  One that splits its
    batches over several threads also gets one BLAS thread per replica, unless a BLAS variable
    is set: threadpoolctl can lower OpenBLAS's threads once it is loaded, but measured here
    that left two threads 15-30% slower than OPENBLAS_NUM_THREADS=1 set before NumPy loads
    (OpenBLAS's own worker threads stay).  Values the user set are kept."""
    backend = args.backend or os.environ.get("MINIVIT_BACKEND", "numpy")
    if args.command not in THREADED_COMMANDS or backend != "numpy":
        return None
    wanted = dict(MALLOC_VARS)
    threads = getattr(args, "threads", None) or 0
    if not any(v in os.environ for v in BLAS_THREAD_VARS) and threads >= 0 and threads != 1:
        from minivit.parallel.threads import available_cores
        if (threads or available_cores()) > 1:
            wanted.update({v: "1" for v in BLAS_THREAD_VARS})
    missing = {k: v for k, v in wanted.items() if k not in os.environ}
    return missing or None


def restart_env(environ) -> dict:
    """``environ`` with what the command line restarts itself with when it splits batches:
    malloc's settings (the user's own values kept) and BLAS limited to one thread."""
    return {**MALLOC_VARS, **environ, **{v: "1" for v in BLAS_THREAD_VARS}}


def _restart(settings: dict):
    """Run this same command line again in a fresh interpreter with ``settings`` added."""
    env = {**os.environ, **settings}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "minivit", *sys.argv[1:]], env)


if __name__ == "__main__":
    sys.exit(main())
