"""MkDocs hook: render the Sphinx roles used in the package's docstrings.

The docstrings in ``src/`` write cross-references the Sphinx way
(:class:`AioServer`, :meth:`~simple_websocket.AioServer.accept`). mkdocstrings does
not interpret them, so they would show as ``:class:`` followed by code. This hook
turns each one into an optional mkdocs-autorefs cross-reference: a link when the
target is documented on the site, plain code otherwise, and never a build warning.

Targets are resolved to the path where they are defined with griffe (the static
loader mkdocstrings uses), so ``AioClient.connect`` links to
``simple_websocket.aiows.AioClient.connect``.
"""

from __future__ import annotations

import functools
import re
from typing import Any

PACKAGE = "simple_websocket"

_ROLE = re.compile(
    r":(?:py:)?(?:class|meth|func|attr|mod|exc|data|obj|const):"
    r"<code>(?P<tilde>~?)(?P<target>[\w.]+)</code>"
)


@functools.cache
def _package() -> Any:
    try:
        import griffe

        return griffe.load(PACKAGE, search_paths=["src"])
    except Exception:  # no griffe, or the package does not load: plain code then
        return None


@functools.cache
def _identifier(target: str) -> str:
    """Return the canonical path of ``target``, or a best guess."""
    relative = target.removeprefix(f"{PACKAGE}.") if target != PACKAGE else ""
    package = _package()
    if package is not None and relative:
        try:
            return str(package[relative].canonical_path)
        except Exception:  # not a package member (a builtin, a bare attribute name)
            pass
    return target if target.startswith(PACKAGE) else f"{PACKAGE}.{target}"


def _replace(match: re.Match[str]) -> str:
    target = match["target"]
    shown = target.rsplit(".", 1)[-1] if match["tilde"] else target
    return f'<autoref identifier="{_identifier(target)}" optional><code>{shown}</code></autoref>'


def on_page_content(html: str, **kwargs: Any) -> str:
    """Replace the Sphinx roles in a page's HTML with optional cross-references."""
    return _ROLE.sub(_replace, html)
