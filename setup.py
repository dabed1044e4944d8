"""Build the optional C masking accelerator; everything else is in pyproject.toml.

The extension is optional: where it cannot be compiled (no C compiler or no Python
headers), the package installs without it and masks payloads in pure Python.
Setting ``SIMPLE_WEBSOCKET_NO_EXTENSIONS=1`` skips it on purpose.
"""

import os

from setuptools import Extension, setup

extensions = []
if not os.environ.get("SIMPLE_WEBSOCKET_NO_EXTENSIONS"):
    extensions.append(
        Extension(
            "simple_websocket.sansio._speedups",
            ["src/simple_websocket/sansio/_speedups.c"],
            optional=True,
        )
    )

setup(ext_modules=extensions)
