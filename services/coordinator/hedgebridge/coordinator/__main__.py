"""``python -m hedgebridge.coordinator``: run the coordinator until SIGTERM/SIGINT (configured by environment
variables)."""

from __future__ import annotations

import sys

from hedgebridge.common import service

from .config import from_env
from .service import Coordinator


def main() -> int:
    return service.main("coordinator", from_env, Coordinator)


if __name__ == "__main__":
    sys.exit(main())
