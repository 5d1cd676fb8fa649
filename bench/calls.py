"""Benchmark: N concurrent 1:1 calls through a real callbridge server, up to its ceiling.

    .venv/bin/python bench/calls.py                        # N = 1, 10, 20, 40; 20 s of audio
    .venv/bin/python bench/calls.py -n 100 -d 30           # one size, longer
    .venv/bin/python bench/calls.py --find-max --pin       # raise N until late+lost > 1 %
    .venv/bin/python bench/calls.py --baseline --pin       # stock aiortc side by side
    .venv/bin/python bench/calls.py --media-workers 2 -n 100
    .venv/bin/python bench/calls.py --setup --media-workers 1 --media-workers 2  # setup alone

For each N the orchestrator (this process) starts a fresh server (``callbridge serve``, SQLite,
127.0.0.1), creates 2N users, and starts *load processes* (bench/calls_load.py, one per
``--calls-per-load`` calls) that log 2N SDK phones in, place N calls and answer them. The load
is cheap by design: every leg replays a pre-encoded 1 s loop of a tone (bench/conference.py's
``LoopMedia``; one 20 ms tick sends for all legs of a process) and counts what it receives
from the clear RTP header of each SRTP packet, without unprotecting or decoding it. The
load processes report what their receivers saw; this process samples the server's CPU (its
control process plus its media workers) and memory from /proc. Printed per N:

- server CPU-seconds per leg per second of audio (2 server legs per call), the server's CPU
  (% of one core; all its processes) and its control process's share, the load's CPU and its
  CPU-seconds per load leg per second;
- % late and % lost frames at the receivers: lost = sequence gaps; late = arrived more than
  60 ms after the packet's due time (first packet's arrival + RTP timestamp delta, using the
  earliest-arriving packet as the reference);
- setup time call.create -> call.answered (the callee answers as soon as it rings), p50 / p95,
  with at most ``--setup-concurrency`` calls being set up at once;
- server memory per call: RSS growth of the server's processes (control and media workers)
  from before the calls to the middle of the audio phase, divided by N;
- sent/s per load leg (50 when the load kept the 20 ms pace) and the % of the audio phase the
  most-waiting server process and the load processes waited for a CPU (/proc/PID/schedstat).

``--find-max`` raises N from ``--start`` by ``--step`` until late+lost exceeds 1 % (or the
calls cannot be set up) and prints the largest N that held; a size that failed while the
server or load waited over 10 % for a CPU (other jobs) is run again, ``--retries`` times.
``--pin`` puts every server process on CPU 0 and the load processes on CPU 1 (``taskset``).
``--baseline`` also runs stock aiortc (bench/calls_baseline.py: a relay of aiortc peer
connections, which decodes and re-encodes) with the same load at ``--baseline-calls`` calls,
and callbridge at the same N, and prints their CPU per leg side by side with the ratio.

With ``--media-workers N > 1`` each row is followed by a line per worker (% of a core, its legs,
CPU-s per leg per s) and the control process's (% of a core, CPU-ms per call per s).
``--setup`` measures setup alone (bench/calls_setup.py): ``--single`` calls one after another
and ``--burst`` at once, against the issue 15 targets, for each ``--media-workers`` given.

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
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from callbridge.testing.server import Server

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def run_queue_seconds(pid: int) -> float:
    """Seconds the process's main thread has spent runnable but waiting for a CPU
    (/proc/PID/schedstat, field 2): on a shared machine, the time other jobs took from it."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9


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


def worker_objects(server: Server) -> list[int]:
    """Each media worker's live media objects (``/healthz``): its legs, on 1:1 calls."""
    workers: list[dict[str, Any]] = dict(server.health()).get("media_workers") or []  # type: ignore[assignment]
    return [int(w["media_objects"]) for w in workers]


BENCH = Path(__file__).resolve().parent
LOAD_SCRIPT = BENCH / "calls_load.py"
BASELINE_SCRIPT = BENCH / "calls_baseline.py"
LIMIT_PCT = 1.0  # --find-max: the largest N whose late+lost stays at or under this


