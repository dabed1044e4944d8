"""Client-side benchmarks: our simple_websocket against other asyncio clients.

Run from the repository root::

    python -m benchmarks.run [--quick] [--rounds N] [--out DIR]

A fixed peer (``benchmarks/peer.py``: a ``websockets`` echo server plus a raw TCP
echo server) runs in its own process; every (round, scenario, candidate) is measured
in a fresh worker process (``python -m benchmarks.run --worker CANDIDATE SCENARIO
--url URL``) that prints one JSON line. Candidates are interleaved (their order is
rotated every round) and the median, min and max over the rounds are reported,
together with the ratios ``ours / X``. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import json
import os
import platform
import select
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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
CANDIDATES: dict[str, str] = {
    # id -> label used in the report
    OURS: "simple_websocket (ours)",
    "websockets": "websockets",
    "aiohttp": "aiohttp",
    "simple-websocket-1.1.0": "simple-websocket 1.1.0",
    "raw-tcp": "raw TCP echo (limit)",
}
SCENARIOS: dict[str, str] = {
    # id -> unit
    "latency": "round trips/s",
    "pipelined": "messages/s",
    "mib": "MB/s",
}
#: Client CPU time per item: (unit, multiplier applied to CPU seconds per item).
CPU_COST: dict[str, tuple[str, float]] = {
    "latency": ("us/round trip", 1e6),
    "pipelined": ("us/message", 1e6),
    "mib": ("ms/MiB", 1e3 * (1 << 20)),
}
COMPRESSION: dict[str, str] = {
    OURS: "off: AioClient.connect(url, compression=False)",
    "websockets": "off: connect(url, compression=None)",
    "aiohttp": "off: ws_connect(url, compress=0)",
    "simple-websocket-1.1.0": (
        "not configurable; its client sends no permessage-deflate offer "
        "(its server side always accepts one)"
    ),
    "raw-tcp": "n/a (no WebSocket framing)",
}

#: The 64-byte message of the latency and pipelined scenarios (ASCII text).
TEXT = "0123456789abcdef" * 4
MIB = 1 << 20


@dataclass(frozen=True)
class Settings:
    seconds: float  # measured time per worker
    warmup: float  # unmeasured time before it, on the same connection
    latency_batch: int  # round trips per timing check
    pipelined_batch: int  # N messages in flight per pipelined batch
    rounds: int


FULL = Settings(seconds=0.75, warmup=0.25, latency_batch=32, pipelined_batch=5000, rounds=5)
QUICK = Settings(seconds=0.15, warmup=0.05, latency_batch=16, pipelined_batch=1000, rounds=2)


# ---------------------------------------------------------------------------------
# Worker side: one candidate, one scenario, one connection, one JSON line.
# ---------------------------------------------------------------------------------


@dataclass
class Conn:
    """What a scenario needs from a connected client, whatever the library."""

    send_text: Callable[[Any], Awaitable[Any]]
    send_binary: Callable[[bytes], Awaitable[Any]]
    recv: Callable[[], Awaitable[Any]]
    close: Callable[[], Awaitable[Any]]
    text: Any  # the 64-byte text payload as this client sends and receives it
    extensions: str  # negotiated extensions, as seen by the client
    version: str
    module: str


def _same_path(entry: str, target: Path) -> bool:
    try:
        return Path(entry or ".").resolve() == target
    except OSError:
        return False


def _import_simple_websocket(root: Path) -> Any:
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


def _header(headers: Any, name: str) -> str:
    for key, value in headers or ():
        if key.lower() == name.lower():
            return str(value)
    return "none"


async def _open_ours(url: str) -> Conn:
    sw = _import_simple_websocket(SRC)
    ws = await sw.AioClient.connect(url, compression=False, max_message_size=None)
    return Conn(
        ws.send,
        ws.send,
        ws.receive,
        ws.close,
        TEXT,
        _header(ws.response_headers, "Sec-WebSocket-Extensions"),
        sw.__version__,
        sw.__file__,
    )


async def _open_sw11(url: str, sw11_dir: Path) -> Conn:
    from importlib import metadata

    sw = _import_simple_websocket(sw11_dir)
    found = metadata.distributions(name="simple-websocket", path=[str(sw11_dir)])
    version = next((d.version for d in found), "unknown")
    ws = await sw.AioClient.connect(url)
    try:
        # wsproto internals: the extensions in use on the established connection
        names = [e.name for e in ws.ws.connection._proto.extensions]
        extensions = ", ".join(names) or "none"
    except AttributeError:
        extensions = "unknown"
    return Conn(ws.send, ws.send, ws.receive, ws.close, TEXT, extensions, version, sw.__file__)


async def _open_websockets(url: str) -> Conn:
    import websockets
    from websockets.asyncio.client import connect

    ws = await connect(url, compression=None, max_size=None, ping_interval=None)
    return Conn(
        ws.send,
        ws.send,
        ws.recv,
        ws.close,
        TEXT,
        ws.response.headers.get("Sec-WebSocket-Extensions", "none"),
        websockets.__version__,
        websockets.__file__,
    )


async def _open_aiohttp(url: str) -> Conn:
    import aiohttp

    session = aiohttp.ClientSession()
    try:
        ws = await session.ws_connect(url, compress=0, max_msg_size=0)
    except BaseException:
        await session.close()
        raise
    data_types = (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY)

    async def recv() -> Any:
        msg = await ws.receive()
        if msg.type in data_types:
            return msg.data
        raise RuntimeError(f"aiohttp received {msg.type!r}: {msg.data!r}")

    async def close() -> None:
        try:
            await ws.close()
        finally:
            await session.close()

    return Conn(
        ws.send_str,
        ws.send_bytes,
        recv,
        close,
        TEXT,
        f"permessage-deflate (compress={ws.compress})" if ws.compress else "none",
        aiohttp.__version__,
        aiohttp.__file__,
    )


async def _open_raw_tcp(url: str) -> Conn:
    """Length-prefixed records (4-byte big-endian length + payload) over TCP."""
    import struct

    host, _, port = url.removeprefix("tcp://").rstrip("/").rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port), limit=1 << 22)
    header = struct.Struct("!I")
    pack, unpack = header.pack, header.unpack
    write, drain, readexactly = writer.write, writer.drain, reader.readexactly

    async def send(data: bytes) -> None:
        if len(data) < 65536:
            write(pack(len(data)) + data)
        else:
            write(pack(len(data)))
            write(data)
        await drain()

    async def recv() -> bytes:
        (size,) = unpack(await readexactly(4))
        return await readexactly(size)

    async def close() -> None:
        writer.close()
        await writer.wait_closed()

    return Conn(
        send,
        send,
        recv,
        close,
        TEXT.encode(),
        "n/a",
        f"asyncio streams (Python {platform.python_version()})",
        asyncio.__file__,
    )


def _latency(conn: Conn, batch: int) -> Callable[[], Awaitable[int]]:
    send, recv, payload = conn.send_text, conn.recv, conn.text

    async def unit() -> int:
        for _ in range(batch):
            await send(payload)
            reply = await recv()
            if reply != payload:
                raise RuntimeError(f"bad echo: {reply!r}")
        return batch

    return unit


def _pipelined(conn: Conn, batch: int) -> Callable[[], Awaitable[int]]:
    send, recv, payload = conn.send_text, conn.recv, conn.text

    async def sender() -> None:
        for _ in range(batch):
            await send(payload)

    async def unit() -> int:
        task = asyncio.ensure_future(sender())
        try:
            for _ in range(batch):
                reply = await recv()
                if reply != payload:
                    raise RuntimeError(f"bad echo: {reply!r}")
        finally:
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return batch

    return unit


def _mib(conn: Conn) -> Callable[[], Awaitable[int]]:
    send, recv = conn.send_binary, conn.recv
    blob = os.urandom(MIB)

    async def unit() -> int:
        await send(blob)
        reply = await recv()
        if len(reply) != MIB or reply != blob:
            raise RuntimeError(f"bad echo of {len(reply)} bytes")
        return MIB

    return unit


async def _run_for(unit: Callable[[], Awaitable[int]], seconds: float) -> dict[str, float]:
    items = units = 0
    cpu0 = time.process_time()
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        items += await unit()
        units += 1
        now = time.perf_counter()
        if now >= deadline:
            break
    cpu = time.process_time() - cpu0
    return {"items": items, "units": units, "elapsed_s": now - start, "cpu_s": cpu}


async def _worker(args: argparse.Namespace) -> dict[str, Any]:
    candidate, scenario = args.worker
    if candidate == OURS:
        conn = await _open_ours(args.url)
    elif candidate == "simple-websocket-1.1.0":
        conn = await _open_sw11(args.url, args.sw11_dir)
    elif candidate == "websockets":
        conn = await _open_websockets(args.url)
    elif candidate == "aiohttp":
        conn = await _open_aiohttp(args.url)
    elif candidate == "raw-tcp":
        conn = await _open_raw_tcp(args.url)
    else:
        raise ValueError(f"unknown candidate {candidate!r}")

    result: dict[str, Any] = {
        "version": conn.version,
        "module": conn.module,
        "extensions": conn.extensions,
    }
    try:
        if scenario == "latency":
            unit = _latency(conn, args.latency_batch)
        elif scenario == "pipelined":
            unit = _pipelined(conn, args.pipelined_batch)
        elif scenario == "mib":
            unit = _mib(conn)
        else:
            raise ValueError(f"unknown scenario {scenario!r}")
        if args.warmup > 0:
            await _run_for(unit, args.warmup)
        gc.collect()
        stats = await _run_for(unit, args.seconds)
    finally:
        try:
            await asyncio.wait_for(conn.close(), 5)
        except Exception as exc:
            result["close_error"] = f"{type(exc).__name__}: {exc}"
    rate = stats["items"] / stats["elapsed_s"]
    if scenario == "mib":
        rate /= 1e6
    result.update(stats, rate=rate, unit=SCENARIOS[scenario])
    result["cpu_share"] = stats["cpu_s"] / stats["elapsed_s"]
    return result


def worker_main(args: argparse.Namespace) -> int:
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {args.cpu})
    candidate, scenario = args.worker
    args.sw11_dir = Path(args.sw11_dir).resolve()
    out: dict[str, Any] = {"candidate": candidate, "scenario": scenario}
    # The harness kills a hung worker from outside; this is the polite limit.
    budget = args.warmup + args.seconds + 15
    try:
        out.update(asyncio.run(asyncio.wait_for(_worker(args), budget)))
        out["ok"] = True
    except BaseException as exc:  # report everything, even KeyboardInterrupt
        out["ok"] = False
        out["error"] = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, TimeoutError) and not str(exc):
            out["error"] = f"TimeoutError: gave up after {budget:.0f} s"
    print(json.dumps(out), flush=True)
    return 0 if out["ok"] else 1


# ---------------------------------------------------------------------------------
# Harness side: peer process, worker processes, statistics, report.
# ---------------------------------------------------------------------------------


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _tail(text: str | bytes | None, lines: int = 6) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join(text.strip().splitlines()[-lines:])


class Peer:
    """The echo peer process; :meth:`stop` always kills it."""

    def __init__(self, cpu: int | None, log_path: Path) -> None:
        self.cpu = cpu
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        self.starts = 0

    def start(self, startup_timeout: float = 20.0) -> None:
        cmd = [sys.executable, "-m", "benchmarks.peer"]
        if self.cpu is not None:
            cmd += ["--cpu", str(self.cpu)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log
            )
        self.starts += 1
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], startup_timeout)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            self.stop()
            raise RuntimeError(f"the peer did not start; see {self.log_path}")
        self.info = json.loads(line)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()  # the peer exits cleanly on end of stdin
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(3)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.info['ws_port']}/"

    @property
    def tcp_url(self) -> str:
        return f"tcp://127.0.0.1:{self.info['tcp_port']}"


def _ensure_sw11() -> str | None:
    """Install simple-websocket 1.1.0 into SW11_DIR if needed; return an error."""
    from importlib import metadata

    if (SW11_DIR / "simple_websocket" / "aiows.py").exists():
        found = [d.version for d in metadata.distributions(path=[str(SW11_DIR)])]
        if found == ["1.1.0"]:
            return None
    _log(f"installing {SW11_REQUIREMENT} into {SW11_DIR.relative_to(REPO)} ...")
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--upgrade"]
    cmd += ["--target", str(SW11_DIR), SW11_REQUIREMENT]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"pip install failed: {exc}"
    if proc.returncode != 0:
        return f"pip install failed:\n{_tail(proc.stdout + proc.stderr)}"
    return None


def _run_worker(cmd: list[str], limit: float) -> dict[str, Any]:
    try:
        proc = subprocess.run(
            cmd,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=limit,
        )
    except subprocess.TimeoutExpired as exc:  # subprocess.run killed it
        return {"ok": False, "error": f"hung: killed after {limit:.0f} s\n{_tail(exc.stderr)}"}
    except OSError as exc:
        return {"ok": False, "error": f"could not start the worker: {exc}"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            try:
                result: dict[str, Any] = json.loads(line)
            except ValueError:
                break
            if not result.get("ok"):
                result["error"] = f"{result.get('error')}\n{_tail(proc.stderr)}".strip()
            return result
    return {
        "ok": False,
        "error": f"no result (exit status {proc.returncode})\n{_tail(proc.stderr)}",
    }


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return f"{head}{' (modified)' if dirty else ''}" if head else "unknown"


def _summarize(samples: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for cand, per_scenario in samples.items():
        summary[cand] = {}
        for scen, runs in per_scenario.items():
            rates = [r["rate"] for r in runs if r.get("ok")]
            cell: dict[str, Any] = {
                "unit": SCENARIOS[scen],
                "ok": len(rates),
                "failed": len(runs) - len(rates),
            }
            if rates:
                unit, scale = CPU_COST[scen]
                costs = [r["cpu_s"] / r["items"] * scale for r in runs if r.get("ok")]
                shares = [r["cpu_share"] for r in runs if r.get("ok")]
                cell["cpu_cost"] = {
                    "unit": unit,
                    "median": statistics.median(costs),
                    "busy": statistics.median(shares),
                }
                med = statistics.median(rates)
                cell.update(
                    median=med,
                    min=min(rates),
                    max=max(rates),
                    spread=(max(rates) - min(rates)) / med if med else None,
                    rates=rates,
                )
            summary[cand][scen] = cell
    return summary


def _ratios(summary: dict[str, Any]) -> dict[str, Any]:
    """``ours / X`` per scenario: medians, and the extremes the noise allows."""
    ratios: dict[str, Any] = {}
    ours = summary.get(OURS, {})
    for cand, per_scenario in summary.items():
        if cand == OURS:
            continue
        ratios[cand] = {}
        for scen, cell in per_scenario.items():
            mine = ours.get(scen, {})
            if "median" not in cell or "median" not in mine:
                ratios[cand][scen] = None
                continue
            ratios[cand][scen] = {
                "median": mine["median"] / cell["median"],
                "low": mine["min"] / cell["max"],
                "high": mine["max"] / cell["min"],
            }
    return ratios


def _markdown(report: dict[str, Any]) -> str:
    meta, summary, ratios = report["meta"], report["summary"], report["ratios"]
    scenarios = meta["scenarios"]
    out: list[str] = []
    add = out.append
    add("# simple_websocket client benchmarks\n")
    add(
        f"`{meta['command']}` - {meta['mode']} mode, {meta['rounds']} round(s), "
        f"{meta['seconds']} s measured (+{meta['warmup']} s warm-up) per run; "
        f"{meta['date']}; commit {meta['commit']}.  "
    )
    add(
        f"Python {meta['python']} on {meta['platform']}, {meta['cpus']} CPUs, "
        f"load average {meta['loadavg_start']} -> {meta['loadavg_end']}; "
        f"{meta['pinning']}.  "
    )
    add(
        f"Peer: websockets {meta['peer'].get('websockets', '?')} echo server "
        "(compression off) and a raw asyncio TCP echo server, in a separate process."
    )
    add("")
    add("## Rates\n")
    add("Median over the rounds, (min - max) in parentheses. Higher is better.\n")
    head = ["candidate"] + [f"{s} ({SCENARIOS[s]})" for s in scenarios]
    add("| " + " | ".join(head) + " |")
    add("|" + "---|" + "---:|" * len(scenarios))
    for cand in meta["candidates"]:
        row = [CANDIDATES[cand]]
        for scen in scenarios:
            cell = summary[cand][scen]
            if "median" not in cell:
                row.append("failed")
                continue
            text = f"{_fmt(cell['median'])} ({_fmt(cell['min'])} - {_fmt(cell['max'])})"
            if cell["failed"]:
                text += f" [{cell['failed']} failed]"
            row.append(text)
        add("| " + " | ".join(row) + " |")
    add("")
    add("## Ratios: ours / X\n")
    add(
        "Median of ours divided by the median of X: above 1 ours is faster, below 1 "
        "slower. In parentheses: worst and best case the noise allows "
        "(ours min / X max - ours max / X min); if that range contains 1, the "
        "difference is within the noise."
        + (
            " Against the raw TCP echo, the ratio is the fraction of the "
            "framing-free limit that ours reaches."
            if "raw-tcp" in meta["candidates"]
            else ""
        )
        + "\n"
    )
    add("| X | " + " | ".join(scenarios) + " |")
    add("|---|" + "---:|" * len(scenarios))
    for cand in meta["candidates"]:
        if cand == OURS:
            continue
        row = [CANDIDATES[cand]]
        for scen in scenarios:
            r = ratios.get(cand, {}).get(scen)
            if r is None:
                row.append("-")
                continue
            row.append(
                f"**{_fmt_ratio(r['median'])}** ({_fmt_ratio(r['low'])} - {_fmt_ratio(r['high'])})"
            )
        add("| " + " | ".join(row) + " |")
    add("")
    add("## Client CPU cost\n")
    add(
        "CPU time of the client process per item (median over the rounds; lower is "
        "better); it depends less on the peer and on other load than the rates do. "
        "In parentheses: how busy the client process was (CPU time / wall time); "
        "in pipelined and mib, well below 100% means the client waited for the "
        "peer, so the rate is the peer's limit rather than the client's (in latency "
        "the client always waits for each echo).\n"
    )
    add("| candidate | " + " | ".join(f"{s} ({CPU_COST[s][0]})" for s in scenarios) + " |")
    add("|---|" + "---:|" * len(scenarios))
    for cand in meta["candidates"]:
        row = [CANDIDATES[cand]]
        for scen in scenarios:
            cost = summary[cand][scen].get("cpu_cost")
            row.append(f"{cost['median']:.1f} ({cost['busy']:.0%})" if cost else "-")
        add("| " + " | ".join(row) + " |")
    add("")
    add("## Candidates\n")
    add("| candidate | version | imported from | compression | negotiated extensions |")
    add("|---|---|---|---|---|")
    for cand in meta["candidates"]:
        info = report["candidates"].get(cand, {})
        module = info.get("module")
        if module:
            with contextlib.suppress(ValueError):
                module = str(Path(module).relative_to(REPO))
            module = f"`{module}`"
        add(
            f"| {CANDIDATES[cand]} | {info.get('version', '-')} | {module or '-'} | "
            f"{COMPRESSION[cand]} | {info.get('extensions', '-')} |"
        )
    failures = report["failures"]
    if failures:
        add("")
        add("## Failures\n")
        for f in failures:
            error = " / ".join(f["error"].splitlines()[-3:])
            add(f"- round {f['round']}, {f['scenario']}, {CANDIDATES[f['candidate']]}: {error}")
    notes = report["notes"]
    if notes:
        add("")
        add("## Notes\n")
        out.extend(f"- {n}" for n in notes)
    return "\n".join(out) + "\n"


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM: stop like on Ctrl-C (kill the worker and the peer, write results)."""
    raise KeyboardInterrupt


