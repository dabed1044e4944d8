"""Benchmarks: our simple_websocket against other asyncio WebSocket libraries.

Run from the repository root::

    python -m benchmarks.run [--quick] [--rounds N] [--roles client,server] [--out DIR]

Two roles, each candidate in its own process:

* **client**: the candidate's client talks to a fixed peer (``benchmarks/peer.py``:
  ``websockets`` echo servers, with compression off and, for the compressed
  scenario, on, plus a raw TCP echo server) running in another
  process; every (round, scenario, candidate) is a fresh worker process
  (``python -m benchmarks.run --worker CANDIDATE SCENARIO --url URL``,
  ``benchmarks/clients.py``) that prints one JSON line;
* **server**: the candidate runs an echo server (``benchmarks/servers.py``) and a
  fixed raw-socket load generator (``benchmarks/loadgen.py``) drives it from another
  process, reading the server process's CPU clock.

Candidates are interleaved (their order is rotated every round) and the median, min
and max over the rounds are reported, together with the ratios ``ours / X`` and the
CPU time per item of the measured process. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import (
    CALLBACKS,
    CONNECTIONS,
    DEFAULT_OUT,
    FULL,
    MANUAL,
    MESSAGES_PER_CONNECTION,
    MIB,
    MSGSPEC,
    OURS,
    PICOWS,
    PICOWS_FASTNET,
    QUICK,
    RAW,
    RAW_ECHOES,
    RAW_TASK,
    REPO,
    SUBSCRIPTION,
    SW11,
    SW11_DIR,
    SW11_REQUIREMENT,
    TEXT,
    TYPED_ONLY,
    Settings,
    typed_sample,
)

CANDIDATES: dict[str, str] = {
    # id -> label used in the report
    OURS: "simple_websocket (ours)",
    "websockets": "websockets",
    "aiohttp": "aiohttp",
    SW11: "simple-websocket 1.1.0",
    PICOWS: "picows",
    PICOWS_FASTNET: "picows + aiofastnet",
    RAW: "raw TCP echo (limit)",
    RAW_TASK: "raw TCP echo from a task (limit of an awaited receive)",
    MANUAL: "manual: receive() + model_validate_json",
    MSGSPEC: "ours: typed() + MsgspecCodec",
    SUBSCRIPTION: "ours: client.subscribe(Model)",
    CALLBACKS: "ours: MessageHandler callbacks",
}
SCENARIOS: dict[str, str] = {
    # id -> unit
    "latency": "round trips/s",
    "pipelined": "messages/s",
    "mib": "MB/s",
    "connections": "connections/s",
    "handshakes": "connections/s",
    "typed": "messages/s",
    "compressed": "messages/s",
}
ROLES: dict[str, str] = {
    "client": "Client role: the candidate's client against a fixed websockets echo peer",
    "server": "Server role: the candidate's echo server driven by a fixed load generator",
}
#: CPU time of the measured process per item: (unit, multiplier applied to CPU s/item).
CPU_COST: dict[str, tuple[str, float]] = {
    "latency": ("us/round trip", 1e6),
    "pipelined": ("us/message", 1e6),
    "mib": ("ms/MiB", 1e3 * (1 << 20)),
    "connections": ("us/connection", 1e6),
    "handshakes": ("us/connection", 1e6),
    "typed": ("us/message", 1e6),
    "compressed": ("us/message", 1e6),
}
COMPRESSION: dict[str, dict[str, str]] = {
    "client": {
        OURS: "off: AioClient.connect(url, compression=False)",
        "websockets": "off: connect(url, compression=None)",
        "aiohttp": "off: ws_connect(url, compress=0)",
        SW11: (
            "not configurable; its client sends no permessage-deflate offer "
            "(its server side always accepts one)"
        ),
        PICOWS: "not implemented (none offered)",
        PICOWS_FASTNET: "not implemented (none offered)",
        RAW: "n/a (no WebSocket framing)",
        MANUAL: "as ours",
        MSGSPEC: "as ours",
        SUBSCRIPTION: "as ours",
        CALLBACKS: "as ours",
    },
    "server": {
        OURS: "off: serve(handler, compression=False)",
        "websockets": "off: serve(handler, compression=None)",
        "aiohttp": "off: WebSocketResponse(compress=False)",
        SW11: "accepts permessage-deflate; the load generator only offers it in compressed",
        PICOWS: "not implemented (offers ignored)",
        PICOWS_FASTNET: "not implemented (offers ignored)",
        RAW: "n/a (no WebSocket framing)",
        RAW_TASK: "n/a (no WebSocket framing)",
        MANUAL: "as ours",
        MSGSPEC: "as ours",
        SUBSCRIPTION: "as ours",
        CALLBACKS: "as ours",
    },
}


#: How each candidate negotiates permessage-deflate in the compressed scenario.
COMPRESSING: dict[str, dict[str, str]] = {
    "client": {
        OURS: "AioClient.connect(url) (compression=True, the default)",
        "websockets": 'connect(url, compression="deflate") (the default)',
        "aiohttp": "ws_connect(url, compress=15)",
    },
    "server": {
        OURS: "serve(handler, compression=True)",
        "websockets": 'serve(handler, compression="deflate") (the default)',
        "aiohttp": "WebSocketResponse(compress=True) (the default)",
        SW11: "always accepts it",
        CALLBACKS: "serve(MessageHandler(), compression=True)",
    },
}


def runs(candidate: str, scenario: str, role: str = "client") -> bool:
    """Whether ``candidate`` takes part in ``scenario`` in ``role``.

    The typed scenario compares our typed channel with our own connection plus a
    hand-written pydantic call, the msgspec codec and (client role) a
    subscription; the other libraries have no typed channel. The compressed
    scenario runs with the candidates that can negotiate permessage-deflate in
    that role. The callbacks candidate (a ``MessageHandler``) and the raw echo
    from a task are servers.
    """
    if candidate == RAW_TASK:
        return role == "server" and scenario not in ("typed", "compressed")
    if candidate == CALLBACKS:
        return (
            role == "server"
            and scenario != "typed"
            and (scenario != "compressed" or candidate in COMPRESSING[role])
        )
    if scenario == "typed":
        return candidate in (OURS, MANUAL, MSGSPEC) or (
            candidate == SUBSCRIPTION and role == "client"
        )
    if scenario == "compressed":
        return candidate in COMPRESSING[role]
    return candidate not in TYPED_ONLY


# ---------------------------------------------------------------------------------
# Processes: the client-role peer, the server-role candidate servers, the workers.
# ---------------------------------------------------------------------------------


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _tail(text: str | bytes | None, lines: int = 6) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    tail = text.strip().splitlines()[-lines:]
    return "\n".join(line if len(line) <= 300 else line[:300] + " [...]" for line in tail)


def _start_process(
    cmd: list[str], log: Any, startup_timeout: float = 20.0
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Start a server process that prints one JSON line once it listens."""
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], startup_timeout)
    line = proc.stdout.readline() if ready else b""
    if not line:
        _stop_process(proc)
        raise RuntimeError(f"{' '.join(cmd[2:4])} did not start")
    return proc, json.loads(line)


