"""Load tests: reduced sizes by default, full sizes on request.

Full size (10,000 idle and 1,000 active connections in one process)::

    SIMPLE_WEBSOCKET_LOAD=full .venv/bin/pytest tests/load -m load_full -s

(``-m load_full`` alone also selects and enables them; ``-s`` shows the figures.)
"""

from __future__ import annotations

import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    markexpr = config.getoption("markexpr", "") or ""
    if "load_full" in markexpr and "not load_full" not in markexpr:
        os.environ.setdefault("SIMPLE_WEBSOCKET_LOAD", "full")
