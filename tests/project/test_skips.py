"""The line that says why tests were skipped."""

from support import skip_kind, skip_summary


def test_skip_kind_drops_the_details():
    assert skip_kind("Skipped: CuPy backend unavailable: No module named 'cupy'") == (
        "CuPy backend unavailable")
    real = "real CIFAR-10 not found ($MINIVIT_DATA names no folder holding data_batch_1)"
    assert skip_kind("Skipped: " + real) == real


def test_skip_summary_counts_the_kinds_most_frequent_first():
    reasons = ["Skipped: CuPy backend unavailable: no GPU"] * 3 + [
        "Skipped: real CIFAR-10 not found ($MINIVIT_DATA names no folder holding data_batch_1)"]
    assert skip_summary(reasons) == (
        "skipped: 3 CuPy backend unavailable, 1 real CIFAR-10 not found ($MINIVIT_DATA names "
        "no folder holding data_batch_1) (pytest -rs gives each test's reason)")
    assert skip_summary([]) == ""
