"""`python -m train` / `accelerate launch -m train --config CONFIG [key=value ...] [--resume latest|PATH | --overwrite]`."""

from __future__ import annotations

import sys

from train.cli import main

if __name__ == "__main__":
    sys.exit(main())