class Loads:
    """The load processes of one run (bench/calls_load.py): each gets its spec on stdin, says
    ``ready`` (or ``error``) on stdout, waits for ``go``, and prints its receivers' counters
    when its audio phase is over."""

    def __init__(self, specs: list[dict[str, Any]], prefix: list[str]) -> None:
        self.procs = [
            subprocess.Popen([*prefix, sys.executable, str(LOAD_SCRIPT)], text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=BENCH)
            for _ in specs
        ]  # fmt: skip
        for proc, spec in zip(self.procs, specs, strict=True):
            self._say(proc, json.dumps(spec))

    @staticmethod
    def _say(proc: subprocess.Popen[str], line: str) -> None:
        assert proc.stdin is not None
        proc.stdin.write(line + "\n")
        proc.stdin.flush()

    @staticmethod
    def _hear(proc: subprocess.Popen[str]) -> dict[str, Any]:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            return {"error": f"load process {proc.pid} exited ({proc.wait(10)})"}
        reply: dict[str, Any] = json.loads(line)
        return reply

    def wait_ready(self) -> str | None:
        """None once every process is ready, else the first error."""
        errors = [r["error"] for r in map(self._hear, self.procs) if "error" in r]
        return errors[0] if errors else None

    def hear(self) -> dict[str, Any]:
        """The next line of the one load process (bench/calls_setup.py's phases)."""
        assert len(self.procs) == 1
        return self._hear(self.procs[0])

    def go(self) -> None:
        for proc in self.procs:
            self._say(proc, "go")

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.procs)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def results(self) -> tuple[list[float], list[dict[str, int]]]:
        setup: list[float] = []
        stats: list[dict[str, int]] = []
        for proc in self.procs:
            result = self._hear(proc)
            setup += result.get("setup", [])
            stats += result.get("stats", [])
            proc.wait(60)
        return setup, stats

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def pin_all(pids: list[int], cpus: str) -> None:
    """Every thread of these processes onto ``cpus`` (``taskset -a``: affinity is per thread,
    and the server's threads already exist)."""
    for pid in pids:
        subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip


def load_prefix(pin: bool) -> list[str]:
    cpus = os.cpu_count() or 1
    if not pin or cpus < 2:
        return []
    return ["taskset", "-c", "1" if cpus == 2 else f"1-{cpus - 1}"]


def measure(
    n: int,
    server: list[int],
    rss_pids: list[int],
    loads: Loads,
    duration: float,
    worker_legs: Callable[[], list[int]] | None = None,
) -> dict[str, Any]:
    """The audio phase: CPU of ``server`` (all its processes; the control process first, then
    its media workers) and of the loads, RSS of ``rss_pids`` and each worker's media objects
    (``worker_legs``) mid-way, the receivers' counters at the end."""
    cpu0, ctl0, t0 = sum(map(cpu_seconds, server)), cpu_seconds(server[0]), time.monotonic()
    each0 = list(map(cpu_seconds, server[1:]))
    load0 = loads.cpu_seconds()
    srv_waits0 = list(map(run_queue_seconds, server))
    waits0 = [0.0, *map(run_queue_seconds, loads.pids())]
    loads.go()
    time.sleep(duration / 2)
    rss_mid = sum(map(rss_bytes, rss_pids))
    legs_mid = worker_legs() if worker_legs is not None else []
    time.sleep(duration / 2)
    each = [(b - a) for a, b in zip(each0, map(cpu_seconds, server[1:]), strict=True)]
    cpu1, ctl1, t1 = sum(map(cpu_seconds, server)), cpu_seconds(server[0]), time.monotonic()
    load1 = loads.cpu_seconds()
    srv_waits = [b - a for a, b in zip(srv_waits0, map(run_queue_seconds, server), strict=True)]
    waits1 = [0.0, *map(run_queue_seconds, loads.pids())]
    setup, stats = loads.results()
    elapsed = t1 - t0
    expected = sum(s["expected"] for s in stats)
    lost, late = sum(s["lost"] for s in stats), sum(s["late"] for s in stats)

    def pct(k: int) -> float:
        return 100 * k / expected if expected else float("nan")

    return {
        "n": n,
        "cpu_per_leg": (cpu1 - cpu0) / elapsed / (2 * n),
        "server_cpu_pct": 100 * (cpu1 - cpu0) / elapsed,  # control process + media workers
        "control_cpu_pct": 100 * (ctl1 - ctl0) / elapsed,
        "load_cpu_pct": 100 * (load1 - load0) / elapsed,
        "load_cpu_per_leg": (load1 - load0) / elapsed / (2 * n),
        # % of the audio phase the server's most-waiting process (main thread), and the load
        # processes' on average,
        # were runnable but not running (other processes had the CPU)
        "server_wait_pct": 100 * max(srv_waits) / elapsed,
        "load_wait_pct": 100
        * sum(b - a for a, b in zip(waits0[1:], waits1[1:], strict=True))
        / elapsed
        / max(1, len(waits0) - 1),
        "late_lost_pct": pct(lost + late),
        "late_pct": pct(late),
        "lost_pct": pct(lost),
        "expected": expected,
        # packets sent per leg per second of audio (50 when the load keeps the 20 ms pace)
        "sent_pps": sum(s["sent"] for s in stats) / elapsed / max(1, len(stats)),
        "legs_reporting": len(stats),
        "setup_p50_ms": 1000 * statistics.median(setup) if setup else float("nan"),
        "setup_p95_ms": 1000 * percentile(setup, 95),
        "rss_mid": rss_mid,
        # --media-workers N > 1: each worker's % of a core, its legs (media objects: on 1:1
        # calls, its endpoints) and CPU-s per leg per s; the control process's CPU-ms per
        # call per second of the audio phase
        "worker_cpu_pct": [100 * c / elapsed for c in each],
        "worker_legs": legs_mid,
        "worker_cpu_per_leg": [
            c / elapsed / k if k else float("nan") for c, k in zip(each, legs_mid, strict=False)
        ],
        "control_ms_per_call": 1000 * (ctl1 - ctl0) / elapsed / n,
    }


