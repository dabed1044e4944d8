"""Instructions per item, counted by callgrind: the figure for changes below the noise.

    python -m benchmarks.instructions [--roles server,client]
        [--scenarios latency,handshakes,connections]
        [--candidates simple_websocket,callbacks,picows] [--seconds 3]

CPU time per item swings by a few percent between runs on a shared machine; the
number of instructions the measured process executes per item hardly does (by
about 1 %). It counts user space only: the kernel's share of a system call
is not in it, so ratios between candidates come out larger than the CPU time ratios
of ``benchmarks.run``. Needs valgrind (``apt install valgrind``).

* **server role**: the candidate server (``benchmarks/servers.py``) runs under
  callgrind with instrumentation off; the load generator warms it up, then
  instrumentation is switched on (``callgrind_control -i on``) for one measured
  run of the load generator and off again. Instructions / items of that run.
* **client role**: the candidate's benchmark worker runs twice under callgrind
  against the usual peer, once for ``seconds / 3`` and once for ``seconds``; the
  difference of the two counts divided by the difference of their items removes
  what does not depend on the length of the run (start-up, imports, connecting).

Valgrind slows the measured process down some fifty times, so a run covers far
fewer items than ``benchmarks.run`` does; the counts are per item all the same.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .common import CALLBACKS, FULL, OURS, PICOWS, RAW_ECHOES, RAW_TASK
from .run import Peer, _run_worker, _start_process, _stop_process, _timing_args, client_url

SCENARIOS = ("latency", "handshakes", "connections", "pipelined")
DEFAULT_CANDIDATES = (OURS, CALLBACKS, PICOWS)
_TOTALS = re.compile(rb"^(?:totals|summary): (\d+)", re.MULTILINE)


def count(path: Path) -> int:
    """The instructions recorded in a callgrind output file.

    Raises:
        ValueError: The file holds no total.
    """
    found = _TOTALS.findall(path.read_bytes())
    if not found:
        raise ValueError(f"no instruction total in {path}")
    return max(int(value) for value in found)


def _callgrind(out: Path, *, instrument: bool = True) -> list[str]:
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    if not instrument:
        cmd.append("--instr-atstart=no")
    return [*cmd, sys.executable]


def _control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True, timeout=60)


def server_instructions(candidate: str, scenario: str, seconds: float, workdir: Path) -> float:
    """Instructions the candidate server executes per item of ``scenario``.

    Raises:
        RuntimeError: The server or the load generator failed.
    """
    out = workdir / f"server-{candidate}-{scenario}.%p"
    cmd = [*_callgrind(out, instrument=False), "-m", "benchmarks.servers", candidate, scenario]
    with (workdir / "servers.log").open("ab") as log:
        proc, info = _start_process(cmd, log, startup_timeout=120)
    pid = str(info["pid"])
    limit = 60 + 100 * seconds  # valgrind is slow
    try:
        load = [sys.executable, "-m", "benchmarks.loadgen", scenario, "--port", str(info["port"])]
        load += ["--server-pid", pid] + (["--raw"] if candidate in RAW_ECHOES else [])
        warmup = _run_worker([*load, "--seconds", "1", "--warmup", "0.5"], limit)
        if not warmup.get("ok"):
            raise RuntimeError(f"warm-up failed: {warmup.get('error')}")
        _control("-i", "on", pid)
        result = _run_worker([*load, "--seconds", str(seconds), "--warmup", "0"], limit)
        _control("-i", "off", pid)
        _control("-d", pid)
    finally:
        _stop_process(proc)
    if not result.get("ok") or not result.get("items"):
        raise RuntimeError(f"the load generator failed: {result.get('error')}")
    return count(workdir / f"server-{candidate}-{scenario}.{pid}.1") / result["items"]


def client_instructions(
    candidate: str, scenario: str, peer: Peer, seconds: float, workdir: Path
) -> float:
    """Instructions the candidate client executes per item of ``scenario``.

    Raises:
        RuntimeError: A worker failed, or both runs covered as many items.
    """
    url = client_url(candidate, scenario, peer)
    runs = []
    for length in (seconds / 3, seconds):
        out = workdir / f"client-{candidate}-{scenario}-{length:g}.out"
        cmd = [*_callgrind(out), "-m", "benchmarks.run", "--worker", candidate, scenario]
        cmd += ["--url", url]
        cmd += _timing_args(dataclasses.replace(FULL, seconds=length, warmup=0))
        result = _run_worker(cmd, 120 + 100 * length)
        if not result.get("ok"):
            raise RuntimeError(f"the worker failed: {result.get('error')}")
        runs.append((int(result["items"]), count(out)))
    (items1, total1), (items2, total2) = runs
    if items2 <= items1:
        raise RuntimeError("the longer run covered no more items than the shorter one")
    return (total2 - total1) / (items2 - items1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roles", default="server,client")
    parser.add_argument("--scenarios", default="latency,handshakes,connections")
    parser.add_argument("--candidates", default=",".join(DEFAULT_CANDIDATES))
    parser.add_argument("--seconds", type=float, default=3.0, help="measured run (wall time)")
    args = parser.parse_args(argv)
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} was not found: install valgrind (apt install valgrind)")
    roles = [r for r in args.roles.split(",") if r]
    scenarios = [s for s in args.scenarios.split(",") if s]
    candidates = [c for c in args.candidates.split(",") if c]
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {SCENARIOS}")
    results: dict[str, dict[str, dict[str, Any]]] = {r: {} for r in roles}
    with tempfile.TemporaryDirectory(prefix="sw-instructions-") as tmp:
        workdir = Path(tmp)
        peer = Peer(None, workdir / "peer.log")
        try:
            for role in roles:
                if role == "client":
                    peer.start()
                for cand in candidates:
                    if role == "client" and cand in (CALLBACKS, RAW_TASK):
                        continue  # a way of writing servers
                    for scen in scenarios:
                        try:
                            if role == "server":
                                value: Any = server_instructions(cand, scen, args.seconds, workdir)
                            else:
                                value = client_instructions(cand, scen, peer, args.seconds, workdir)
                        except (RuntimeError, ValueError, subprocess.SubprocessError) as exc:
                            value = f"failed: {str(exc).splitlines()[0]}"
                        results[role].setdefault(cand, {})[scen] = value
                        shown = f"{value:,.0f}" if isinstance(value, float) else value
                        print(f"{role} {scen} {cand}: {shown}", file=sys.stderr, flush=True)
        finally:
            with contextlib.suppress(Exception):
                peer.stop()
    for role in roles:
        print(f"\nInstructions per item, {role} role (callgrind; user space only)\n")
        print("| candidate | " + " | ".join(scenarios) + " |")
        print("|---|" + "---:|" * len(scenarios))
        for cand, row in results[role].items():
            cells = [f"{row[s]:,.0f}" if isinstance(row[s], float) else row[s] for s in scenarios]
            print(f"| {cand} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
