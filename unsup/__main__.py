"""``python -m unsup``: the command line (see :mod:`unsup.cli`)."""

import sys

from unsup.cli import main

if __name__ == "__main__":
    sys.exit(main())
