"""Benchmark: one conference room of N participants in the media plane.

    .venv/bin/python bench/conference.py                 # N = 10, 50, 100; 20 s of audio each
    .venv/bin/python bench/conference.py -n 100 -d 30    # one size, longer
    .venv/bin/python bench/conference.py --codecs opus,PCMU --talkers 5
    .venv/bin/python bench/conference.py --find-max --pin   # the largest room that holds
    .venv/bin/python bench/conference.py --offline          # CPU per tick, in one process

For each N the orchestrator (this process) starts a fresh *media server process* (``--server``:
an InProcessMediaServer, the engine ``callbridge serve`` embeds, with one mixer) and *load
processes* (bench/conference_load.py, one per ``--per-load`` participants) that connect N SDK
peers (CallMedia, real WebRTC: ICE, DTLS, SRTP) to it over 127.0.0.1. Offers and answers go
over a line-based JSON control socket instead of the signalling server, so the figures are the
media plane's alone. Every peer joins the room; ``--talkers`` of them send a tone (each its
own), the rest send digital silence, as most of a real room does. The load is built to cost far
less than the server: payloads encoded once per process (a 1 s loop of the tone or of silence)
with their RFC 6464 levels precomputed (``--no-audio-level`` leaves them out, as a device that
does not send them, most SIP phones, so every packet must be decoded), one 20 ms tick sending
for every leg of a process, and receivers that count from the clear RTP header of each SRTP
packet without unprotecting or decoding it; two legs (a talker and a silent member) decode what
they hear so the bench can check the talkers are heard. Printed per N:

- server CPU-seconds per participant per second of audio, and the server's CPU (% of a core);
- the load's CPU (% of one core, all its processes) and its own late ticks (its 20 ms ticks
  that started > 10 ms late: a load that cannot keep pace shows as such);
- % late or lost frames at the receivers, as bench/calls.py counts them (lost = sequence gaps;
  late = more than 60 ms after the packet's due time);
- the mixer's ticks that started more than 10 ms late, and its encodes per tick (own mixes
  + shared mixes: with few talkers, most participants share one encode per codec);
- the mixer's decodes per tick (packets decoded; silent ones with an RFC 6464 level are not);
- the quietest talker tone the decoding legs heard (dB; sent at -13.5 dBFS);
- the % of the time the server and the load waited for a CPU (/proc/PID/schedstat: other jobs);
- server memory: RSS growth from before the joins to the middle of the audio, per participant,
  and the server's total RSS then.

``--find-max`` raises N (``--start``, ``--step``) until a size fails (a late tick, 1 % late+lost,
a whole core, or a talker not heard; a failure while the server or load waited over 10 % for a
CPU is run again, ``--retries`` times) and prints the largest N that held, the server's CPU per
participant and the load's own CPU, saying so when the load was the limit. ``--pin`` runs the
media server on CPU 0 and the load processes on the other CPUs (``taskset``). ``--offline``
measures the server's CPU time per tick in one process instead (bench/conference_ticks.py),
which other jobs on the machine disturb far less than late ticks.

Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from callbridge.client import CallMedia
from callbridge.media.players import encode_loop
from callbridge.rtp.codecs import FRAME_MS, CodecSpec
from callbridge.rtp.webrtc import RtpPort
from calls import cpu_seconds, rss_bytes, run_queue_seconds

# The figures before issue 15's mixer work (docs/benchmarks.md), printed next to --find-max's.
PREVIOUS = "before issue 15: N=100 47 % of a core, 0 % late ticks; N=200 78 %, 10 % late ticks"

ROOM = "room"
PER_LOAD_PROCESS = 150
TONE_HEARD_DB = -30.0  # a talker's tone (sent at -13.5 dBFS) heard above this: present


# ------------------------------------------------------------------------------ server process
async def run_server() -> None:
    from callbridge.media.engine import InProcessMediaServer

    media = InProcessMediaServer(["127.0.0.1"])
    await media.create_mixer(ROOM)
    done = asyncio.Event()
    # Python's cyclic garbage collector stops the event loop while it runs: its longest pause
    # and its full (generation 2) collections, to tell a GC pause from a slow tick.
    gc_state = {"t0": 0.0, "max_ms": 0.0, "full": 0}

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_state["t0"] = time.perf_counter()
            return
        pause = 1000 * (time.perf_counter() - gc_state["t0"])
        gc_state["max_ms"] = max(gc_state["max_ms"], pause)
        gc_state["full"] += info["generation"] == 2

    gc.callbacks.append(on_gc)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            req = json.loads(line)
            reply: dict[str, Any] = {}
            if req["op"] == "join":
                reply["answer"] = await media.answer(req["id"], req["offer"], video=False)
                await media.mixer_add(ROOM, req["id"])
            elif req["op"] == "stats":
                mixer = media.mixer(ROOM)
                reply = {"ticks": mixer.ticks, "encodes": mixer.encodes,
                         "shared_encodes": mixer.shared_encodes, "late_ticks": media.late_ticks,
                         "members": len(await media.mixer_members(ROOM)),
                         "decoded": sum(m.fifo.decoded for m in mixer.members),
                         "gc_max_ms": gc_state["max_ms"], "gc_full": gc_state["full"]}  # fmt: skip
                gc_state["max_ms"] = 0.0  # from one stats request to the next
            elif req["op"] == "quit":
                done.set()
            writer.write((json.dumps(reply) + "\n").encode())
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    await done.wait()
    server.close()
    await media.shutdown()


class Control:
    """A line-based JSON client of the server process's control socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> Control:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def request(self, **req: Any) -> dict[str, Any]:
        self.writer.write((json.dumps(req) + "\n").encode())
        await self.writer.drain()
        reply: dict[str, Any] = json.loads(await self.reader.readline())
        return reply

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


