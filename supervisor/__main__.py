"""``python -m supervisor`` and the ``supervisor`` console script."""

from __future__ import annotations

import sys

from supervisor.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
