"""Benchmark: the server's relay path per RTP packet, in one process, on CPU time.

    .venv/bin/python bench/packet_path.py                  # 20000 packets per case
    .venv/bin/python bench/packet_path.py -n 50000 --profile
    .venv/bin/python bench/packet_path.py --cases webrtc-socket,webrtc
    .venv/bin/python bench/packet_path.py --cases send --uvloop  # the send side alone
    .venv/bin/python bench/packet_path.py --cases webrtc-socket --uvloop   # on uvloop's loop

Two legs of one in-process media server (``InProcessMediaServer``, the code
``callbridge serve`` runs) are bridged with the same codec, so every packet is relayed (no
decode, no encode). N packets are then handed to leg A at the socket layer, each as the
device sent it, and the CPU time of the process is measured until leg B has sent them all:

- *webrtc*: two SDK peers (aiortc) connected to the server over 127.0.0.1 (ICE, DTLS-SRTP,
  Opus); the packets are SRTP-protected beforehand by peer A's own SRTP session (a new SSRC,
  with the MID extension, as a browser's) and given to the datagram callback of the server's
  ICE socket, so the server does all it does for a packet from the network: aioice, the DTLS
  transport's demultiplexing, SRTP unprotect, RTP parse, the relay, header, SRTP protect and
  ``sendto``. Peer B's socket is paused, so its work is not counted.
- *webrtc-socket*: the same, but each packet is sent to the server's ICE socket over
  127.0.0.1 from a socket of this process, one per event-loop turn, as packets arrive live:
  the loop's ``epoll`` turn and ``recvfrom`` per packet are counted too (and so is this
  process's own ``sendto`` of the packet, ~the same in every run: compare runs, not cases).
- *send*: the send side alone: the server's endpoint B sends N payloads as the mixer sends
  to each member every tick (its outbound clock, RTP header, SRTP protect, ``sendto``).
- *plain* and *plain+SRTP*: two plain RTP legs (a SIP phone's; PCMU, SDES keys for SRTP);
  the packets go to the leg's datagram callback; the sink is a socket nobody reads.

With ``--uvloop`` peer B's socket cannot be paused (uvloop's UDP transport has no
``pause_reading``): it reads and drops what the server sends, so its ``recvfrom`` is counted
there and not on asyncio's loop (a little against uvloop).

Not measured: the kernel's receive of the inbound datagrams (they are not read from a
socket). The peers' own 50 packets/s keep flowing during the run; the denominator is what
leg B actually sent.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import os
import platform
import pstats
import socket
import time
from typing import Any

import aiortc
import pylibsrtp
from aiortc.rtp import RtpPacket

from callbridge.client import BufferSink, CallMedia, SilenceSource
from callbridge.media.engine import InProcessMediaServer

KEY = bytes(range(30))


def _phone_offer(port: int, srtp: bool) -> str:
    lines = [
        "v=0", "o=phone 1 1 IN IP4 127.0.0.1", "s=call", "c=IN IP4 127.0.0.1", "t=0 0",
        f"m=audio {port} {'RTP/SAVP' if srtp else 'RTP/AVP'} 0 101", "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000", "a=ptime:20",
    ]  # fmt: skip
    if srtp:
        lines.append(f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{base64.b64encode(KEY).decode()}")
    return "\r\n".join(lines) + "\r\n"


async def _drive(
    feed: Any, wire: list[bytes], sent: Any, profile: cProfile.Profile | None, batch: int = 16
) -> tuple[float, float, int]:
    """Hand ``wire`` to ``feed`` ``batch`` packets per loop turn; CPU seconds and packets B
    sent."""
    start = sent()
    c0, w0 = time.process_time(), time.perf_counter()
    if profile is not None:
        profile.enable()
    for i in range(0, len(wire), batch):
        for data in wire[i : i + batch]:
            feed(data)
        await asyncio.sleep(0)
    deadline = time.monotonic() + 10
    while sent() - start < len(wire) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0)
    if profile is not None:
        profile.disable()
    return time.process_time() - c0, time.perf_counter() - w0, int(sent() - start)


async def _send_only(b: Any, n: int, profile: cProfile.Profile | None) -> tuple[float, float, int]:
    """The *send* case: endpoint B sends ``n`` payloads as the mixer's loop sends to each
    member (its synchronous ``send_audio_now`` where the code has it, else ``await
    send_audio``): OutboundClock, header, SRTP protect, ``sendto``, aiortc's counters."""
    payload = bytes(80)
    source = object()
    send_now = getattr(b, "send_audio_now", None)
    start = b.port.packets_sent
    c0, w0 = time.process_time(), time.perf_counter()
    if profile is not None:
        profile.enable()
    for i in range(n):
        if send_now is not None:
            send_now(payload, source, 960 * i)
        else:
            await b.send_audio(payload, source, 960 * i)
        if i & 15 == 15:
            await asyncio.sleep(0)
    if profile is not None:
        profile.disable()
    return time.process_time() - c0, time.perf_counter() - w0, b.port.packets_sent - start


