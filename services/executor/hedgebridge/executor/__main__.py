"""``python -m hedgebridge.executor``: run the executor until SIGTERM/SIGINT (configured by environment variables)."""

from __future__ import annotations

import sys

from hedgebridge.common import service

from .config import from_env
from .service import Executor


def main() -> int:
    return service.main("executor", from_env, Executor)


if __name__ == "__main__":
    sys.exit(main())
