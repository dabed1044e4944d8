"""The documentation site builds in strict mode, and strict mode catches broken links.

``mkdocs build --quiet`` hides the warnings that ``--strict`` counts, so these builds
are not quiet: a broken cross-reference must fail them.

The site's code blocks hold 80 columns (the theme's content width on a desktop
screen, with both side bars): every line of code the site shows (the pages' blocks,
the examples they include, the docstrings of the API reference) must fit, so that
no block needs a horizontal scroll bar.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.timeout(120)


def build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    mkdocs = Path(sys.executable).with_name("mkdocs")
    return subprocess.run(
        [str(mkdocs), "build", "--strict", "--config-file", str(config), "--site-dir", str(site)],
        cwd=config.parent,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        check=False,
    )


#: The columns a code block shows without scrolling (measured in Chromium at a
#: 1440-pixel window: the theme's grid is 61rem wide from 1220 pixels up).
CODE_COLUMNS = 80


def test_the_docs_build_strictly_without_warnings(tmp_path: Path) -> None:
    result = build(ROOT / "mkdocs.yml", tmp_path / "site")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNING" not in output, output
    too_wide = []
    for page in sorted((tmp_path / "site").glob("**/index.html")):
        for block in re.findall(r"<pre[^>]*>(.*?)</pre>", page.read_text(), re.S):
            code = html.unescape(re.sub(r"<[^>]+>", "", block))
            too_wide += [
                f"{page.parent.relative_to(tmp_path / 'site')}: {line}"
                for line in code.splitlines()
                if len(line) > CODE_COLUMNS
            ]
    assert not too_wide, "code lines wider than the code blocks:\n" + "\n".join(too_wide)


def test_examples_fit_the_code_blocks() -> None:
    """Every line of examples/, which the pages include, whole or in parts."""
    too_wide = [
        f"{path.name}:{number}"
        for path in sorted((ROOT / "examples").glob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if len(line) > CODE_COLUMNS
    ]
    assert not too_wide, too_wide


def test_a_broken_cross_reference_fails_the_strict_build(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    for name in ("mkdocs.yml", "docs", "examples", "src"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, project / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, project / name)
    page = project / "docs" / "index.md"
    page.write_text(page.read_text() + "\nSee [nothing][simple_websocket.aiows.NoSuchThing].\n")
    result = build(project / "mkdocs.yml", tmp_path / "site")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "simple_websocket.aiows.NoSuchThing" in output, output
