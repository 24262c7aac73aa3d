"""The one line under pytest's summary that says why tests were skipped (conftest.py)."""

from collections import Counter


def skip_kind(reason: str) -> str:
    """A skip reason without its details: "Skipped: CuPy backend unavailable: no module" ->
    "CuPy backend unavailable"."""
    reason = reason.removeprefix("Skipped: ").strip()
    return reason.split(": ")[0]


def skip_summary(reasons) -> str:
    """"skipped: 240 CuPy backend unavailable, 1 real CIFAR-10 not found (...)" for a list of
    skip reasons, most frequent first ("" for none)."""
    counts = Counter(skip_kind(r) for r in reasons)
    if not counts:
        return ""
    return ("skipped: " + ", ".join(f"{n} {kind}" for kind, n in counts.most_common())
            + " (pytest -rs gives each test's reason)")
