"""Benchmark: one conference room's media work per 20 ms tick, in one process, on CPU time.

    .venv/bin/python bench/conference.py --offline -n 100 -n 200 -n 300
    .venv/bin/python bench/conference.py --offline --find-max     # largest N under one core
    .venv/bin/python bench/conference.py --offline -n 200 --profile
    .venv/bin/python bench/conference.py --offline --mixer-only -n 200 -n 1000

What bench/conference.py measures over real WebRTC, without the network, the other peers and
the event loop's scheduling: for N members (3 talkers, the rest digital silence), each tick
every member's packet is SRTP-protected beforehand (as it arrives), then per tick the server's
work is done and timed with the process's CPU clock: SRTP unprotect and RTP parse of each
inbound packet (aiortc, with the RFC 6464 level when ``--no-audio-level`` is not given), the
member's input (decode or not), the mixer's tick, and per listener the RTP packet, SRTP
protect and ``sendto`` on 127.0.0.1. Because it counts CPU time, other jobs on the machine
change it little, unlike the live bench's late ticks; it leaves out asyncio's and aiortc's
per-datagram overhead (DTLS demultiplexing, the datagram callbacks), which the live bench
includes. Runs with the code before issue 15 as well (it then decodes every packet through
the endpoint's decoder, as that code did), so before and after can be measured in one sitting.
``--mixer-only`` leaves the packet I/O out (payloads fed as the endpoint hands them over, legs
that send nothing): the mixer's own cost per member is the slope between two sizes.
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import socket
import time
from typing import Any

import numpy as np
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket
from pylibsrtp import Policy, Session

from callbridge.media.mixer import Mixer
from callbridge.media.players import encode_loop
from callbridge.rtp.codecs import CODECS, CodecSpec, FrameDecoder, FrameEncoder

try:  # the leaner packet path (issue 15 item 2), when the code has it: the server's path
    from callbridge.rtp.fastpath import RtpWriter, Srtp, parse_rtp
except ImportError:  # the code before it: aiortc's RtpPacket and pylibsrtp's wrapper
    RtpWriter = Srtp = parse_rtp = None  # type: ignore[assignment,misc]

OPUS = CODECS["opus"]
TICKS = 250  # 5 s of ticks per size
FAST = parse_rtp is not None


def _srtp(direction: int) -> Session:
    policy = Policy(key=bytes(range(30)), ssrc_type=direction)
    return Session(policy=policy)


def _ext_map() -> HeaderExtensionsMap:
    m = HeaderExtensionsMap()
    m.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=1, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
                RTCRtpHeaderExtensionParameters(
                    id=2, uri="urn:ietf:params:rtp-hdrext:ssrc-audio-level"
                ),
            ]
        )
    )
    return m


class Leg:
    """A member's endpoint as far as the mixer sees it; sends like RtpPort.send does."""

    def __init__(self, i: int, out: socket.socket, sink: Any, ext: HeaderExtensionsMap) -> None:
        self.id = f"p{i}"
        self.muted = False
        self._encoder: FrameEncoder | None = None
        self._srtp = _srtp(Policy.SSRC_ANY_OUTBOUND)
        self._out, self._sink, self._ext = out, sink, ext
        self._seq = 0
        if FAST:
            self._writer = RtpWriter(1000, ext, "0")
            self._fast_srtp = Srtp(self._srtp)
        self.decoder = FrameDecoder(OPUS)  # the code before issue 15 decoded in the endpoint
        self.no_io = False  # --mixer-only: nothing is sent

    @property
    def spec(self) -> CodecSpec:
        return OPUS

    def plays_own_audio(self) -> bool:
        return False

    async def tick(self) -> None:
        pass

    def frame_encoder(self) -> FrameEncoder:
        if self._encoder is None:
            self._encoder = FrameEncoder(OPUS)
        return self._encoder

    async def send_audio(self, payload: bytes, source: object, source_ts: int) -> None:
        if self.no_io:
            return
        if FAST:
            header = self._writer.header(111, 0, self._seq, source_ts)
            self._seq = (self._seq + 1) & 0xFFFF
            self._out.sendto(self._fast_srtp.protect(header, payload), self._sink)
            return
        packet = RtpPacket(
            payload_type=111, sequence_number=self._seq, timestamp=source_ts, ssrc=1000,
            payload=payload,
        )  # fmt: skip
        packet.extensions.mid = "0"
        self._seq = (self._seq + 1) & 0xFFFF
        self._out.sendto(self._srtp.protect(packet.serialize(self._ext)), self._sink)


