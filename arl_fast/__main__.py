"""``python -m arl_fast``: the ``arl-fast`` command, also under ``torchrun -m arl_fast``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
