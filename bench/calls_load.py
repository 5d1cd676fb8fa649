"""The load process of bench/calls.py: many call legs in one asyncio loop, cheaply.

Run by bench/calls.py (``python bench/calls_load.py``, a JSON spec on stdin). Every leg is a
``LeanMedia``: bench/conference.py's ``LoopMedia`` (its pre-encoded sender, reused, not
copied: a 1 s loop of a tone encoded once per process) made cheaper per packet. One task per
process sends every leg's next packet each 20 ms, with running sequence numbers and
timestamps; what arrives is counted (lost and late, ``ReceiveCounters``) from the sequence
number and timestamp in the clear RTP header of each SRTP packet, read at the leg's ICE
socket: never unprotected, parsed into an object or decoded. aiortc does ICE and DTLS and
its keys protect what is sent. 40 pairs of such legs in one process cost 0.0021 CPU-s per leg
per s, against 0.005 for ``LoopMedia`` on aiortc's receive path (measured 2026-12-02).

Three kinds of run:

- ``"mode": "callbridge"``: 2N SDK phones (``LoopPhone``: a ``Phone`` whose calls get a
  ``LoopMedia``) log in to a real server; N of them call the other N, who answer.
- ``"mode": "baseline"``: the legs' offers go to bench/calls_baseline.py (stock aiortc) over
  its control socket, two per call.
- ``"mode": "setup"`` (bench/calls_setup.py): setup alone, no audio: after ``ready`` and
  ``go``, single calls one after another, ``single-done``, and after ``go`` a burst placed
  at once; the result is ``{"single": [...], "burst": [...]}`` in seconds.

Protocol on stdout: ``{"phase": "ready"}`` once every leg is connected and settled, then (after
``go`` on stdin and ``duration`` seconds) ``{"setup": [...], "stats": [...]}``, or
``{"error": "..."}`` if the legs could not be set up.
"""

from __future__ import annotations

import asyncio
import json
import struct
import sys
import time
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

from callbridge.client import Call, CallMedia, Phone
from callbridge.client.audio import AudioSink, AudioSource
from callbridge.rtp.codecs import FRAME_MS
from callbridge.rtp.webrtc import RtpPort, restrict_ice_addresses
from conference import Control, LoopMedia, _loop

T = TypeVar("T")
TONES = (440.0, 550.0, 660.0, 770.0)  # whole cycles in the 1 s loop; few: each is encoded once


_SEQ_TS = struct.Struct("!HI")  # RTP sequence number and timestamp, at offset 2 (RFC 3550 5.1)


class Ticker:
    """One task sends every leg's next packet each 20 ms, instead of a timer per leg."""

    def __init__(self) -> None:
        self.legs: list[LeanMedia] = []
        self.task: asyncio.Task[None] | None = None

    def add(self, leg: LeanMedia) -> None:
        self.legs.append(leg)
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            for leg in self.legs:
                await leg.send_next()
            deadline += FRAME_MS / 1000
            await asyncio.sleep(max(0.0, deadline - loop.time()))


TICKER = Ticker()


