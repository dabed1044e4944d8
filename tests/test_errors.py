"""``errors.py``: the whole exception tree, drawn in its docstring."""

from __future__ import annotations

import inspect
import re

import simple_websocket
from simple_websocket import errors, operators, reconnect


def test_every_exception_is_in_the_tree_with_its_parents() -> None:
    doc = errors.__doc__ or ""
    exported = [getattr(errors, name) for name in errors.__all__]
    classes = [c for c in exported if isinstance(c, type) and issubclass(c, BaseException)]
    assert {c.__name__ for c in classes} == set(re.findall(r"── (\w+)", doc))
    for cls in classes:
        assert issubclass(cls, errors.SimpleWebsocketError)
        assert cls.__module__ == "simple_websocket.errors"
        # The tree's indentation says who the parent is.
        line = next(line for line in doc.splitlines() if f"── {cls.__name__}" in line)
        depth = line.index("──")
        parents = [
            other
            for other in doc.splitlines()[: doc.splitlines().index(line)]
            if "── " in other and other.index("──") < depth
        ]
        if not parents:  # the root, under RuntimeError
            assert cls is errors.SimpleWebsocketError and issubclass(cls, RuntimeError)
            continue
        parent = re.findall(r"── (\w+)", parents[-1])[0]
        assert parent in [base.__name__ for base in inspect.getmro(cls)[1:]], cls


def test_errors_are_importable_from_where_they_were() -> None:
    assert reconnect.OutboxFull is errors.OutboxFull is simple_websocket.OutboxFull
    assert operators.IdleTimeout is errors.IdleTimeout is simple_websocket.IdleTimeout
    for name in ("IdleTimeout", "OutboxFull"):
        assert name in simple_websocket.__all__, name


def test_idle_timeout_is_a_timeout() -> None:
    exc = errors.IdleTimeout(2.5)
    assert isinstance(exc, TimeoutError) and exc.timeout == 2.5
    assert "2.5" in str(exc)
