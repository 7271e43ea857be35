"""``python -m unsup.cli``: the command line, as ``python -m unsup`` (see :mod:`unsup.cli`)."""

import sys

from unsup.cli import main

if __name__ == "__main__":
    sys.exit(main())