def _pinning(no_pin: bool) -> tuple[int | None, int | None, str]:
    if no_pin or not hasattr(os, "sched_getaffinity"):
        return None, None, "no CPU pinning"
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None, "no CPU pinning (fewer than 2 CPUs available)"
    return cpus[0], cpus[1], f"peer pinned to CPU {cpus[0]}, clients to CPU {cpus[1]}"


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def harness_main(args: argparse.Namespace) -> int:
    base = QUICK if args.quick else FULL
    rounds = args.rounds if args.rounds is not None else base.rounds
    if rounds < 1:
        raise SystemExit("--rounds must be at least 1")
    candidates = _select(args.candidates, CANDIDATES, "candidate")
    if OURS not in candidates:
        candidates.insert(0, OURS)
    scenarios = _select(args.scenarios, SCENARIOS, "scenario")
    out_dir = Path(args.out).resolve() if args.out else DEFAULT_OUT
    out_dir.mkdir(parents=True, exist_ok=True)
    peer_cpu, client_cpu, pinning = _pinning(args.no_pin)
    argv = ["python -m benchmarks.run", *sys.argv[1:]]

    meta: dict[str, Any] = {
        "command": " ".join(argv),
        "mode": "quick" if args.quick else "full",
        "rounds": rounds,
        "seconds": base.seconds,
        "warmup": base.warmup,
        "latency_batch": base.latency_batch,
        "pipelined_batch": base.pipelined_batch,
        "message_bytes": len(TEXT),
        "mib_bytes": MIB,
        "candidates": candidates,
        "scenarios": scenarios,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "pinning": pinning,
        "loadavg_start": _loadavg(),
    }
    notes: list[str] = []
    broken: dict[str, str] = {}  # candidate -> reason it cannot run at all
    if "simple-websocket-1.1.0" in candidates:
        error = _ensure_sw11()
        if error:
            broken["simple-websocket-1.1.0"] = error

    samples: dict[str, dict[str, list[dict[str, Any]]]] = {
        c: {s: [] for s in scenarios} for c in candidates
    }
    failures: list[dict[str, Any]] = []
    info: dict[str, dict[str, Any]] = {}
    limit = base.warmup + base.seconds + 25
    (out_dir / "peer.log").unlink(missing_ok=True)
    peer = Peer(peer_cpu, out_dir / "peer.log")
    started = time.perf_counter()
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        peer.start()
        meta["peer"] = dict(peer.info)
        for rnd in range(rounds):
            shift = rnd % len(candidates)
            order = candidates[shift:] + candidates[:shift]
            for scen in scenarios:
                for cand in order:
                    if cand in broken:
                        result = {"ok": False, "error": broken[cand]}
                    else:
                        if not peer.alive():
                            notes.append(f"the peer died before round {rnd + 1}; restarted")
                            peer.stop()
                            peer.start()
                        url = peer.tcp_url if cand == "raw-tcp" else peer.ws_url
                        cmd = [sys.executable, "-m", "benchmarks.run"]
                        cmd += ["--worker", cand, scen, "--url", url]
                        cmd += ["--seconds", str(base.seconds)]
                        cmd += ["--warmup", str(base.warmup)]
                        cmd += ["--latency-batch", str(base.latency_batch)]
                        cmd += ["--pipelined-batch", str(base.pipelined_batch)]
                        cmd += ["--sw11-dir", str(SW11_DIR)]
                        if client_cpu is not None:
                            cmd += ["--cpu", str(client_cpu)]
                        result = _run_worker(cmd, limit)
                    result["round"] = rnd + 1
                    samples[cand][scen].append(result)
                    tag = f"[round {rnd + 1}/{rounds}] {scen:<9} {CANDIDATES[cand]:<24}"
                    if result.get("ok"):
                        info.setdefault(
                            cand, {k: result[k] for k in ("version", "module", "extensions")}
                        )
                        _log(f"{tag} {_fmt(result['rate']):>10} {SCENARIOS[scen]}")
                        if result.get("close_error"):
                            notes.append(
                                f"{CANDIDATES[cand]} ({scen}, round {rnd + 1}) "
                                f"failed to close: {result['close_error']}"
                            )
                    else:
                        first = result["error"].splitlines()[0] if result["error"] else ""
                        _log(f"{tag} FAILED: {first}")
                        failures.append(
                            {
                                "round": rnd + 1,
                                "scenario": scen,
                                "candidate": cand,
                                "error": result["error"],
                            }
                        )
    except KeyboardInterrupt:
        notes.append("interrupted: the results are partial")
        _log("interrupted; writing partial results")
    except RuntimeError as exc:  # the peer could not be started
        notes.append(f"aborted: {exc}")
        _log(f"aborted: {exc}")
    finally:
        signal.signal(signal.SIGTERM, previous)
        peer.stop()
    meta.setdefault("peer", {})
    meta["peer_starts"] = peer.starts
    meta["loadavg_end"] = _loadavg()
    meta["wall_s"] = round(time.perf_counter() - started, 1)

    summary = _summarize(samples)
    report = {
        "meta": meta,
        "candidates": info,
        "summary": summary,
        "ratios": _ratios(summary),
        "failures": failures,
        "notes": notes,
        "samples": samples,
    }
    markdown = _markdown(report)
    (out_dir / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "results.md").write_text(markdown)
    print(markdown)
    _log(f"wrote {out_dir / 'results.md'} and results.json in {meta['wall_s']} s")
    complete = not failures and not any(n.startswith(("aborted", "interrupted")) for n in notes)
    return 0 if complete else 2


