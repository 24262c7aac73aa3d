"""Options are spelt out in full, and a misspelt option or command gets the closest one.

argparse's abbreviations are off on the main parser and on every command's parser: ``--step 5``
is refused instead of being read as ``--steps 5``.
"""

import pytest

from minivit.cli import build_parser, did_you_mean, main


def error_line(capsys, argv):
    """The one stderr line of a refused command line (exit status 2)."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    return lines[0]


def test_every_parser_refuses_abbreviations():
    parser, _ = build_parser()
    assert parser.allow_abbrev is False
    assert parser.subcommands
    for name, sub in parser.subcommands.items():
        assert sub.allow_abbrev is False, name


def test_an_abbreviated_option_is_refused_and_the_full_one_named(capsys):
    assert main(["train", "--step", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("minivit train: error: unrecognized arguments: --step 5; "
                   "did you mean '--steps'? (see minivit train --help)")


def test_a_misspelt_option_gets_a_suggestion(capsys):
    assert main(["train", "--stpes", "5"]) == 2
    assert "did you mean '--steps'?" in capsys.readouterr().err
    assert main(["gradcheck", "--sampels=3"]) == 2
    assert "did you mean '--samples'?" in capsys.readouterr().err


def test_an_unknown_option_far_from_any_gets_no_suggestion(capsys):
    assert main(["info", "--zzzzzz"]) == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --zzzzzz" in err and "did you mean" not in err


def test_a_misspelt_command_gets_a_suggestion(capsys):
    line = error_line(capsys, ["tarin"])
    assert line.startswith("minivit: error: argument COMMAND: invalid choice: 'tarin'")
    assert "did you mean 'train'?" in line


def test_a_misspelt_choice_gets_a_suggestion(capsys):
    line = error_line(capsys, ["gradcheck", "--config", "cifar-nan"])
    assert "did you mean 'cifar-nano'?" in line


def test_did_you_mean():
    assert did_you_mean("evl", ["eval", "train"]) == "; did you mean 'eval'?"
    assert did_you_mean("xyz", ["eval", "train"]) == ""