def _stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    """Stop a process started by :func:`_start_process` (it exits at end of stdin)."""
    if proc is None:
        return
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


class Peer:
    """The client role's echo peer process; :meth:`stop` always stops it."""

    def __init__(self, cpu: int | None, log_path: Path) -> None:
        self.cpu = cpu
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        self.starts = 0

    def start(self) -> None:
        cmd = [sys.executable, "-m", "benchmarks.peer"]
        if self.cpu is not None:
            cmd += ["--cpu", str(self.cpu)]
        self.starts += 1
        with self.log_path.open("ab") as log:
            try:
                self.proc, self.info = _start_process(cmd, log)
            except RuntimeError:
                raise RuntimeError(f"the peer did not start; see {self.log_path}") from None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        _stop_process(proc)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.info['ws_port']}/"

    @property
    def deflate_url(self) -> str:
        return f"ws://127.0.0.1:{self.info['deflate_port']}/"

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
    """Run a worker (client role) or the load generator; return its JSON line."""
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


def _timing_args(base: Settings) -> list[str]:
    return [
        "--seconds",
        str(base.seconds),
        "--warmup",
        str(base.warmup),
        "--latency-batch",
        str(base.latency_batch),
        "--pipelined-batch",
        str(base.pipelined_batch),
    ]