def _select(value: str | None, known: dict[str, str], what: str) -> list[str]:
    if not value:
        return list(known)
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in known]
    if unknown:
        raise SystemExit(f"unknown {what}(s): {', '.join(unknown)}; known: {', '.join(known)}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Benchmark simple_websocket's client against other clients.",
    )
    parser.add_argument("--quick", action="store_true", help="short runs, 2 rounds")
    parser.add_argument(
        "--rounds", type=int, default=None, help="rounds (default 5; 2 with --quick)"
    )
    parser.add_argument("--out", default=None, help="output directory (default benchmarks/results)")
    parser.add_argument(
        "--candidates",
        default=None,
        help=f"comma-separated subset of: {', '.join(CANDIDATES)}",
    )
    parser.add_argument(
        "--scenarios",
        default=None,
        help=f"comma-separated subset of: {', '.join(SCENARIOS)}",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin CPUs")
    # Internal: run one measurement in this process and print one JSON line.
    parser.add_argument(
        "--worker", nargs=2, metavar=("CANDIDATE", "SCENARIO"), help=argparse.SUPPRESS
    )
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=FULL.seconds, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=float, default=FULL.warmup, help=argparse.SUPPRESS)
    parser.add_argument(
        "--latency-batch", type=int, default=FULL.latency_batch, help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--pipelined-batch", type=int, default=FULL.pipelined_batch, help=argparse.SUPPRESS
    )
    parser.add_argument("--sw11-dir", default=str(SW11_DIR), help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        if not args.url:
            parser.error("--worker needs --url")
        return worker_main(args)
    return harness_main(args)


if __name__ == "__main__":
    sys.exit(main())
