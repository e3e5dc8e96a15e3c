"""queue-runner command line (being built: issue 6)."""

from __future__ import annotations

import sys


def main() -> int:
    print("queue-runner: not built yet", file=sys.stderr)
    return 3