def client_url(cand: str, scen: str, peer: Peer) -> str:
    """The peer's address a client-role worker of ``cand`` connects to in ``scen``."""
    if cand == RAW:
        return peer.tcp_url
    if scen == "compressed":
        return peer.deflate_url
    return peer.ws_url


def _measure_client(
    cand: str,
    scen: str,
    peer: Peer,
    base: Settings,
    cpu: int | None,
    limit: float,
    profile: Path | None,
) -> dict[str, Any]:
    url = client_url(cand, scen, peer)
    cmd = [sys.executable, "-m", "benchmarks.run", "--worker", cand, scen, "--url", url]
    cmd += _timing_args(base)
    cmd += ["--sw11-dir", str(SW11_DIR)]
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    if profile is not None:
        cmd += ["--profile", str(profile)]
    return _run_worker(cmd, limit)


def _measure_server(
    cand: str,
    scen: str,
    base: Settings,
    server_cpu: int | None,
    loadgen_cpu: int | None,
    limit: float,
    server_log: Path,
    profile: Path | None,
) -> dict[str, Any]:
    """Start the candidate's server, run the load generator against it, stop it."""
    cmd = [sys.executable, "-m", "benchmarks.servers", cand, scen, "--sw11-dir", str(SW11_DIR)]
    if server_cpu is not None:
        cmd += ["--cpu", str(server_cpu)]
    if profile is not None:
        cmd += ["--profile", str(profile)]
    with tempfile.TemporaryFile() as log:
        proc = None
        try:
            try:
                proc, info = _start_process(cmd, log)
            except (RuntimeError, ValueError, OSError) as exc:
                log.seek(0)
                return {"ok": False, "error": f"{exc}\n{_tail(log.read())}"}
            gen = [sys.executable, "-m", "benchmarks.loadgen", scen]
            gen += ["--port", str(info["port"]), "--server-pid", str(info["pid"])]
            gen += _timing_args(base)
            if cand in RAW_ECHOES:
                gen.append("--raw")
            if loadgen_cpu is not None:
                gen += ["--cpu", str(loadgen_cpu)]
            result = _run_worker(gen, limit)
            result.update(
                candidate=cand,
                version=info["version"],
                module=info["module"],
                extensions=(
                    "n/a"
                    if cand in RAW_ECHOES
                    else "none (the load generator only offers one in compressed)"
                ),
            )
        finally:
            _stop_process(proc)
        log.seek(0)
        output = log.read()
    if output.strip():
        with server_log.open("ab") as f:
            f.write(f"--- {cand} {scen}\n".encode() + output + b"\n")
        if not result.get("ok"):
            result["error"] = f"{result.get('error')}\nserver: {_tail(output)}"
    return result


# ---------------------------------------------------------------------------------
# Statistics and report.
# ---------------------------------------------------------------------------------


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


Samples = dict[str, dict[str, list[dict[str, Any]]]]  # candidate -> scenario -> runs


def _summarize(samples: Samples) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for cand, per_scenario in samples.items():
        summary[cand] = {}
        for scen, runs_ in per_scenario.items():
            ok = [r for r in runs_ if r.get("ok")]
            rates = [r["rate"] for r in ok]
            cell: dict[str, Any] = {
                "unit": SCENARIOS[scen],
                "ok": len(rates),
                "failed": len(runs_) - len(rates),
            }
            if rates:
                unit, scale = CPU_COST[scen]
                costs = [r["cpu_s"] / r["items"] * scale for r in ok]
                shares = [r["cpu_share"] for r in ok]
                cell["cpu_cost"] = {
                    "unit": unit,
                    "median": statistics.median(costs),
                    "min": min(costs),
                    "max": max(costs),
                    "busy": statistics.median(shares),
                }
                loadgen = [r["loadgen_share"] for r in ok if "loadgen_share" in r]
                if loadgen:
                    cell["loadgen_busy"] = statistics.median(loadgen)
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