# -------------------------------------------------------------------------------- load process
class LoopMedia(CallMedia):
    """An SDK peer whose sending loop sends a pre-encoded 1 s loop (a tone or silence)."""

    def __init__(self, tone: float | None, codec: str, audio_level: bool) -> None:
        super().__init__(None, None, codecs=[codec])
        self.tone = tone
        self.audio_level = audio_level

    async def _pump(self, port: RtpPort) -> None:
        await port.ready.wait()
        audio = port.audio
        assert audio is not None
        payloads, levels = _loop(self.tone, audio.codec)
        if not self.audio_level:
            levels = (None,) * len(payloads)
        loop = asyncio.get_running_loop()
        deadline, timestamp, k = loop.time(), 0, 0
        while True:
            i = k % len(payloads)
            await port.send(payloads[i], audio.payload_type, timestamp, k == 0, levels[i])
            k += 1
            timestamp += audio.codec.timestamp_step
            deadline += FRAME_MS / 1000
            await asyncio.sleep(max(0.0, deadline - loop.time()))


Level = tuple[bool, int] | None
_loops: dict[tuple[float | None, CodecSpec], tuple[tuple[bytes, ...], tuple[Level, ...]]] = {}


def _loop(tone: float | None, spec: CodecSpec) -> tuple[tuple[bytes, ...], tuple[Level, ...]]:
    """1 s of ``tone`` (whole cycles: it loops without a click) or silence, encoded once, and
    the RFC 6464 level of each payload (voice flag, -dBov of the frame's RMS, 127 = silence)."""
    if (tone, spec) not in _loops:
        t = np.arange(spec.sample_rate) / spec.sample_rate
        pcm = (0.3 * 32767 * np.sin(2 * np.pi * (tone or 0) * t)).astype(np.int16)
        frames = pcm.reshape(-1, spec.samples_per_frame).astype(np.float64)
        rms = np.sqrt(np.mean(frames**2, axis=1)) / 32767
        dbov = np.clip(-20 * np.log10(np.maximum(rms, 1e-7)), 0, 127).round().astype(int)
        levels = tuple((bool(d < 127), int(d)) for d in dbov)
        _loops[tone, spec] = encode_loop(pcm, spec), levels
    return _loops[tone, spec]


# -------------------------------------------------------------------------------- orchestrator
class Loads:
    """The load processes of one run (bench/conference_load.py): each gets its spec on stdin,
    says ``ready`` on stdout, waits for ``go``, and prints its receivers' counters and its own
    ticker's figures when its audio phase is over."""

    def __init__(self, specs: list[dict[str, Any]], pin: list[str]) -> None:
        command = [*pin, sys.executable, str(Path(__file__).with_name("conference_load.py"))]
        self.procs = [
            subprocess.Popen(command, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            for _ in specs
        ]
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
            raise RuntimeError(f"load process {proc.pid} ended (exit {proc.wait(10)})")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def wait_ready(self) -> None:
        assert all(self._hear(p)["phase"] == "ready" for p in self.procs)

    def go(self) -> None:
        for proc in self.procs:
            self._say(proc, "go")

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.procs)

    def wait_seconds(self) -> float:
        return max(run_queue_seconds(p.pid) for p in self.procs)

    def results(self) -> tuple[list[dict[str, int]], list[dict[str, Any]]]:
        stats: list[dict[str, int]] = []
        loads: list[dict[str, Any]] = []
        for proc in self.procs:
            reply = self._hear(proc)
            stats += reply["stats"]
            loads.append(reply["load"])
            proc.wait(120)
        return stats, loads

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()