class LeanMedia(LoopMedia):
    """A ``LoopMedia`` made cheaper per packet for a load generator.

    - Sending: the process's :data:`TICKER` sends for all legs in one 20 ms tick.
    - Receiving: once connected, the leg's ICE socket hands RTP straight to the counters: the
      sequence number and timestamp are read from the header, which SRTP leaves in clear
      (RFC 3711 section 3.1), so nothing is unprotected, parsed into an object or decoded;
      STUN, DTLS and RTCP still go to aioice (ICE consent keeps working). Authenticity is not
      checked: this is a counter on 127.0.0.1, not a receiver.
    """

    def __init__(self, tone: float, codec: str) -> None:
        super().__init__(tone, codec, audio_level=False)
        self._k = 0
        self._timestamp = 0
        self._payloads: tuple[bytes, ...] = ()

    async def _pump(self, port: RtpPort) -> None:
        await port.ready.wait()
        audio = port.audio
        assert audio is not None
        self._payloads = _loop(self.tone, audio.codec)[0]
        self._hook_receive(audio.payload_type, audio.codec.clock_rate)
        TICKER.add(self)

    async def send_next(self) -> None:
        audio = self.port.audio
        assert audio is not None
        k = self._k
        payload = self._payloads[k % len(self._payloads)]
        await self.port.send(payload, audio.payload_type, self._timestamp, k == 0)
        self._k += 1
        self._timestamp += audio.codec.timestamp_step

    def _hook_receive(self, payload_type: int, clock_rate: int) -> None:
        dtls = self.transceiver.sender.transport
        pair = dtls.transport._connection._nominated.get(1)
        if pair is None or pair.protocol is None:
            return  # not nominated (cannot happen once ready): aiortc's path still counts
        protocol = pair.protocol
        handle = protocol.datagram_received
        unpack, monotonic = _SEQ_TS.unpack_from, time.monotonic

        def datagram_received(data: bytes, addr: tuple[Any, ...]) -> None:
            # RFC 7983: 128..191 is RTP or RTCP; RFC 5761 section 4: RTCP's second byte is
            # 192..223 (payload types 64..95 with the marker bit).
            if len(data) >= 12 and 128 <= data[0] <= 191 and not 192 <= data[1] <= 223:
                seq, ts = unpack(data, 2)
                self._counters.on_packet(
                    seq, ts, clock_rate, monotonic(), timed=data[1] & 0x7F == payload_type
                )
                return
            handle(data, addr)

        protocol.datagram_received = datagram_received  # type: ignore[method-assign, assignment]


class LoopPhone(Phone):
    """An SDK phone whose calls send a pre-encoded loop and count without decoding."""

    def __init__(self, url: str, token: str, tone: float, codec: str) -> None:
        self._tone, self._codec = tone, codec
        super().__init__(url, token)

    def _new_media(
        self, source: AudioSource | None, sink: AudioSink | None, codecs: Sequence[str] | None
    ) -> CallMedia:
        restrict_ice_addresses(["127.0.0.1"])
        return LeanMedia(self._tone, (codecs or [self._codec])[0])


async def bounded(limit: int, aws: Sequence[Awaitable[T]]) -> list[T]:
    """``gather`` with at most ``limit`` in flight (setting up hundreds of legs at once only
    measures the handshakes' queue)."""
    gate = asyncio.Semaphore(limit)

    async def one(aw: Awaitable[T]) -> T:
        async with gate:
            return await aw

    return await asyncio.gather(*(one(aw) for aw in aws))


async def callbridge_legs(spec: dict[str, Any]) -> tuple[list[CallMedia], list[float], Any]:
    url, pairs, codec = spec["url"], spec["pairs"], spec["codec"]
    callers = [LoopPhone(url, p["caller_token"], TONES[i % 4], codec) for i, p in enumerate(pairs)]
    callees = [LoopPhone(url, p["callee_token"], TONES[i % 4], codec) for i, p in enumerate(pairs)]
    await bounded(spec["concurrency"], [ph.login() for ph in callers + callees])
    answered: list[Call] = []

    async def on_incoming(call: Call) -> None:
        await call.answer(codecs=[codec])
        answered.append(call)

    for ph in callees:
        ph.on("incoming", on_incoming)

    async def place(i: int) -> tuple[Call, float]:
        t0 = time.perf_counter()
        call = await callers[i].call(pairs[i]["callee_ext"], codecs=[codec])
        await call.wait_for("answered", timeout=60)
        return call, time.perf_counter() - t0

    placed = await bounded(spec["concurrency"], [place(i) for i in range(len(pairs))])
    calls = [c for c, _ in placed] + answered
    medias = [c.media for c in calls if c.media is not None]

    async def close() -> None:
        for call, _ in placed:
            await call.hangup()
        await asyncio.gather(*(ph.close() for ph in callers + callees))

    return medias, [s for _, s in placed], close