def _role_markdown(role: str, data: dict[str, Any], meta: dict[str, Any], add: Any) -> None:
    summary, ratios = data["summary"], data["ratios"]
    scenarios = [s for s in meta["scenarios"] if any(runs(c, s, role) for c in meta["candidates"])]
    candidates = [c for c in meta["candidates"] if any(runs(c, s, role) for s in scenarios)]
    add(f"## {ROLES[role]}\n")
    if role == "client":
        add(
            f"Peer: websockets {meta.get('peer', {}).get('websockets', '?')} echo server "
            "(compression off) and a raw asyncio TCP echo server, in a separate process. "
            "CPU cost: the client process.\n"
        )
    else:
        add(
            "Load generator: `benchmarks/loadgen.py`, a raw-socket asyncio client (frames "
            "pre-built and pre-masked, pipelined batches written at once), in a separate "
            "process. CPU cost: the server process, read from its CPU clock over the "
            "measured window.\n"
        )
    add(f"### Rates ({role} role)\n")
    add("Median over the rounds, (min - max) in parentheses. Higher is better.\n")
    head = ["candidate"] + [f"{s} ({SCENARIOS[s]})" for s in scenarios]
    add("| " + " | ".join(head) + " |")
    add("|" + "---|" + "---:|" * len(scenarios))
    for cand in candidates:
        row = [CANDIDATES[cand]]
        for scen in scenarios:
            cell = summary.get(cand, {}).get(scen)
            if cell is None:
                row.append("-")
                continue
            if "median" not in cell:
                row.append("failed")
                continue
            text = f"{_fmt(cell['median'])} ({_fmt(cell['min'])} - {_fmt(cell['max'])})"
            if cell["failed"]:
                text += f" [{cell['failed']} failed]"
            row.append(text)
        add("| " + " | ".join(row) + " |")
    add("")
    add(f"### Ratios: ours / X ({role} role)\n")
    add(
        "Median of ours divided by the median of X: above 1 ours is faster, below 1 "
        "slower. In parentheses: worst and best case the noise allows "
        "(ours min / X max - ours max / X min); if that range contains 1, the "
        "difference is within the noise. Against the raw TCP echo, the ratio is the "
        "fraction of the framing-free limit that ours reaches; against the manual "
        "baseline (typed), it compares `ws.typed(Model)` with `receive()` + "
        "`Model.model_validate_json` on our own connection.\n"
    )
    add("| X | " + " | ".join(scenarios) + " |")
    add("|---|" + "---:|" * len(scenarios))
    for cand in candidates:
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
    who = "client" if role == "client" else "server"
    add(f"### CPU cost of the {who} process ({role} role)\n")
    add(
        f"CPU time of the {who} process per item (median over the rounds, lower is "
        "better; min - max in brackets); it depends less on the other side and on "
        f"other load than the rates do. In parentheses: how busy the {who} process was "
        "(CPU time / wall time)"
        + (
            "; in pipelined, mib and connections, well below 100% means the client "
            "waited for the peer, so the rate is the peer's limit rather than the "
            "client's (in latency the client always waits for each echo)."
            if role == "client"
            else "; below 100% means the server waited for the load generator or the "
            "kernel. The load generator's own CPU share is given in the last rows."
        )
        + "\n"
    )
    add("| candidate | " + " | ".join(f"{s} ({CPU_COST[s][0]})" for s in scenarios) + " |")
    add("|---|" + "---:|" * len(scenarios))
    for cand in candidates:
        row = [CANDIDATES[cand]]
        for scen in scenarios:
            cost = summary.get(cand, {}).get(scen, {}).get("cpu_cost")
            row.append(
                f"{cost['median']:.1f} [{cost['min']:.1f} - {cost['max']:.1f}] ({cost['busy']:.0%})"
                if cost
                else "-"
            )
        add("| " + " | ".join(row) + " |")
    if role == "server":
        row = ["load generator busy (median)"]
        for scen in scenarios:
            shares = [
                summary[c][scen]["loadgen_busy"]
                for c in candidates
                if "loadgen_busy" in summary.get(c, {}).get(scen, {})
            ]
            row.append(f"{min(shares):.0%} - {max(shares):.0%}" if shares else "-")
        add("| " + " | ".join(row) + " |")
    add("")
    add(f"### Candidates ({role} role)\n")
    add("| candidate | version | imported from | compression | negotiated extensions |")
    add("|---|---|---|---|---|")
    for cand in candidates:
        info = data["candidates"].get(cand, {})
        module = info.get("module")
        if module:
            with contextlib.suppress(ValueError):
                module = str(Path(module).relative_to(REPO))
            module = f"`{module}`"
        add(
            f"| {CANDIDATES[cand]} | {info.get('version', '-')} | {module or '-'} | "
            f"{COMPRESSION[role][cand]} | {info.get('extensions', '-')} |"
        )
    add("")
    if "compressed" in scenarios:
        used = "; ".join(
            f"{CANDIDATES[c]}: `{how}`" for c, how in COMPRESSING[role].items() if c in candidates
        )
        add(
            "In the compressed scenario permessage-deflate is negotiated instead "
            f"({used}); the measurement fails if it was not.\n"
        )


