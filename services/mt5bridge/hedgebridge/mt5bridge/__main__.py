"""``python -m hedgebridge.mt5bridge``: drive one MetaTrader 5 terminal through the ``MetaTrader5`` package
until SIGTERM/SIGINT (configured by environment variables; Windows, with ``pip install 'hedgebridge[mt5]'``)."""

from __future__ import annotations

import sys

from hedgebridge.common import service

from .config import from_env
from .service import Mt5Bridge


def main() -> int:
    return service.main("mt5bridge", from_env, Mt5Bridge)


if __name__ == "__main__":
    sys.exit(main())