def run_size(
    n: int,
    duration: float,
    codecs: list[str],
    talkers: int,
    audio_level: bool,
    pin: bool,
    per_load: int = PER_LOAD_PROCESS,
) -> dict[str, Any]:
    cpus = os.cpu_count() or 1
    pin_server = ["taskset", "-c", "0"] if pin else []
    pin_load = ["taskset", "-c", f"1-{cpus - 1}" if cpus > 2 else "1"] if pin and cpus > 1 else []
    server = subprocess.Popen(
        [*pin_server, sys.executable, __file__, "--server"], stdout=subprocess.PIPE, text=True
    )
    loads: Loads | None = None
    try:
        assert server.stdout is not None
        port = json.loads(server.stdout.readline())["port"]
        rss0 = rss_bytes(server.pid)
        ids = [f"p{i}" for i in range(n)]
        procs = max(1, (n + per_load - 1) // per_load)
        specs = [
            {
                "port": port,
                "ids": ids[k::procs],
                "duration": duration,
                "codecs": [codecs[i % len(codecs)] for i in range(k, n, procs)],
                "talkers": talkers if k == 0 else 0,
                "audio_level": audio_level,
                # A few legs decode what they hear, to check that the talkers are heard: the
                # first talker (hears the others) and the last participant (silent).
                "decode": [ids[0], ids[k::procs][-1]] if k == 0 else [],
            }
            for k in range(procs)
        ]
        loads = Loads(specs, pin_load)
        loads.wait_ready()
        before = asyncio.run(_stats_client(port))
        cpu0, load0, t0 = cpu_seconds(server.pid), loads.cpu_seconds(), time.monotonic()
        wait0, lwait0 = run_queue_seconds(server.pid), loads.wait_seconds()
        loads.go()
        time.sleep(duration / 2)
        rss_mid = rss_bytes(server.pid)
        time.sleep(duration / 2)
        cpu1, load1, t1 = cpu_seconds(server.pid), loads.cpu_seconds(), time.monotonic()
        wait1, lwait1 = run_queue_seconds(server.pid), loads.wait_seconds()
        after = asyncio.run(_stats_client(port))
        stats, load_figures = loads.results()
        asyncio.run(_stats_client(port, quit=True))
        server.wait(30)
    finally:
        if loads is not None:
            loads.kill()
        if server.poll() is None:
            server.kill()
    elapsed = t1 - t0
    packets = max(1, sum(s["sent"] + s["received"] for s in stats))
    expected = sum(s["expected"] for s in stats)
    bad = sum(s["lost"] + s["late"] for s in stats)
    ticks: int = max(1, after["ticks"] - before["ticks"])
    load_ticks = max(1, sum(f["ticks"] for f in load_figures))
    heard = [lvl for f in load_figures for tones in f["heard"].values() for lvl in tones.values()]

    def per_tick(key: str) -> float:
        return float(after[key] - before[key]) / ticks

    return {
        "members": after["members"],
        "cpu_per_participant": (cpu1 - cpu0) / elapsed / n,
        "server_cpu_pct": 100 * (cpu1 - cpu0) / elapsed,
        "load_cpu_pct": 100 * (load1 - load0) / elapsed,
        "load_processes": procs,
        "load_late_ticks_pct": 100 * sum(f["late_ticks"] for f in load_figures) / load_ticks,
        "sent_per_s": sum(s["sent"] for s in stats) / n / elapsed,
        # CPU per packet (each one the load sends is one the server receives, and the other
        # way round): what a packet costs either side, whether or not it kept its pace.
        "server_us_per_packet": 1e6 * (cpu1 - cpu0) / packets,
        "load_us_per_packet": 1e6 * (load1 - load0) / packets,
        "server_wait_pct": 100 * (wait1 - wait0) / elapsed,
        "load_wait_pct": 100 * (lwait1 - lwait0) / elapsed,
        "late_lost_pct": 100 * bad / expected if expected else float("nan"),
        "late_ticks_pct": 100 * per_tick("late_ticks"),
        "own_per_tick": per_tick("encodes"),
        "shared_per_tick": per_tick("shared_encodes"),
        "decoded_per_tick": per_tick("decoded"),
        "kib_per_participant": (rss_mid - rss0) / n / 1024,
        "rss_mib": rss_mid / 2**20,
        "tones_min_db": min(heard) if heard else float("nan"),
        "gc_max_ms": after["gc_max_ms"],  # the longest GC pause during the audio phase
        "gc_full": after["gc_full"] - before["gc_full"],
        "heard": [f["heard"] for f in load_figures],
    }


async def _stats_client(port: int, quit: bool = False) -> dict[str, Any]:
    control = await Control.connect(port)
    try:
        return await control.request(op="quit" if quit else "stats")
    finally:
        await control.close()


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


COLUMNS = (
    f"{'N':>4} {'cpu-s/part/s':>12} {'server%':>8} {'load%':>6} {'load late':>9} "
    f"{'late+lost%':>10} {'late ticks':>10} {'own+shared enc/tick':>19} {'dec/tick':>8} "
    f"{'tones dB':>8} {'wait s/l %':>10} {'µs/pkt s/l':>11} {'KiB/part':>9} {'RSS MiB':>8} "
    f"{'GC ms/full':>9}"
)


def print_row(n: int, r: dict[str, Any]) -> None:
    wait = f"{r['server_wait_pct']:.0f}/{r['load_wait_pct']:.0f} %"
    per_packet = f"{r['server_us_per_packet']:.1f}/{r['load_us_per_packet']:.1f}"
    print(f"{n:>4} {r['cpu_per_participant']:>12.5f} {r['server_cpu_pct']:>7.1f}% "
          f"{r['load_cpu_pct']:>5.0f}% {r['load_late_ticks_pct']:>8.1f}% "
          f"{r['late_lost_pct']:>9.2f}% {r['late_ticks_pct']:>9.2f}% "
          f"{r['own_per_tick']:>9.1f} + {r['shared_per_tick']:<7.1f} "
          f"{r['decoded_per_tick']:>8.1f} {r['tones_min_db']:>8.1f} {wait:>10} "
          f"{per_packet:>11} "
          f"{r['kib_per_participant']:>9.0f} {r['rss_mib']:>8.0f} "
          f"{r['gc_max_ms']:>5.1f}/{r['gc_full']:<3}", flush=True)  # fmt: skip


def held(r: dict[str, Any]) -> bool:
    """A size held: no late tick, under 1 % late+lost, under one core, the talkers heard."""
    return bool(
        r["late_ticks_pct"] == 0
        and r["late_lost_pct"] < 1.0
        and r["server_cpu_pct"] < 100
        and r["tones_min_db"] > TONE_HEARD_DB
    )


def why_not(r: dict[str, Any]) -> str:
    reasons = []
    if r["late_ticks_pct"] > 0:
        reasons.append(f"{r['late_ticks_pct']:.2f} % late ticks")
    if r["late_lost_pct"] >= 1.0:
        reasons.append(f"{r['late_lost_pct']:.2f} % late+lost")
    if r["server_cpu_pct"] >= 100:
        reasons.append("a whole core")
    if r["tones_min_db"] != r["tones_min_db"]:  # NaN: under 1 s of audio reached them
        reasons.append("no audio at the decoding legs")
    elif not r["tones_min_db"] > TONE_HEARD_DB:
        reasons.append(f"a talker heard at {r['tones_min_db']:.1f} dB")
    return ", ".join(reasons)


def load_limited(r: dict[str, Any]) -> bool:
    """The load could not keep its own pace though it was not kept from a CPU by other jobs:
    the size measures the load, not the server."""
    slow = r["load_late_ticks_pct"] > 1.0 or r["load_cpu_pct"] >= 95 * r["load_cores"]
    return bool(slow and r["load_wait_pct"] <= 10)


def contended(r: dict[str, Any]) -> bool:
    """The server or the load waited over 10 % of the time for a CPU (other jobs)."""
    return bool(r["server_wait_pct"] > 10 or r["load_wait_pct"] > 10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-n", type=int, action="append", help="participants (repeatable)")
    ap.add_argument("-d", "--duration", type=float, default=20.0, help="seconds of audio")
    ap.add_argument("--talkers", type=int, default=3, help="participants sending a tone")
    ap.add_argument("--codecs", default="opus", help="codecs, assigned round-robin")
    ap.add_argument("--no-audio-level", action="store_true", help="peers send no RFC 6464 level")
    ap.add_argument("--find-max", action="store_true", help="raise N until a size fails")
    ap.add_argument("--start", type=int, default=100, help="--find-max: first N")
    ap.add_argument("--step", type=int, default=50, help="--find-max: N added per size")
    ap.add_argument("--retries", type=int, default=1,
                    help="--find-max: reruns of a failed size that was contended")  # fmt: skip
    ap.add_argument("--per-load", type=int, default=PER_LOAD_PROCESS,
                    help="participants per load process")  # fmt: skip
    ap.add_argument("--pin", action="store_true", help="server on CPU 0, load on the others")
    ap.add_argument("--offline", action="store_true", help="CPU per tick in one process")
    ap.add_argument("--profile", action="store_true", help="--offline: cProfile each size")
    ap.add_argument("--mixer-only", action="store_true",
                    help="--offline: the mixer's own work, no packet I/O")  # fmt: skip
    ap.add_argument("--server", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.server:
        asyncio.run(run_server())
        return
    if args.offline:
        import conference_ticks

        conference_ticks.main(args)
        return
    codecs = args.codecs.split(",")
    level = "no RFC 6464 level" if args.no_audio_level else "RFC 6464 levels sent"
    cpus = os.cpu_count() or 1
    load_cores = max(1, cpus - 1) if args.pin and cpus > 1 else cpus
    pinned = f"server pinned to CPU 0, load to the other {load_cores}" if args.pin else "not pinned"
    print(f"# callbridge bench/conference.py — {cpu_model()}, {cpus} cores, "
          f"load average {os.getloadavg()[0]:.1f} at start, Python {platform.python_version()}; "
          f"one room, {args.talkers} talkers, the rest silent ({level}); codecs "
          f"{'/'.join(codecs)}; {args.duration:.0f} s of audio per size; media server and load "
          f"processes (1 per {args.per_load} participants) on this machine, "
          f"{pinned}")  # fmt: skip
    print("# load late: the load's own 20 ms ticks started > 10 ms late; tones dB: the "
          "quietest talker tone heard by the decoding sample legs; wait s/l: % of the time "
          "the server / the load waited for a CPU (other jobs); µs/pkt s/l: CPU of the server / "
          "the load per RTP packet between them (sent + received); GC ms/full: the "
          "server's longest garbage-collector pause and its full collections in the audio "
          "phase")  # fmt: skip
    print(COLUMNS)

    def run(n: int) -> dict[str, Any]:
        r = run_size(n, args.duration, codecs, min(args.talkers, n),
                     not args.no_audio_level, args.pin, args.per_load)  # fmt: skip
        r["load_cores"] = load_cores
        assert r["members"] == n, r
        print_row(n, r)
        return r

    if not args.find_max:
        for n in args.n or [10, 50, 100]:
            run(n)
        return
    best: tuple[int, dict[str, Any]] | None = None
    n = args.start
    while True:
        r = run(n)
        for _ in range(args.retries):
            if held(r) or not contended(r):
                break
            print(f"# N={n} failed while contended (waited for a CPU): run again", flush=True)
            r = run(n)
        if not held(r):
            break
        best, n = (n, r), n + args.step
    limited = (
        " (the LOAD was the limit: its own ticks were late or its cores full, not for other jobs)"
    )
    print(f"# N={n} did not hold: {why_not(r)}"
          f"{limited if load_limited(r) else ''}"
          f"{'; contended (waited for a CPU)' if contended(r) else ''}")  # fmt: skip
    if best is None:
        print(f"# largest room that held: none from N={args.start}")
    else:
        size, b = best
        print(f"# largest room that held (0 late ticks, < 1 % late+lost, talkers heard): "
              f"N={size}; server {b['server_cpu_pct']:.1f} % of a core, "
              f"{b['cpu_per_participant']:.5f} CPU-s per participant per s "
              f"(one core at that rate: ~{1 / b['cpu_per_participant']:.0f} participants); "
              f"load {b['load_cpu_pct']:.0f} % of {load_cores} core(s), "
              f"{b['load_cpu_pct'] / 100 / size:.5f} CPU-s per participant per s"
              f"{limited if load_limited(b) else ''}")  # fmt: skip
    print(f"# {PREVIOUS}")


if __name__ == "__main__":
    main()
