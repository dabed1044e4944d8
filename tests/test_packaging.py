"""``pyproject.toml``: what an install needs, without build isolation too."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())


def _requirement(requirements: list[str], name: str) -> Requirement:
    return next(Requirement(r) for r in requirements if re.match(rf"{name}\b", r))


def test_setuptools_understands_the_spdx_license() -> None:
    # A license given as an SPDX expression string needs setuptools 77 or later.
    assert isinstance(PYPROJECT["project"]["license"], str)
    setuptools = _requirement(PYPROJECT["build-system"]["requires"], "setuptools")
    assert not setuptools.specifier.contains(Version("76.9"))
    assert setuptools.specifier.contains(Version("77.0"))


def test_wsproto_is_pinned_to_the_tested_range() -> None:
    wsproto = _requirement(PYPROJECT["project"]["dependencies"], "wsproto")
    for tested in ("1.2.0", "1.3.2"):
        assert wsproto.specifier.contains(Version(tested))
    assert not wsproto.specifier.contains(Version("1.4.0"))
