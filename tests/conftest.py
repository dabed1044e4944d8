"""Settings for the whole test suite.

Importing :mod:`tests.fuzzing` loads the hypothesis profile: derandomized, with no
example database, unless ``SIMPLE_WEBSOCKET_FUZZ=deep`` asks for a random search.
"""

from tests import fuzzing

__all__ = ["fuzzing"]
