"""What the commands print while they work: progress bars, stage lines, counted nouns.

    bar = progress_bar(enabled, total=1000, desc="features", unit="batch")   # tqdm or None
    plural(1, "step") -> "1 step";  plural(3, "step") -> "3 steps";  plural(0.5, "epoch")
    shown("a\nb.png") -> "'a\\nb.png'"    a name as printed: escaped when not printable

A progress bar is tqdm's (on stderr) when it is installed and wanted, else None: the caller
then prints a line per stage instead.
"""

from __future__ import annotations


def progress_bar(enabled: bool, total: int, initial: int = 0, desc: str | None = None,
                 unit: str = "step"):
    """A tqdm bar, or None when progress is off or tqdm is not installed."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True)


def plural(n, word: str, words: str | None = None) -> str:
    """'1 step', '2 steps', '0.5 epochs', with ``words`` for an irregular plural."""
    text = f"{n:g}" if isinstance(n, float) else str(n)
    return f"{text} {word if n == 1 else (words or word + 's')}"


def shown(name) -> str:
    """A file name (or any text) as it is safe to print: as it is when every character is
    printable, else its repr (a newline in a name cannot forge an output line)."""
    text = str(name)
    return text if text.isprintable() else repr(text)


def silent(*args, **kwargs):
    """What a process prints where it must not print (an MPI rank other than 0)."""


__all__ = ["plural", "progress_bar", "shown", "silent"]
