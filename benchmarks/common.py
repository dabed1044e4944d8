"""What the benchmark processes share: payloads, settings, imports, CPU clocks.

Imported by the harness (``benchmarks.run``), the client-role workers
(``benchmarks.clients``), the candidate servers (``benchmarks.servers``), the load
generator (``benchmarks.loadgen``) and the client-role peer (``benchmarks.peer``).
It imports nothing heavy: pydantic only when the typed model is asked for.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
SRC = REPO / "src"
DEFAULT_OUT = BENCH_DIR / "results"
# Inside benchmarks/results/, which the repository's .gitignore already ignores.
SW11_DIR = BENCH_DIR / "results" / ".sw11"
SW11_REQUIREMENT = "simple-websocket==1.1.0"

OURS = "simple_websocket"
MANUAL = "pydantic-manual"
SW11 = "simple-websocket-1.1.0"
RAW = "raw-tcp"
#: Server role only: the raw TCP echo written the way an ``async for`` server runs,
#: with each received chunk handed to a task that writes it back. It is the
#: asyncio limit of any server whose receive is awaited.
RAW_TASK = "raw-tcp-task"
#: The candidates that exchange length-prefixed records, not WebSocket frames.
RAW_ECHOES = (RAW, RAW_TASK)
#: picows on asyncio's own transports, like every other candidate.
PICOWS = "picows"
#: picows with its default transport: aiofastnet (a transport layer written in C).
PICOWS_FASTNET = "picows-aiofastnet"
#: Typed scenario only: ours, decoding with ``ws.typed(Struct, codec=MsgspecCodec(Struct))``.
MSGSPEC = "msgspec-codec"
#: Typed scenario only, client role: ours, ``client.subscribe(Model, ...)`` iteration.
SUBSCRIPTION = "subscription"
#: Candidates that are ours with another way of decoding (typed scenario only).
TYPED_ONLY = (MANUAL, MSGSPEC, SUBSCRIPTION)
#: Server role only: ours, with a ``MessageHandler`` (callbacks, no handler task).
CALLBACKS = "callbacks"

#: The 64-byte message of the latency, pipelined and connections scenarios (ASCII).
TEXT = "0123456789abcdef" * 4
MIB = 1 << 20
#: The connections scenario: this many connections open at once, each exchanging
#: this many messages (round trips) before it closes.
CONNECTIONS = 200
MESSAGES_PER_CONNECTION = 10
#: Listen backlog of every server (peer and candidates): a burst of CONNECTIONS
#: connects must not overflow the accept queue (SYN retries would add seconds).
BACKLOG = 1024


@dataclass(frozen=True)
class Settings:
    seconds: float  # measured time per worker
    warmup: float  # unmeasured time before it, on the same connection(s)
    latency_batch: int  # round trips per timing check
    pipelined_batch: int  # N messages in flight per pipelined (and typed) batch
    rounds: int


FULL = Settings(seconds=0.75, warmup=0.25, latency_batch=32, pipelined_batch=5000, rounds=5)
QUICK = Settings(seconds=0.15, warmup=0.05, latency_batch=16, pipelined_batch=1000, rounds=2)


# -- the typed scenario's model ------------------------------------------------------


@cache
def typed_model() -> Any:
    """The small pydantic model of the ``typed`` scenario (imported on first use)."""
    from typing import Literal

    from pydantic import BaseModel

    class Trade(BaseModel):
        id: int
        symbol: str
        side: Literal["buy", "sell"]
        price: float
        quantity: int
        venue: str
        tags: list[str]

    return Trade


@cache
def typed_struct() -> Any:
    """The typed scenario's model as a ``msgspec.Struct`` (imported on first use)."""
    from typing import Literal

    import msgspec

    # defstruct: this module's annotations are strings, which msgspec would have to
    # resolve in the module's namespace.
    fields = [
        ("id", int),
        ("symbol", str),
        ("side", Literal["buy", "sell"]),
        ("price", float),
        ("quantity", int),
        ("venue", str),
        ("tags", list[str]),
    ]
    return msgspec.defstruct("Trade", fields)


@cache
def typed_sample() -> tuple[Any, str]:
    """``(instance, json)``: the message of the typed scenario, about 110 bytes.

    ``json`` is what pydantic serialises the instance to, so that a server that
    decodes and re-encodes the message echoes exactly the same text.
    """
    model = typed_model()
    obj = model(
        id=123456,
        symbol="EURUSD",
        side="buy",
        price=1.08345,
        quantity=250000,
        venue="XLON",
        tags=["spot", "algo"],
    )
    return obj, obj.model_dump_json()


# -- importing the two simple_websocket packages --------------------------------------


def _same_path(entry: str, target: Path) -> bool:
    try:
        return Path(entry or ".").resolve() == target
    except OSError:
        return False


def import_simple_websocket(root: Path) -> Any:
    """Import ``simple_websocket`` from ``root`` and check that it really did."""
    if "simple_websocket" in sys.modules:
        raise RuntimeError("simple_websocket was imported before the worker chose it")
    if root != SRC:
        # Our package is installed in editable mode (a .pth file puts src/ on
        # sys.path): take src/ out so that it cannot shadow the other copy.
        sys.path[:] = [p for p in sys.path if not _same_path(p, SRC)]
    sys.path.insert(0, str(root))
    import simple_websocket

    where = Path(simple_websocket.__file__).resolve()
    if not where.is_relative_to(root):
        raise RuntimeError(f"imported simple_websocket from {where}, expected {root}")
    return simple_websocket


def sw11_version(sw11_dir: Path) -> str:
    from importlib import metadata

    found = metadata.distributions(name="simple-websocket", path=[str(sw11_dir)])
    return next((d.version for d in found), "unknown")


# -- processes ----------------------------------------------------------------------


def pin(cpu: int | None) -> None:
    """Pin this process to ``cpu`` (if given and possible)."""
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {cpu})


def process_cpu_clock(pid: int) -> Callable[[], float]:
    """Return a function giving the CPU time (user + system, s) of process ``pid``.

    Uses the process's CPU-time clock (``clock_getcpuclockid``, nanosecond
    resolution) where the platform has one, else ``/proc/PID/stat`` (clock ticks).
    """
    if pid == os.getpid():
        return time.process_time
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        clock = ctypes.c_int()
        if libc.clock_getcpuclockid(pid, ctypes.byref(clock)) == 0:
            clock_id = clock.value
            time.clock_gettime(clock_id)  # fails here rather than later
            return lambda: time.clock_gettime(clock_id)
    stat = Path(f"/proc/{pid}/stat")
    ticks = os.sysconf("SC_CLK_TCK")

    def from_proc() -> float:
        fields = stat.read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / ticks

    from_proc()
    return from_proc