def _markdown(report: dict[str, Any]) -> str:
    meta = report["meta"]
    out: list[str] = []
    add = out.append
    add("# simple_websocket benchmarks\n")
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
        f"Scenarios: latency = one {meta['message_bytes']}-byte text message at a time; "
        f"pipelined = {meta['pipelined_batch']} such messages in flight; mib = one 1 MiB "
        f"binary message at a time; connections = {meta['connections']} connections "
        f"opened at once, {meta['messages_per_connection']} round trips each, closed; "
        "handshakes = one connection at a time: open, one round trip, close; "
        f"typed = pipelined {meta['typed_bytes']}-byte JSON messages decoded into a "
        "pydantic model; compressed = the same JSON messages pipelined as text with "
        "permessage-deflate negotiated (client role: against a second peer server "
        "with compression on; server role: the load generator offers no context "
        "takeover either way)."
    )
    add("")
    for role in meta["roles"]:
        _role_markdown(role, report["roles"][role], meta, add)
    failures = report["failures"]
    if failures:
        add("## Failures\n")
        for f in failures:
            error = " / ".join(f["error"].splitlines()[-3:])
            add(
                f"- {f['role']} role, round {f['round']}, {f['scenario']}, "
                f"{CANDIDATES[f['candidate']]}: {error}"
            )
        add("")
    notes = report["notes"]
    if notes:
        add("## Notes\n")
        out.extend(f"- {n}" for n in notes)
        add("")
    return "\n".join(out)


