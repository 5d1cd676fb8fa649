"""The load process of bench/conference.py: many room participants in one asyncio loop, cheaply.

Run by bench/conference.py (``python bench/conference_load.py``, a JSON spec on stdin). Each
participant is a :class:`RoomLeg`: an SDK peer (``CallMedia``: aiortc does ICE, DTLS and the
SRTP keys, so the server gets what a device would send) that costs the load far less than the
server spends on it:

- **Sending**: the payloads are encoded once per process (bench/conference.py's ``_loop``: a
  1 s loop of a tone, or of digital silence), each with its RFC 6464 level (silence: 127, so
  the server need not decode it), and one task per process sends every leg's next packet each
  20 ms (:class:`Ticker`) instead of a timer per leg. A packet is written in place
  (``RtpWriter``), protected on the DTLS session's SRTP (``Srtp``: libsrtp, the session's
  buffer) and sent on the nominated ICE pair's socket: ``RtpPort.send``'s work without its
  coroutine and aiortc's sender counters (the load's RTCP reports say 0 sent; nobody reads
  them).
- **Receiving**: once connected, the leg's ICE socket hands RTP straight to the counters: the
  sequence number and timestamp are read from the header, which SRTP leaves in clear (RFC 3711
  section 3.1), so nothing is unprotected, parsed into an object or decoded; the server's
  RTCP is dropped unread; STUN and DTLS still go to aioice and aiortc (ICE consent keeps
  working). Authenticity is not checked: this is a counter on 127.0.0.1, not a receiver.
  ``"decode"`` names a few legs that unprotect and decode what they hear instead (aiortc's
  path and the SDK's decoder into a recording sink), so the bench can check that the talkers
  are heard.

The ticker also counts its own late ticks (started more than 10 ms after their due time): a
load that cannot keep its 20 ms pace shows as such, apart from the server's late ticks.

Protocol on stdout: ``{"phase": "ready"}`` once every leg is connected and settled, then
(after ``go`` on stdin and ``duration`` seconds) ``{"stats": [...], "load": {...}}``.
"""

from __future__ import annotations

import asyncio
import json
import random
import struct
import sys
import time
from typing import Any

from callbridge.client.audio import SAMPLE_RATE, BufferSink
from callbridge.rtp.codecs import FRAME_MS
from callbridge.rtp.fastpath import RtpWriter, Srtp
from callbridge.rtp.webrtc import RtpPort, restrict_ice_addresses
from callbridge.testing.audio import tone_level_db
from conference import Control, LoopMedia, _loop

_SEQ_TS = struct.Struct("!HI")  # RTP sequence number and timestamp, at offset 2 (RFC 3550 5.1)
LATE_TICK = 0.010  # a load tick that starts this much after its due time is late


class Ticker:
    """One task sends every leg's next packet each 20 ms, on an absolute schedule."""

    def __init__(self) -> None:
        self.legs: list[RoomLeg] = []
        self.task: asyncio.Task[None] | None = None
        self.ticks = 0
        self.late = 0  # ticks that started more than LATE_TICK after their due time

    def add(self, leg: RoomLeg) -> None:
        self.legs.append(leg)
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run())

    def reset(self) -> None:
        self.ticks = self.late = 0

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        step = FRAME_MS / 1000
        while True:
            self.ticks += 1
            if loop.time() - deadline > LATE_TICK:
                self.late += 1
            for leg in self.legs:
                leg.send_next()
            deadline += step
            delay = deadline - loop.time()
            if delay < -0.2:  # stalled: skip ahead instead of bursting (as the server does)
                deadline, delay = loop.time(), 0.0
            await asyncio.sleep(max(0.0, delay))


TICKER = Ticker()


