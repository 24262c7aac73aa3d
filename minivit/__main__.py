"""``python -m minivit ...``: the same command line as the ``minivit`` script."""
import sys

from minivit.cli import main

if __name__ == "__main__":
    sys.exit(main())
