"""``python -m hedgebridge.cli``: the same as the ``hedgebridge`` command."""

import sys

from .main import main

sys.exit(main())