def measure(
    n: int, talkers: int, audio_level: bool, profile: bool = False, io: bool = True
) -> dict[str, float]:
    """CPU time of one room of ``n`` per tick (see the module docstring); ``io`` False: the
    mixer's own work only (payloads fed as parsed, nothing sent)."""
    ext = _ext_map()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out.setblocking(False)
    mixer = Mixer("room", lambda event: None)
    legs = [Leg(i, out, sink.getsockname(), ext) for i in range(n)]
    members = [mixer.add(leg) for leg in legs]
    for leg in legs:
        leg.no_io = not io
    new_input = hasattr(members[0].fifo, "feed")
    t = np.arange(48000) / 48000
    silence = encode_loop(np.zeros(48000, dtype=np.int16), OPUS)
    loops = [
        encode_loop((0.3 * 32767 * np.sin(2 * np.pi * (300 + 170 * k) * t)).astype(np.int16), OPUS)
        for k in range(talkers)
    ]
    plain = [[(loops[i] if i < talkers else silence)[k % 50] for i in range(n)] for k in range(50)]
    level_of = [((True, 10) if i < talkers else (False, 127)) if audio_level else None
                for i in range(n)]  # fmt: skip
    # One SRTP session per leg each way, as each peer connection has its own (one session of
    # many SSRCs would measure libsrtp's stream lookup, a list, instead).
    inbound = [_srtp(Policy.SSRC_ANY_INBOUND) for _ in range(n)]
    fast_in = [Srtp(s) for s in inbound] if FAST else []
    level_id = 2  # the audio level's extension id in _ext_map
    senders = [_srtp(Policy.SSRC_ANY_OUTBOUND) for _ in range(n)]
    # Every inbound packet of the run, protected beforehand (the devices' work, not ours).
    wire: list[list[bytes]] = []
    for k in range(TICKS + 20):
        row = []
        for i in range(n):
            payload = (loops[i] if i < talkers else silence)[k % 50]
            p = RtpPacket(payload_type=111, sequence_number=k, timestamp=960 * k, ssrc=i + 1,
                          payload=payload)  # fmt: skip
            p.extensions.mid = "0"
            if audio_level:
                p.extensions.audio_level = (True, 10) if i < talkers else (False, 127)
            row.append(senders[i].protect(p.serialize(ext)))
        wire.append(row)

    async def run(first: int, ticks: int) -> None:
        for k in range(first, first + ticks):
            if not io:  # the mixer's own work: the payloads as the endpoint hands them over
                for i, (member, payload) in enumerate(zip(members, plain[k % 50], strict=True)):
                    member.fifo.feed(payload, k & 0xFFFF, OPUS, level_of[i])
                await mixer.tick()
                continue
            for i, (member, data) in enumerate(zip(members, wire[k], strict=True)):
                if FAST:
                    view = parse_rtp(fast_in[i].unprotect(data), level_id)
                    assert view is not None
                    member.fifo.feed(view.payload, view.sequence_number, OPUS, view.audio_level)
                    continue
                packet = RtpPacket.parse(inbound[i].unprotect(data), ext)
                if new_input:
                    member.fifo.feed(
                        packet.payload, packet.sequence_number, OPUS, packet.extensions.audio_level
                    )
                else:  # the code before issue 15: the endpoint decoded every packet
                    leg = member.leg
                    assert isinstance(leg, Leg)
                    member.fifo.extend(leg.decoder.decode(packet.payload))
            await mixer.tick()

    asyncio.run(run(0, 20))  # FIFOs primed, the gate open for the talkers
    encodes0, shared0 = mixer.encodes, mixer.shared_encodes
    profiler = cProfile.Profile() if profile else None
    c0, w0 = time.process_time(), time.perf_counter()
    if profiler is not None:
        profiler.enable()
    asyncio.run(run(20, TICKS))
    if profiler is not None:
        profiler.disable()
    c1, w1 = time.process_time(), time.perf_counter()
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(18)
    decoded = sum(m.fifo.decoded for m in members) if new_input else n * (TICKS + 20)
    sink.close()
    out.close()
    per_tick = (c1 - c0) / TICKS
    return {
        "ms_per_tick": 1000 * per_tick,
        "core_pct": 100 * per_tick / 0.020,
        "wall_ms_per_tick": 1000 * (w1 - w0) / TICKS,
        "own_per_tick": (mixer.encodes - encodes0) / TICKS,
        "shared_per_tick": (mixer.shared_encodes - shared0) / TICKS,
        "decoded_per_tick": decoded / (TICKS + 20),
    }


def main(args: Any) -> None:
    """``--offline``: the sizes given (or ``--find-max``) as rows."""
    level = "no RFC 6464 level" if args.no_audio_level else "RFC 6464 levels"
    what = (
        "the mixer only: input, tick, send loop; no packet I/O"
        if args.mixer_only
        else "inbound unprotect+parse, input, mixer, outbound packet+protect+sendto; "
        + ("fast packet path" if FAST else "aiortc packets")
    )
    print(f"# callbridge bench/conference.py --offline — CPU time per 20 ms tick of one room "
          f"in one process ({TICKS} ticks per size; {args.talkers} talkers, {level}; "
          f"{what})")  # fmt: skip
    print(f"{'N':>4} {'CPU ms/tick':>11} {'% of a core':>11} {'own+shared enc/tick':>19} "
          f"{'dec/tick':>8}")  # fmt: skip

    def row(n: int) -> dict[str, float]:
        r = measure(n, min(args.talkers, n), not args.no_audio_level, args.profile,
                    io=not args.mixer_only)  # fmt: skip
        print(f"{n:>4} {r['ms_per_tick']:>11.2f} {r['core_pct']:>10.1f}% "
              f"{r['own_per_tick']:>9.1f} + {r['shared_per_tick']:<7.1f} "
              f"{r['decoded_per_tick']:>8.1f}", flush=True)  # fmt: skip
        return r

    if not args.find_max:
        for n in args.n or [100, 200, 300]:
            row(n)
        return
    held, n = None, args.start
    while row(n)["core_pct"] < 100:
        held, n = n, n + args.step
    print(f"# largest room whose tick fits in one core: {held}; N={n} did not")
