"""Hypothesis settings shared by the property-based tests.

By default every search is derandomized and the example database is off: the same
examples run on every machine and every run, so a search cannot fail at random.
What a random search finds goes into the test as an explicit ``@example``.

For a deeper, random search (more examples, a fresh random seed each run, failures
saved in ``.hypothesis/`` and replayed first next time) set::

    SIMPLE_WEBSOCKET_FUZZ=deep .venv/bin/python -m pytest tests/sansio tests/conformance
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

#: ``True`` for a deliberate, random and longer search.
DEEP = os.environ.get("SIMPLE_WEBSOCKET_FUZZ") == "deep"

settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "deep",
    derandomize=False,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("deep" if DEEP else "ci")


def examples(ci: int, deep: int | None = None) -> settings:
    """Settings running ``ci`` examples by default and ``deep`` (10x) in a deep search."""
    return settings(max_examples=(deep or 10 * ci) if DEEP else ci)
