"""Benchmark: N concurrent 1:1 calls through a real callbridge server.

    .venv/bin/python bench/calls.py                  # N = 1, 10, 20, 40; 20 s of audio each
    .venv/bin/python bench/calls.py -n 20 -d 30      # one size, longer
    .venv/bin/python bench/calls.py --codec PCMU

For each N the orchestrator (this process) starts a fresh server, creates 2N users, and starts
a *load process* (``--load``) that logs 2N softphones in, places N calls, answers them, and has
every leg send a real tone (Opus or G.711, encoded per frame by the SDK) for the duration. The
load process reports what its receivers saw; this process samples the server's CPU and memory
from /proc. Printed per N:

- server CPU-seconds per leg per second of audio (2 server legs per call);
- % late or lost frames at the receivers: lost = sequence gaps; late = arrived more than
  60 ms after the packet's due time (first packet's arrival + RTP timestamp delta, using the
  earliest-arriving packet as the reference);
- setup time call.create -> call.answered (the callee answers as soon as it rings), p50 / p95;
- server memory per call: RSS growth from before the calls to the middle of the audio phase,
  divided by N.

Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from callbridge.testing.server import Server

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


# ------------------------------------------------------------------------------ load process
async def run_load(spec: dict[str, Any]) -> dict[str, Any]:
    from callbridge.client import Call, Phone, ToneSource
    from callbridge.rtp.webrtc import restrict_ice_addresses

    restrict_ice_addresses(["127.0.0.1"])
    url, pairs, duration = spec["url"], spec["pairs"], spec["duration"]
    codecs = [spec["codec"]] if spec["codec"] else None
    callers = [Phone(url, p["caller_token"]) for p in pairs]
    callees = [Phone(url, p["callee_token"]) for p in pairs]
    await asyncio.gather(*(ph.login() for ph in callers + callees))

    answered: list[Call] = []

    def auto_answer(phone: Phone, tone: float) -> None:
        async def on_incoming(call: Call) -> None:
            await call.answer(source=ToneSource(tone), codecs=codecs)
            answered.append(call)

        phone.on("incoming", on_incoming)

    for i, ph in enumerate(callees):
        auto_answer(ph, 1000 + i)

    async def place(i: int) -> tuple[Call, float]:
        t0 = time.perf_counter()
        call = await callers[i].call(
            pairs[i]["callee_ext"], source=ToneSource(440 + i), codecs=codecs
        )
        await call.wait_for("answered", timeout=30)
        return call, time.perf_counter() - t0

    results = await asyncio.gather(*(place(i) for i in range(len(pairs))))
    setup = [r[1] for r in results]
    out_calls = [r[0] for r in results]
    await asyncio.sleep(1.0)  # settle: ICE/DTLS done everywhere
    print(json.dumps({"phase": "ready"}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "go"
    for call in out_calls + answered:
        assert call.media is not None  # answered
        call.media.reset_stats()
    await asyncio.sleep(duration)
    stats = []
    for call in out_calls + answered:
        assert call.media is not None
        st = call.media.stats()
        stats.append({"expected": st.packets_expected, "lost": st.packets_lost,
                      "late": st.packets_late})  # fmt: skip
    for call in out_calls:
        await call.hangup()
    await asyncio.gather(*(ph.close() for ph in callers + callees))
    return {"setup": setup, "stats": stats}


# ------------------------------------------------------------------------------ orchestrator
async def make_users(server: Server, n: int) -> list[dict[str, str]]:
    from callbridge.testing.server import create_user

    pairs = []
    async with server.store() as store:
        for i in range(n):
            caller = await create_user(store, f"caller{i}", str(10000 + i), ttl=timedelta(hours=2))
            callee = await create_user(store, f"callee{i}", str(20000 + i), ttl=timedelta(hours=2))
            pairs.append(
                {
                    "caller_token": caller.token,
                    "callee_token": callee.token,
                    "callee_ext": callee.extension,
                }
            )
    return pairs


def server_pids(server: Server) -> list[int]:
    """The server's process and its media workers' (``--media-workers N``: their CPU counts)."""
    workers: list[dict[str, Any]] = dict(server.health()).get("media_workers") or []  # type: ignore[assignment]
    return [server.pid, *(int(w["pid"]) for w in workers)]


def run_size(
    n: int, duration: float, codec: str | None, load_procs: int, media_workers: int = 1
) -> dict[str, Any]:
    # Imported here, not at the top: bench/conference.py's media server process imports this
    # module for cpu_seconds/rss_bytes, and the store (SQLAlchemy, Alembic) would add ~30 MiB
    # to the RSS it reports.
    from callbridge.testing.server import running

    with (
        tempfile.TemporaryDirectory() as tmp,
        running(Path(tmp), log_level="warning", check=False,
                args=["--media-workers", str(media_workers)]) as server,  # fmt: skip
    ):
        pairs = asyncio.run(make_users(server, n))
        rss0 = rss_bytes(server.pid)
        loads = []
        for k in range(load_procs):
            spec = {"url": server.ws_url, "pairs": pairs[k::load_procs],
                    "duration": duration, "codec": codec}  # fmt: skip
            load = subprocess.Popen(
                [sys.executable, __file__, "--load"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            assert load.stdin is not None
            load.stdin.write(json.dumps(spec) + "\n")
            load.stdin.flush()
            loads.append(load)
        for load in loads:  # every call of every load process is up
            assert load.stdout is not None
            assert json.loads(load.stdout.readline())["phase"] == "ready"
        pids = server_pids(server)
        cpu0, t0 = sum(map(cpu_seconds, pids)), time.monotonic()
        ctl0 = cpu_seconds(server.pid)
        load_cpu0 = sum(cpu_seconds(ld.pid) for ld in loads)
        for load in loads:
            assert load.stdin is not None
            load.stdin.write("go\n")
            load.stdin.flush()
        time.sleep(duration / 2)
        rss_mid = rss_bytes(server.pid)
        time.sleep(duration / 2)
        cpu1, t1 = sum(map(cpu_seconds, pids)), time.monotonic()
        ctl1 = cpu_seconds(server.pid)
        load_cpu1 = sum(cpu_seconds(ld.pid) for ld in loads)
        setup: list[float] = []
        stats: list[dict[str, int]] = []
        for load in loads:
            assert load.stdout is not None
            result = json.loads(load.stdout.readline())
            setup += result["setup"]
            stats += result["stats"]
            load.wait(60)
    elapsed = t1 - t0
    expected = sum(s["expected"] for s in stats)
    bad = sum(s["lost"] + s["late"] for s in stats)
    return {
        "n": n,
        "cpu_per_leg": (cpu1 - cpu0) / elapsed / (2 * n),
        "server_cpu_pct": 100 * (cpu1 - cpu0) / elapsed,  # control process + media workers
        "control_cpu_pct": 100 * (ctl1 - ctl0) / elapsed,
        "load_cpu_pct": 100 * (load_cpu1 - load_cpu0) / elapsed,
        "late_lost_pct": 100 * bad / expected if expected else float("nan"),
        "lost": sum(s["lost"] for s in stats),
        "late": sum(s["late"] for s in stats),
        "expected": expected,
        "setup_p50_ms": 1000 * statistics.median(setup),
        "setup_p95_ms": 1000 * percentile(setup, 95),
        "mem_per_call_kib": (rss_mid - rss0) / n / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-n", type=int, action="append", help="concurrent calls (repeatable)")
    ap.add_argument("-d", "--duration", type=float, default=20.0, help="seconds of audio")
    ap.add_argument("--codec", choices=["opus", "PCMU", "PCMA"], default="opus")
    ap.add_argument(
        "--load-procs", type=int, default=0,
        help="load processes (default: 1 per 20 calls, at least 1)",
    )  # fmt: skip
    ap.add_argument(
        "--media-workers", type=int, default=1,
        help="the server's --media-workers (server%% then sums its processes)",
    )  # fmt: skip
    ap.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.load:
        spec = json.loads(sys.stdin.readline())
        print(json.dumps(asyncio.run(run_load(spec))), flush=True)
        return
    sizes = args.n or [1, 10, 20, 40]
    print(f"# callbridge bench/calls.py — {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, codec {args.codec}, "
          f"{args.duration:.0f} s of audio per size; server and load processes (1 per 20 calls "
          f"unless --load-procs) on this machine")  # fmt: skip
    print(f"{'N':>4} {'legs':>5} {'cpu-s/leg/s':>12} {'server%':>8} {'load%':>6} "
          f"{'late+lost%':>10} {'setup p50':>10} {'p95':>8} {'KiB/call':>9}")  # fmt: skip
    for n in sizes:
        procs = args.load_procs or max(1, (n + 19) // 20)
        r = run_size(n, args.duration, args.codec, procs, args.media_workers)
        print(f"{n:>4} {2 * n:>5} {r['cpu_per_leg']:>12.5f} {r['server_cpu_pct']:>7.1f}% "
              f"{r['load_cpu_pct']:>5.0f}% {r['late_lost_pct']:>9.2f}% "
              f"{r['setup_p50_ms']:>8.0f}ms {r['setup_p95_ms']:>6.0f}ms "
              f"{r['mem_per_call_kib']:>9.0f}  control {r['control_cpu_pct']:.1f}%",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