# ---------------------------------------------------------------------------------
# The harness.
# ---------------------------------------------------------------------------------


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM: stop like on Ctrl-C (kill the worker and the peer, write results)."""
    raise KeyboardInterrupt


def _pinning(no_pin: bool) -> tuple[int | None, int | None, str]:
    if no_pin or not hasattr(os, "sched_getaffinity"):
        return None, None, "no CPU pinning"
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None, "no CPU pinning (fewer than 2 CPUs available)"
    return (
        cpus[0],
        cpus[1],
        f"peer and load generator pinned to CPU {cpus[0]}, the measured candidate "
        f"(client or server) to CPU {cpus[1]}",
    )


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
    roles = _select(args.roles, ROLES, "role")
    out_dir = Path(args.out).resolve() if args.out else DEFAULT_OUT
    out_dir.mkdir(parents=True, exist_ok=True)
    profile_dir = Path(args.profile).resolve() if args.profile else None
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
    other_cpu, measured_cpu, pinning = _pinning(args.no_pin)
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
        "connections": CONNECTIONS,
        "messages_per_connection": MESSAGES_PER_CONNECTION,
        "typed_bytes": len(typed_sample()[1]),
        "roles": roles,
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
    if profile_dir is not None:
        notes.append(f"profiled run (cProfile, ours only, into {profile_dir}): rates are distorted")
    broken: dict[str, str] = {}  # candidate -> reason it cannot run at all
    if SW11 in candidates:
        error = _ensure_sw11()
        if error:
            broken[SW11] = error

    samples: dict[str, Samples] = {
        role: {c: {s: [] for s in scenarios if runs(c, s, role)} for c in candidates}
        for role in roles
    }
    failures: list[dict[str, Any]] = []
    info: dict[str, dict[str, dict[str, Any]]] = {role: {} for role in roles}
    limit = base.warmup + base.seconds + 25
    (out_dir / "peer.log").unlink(missing_ok=True)
    server_log = out_dir / "servers.log"
    server_log.unlink(missing_ok=True)
    peer = Peer(other_cpu, out_dir / "peer.log")
    started = time.perf_counter()
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        if "client" in roles:
            peer.start()
            meta["peer"] = dict(peer.info)
        for rnd in range(rounds):
            shift = rnd % len(candidates)
            order = candidates[shift:] + candidates[:shift]
            for role in roles:
                for scen in scenarios:
                    for cand in order:
                        if not runs(cand, scen, role):
                            continue
                        profile = None
                        if profile_dir is not None:
                            if cand not in (OURS, CALLBACKS, *TYPED_ONLY):
                                continue
                            profile = profile_dir / f"{role}-{scen}-{cand}-r{rnd + 1}.pstats"
                        if cand in broken:
                            result = {"ok": False, "error": broken[cand]}
                        elif role == "client":
                            if not peer.alive():
                                notes.append(f"the peer died before round {rnd + 1}; restarted")
                                peer.stop()
                                peer.start()
                            result = _measure_client(
                                cand, scen, peer, base, measured_cpu, limit, profile
                            )
                        else:
                            result = _measure_server(
                                cand,
                                scen,
                                base,
                                measured_cpu,
                                other_cpu,
                                limit,
                                server_log,
                                profile,
                            )
                        result["round"] = rnd + 1
                        samples[role][cand][scen].append(result)
                        tag = (
                            f"[round {rnd + 1}/{rounds}] {role:<6} {scen:<11} "
                            f"{CANDIDATES[cand]:<24}"
                        )
                        if result.get("ok"):
                            info[role].setdefault(
                                cand,
                                {
                                    k: result.get(k, "-")
                                    for k in ("version", "module", "extensions")
                                },
                            )
                            _log(f"{tag} {_fmt(result['rate']):>10} {SCENARIOS[scen]}")
                            if result.get("close_error"):
                                notes.append(
                                    f"{CANDIDATES[cand]} ({role} role, {scen}, round "
                                    f"{rnd + 1}) failed to close: {result['close_error']}"
                                )
                        else:
                            first = result["error"].splitlines()[0] if result["error"] else ""
                            _log(f"{tag} FAILED: {first}")
                            failures.append(
                                {
                                    "role": role,
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
    meta["peer_starts"] = peer.starts
    meta["loadavg_end"] = _loadavg()
    meta["wall_s"] = round(time.perf_counter() - started, 1)

    report: dict[str, Any] = {"meta": meta, "roles": {}, "failures": failures, "notes": notes}
    for role in roles:
        summary = _summarize(samples[role])
        report["roles"][role] = {
            "candidates": info[role],
            "summary": summary,
            "ratios": _ratios(summary),
            "samples": samples[role],
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
        description="Benchmark simple_websocket's client and server against other libraries.",
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
    parser.add_argument(
        "--roles", default=None, help=f"comma-separated subset of: {', '.join(ROLES)}"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin CPUs")
    parser.add_argument(
        "--profile",
        default=None,
        metavar="DIR",
        help="run only ours, under cProfile, writing .pstats files into DIR",
    )
    # Internal: run one client-role measurement in this process, print one JSON line.
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
        from .clients import worker_main

        return worker_main(args)
    return harness_main(args)


if __name__ == "__main__":
    sys.exit(main())
