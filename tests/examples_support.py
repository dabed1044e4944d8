"""Running the example programs in subprocesses, for the example tests."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
#: Seconds allowed for one step: a line of output, a client run, a process's exit.
STEP_TIMEOUT = 20.0


@dataclass
class Result:
    returncode: int | None
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"exit status {self.returncode}\n--- stdout\n{self.stdout}--- stderr\n{self.stderr}"

    def lines(self) -> list[str]:
        return self.stdout.splitlines()


async def spawn(script: str, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / script),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=EXAMPLES.parent,
        # No PYTHONUNBUFFERED: the examples must flush the lines the tests wait for.
        env={k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"},
    )


async def finish(proc: asyncio.subprocess.Process, head: str = "") -> Result:
    """Wait for ``proc`` to exit (killing it after STEP_TIMEOUT) and collect its output."""
    try:
        out, err = await asyncio.wait_for(proc.communicate(), STEP_TIMEOUT)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        result = Result(None, head + out.decode(), err.decode())
        pytest.fail(f"{proc.args} did not exit within {STEP_TIMEOUT} s:\n{result}")
    return Result(proc.returncode, head + out.decode(), err.decode())


async def run(script: str, *args: str) -> Result:
    return await finish(await spawn(script, *args))
