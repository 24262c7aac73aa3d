"""One module per ``minivit`` subcommand (see minivit/cli.py)."""
