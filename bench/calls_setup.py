"""``bench/calls.py --setup``: call setup alone, against the issue 15 targets.

For each ``--media-workers`` value a fresh server starts; one load process
(bench/calls_load.py, ``"mode": "setup"``) logs in 2(K+M) SDK phones, then

- places ``--single`` K calls one after another (each answered as soon as it rings, then hung
  up and ended at both ends before the next): p50/p95 of call.create -> call.answered, target
  p50 < 50 ms;
- places ``--burst`` M calls at once: p50/p95, target p95 < 1 s for M = 50.

Between the phases this process reads the CPU time of the server's control process and of
each media worker (/proc/PID/stat), so each row also gives the CPU-milliseconds one call's
setup cost the control process (ctl ms/call) and the workers (wrk ms/call). The load process
is pinned to the last CPU and the server to the others with ``--pin``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from calls import Loads, cpu_seconds, load_prefix, make_users, percentile, pin_all, server_pids

SINGLE_P50_MS = 50.0  # issue 15: call setup p50 < 50 ms for one call
BURST_P95_MS = 1000.0  # and for 50 calls placed at once p95 < 1 s


def profile(pids: list[int], workers: int, out: Path | None) -> list[subprocess.Popen[bytes]]:
    """``--profile DIR``: py-spy records the server's processes during the burst, as collapsed
    stacks (``DIR/setup-w<workers>-<process>.txt``; process ``ctl`` or ``worker<i>``)."""
    if out is None:
        return []
    out.mkdir(parents=True, exist_ok=True)
    names = ["ctl", *(f"worker{i}" for i in range(len(pids) - 1))]
    spy = shutil.which("py-spy", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    if spy is None:
        raise SystemExit("--profile needs py-spy (pip install py-spy)")
    spies = [
        subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw",
                          "--nonblocking", "--output", str(out / f"setup-w{workers}-{name}.txt")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for pid, name in zip(pids, names, strict=True)
    ]  # fmt: skip
    time.sleep(1.0)  # py-spy attached before the burst starts
    return spies


def stop_profile(spies: list[subprocess.Popen[bytes]]) -> None:
    for spy in spies:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
    for spy in spies:
        spy.wait(30)


def run_setup(workers: int, args: argparse.Namespace) -> dict[str, Any]:
    """K single calls, then M at once, through a fresh server with ``workers`` media workers."""
    from callbridge.testing.server import running

    k, m = args.single, args.burst
    with (
        tempfile.TemporaryDirectory() as tmp,
        running(
            Path(tmp), log_level="warning", check=False, args=["--media-workers", str(workers)]
        ) as server,  # fmt: skip
    ):
        pids = server_pids(server)
        if args.pin:
            cpus = os.cpu_count() or 1
            pin_all(pids, "0" if cpus <= 2 else f"0-{cpus - 2}")
        pairs = asyncio.run(make_users(server, k + m))
        spec = {"mode": "setup", "url": server.ws_url, "pairs": pairs, "codec": args.codec,
                "single": k, "burst": m}  # fmt: skip
        loads = Loads([spec], load_prefix(args.pin))
        try:
            if (error := loads.wait_ready()) is not None:
                return {"workers": workers, "error": error}
            cpu0 = [cpu_seconds(p) for p in pids]
            loads.go()
            if "error" in (single := loads.hear()):
                return {"workers": workers, "error": single["error"]}
            cpu1 = [cpu_seconds(p) for p in pids]
            spies = profile(pids, workers, args.profile)
            loads.go()
            result = loads.hear()
            cpu2 = [cpu_seconds(p) for p in pids]
        finally:
            loads.kill()
            stop_profile(spies)
    if "error" in result:
        return {"workers": workers, "error": result["error"]}

    def ms(values: list[float]) -> tuple[float, float]:
        return 1000 * statistics.median(values), 1000 * percentile(values, 95)

    def per_call(a: list[float], b: list[float], n: int) -> tuple[float, float]:
        """CPU-ms per call: the control process's, and all workers' together."""
        d = [y - x for x, y in zip(a, b, strict=True)]
        return 1000 * d[0] / n, 1000 * sum(d[1:]) / n

    return {
        "workers": workers,
        "single": ms(single["single"]),
        "burst": ms(result["burst"]),
        "single_cpu": per_call(cpu0, cpu1, k),
        "burst_cpu": per_call(cpu1, cpu2, m),
    }


HEADER = (f"{'workers':>7} {'phase':>12} {'p50':>8} {'p95':>8} {'target':>14} {'met':>4} "
          f"{'ctl ms/call':>11} {'wrk ms/call':>11}")  # fmt: skip


def print_rows(r: dict[str, Any], args: argparse.Namespace) -> None:
    if "error" in r:
        print(f"{r['workers']:>7}  calls not set up: {r['error']}", flush=True)
        return
    (s50, s95), (b50, b95) = r["single"], r["burst"]
    rows = [
        (f"{args.single} single", s50, s95, f"p50 < {SINGLE_P50_MS:.0f} ms",
         s50 < SINGLE_P50_MS, r["single_cpu"]),
        (f"{args.burst} at once", b50, b95, f"p95 < {BURST_P95_MS:.0f} ms",
         b95 < BURST_P95_MS, r["burst_cpu"]),
    ]  # fmt: skip
    for phase, p50, p95, target, met, (ctl, wrk) in rows:
        print(f"{r['workers']:>7} {phase:>12} {p50:>6.0f}ms {p95:>6.0f}ms {target:>14} "
              f"{'yes' if met else 'NO':>4} {ctl:>11.1f} {wrk:>11.1f}", flush=True)  # fmt: skip


def setup_main(args: argparse.Namespace) -> None:
    print(f"# setup alone: {args.single} single calls one after another, then {args.burst} "
          f"placed at once; call.create -> call.answered (the callee answers as soon as it "
          f"rings); CPU-ms per call of the control process and of all media workers",
          flush=True)  # fmt: skip
    print(HEADER, flush=True)
    for workers in args.media_workers:
        print_rows(run_setup(workers, args), args)
