"""The load process of bench/calls.py: many call legs in one asyncio loop, cheaply.

Run by bench/calls.py (``python bench/calls_load.py``, a JSON spec on stdin). Every leg is a
``conference.LoopMedia`` (bench/conference.py's pre-encoded sender, reused, not copied): a
1 s loop of a tone encoded once per process and replayed with running sequence numbers and
timestamps, and a receiver that only counts what arrives from the RTP header (sequence
number, timestamp, arrival time: lost and late, ``callbridge.media.counters``), never
decoding it. aiortc is still underneath for ICE, DTLS and SRTP, so a leg costs the load about
what a relayed leg costs the server; that is said in the figures.

Two kinds of run:

- ``"mode": "callbridge"``: 2N SDK phones (``LoopPhone``: a ``Phone`` whose calls get a
  ``LoopMedia``) log in to a real server; N of them call the other N, who answer.
- ``"mode": "baseline"``: the legs' offers go to bench/calls_baseline.py (stock aiortc) over
  its control socket, two per call.

Protocol on stdout: ``{"phase": "ready"}`` once every leg is connected and settled, then (after
``go`` on stdin and ``duration`` seconds) ``{"setup": [...], "stats": [...]}``, or
``{"error": "..."}`` if the legs could not be set up.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

from callbridge.client import Call, CallMedia, Phone
from callbridge.client.audio import AudioSink, AudioSource
from callbridge.rtp.webrtc import restrict_ice_addresses
from conference import Control, LoopMedia

T = TypeVar("T")
TONES = (440.0, 550.0, 660.0, 770.0)  # whole cycles in the 1 s loop; few: each is encoded once


class LoopPhone(Phone):
    """An SDK phone whose calls send a pre-encoded loop and count without decoding."""

    def __init__(self, url: str, token: str, tone: float, codec: str) -> None:
        self._tone, self._codec = tone, codec
        super().__init__(url, token)

    def _new_media(
        self, source: AudioSource | None, sink: AudioSink | None, codecs: Sequence[str] | None
    ) -> CallMedia:
        restrict_ice_addresses(["127.0.0.1"])
        return LoopMedia(self._tone, (codecs or [self._codec])[0], audio_level=False)


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


async def baseline_legs(spec: dict[str, Any]) -> tuple[list[CallMedia], list[float], Any]:
    control = await Control.connect(spec["port"])
    medias: list[CallMedia] = []
    setup: list[float] = []
    for i in range(spec["calls"]):  # one at a time: the control socket is one line per call
        t0 = time.perf_counter()
        a = LoopMedia(TONES[i % 4], spec["codec"], audio_level=False)
        b = LoopMedia(TONES[(i + 1) % 4], spec["codec"], audio_level=False)
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


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run_load(json.loads(sys.stdin.readline())))), flush=True)