def run_size(n: int, args: argparse.Namespace) -> dict[str, Any]:
    """N calls through a fresh callbridge server."""
    # Imported here, not at the top: bench/conference.py's media server process imports this
    # module for cpu_seconds/rss_bytes, and the store (SQLAlchemy, Alembic) would add ~30 MiB
    # to the RSS it reports.
    from callbridge.testing.server import running

    with (
        tempfile.TemporaryDirectory() as tmp,
        running(
            Path(tmp),
            log_level="warning",
            check=False,
            args=["--media-workers", str(args.media_workers)],
        ) as server,  # fmt: skip
    ):
        pids = server_pids(server)
        if args.pin:
            pin_all(pids, "0")
        pairs = asyncio.run(make_users(server, n))
        rss0 = sum(map(rss_bytes, pids))
        procs = max(1, -(-n // args.calls_per_load))
        specs = [{"mode": "callbridge", "url": server.ws_url, "pairs": pairs[k::procs],
                  "duration": args.duration, "codec": args.codec,
                  "concurrency": max(1, args.setup_concurrency // procs)}
                 for k in range(procs)]  # fmt: skip
        loads = Loads(specs, load_prefix(args.pin))
        try:
            error = loads.wait_ready()
            if error is not None:
                return {"n": n, "error": error}
            r = measure(n, pids, pids, loads, args.duration, lambda: worker_objects(server))
        finally:
            loads.kill()
    r["mem_per_call_kib"] = (r["rss_mid"] - rss0) / n / 1024
    return r


def run_baseline(n: int, args: argparse.Namespace) -> dict[str, Any]:
    """N calls through stock aiortc (bench/calls_baseline.py), the same load."""
    pin = ["taskset", "-c", "0"] if args.pin and (os.cpu_count() or 1) > 1 else []
    relay = subprocess.Popen([*pin, sys.executable, str(BASELINE_SCRIPT)], text=True,
                             stdout=subprocess.PIPE)  # fmt: skip
    try:
        assert relay.stdout is not None
        port = json.loads(relay.stdout.readline())["port"]
        rss0 = rss_bytes(relay.pid)
        procs = max(1, -(-n // args.calls_per_load))
        specs = [{"mode": "baseline", "port": port, "calls": len(range(k, n, procs)),
                  "duration": args.duration, "codec": args.codec}
                 for k in range(procs)]  # fmt: skip
        loads = Loads(specs, load_prefix(args.pin))
        try:
            error = loads.wait_ready()
            if error is not None:
                return {"n": n, "error": error}
            r = measure(n, [relay.pid], [relay.pid], loads, args.duration)
        finally:
            loads.kill()
    finally:
        relay.terminate()
        relay.wait(30)
    r["mem_per_call_kib"] = (r["rss_mid"] - rss0) / n / 1024
    return r


def conditions(args: argparse.Namespace) -> str:
    from importlib.metadata import version

    import conference  # imported here: conference.py imports this module at its top

    load1, load5, load15 = os.getloadavg()
    workers = args.media_workers
    workers = ", ".join(map(str, workers)) if isinstance(workers, list) else workers
    pinned = ("server on CPU 0, load on CPU 1 (taskset)" if args.pin
              else "not pinned")  # fmt: skip
    return (f"# callbridge bench/calls.py — {conference.cpu_model()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, aiortc {version('aiortc')}, codec "
            f"{args.codec}, {args.duration:.0f} s of audio per size, --media-workers "
            f"{workers}, load: pre-encoded loops, no decode, 1 process per "
            f"{args.calls_per_load} calls; {pinned}; load average {load1:.2f} {load5:.2f} "
            f"{load15:.2f}")  # fmt: skip


HEADER = (f"{'N':>4} {'legs':>5} {'cpu-s/leg/s':>12} {'server%':>8} {'ctl%':>6} {'load%':>6} "
          f"{'load/leg':>9} {'late%':>7} {'lost%':>7} {'setup p50':>10} {'p95':>8} "
          f"{'KiB/call':>9} {'sent/s':>6} {'wait srv/load':>13}")  # fmt: skip


def print_row(r: dict[str, Any], label: str = "") -> None:
    if "error" in r:
        print(f"{r['n']:>4} {2 * r['n']:>5}  calls not set up: {r['error']}", flush=True)
        return
    print(f"{r['n']:>4} {2 * r['n']:>5} {r['cpu_per_leg']:>12.5f} {r['server_cpu_pct']:>7.1f}% "
          f"{r['control_cpu_pct']:>5.1f}% {r['load_cpu_pct']:>5.0f}% "
          f"{r['load_cpu_per_leg']:>9.5f} {r['late_pct']:>6.2f}% {r['lost_pct']:>6.2f}% "
          f"{r['setup_p50_ms']:>8.0f}ms {r['setup_p95_ms']:>6.0f}ms "
          f"{r['mem_per_call_kib']:>9.0f} {r['sent_pps']:>6.1f} "
          f"{r['server_wait_pct']:>5.0f}% /{r['load_wait_pct']:>4.0f}%{label}{contended(r)}",
          flush=True)  # fmt: skip
    if r.get("worker_cpu_pct"):  # --media-workers N > 1: one line per worker, then control
        for i, pct in enumerate(r["worker_cpu_pct"]):
            legs = r["worker_legs"][i] if i < len(r["worker_legs"]) else 0
            per_leg = r["worker_cpu_per_leg"][i] if i < len(r["worker_cpu_per_leg"]) else 0.0
            print(f"{'':>4} {'':>5}   worker {i}: {pct:5.1f}% of a core, {legs} legs, "
                  f"{per_leg:.5f} CPU-s/leg/s", flush=True)  # fmt: skip
        print(f"{'':>4} {'':>5}   control: {r['control_cpu_pct']:.1f}% of a core, "
              f"{r['control_ms_per_call']:.2f} CPU-ms per call per s", flush=True)  # fmt: skip


CONTENDED_PCT = 10.0


def contended(r: dict[str, Any]) -> str:
    """A note on a row whose server or load waited long for a CPU: other jobs on the machine
    then decided its late+lost as much as the server did."""
    worst = max(r["server_wait_pct"], r["load_wait_pct"])
    return f"  (contended: waited {worst:.0f} % for a CPU)" if worst > CONTENDED_PCT else ""


def held(r: dict[str, Any]) -> bool:
    return "error" not in r and r["late_lost_pct"] <= LIMIT_PCT


def find_max(args: argparse.Namespace) -> dict[str, Any] | None:
    """Raise N until late+lost exceeds the limit; the last row that held, if any."""
    best: dict[str, Any] | None = None
    n = args.start
    while n <= args.max_n:
        r = run_size(n, args)
        print_row(r)
        for _ in range(args.retries):  # a size failed while other jobs had the CPU: again
            if held(r) or "error" in r or not contended(r):
                break
            print(f"# N={n} failed while contended: running it again", flush=True)
            r = run_size(n, args)
            print_row(r)
        if not held(r):
            why = r.get("error") or f"late+lost {r['late_lost_pct']:.2f} % > {LIMIT_PCT:g} %"
            print(f"# N={n} did not hold: {why}", flush=True)
            break
        best, n = r, n + args.step
    if best is None:
        print(f"# largest N that held: none from N={args.start}", flush=True)
    else:
        print(f"# largest N that held (late+lost <= {LIMIT_PCT:g} %): {best['n']} calls, "
              f"{2 * best['n']} server legs, {best['server_cpu_pct']:.1f} % server CPU, "
              f"{best['cpu_per_leg']:.5f} CPU-s per leg per s", flush=True)  # fmt: skip
    return best


def compare(args: argparse.Namespace, ceiling: dict[str, Any] | None) -> None:
    n = args.baseline_calls
    print(f"# stock aiortc and callbridge, {n} calls each, the same load", flush=True)
    print(HEADER, flush=True)
    stock = run_baseline(n, args)
    print_row(stock, "  stock aiortc")
    ours = run_size(n, args)
    print_row(ours, "  callbridge")
    if "error" in stock or "error" in ours:
        return
    print(f"# CPU-s per leg per s at {n} calls: stock aiortc {stock['cpu_per_leg']:.5f}, "
          f"callbridge {ours['cpu_per_leg']:.5f}: callbridge "
          f"{stock['cpu_per_leg'] / ours['cpu_per_leg']:.1f}x cheaper", flush=True)  # fmt: skip
    if ceiling is not None:
        print(f"# at callbridge's largest N ({ceiling['n']}): {ceiling['cpu_per_leg']:.5f}, "
              f"{stock['cpu_per_leg'] / ceiling['cpu_per_leg']:.1f}x cheaper than stock aiortc "
              f"at {n}", flush=True)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-n", type=int, action="append", help="concurrent calls (repeatable)")
    ap.add_argument("-d", "--duration", type=float, default=20.0, help="seconds of audio")
    ap.add_argument("--codec", choices=["opus", "PCMU", "PCMA"], default="opus")
    ap.add_argument("--calls-per-load", type=int, default=100, help="calls per load process")
    ap.add_argument("--setup-concurrency", type=int, default=50,
                    help="calls being set up at once (all load processes together)")  # fmt: skip
    ap.add_argument(
        "--media-workers", type=int, action="append",
        help="the server's --media-workers (default 1; server%% then sums its processes); "
        "repeatable with --setup",
    )  # fmt: skip
    ap.add_argument(
        "--setup",
        action="store_true",
        help="setup alone: --single calls one after another, then --burst at once",
    )
    ap.add_argument("--single", type=int, default=20, help="--setup: calls one at a time")
    ap.add_argument("--burst", type=int, default=50, help="--setup: calls placed at once")
    ap.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="--setup: py-spy records the server's processes during the burst",
    )
    ap.add_argument("--find-max", action="store_true", help="raise N until late+lost > 1 %%")
    ap.add_argument("--start", type=int, default=20, help="--find-max: first N")
    ap.add_argument("--step", type=int, default=20, help="--find-max: calls added per size")
    ap.add_argument("--max-n", type=int, default=1000, help="--find-max: stop after this N")
    ap.add_argument("--retries", type=int, default=1,
                    help="--find-max: runs again of a size that failed contended")  # fmt: skip
    ap.add_argument("--pin", action="store_true", help="server on CPU 0, load on CPU 1")
    ap.add_argument("--baseline", action="store_true", help="also run stock aiortc, compare")
    ap.add_argument("--baseline-calls", type=int, default=15, help="--baseline: calls")
    args = ap.parse_args()
    workers: list[int] = args.media_workers or [1]
    if any(w <= 0 for w in workers):
        ap.error("--media-workers must be positive")
    if len(workers) > 1 and not args.setup:
        ap.error("--media-workers is repeatable only with --setup (one server per value)")
    args.media_workers = workers if args.setup else workers[0]
    for name in ("duration", "calls_per_load", "setup_concurrency", "start", "step",
                 "baseline_calls", "single", "burst"):  # fmt: skip
        if getattr(args, name) <= 0:
            ap.error(f"--{name.replace('_', '-')} must be positive")
    if args.retries < 0:
        ap.error("--retries must be 0 or more")
    print(conditions(args), flush=True)
    if args.setup:
        from calls_setup import setup_main  # imported here: it imports this module

        setup_main(args)
        load1, load5, load15 = os.getloadavg()
        print(f"# load average at the end {load1:.2f} {load5:.2f} {load15:.2f}", flush=True)
        return
    ceiling = None
    if args.find_max:
        print(HEADER, flush=True)
        ceiling = find_max(args)
    elif args.n or not args.baseline:
        print(HEADER, flush=True)
        for n in args.n or [1, 10, 20, 40]:
            print_row(run_size(n, args))
    if args.baseline:
        compare(args, ceiling)
    load1, load5, load15 = os.getloadavg()
    print(f"# load average at the end {load1:.2f} {load5:.2f} {load15:.2f}", flush=True)


if __name__ == "__main__":
    main()