async def setup_times(spec: dict[str, Any]) -> dict[str, Any]:
    """``"mode": "setup"`` (bench/calls.py --setup): setup alone, no audio phase. ``single``
    calls one after another (each hung up and ended at both ends before the next), then
    ``burst`` calls placed at once; call.create -> call.answered of each, in seconds."""
    url, pairs, codec = spec["url"], spec["pairs"], spec["codec"]
    k, m = spec["single"], spec["burst"]
    callers = [LoopPhone(url, p["caller_token"], TONES[i % 4], codec) for i, p in enumerate(pairs)]
    callees = [LoopPhone(url, p["callee_token"], TONES[i % 4], codec) for i, p in enumerate(pairs)]
    await bounded(50, [ph.login() for ph in callers + callees])
    rung: dict[int, Call] = {}

    def answering(i: int) -> Any:
        async def on_incoming(call: Call) -> None:
            rung[i] = call
            await call.answer(codecs=[codec])

        return on_incoming

    for i, ph in enumerate(callees):
        ph.on("incoming", answering(i))

    async def place(i: int) -> tuple[Call, float]:
        t0 = time.perf_counter()
        call = await callers[i].call(pairs[i]["callee_ext"], codecs=[codec])
        await call.wait_for("answered", timeout=60)
        return call, time.perf_counter() - t0

    async def end(calls: list[tuple[Call, int]]) -> None:
        for call, _ in calls:
            await call.hangup()
        for call, i in calls:  # both ends over: the next measurement starts from nothing
            await call.wait_for("ended", timeout=30)
            await rung[i].wait_for("ended", timeout=30)

    print(json.dumps({"phase": "ready"}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "go"
    single: list[float] = []
    for i in range(k):
        call, took = await place(i)
        single.append(took)
        await end([(call, i)])
    print(json.dumps({"phase": "single-done", "single": single}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "go"
    placed = await asyncio.gather(*(place(i) for i in range(k, k + m)))
    await end([(call, k + j) for j, (call, _) in enumerate(placed)])
    await asyncio.gather(*(ph.close() for ph in callers + callees))
    return {"single": single, "burst": [took for _, took in placed]}


async def baseline_legs(spec: dict[str, Any]) -> tuple[list[CallMedia], list[float], Any]:
    control = await Control.connect(spec["port"])
    medias: list[CallMedia] = []
    setup: list[float] = []
    for i in range(spec["calls"]):  # one at a time: the control socket is one line per call
        t0 = time.perf_counter()
        a = LeanMedia(TONES[i % 4], spec["codec"])
        b = LeanMedia(TONES[(i + 1) % 4], spec["codec"])
        reply = await control.request(op="call", a=await a.create_offer(), b=await b.create_offer())
        await a.accept_answer(reply["a"])
        await b.accept_answer(reply["b"])
        medias += [a, b]
        setup.append(time.perf_counter() - t0)

    async def close() -> None:
        for media in medias:
            await media.close()
        await control.close()

    return medias, setup, close


async def run_load(spec: dict[str, Any]) -> dict[str, Any]:
    restrict_ice_addresses(["127.0.0.1"])
    make = callbridge_legs if spec["mode"] == "callbridge" else baseline_legs
    try:
        medias, setup, close = await make(spec)
        async with asyncio.timeout(120):
            for media in medias:
                await media.wait_connected()
    except Exception as exc:  # reported to the orchestrator: this size failed
        return {"error": f"{type(exc).__name__}: {exc}"}
    await asyncio.sleep(1.0)  # settle: ICE/DTLS done everywhere, first packets through
    print(json.dumps({"phase": "ready"}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "go"
    sent0 = [media.stats().packets_sent for media in medias]
    for media in medias:
        media.reset_stats()
    await asyncio.sleep(spec["duration"])
    stats = []
    for media, sent in zip(medias, sent0, strict=True):
        st = media.stats()
        stats.append({"expected": st.packets_expected, "lost": st.packets_lost,
                      "late": st.packets_late, "sent": st.packets_sent - sent})  # fmt: skip
    await close()
    return {"setup": setup, "stats": stats}


async def main(spec: dict[str, Any]) -> dict[str, Any]:
    if spec["mode"] != "setup":
        return await run_load(spec)
    restrict_ice_addresses(["127.0.0.1"])
    try:
        return await setup_times(spec)
    except Exception as exc:  # reported to the orchestrator
        return {"error": f"{type(exc).__name__}: {exc}"}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.stdin.readline())))), flush=True)
