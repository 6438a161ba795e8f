"""``python -m hedgebridge.monitor``: run the monitor until SIGTERM/SIGINT (configured by environment variables)."""

from __future__ import annotations

import sys

from hedgebridge.common import service

from .config import from_env
from .service import Monitor


def main() -> int:
    return service.main("monitor", from_env, Monitor)


if __name__ == "__main__":
    sys.exit(main())
