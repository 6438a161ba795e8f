"""``python -m hedgebridge.gateway``: run the gateway until SIGTERM/SIGINT (configured by environment variables)."""

from __future__ import annotations

import sys

from hedgebridge.common import service

from .config import from_env
from .server import Gateway


def main() -> int:
    return service.main("gateway", from_env, Gateway)


if __name__ == "__main__":
    sys.exit(main())
