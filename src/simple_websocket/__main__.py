"""``python -m simple_websocket``: see :mod:`simple_websocket.cli`."""

import sys

from .cli import main

sys.exit(main())
