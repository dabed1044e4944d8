"""Static types as users see them: ``mypy --strict`` over user programs.

``tests/typing/`` holds programs written as a user would: the README's examples,
the examples of every how-to guide, ``assert_type`` checks of the public entry
points (``static_types.py``) and mistakes that must be caught (``mistakes.py``,
whose lines with an "E:" comment must get an error containing the rest of it). The
runnable programs of ``examples/``, which the how-to guides include, are checked in
the same run. None of these files may silence mypy with an ignore comment.

One mypy process checks everything (a few seconds); its cache lives in the test's
temporary directory.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TYPING = ROOT / "tests" / "typing"
EXAMPLES = ROOT / "examples"
MISTAKES = TYPING / "mistakes.py"

# What a user of these libraries would put in their own configuration: strict
# checking, and the usual allowances for the packages of the Flask guide that ship
# no type information (eventlet, gevent, flask-sock, python-socketio).
CONFIG = """\
[mypy]
strict = True

[mypy-eventlet.*,gevent.*,flask_sock.*,socketio.*,engineio.*]
ignore_missing_imports = True

[mypy-app,howto_flask,howto_flask_eventlet,howto_flask_gevent,howto_flask_socketio]
disallow_subclassing_any = False
disallow_untyped_decorators = False
disable_error_code = method-assign
"""

ERROR = re.compile(r"^(?P<path>[^:]+\.py):(?P<line>\d+): error: (?P<message>.*)$")
MARKER = re.compile(r"#\s*E:\s*(?P<text>.+?)\s*$")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def programs() -> list[Path]:
    return sorted(TYPING.glob("*.py")) + sorted(EXAMPLES.glob("*.py"))


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[Path, int], list[str]]:
    """Run mypy once; return its errors by ``(file, line)``."""
    tmp = tmp_path_factory.mktemp("mypy")
    config = tmp / "mypy.ini"
    config.write_text(CONFIG)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(config),
            "--cache-dir",
            str(tmp / "cache"),
            # Each folder's files are top-level modules (typed_client.py imports
            # typed_server), not parts of a "tests.typing" namespace package.
            "--no-namespace-packages",
            "--no-error-summary",
            *(str(path.relative_to(ROOT)) for path in programs()),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode in (0, 1), result.stderr or result.stdout
    errors: dict[tuple[Path, int], list[str]] = {}
    for line in result.stdout.splitlines():
        match = ERROR.match(line)
        if match:
            key = ((ROOT / match["path"]).resolve(), int(match["line"]))
            errors.setdefault(key, []).append(match["message"])
        else:
            assert ": note: " in line, f"unexpected mypy output: {line}"
    return errors


def test_user_programs_pass_mypy_strict(mypy_errors: dict[tuple[Path, int], list[str]]) -> None:
    outside = {
        f"{path.relative_to(ROOT)}:{line}: {message}"
        for (path, line), messages in mypy_errors.items()
        if path != MISTAKES
        for message in messages
    }
    assert not outside, "\n".join(sorted(outside))


def test_mistakes_are_caught(mypy_errors: dict[tuple[Path, int], list[str]]) -> None:
    expected = {}
    for number, line in enumerate(MISTAKES.read_text().splitlines(), start=1):
        match = MARKER.search(line)
        if match:
            expected[number] = match["text"]
    assert len(expected) >= 10
    got = {line: messages for (path, line), messages in mypy_errors.items() if path == MISTAKES}
    for line, text in expected.items():
        assert any(text in message for message in got.get(line, [])), (
            f"mistakes.py:{line}: expected an error containing {text!r}, got {got.get(line)}"
        )
    unexpected = {line: messages for line, messages in got.items() if line not in expected}
    assert not unexpected, unexpected


def test_a_typo_in_a_field_is_reported_as_such(
    mypy_errors: dict[tuple[Path, int], list[str]],
) -> None:
    """The promise of typed channels: ``tick.prise`` is found before production."""
    typos = [
        message
        for (path, _), messages in mypy_errors.items()
        if path == MISTAKES
        for message in messages
    ]
    assert sum('"Tick" has no attribute "prise"' in message for message in typos) == 4


def test_no_type_checker_is_silenced() -> None:
    for path in programs():
        text = path.read_text()
        assert "type: ignore" not in text, path
        assert "pyright: ignore" not in text, path
        assert "cast(" not in text or path.parent == EXAMPLES, path


# -- the documented code is the checked code ------------------------------------------------

BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def _normalize(text: str) -> list[str]:
    """Code lines without imports, blank lines and layout (indentation, spacing)."""
    lines = []
    for raw in text.splitlines():
        line = " ".join(raw.split())
        if not line or re.match(r"(import|from) \S+", line):
            continue
        lines.append(line)
    return lines


def _contains_in_order(haystack: list[str], needle: list[str]) -> bool:
    it = iter(haystack)
    return all(line in it for line in needle)


def documented_blocks() -> list[tuple[str, str]]:
    blocks = []
    readme = (ROOT / "README.md").read_text()
    usage = readme.split("## Usage", 1)[1].split("\n## ", 1)[0]
    blocks += [("README.md", block) for block in BLOCK.findall(usage)]
    for page in sorted((ROOT / "docs" / "howto").glob("*.md")):
        for block in BLOCK.findall(page.read_text()):
            if not block.lstrip().startswith("--8<--"):  # examples/ are checked as files
                blocks.append((f"docs/howto/{page.name}", block))
    return blocks


@pytest.mark.parametrize(("page", "block"), documented_blocks())
def test_every_documented_example_is_a_checked_program(page: str, block: str) -> None:
    needle = _normalize(block)
    sources = [_normalize(path.read_text()) for path in sorted(TYPING.glob("*.py"))]
    assert any(_contains_in_order(source, needle) for source in sources), (
        f"this example of {page} is in no file of tests/typing:\n{block}"
    )