async def webrtc_case(
    n: int, profile: cProfile.Profile | None, via_socket: bool = False, send_only: bool = False
) -> tuple[float, float, int]:
    server = InProcessMediaServer(["127.0.0.1"])
    peers = []
    for name in ("a", "b"):
        media = CallMedia(SilenceSource(), BufferSink(), codecs=["opus"])
        await media.accept_answer(await server.answer(name, await media.create_offer()))
        await media.wait_connected()
        peers.append(media)
    a, b = server.endpoint("a"), server.endpoint("b")
    while a.port is None or a.port.audio is None or b.port is None or b.clock is None:  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    await server.bridge("a", "b")
    # Peer B's socket stops reading: the server's sends are not followed by its work.
    conn_b = peers[1].transceiver.sender.transport.transport._connection
    protocol_b = conn_b._nominated[1].protocol
    try:
        protocol_b.transport.pause_reading()  # type: ignore[attr-defined]
    except AttributeError:  # uvloop's UDP transport cannot pause: read, then drop
        protocol_b.datagram_received = lambda data, addr: None  # type: ignore[method-assign]
    if send_only:
        result = await _send_only(b, n, profile)
        for media in peers:
            await media.close()
        await server.shutdown()
        return result
    # The packets, protected by peer A's own SRTP session, with its MID and a new SSRC.
    sender_a = peers[0].transceiver.sender
    dtls_a = sender_a.transport
    ext = peers[0].port._ext_map  # the header extension ids peer A negotiated
    payload = bytes(80)  # an Opus packet's size at 32 kbit/s
    assert peers[0].port.audio is not None
    pt = peers[0].port.audio.payload_type
    wire = []
    for i in range(n):
        p = RtpPacket(payload_type=pt, sequence_number=i & 0xFFFF, timestamp=960 * i,
                      ssrc=0x1234567, payload=payload)  # fmt: skip
        p.extensions.mid = peers[0].transceiver.mid
        wire.append(dtls_a._tx_srtp.protect(p.serialize(ext)))
    conn_a = a.pc.getTransceivers()[0].sender.transport.transport._connection
    pair = conn_a._nominated[1]
    proto, addr = pair.protocol, pair.remote_addr

    def feed(data: bytes) -> None:
        proto.datagram_received(data, addr)

    batch = 16
    if via_socket:  # through the kernel: the server's epoll, recvfrom, one packet a loop turn
        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        out.bind(("127.0.0.1", 0))
        to = proto.transport.get_extra_info("sockname")

        def feed(data: bytes) -> None:
            out.sendto(data, to)

        batch = 1
    result = await _drive(feed, wire, lambda: b.port.packets_sent, profile, batch)
    if via_socket:
        out.close()
    for media in peers:
        await media.close()
    await server.shutdown()
    return result


async def plain_case(n: int, srtp: bool, profile: cProfile.Profile | None) -> Any:
    server = InProcessMediaServer(["127.0.0.1"])
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    port = sink.getsockname()[1]
    for name in ("a", "b"):
        await server.answer_rtp(name, _phone_offer(port, srtp))
    a, b = server.endpoint("a"), server.endpoint("b")
    while b.clock is None:  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    await server.bridge("a", "b")
    session = None
    if srtp:
        session = pylibsrtp.Session(pylibsrtp.Policy(KEY, pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    wire = []
    for i in range(n):
        p = RtpPacket(payload_type=0, sequence_number=i & 0xFFFF, timestamp=160 * i,
                      ssrc=0x7654321, payload=bytes(160))  # fmt: skip
        data = p.serialize()
        wire.append(session.protect(data) if session is not None else data)
    datagram = a.port._datagram  # type: ignore[union-attr]
    src = ("127.0.0.1", port)

    def feed(data: bytes) -> None:
        datagram(data, src)

    result = await _drive(feed, wire, lambda: b.port.packets_sent, profile)  # type: ignore[union-attr]
    await server.shutdown()
    sink.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20000, help="packets per case")
    parser.add_argument("--profile", action="store_true", help="cProfile each case")
    parser.add_argument("--cases", default="webrtc,webrtc-socket,plain,plain+srtp,send")
    parser.add_argument(
        "--uvloop", action="store_true", help="run on uvloop's event loop (pip install uvloop)"
    )
    args = parser.parse_args()
    if args.uvloop:
        import uvloop  # not a dependency of callbridge: the bench's option only

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    print(f"# callbridge bench/packet_path.py — relay path per packet, one process, CPU time; "
          f"N={args.n}; Python {platform.python_version()}, aiortc {aiortc.__version__}, "
          f"pylibsrtp {pylibsrtp.__version__}, {'uvloop' if args.uvloop else 'asyncio'} loop, "
          f"{os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{'case':<12} {'µs/packet (CPU)':>15} {'µs/packet (wall)':>16} {'relayed':>8}")
    for case in args.cases.split(","):
        profile = cProfile.Profile() if args.profile else None
        if case == "send":
            cpu, wall, sent = asyncio.run(webrtc_case(args.n, profile, send_only=True))
        elif case.startswith("webrtc"):
            cpu, wall, sent = asyncio.run(webrtc_case(args.n, profile, case == "webrtc-socket"))
        else:
            cpu, wall, sent = asyncio.run(plain_case(args.n, case == "plain+srtp", profile))
        print(f"{case:<12} {1e6 * cpu / max(sent, 1):>15.2f} {1e6 * wall / max(sent, 1):>16.2f} "
              f"{sent:>8}", flush=True)  # fmt: skip
        if profile is not None:
            pstats.Stats(profile).sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    main()
