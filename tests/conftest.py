"""Settings for the whole test suite.

Importing :mod:`tests.fuzzing` loads the hypothesis profile: derandomized, with no
example database, unless ``SIMPLE_WEBSOCKET_FUZZ=deep`` asks for a random search.

The clients read proxy settings from the environment by default (``proxy=True``),
so every test starts with the ``*_proxy`` variables removed: a machine with
``http_proxy`` set would otherwise send the tests' loopback connections to its
proxy. Tests about those variables set them with ``monkeypatch``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import trustme

from tests import fuzzing
from tests.proxy_support import PProxy, run_pproxy

__all__ = ["fuzzing"]


@pytest.fixture(autouse=True)
def _no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def proxy_ca() -> trustme.CA:
    """The CA of the TLS certificates of the proxy tests (proxy and servers)."""
    return trustme.CA()


@pytest.fixture(scope="session")
def pproxy(proxy_ca: trustme.CA) -> Iterator[PProxy]:
    """A real proxy server (pproxy) with HTTP, HTTPS, SOCKS5 and SOCKS4 listeners."""
    with run_pproxy(proxy_ca) as running:
        yield running