class RoomLeg(LoopMedia):
    """One participant of the load (see the module docstring)."""

    def __init__(self, tone: float | None, codec: str, audio_level: bool, decode: bool) -> None:
        super().__init__(tone, codec, audio_level)
        self.decode = decode
        self.recording = BufferSink(max_seconds=3.0) if decode else None
        self.sink = self.recording
        self._k = 0
        self._timestamp = 0
        self._payloads: tuple[bytes, ...] = ()
        self._levels: tuple[tuple[bool, int] | None, ...] = ()
        self._pt = 0
        self._step = 0
        self._seq = random.randint(0, 32767)  # < 2^15 like aiortc: no SRTP rollover early
        self._lean: tuple[RtpWriter, Srtp, Any, Any] | None = None
        self.sent = 0  # packets sent

    async def _pump(self, port: RtpPort) -> None:
        await port.ready.wait()
        audio = port.audio
        assert audio is not None
        # _loop's levels: the tone's, or 127 (-127 dBov, no voice) for digital silence
        self._payloads, levels = _loop(self.tone, audio.codec)
        self._levels = levels if self.audio_level else (None,) * len(self._payloads)
        self._pt, self._step = audio.payload_type, audio.codec.timestamp_step
        if not self.decode:
            self._hook_receive(audio.payload_type, audio.codec.clock_rate)
        TICKER.add(self)
        await asyncio.Event().wait()  # the port's sender task lives as long as the leg

    def send_next(self) -> None:
        """This leg's next packet: RtpPort.send's work without its per-packet extras (a
        coroutine, aiortc's sender counters), on the DTLS session's SRTP and the nominated
        ICE pair's socket; nothing until both are up (as RtpPort.send)."""
        k = self._k
        self._k += 1
        timestamp, self._timestamp = self._timestamp, (self._timestamp + self._step) & 0xFFFFFFFF
        lean = self._lean or self._lean_sender()
        if lean is None:
            return
        writer, srtp, transport, dest = lean
        i = k % len(self._payloads)
        seq = self._seq
        self._seq = (seq + 1) & 0xFFFF
        header = writer.header(self._pt, k == 0, seq, timestamp, self._levels[i])
        transport.sendto(srtp.protect(header, self._payloads[i]), dest)
        self.sent += 1

    def _lean_sender(self) -> tuple[RtpWriter, Srtp, Any, Any] | None:
        dtls = self.transceiver.sender.transport
        if dtls.state != "connected":
            return None
        pair = dtls.transport._connection._nominated.get(1)
        if pair is None or pair.protocol is None or pair.protocol.transport is None:
            return None
        # The port's negotiated MID and extension ids (RtpPort keeps them; a bench may look).
        port = self.port
        writer = RtpWriter(port.ssrc, port._ext_map, port._mid)
        self._lean = (writer, Srtp(dtls._tx_srtp), pair.protocol.transport, pair.remote_addr)
        return self._lean

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
            if len(data) >= 12 and 128 <= data[0] <= 191:
                if 192 <= data[1] <= 223:
                    return  # the server's RTCP: nothing the load needs (aiortc's stats)
                seq, ts = unpack(data, 2)
                self._counters.on_packet(
                    seq, ts, clock_rate, monotonic(), timed=data[1] & 0x7F == payload_type
                )
                return
            handle(data, addr)  # STUN (ICE consent), DTLS

        protocol.datagram_received = datagram_received  # type: ignore[method-assign, assignment]


def tone_of(k: int) -> float:
    """The k-th talker's tone (Hz): whole cycles in the 1 s loop, far enough apart to tell."""
    return 300.0 + 170 * k


def heard_tones(sink: BufferSink, tones: list[float]) -> dict[str, float]:
    """The level (dB) of each talker's tone in the last 2 s a decoding leg heard."""
    pcm = sink.samples(2.0)
    if pcm.size < SAMPLE_RATE:
        return {}
    return {f"{t:.0f}": round(tone_level_db(pcm, SAMPLE_RATE, t), 1) for t in tones}


async def run_load(spec: dict[str, Any]) -> dict[str, Any]:
    restrict_ice_addresses(["127.0.0.1"])
    control = await Control.connect(spec["port"])
    legs: list[RoomLeg] = []
    decode = set(spec.get("decode", ()))
    for k, (ident, codec) in enumerate(zip(spec["ids"], spec["codecs"], strict=True)):
        tone = tone_of(k) if k < spec["talkers"] else None
        leg = RoomLeg(tone, codec, spec["audio_level"], ident in decode)
        reply = await control.request(op="join", id=ident, offer=await leg.create_offer())
        await leg.accept_answer(reply["answer"])
        legs.append(leg)
    async with asyncio.timeout(120):
        for leg in legs:
            await leg.wait_connected()
    await asyncio.sleep(1.0)  # settle: every member's FIFO primed, the floor decided
    print(json.dumps({"phase": "ready"}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "go"
    sent0 = [leg.sent for leg in legs]
    for leg in legs:
        leg.reset_stats()
    TICKER.reset()
    await asyncio.sleep(spec["duration"])
    stats = []
    for leg, sent in zip(legs, sent0, strict=True):
        st = leg.stats()
        stats.append({"expected": st.packets_expected, "lost": st.packets_lost,
                      "late": st.packets_late, "sent": leg.sent - sent,
                      "received": st.packets_received})  # fmt: skip
    tones = [tone_of(k) for k in range(spec["talkers"])]
    heard = {
        leg_id: heard_tones(leg.recording, [t for t in tones if t != leg.tone])
        for leg_id, leg in zip(spec["ids"], legs, strict=True)
        if leg.recording is not None
    }
    load = {"ticks": TICKER.ticks, "late_ticks": TICKER.late, "heard": heard}
    if TICKER.task is not None:
        TICKER.task.cancel()  # nothing is sent on closing legs
    for leg in legs:
        await leg.close()
    await control.close()
    return {"stats": stats, "load": load}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run_load(json.loads(sys.stdin.readline())))), flush=True)
