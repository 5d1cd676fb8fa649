"""The video half of a relay between media workers (media/relay_video.py), on real loopback
sockets: VP8 packets cross as RTP, key-frame requests come back as RTCP PLI, and nobody but
the other worker's sockets is listened to. (tests/test_media_workers.py shows it end to end:
video calls and an attended transfer across two workers, with the colours checked.)"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
from aiortc.rtp import RTCP_PSFB_FIR, RtcpPsfbPacket, RtpPacket

from callbridge.media.engine import InProcessMediaServer
from callbridge.media.engine_plain import RELAY_PREFIX
from callbridge.media.relay_video import RelayVideo
from callbridge.media.rtp_plain import PlainEndpoint
from parties import until
from test_media_rtp import RtpPhone

HOST = "127.0.0.1"


class Side:
    """One worker's relay endpoint: what its RelayVideo hands on."""

    def __init__(self) -> None:
        self.packets: list[RtpPacket] = []
        self.keyframe_requests = 0
        self.video = RelayVideo(self.on_rtp, self.on_keyframe)

    async def on_rtp(self, packet: RtpPacket) -> None:
        self.packets.append(packet)

    async def on_keyframe(self) -> None:
        self.keyframe_requests += 1


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Side, Side]]:
    a, b = Side(), Side()
    here = await a.video.open(HOST)
    there = await b.video.open(HOST)
    b.video.connect(here)
    a.video.connect(there)
    yield a, b
    a.video.close()
    b.video.close()


def vp8(seq: int, marker: int = 0) -> RtpPacket:
    packet = RtpPacket(
        payload_type=96,
        marker=marker,
        sequence_number=seq,
        timestamp=90000 + 3000 * seq,
        ssrc=0x1234,
        payload=bytes([0x10, 0, 0, seq]) * 50,
    )
    packet.extensions.mid = "1"  # the device's own session's: not carried across
    return packet


async def test_packets_cross_as_they_came_and_keyframe_requests_come_back(
    pair: tuple[Side, Side],
) -> None:
    a, b = pair
    assert a.video.sending and b.video.sending
    for seq in range(5):
        await a.video.relay(object(), vp8(seq, marker=int(seq == 4)))
    await until(lambda: len(b.packets) == 5)
    got = b.packets
    assert [p.sequence_number for p in got] == [0, 1, 2, 3, 4]
    assert [p.timestamp for p in got] == [90000 + 3000 * s for s in range(5)]
    assert [p.marker for p in got] == [0, 0, 0, 0, 1]
    assert all(p.payload_type == 96 and p.ssrc == 0x1234 for p in got)
    assert got[3].payload == bytes([0x10, 0, 0, 3]) * 50
    assert got[0].extensions.mid is None
    assert (a.video.packets_sent, b.video.packets_received) == (5, 5)

    await b.video.request_keyframe()  # b's device lost a picture: a's device is asked
    await until(lambda: a.keyframe_requests == 1)
    assert b.keyframe_requests == 0
    assert a.packets == []  # nothing flows back unasked


async def test_only_the_other_worker_is_listened_to(pair: tuple[Side, Side]) -> None:
    """Datagrams from any other socket (or that do not parse) are dropped and counted: nobody
    can inject pictures or key-frame storms into a call."""
    a, b = pair
    assert b.video.address is not None
    rtp_port = b.video.address[1]
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        stranger.sendto(vp8(1).serialize(), (HOST, rtp_port))
        stranger.sendto(
            bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_FIR, ssrc=1, media_ssrc=0)), (HOST, rtp_port + 1)
        )
        await until(lambda: b.video.dropped == 2)
    finally:
        stranger.close()
    # The other worker's sockets are heard, and a packet too short to be RTP is dropped.
    assert a.video._rtp is not None and a.video._rtp.transport is not None
    a.video._rtp.transport.sendto(b"\x80\x60", b.video.address)
    await until(lambda: b.video.dropped == 3)
    await a.video.relay(object(), vp8(7))
    await until(lambda: len(b.packets) == 1)
    assert b.keyframe_requests == 0


async def test_unconnected_and_closed_paths_send_nothing() -> None:
    side = Side()
    sending = [side.video.sending]
    await side.video.relay(object(), vp8(1))  # no address, no socket: nothing, no error
    await side.video.request_keyframe()
    await side.video.open(HOST)
    sending.append(side.video.sending)  # bound, but the other side is not known yet
    side.video.connect(("127.0.0.1", 9))
    sending.append(side.video.sending)
    side.video.close()
    sending.append(side.video.sending)
    assert sending == [False, False, True, False]
    await side.video.relay(object(), vp8(2))
    assert side.video.packets_sent == 0


async def test_a_relays_audio_hears_only_the_other_worker() -> None:
    """A relay endpoint's plain RTP (its id starts with the relay prefix) never latches: the
    first sender, or three packets in sequence from elsewhere, take over a phone's leg (NAT
    rebinding) but not a relay between workers."""
    media = InProcessMediaServer(["127.0.0.1"])
    other_worker, stranger = RtpPhone("PCMU"), RtpPhone("PCMU")
    await other_worker.open()
    await stranger.open()
    try:
        relay = f"{RELAY_PREFIX}7b"
        answer = await media.answer_rtp(relay, other_worker.offer(), rtp_timeout=0)
        other_worker.use_answer(answer)
        stranger.use_answer(answer)
        endpoint = media.endpoint(relay)
        assert isinstance(endpoint, PlainEndpoint)
        port = endpoint.rtp
        for _ in range(5):  # first, and in sequence: a phone's leg would latch onto it
            stranger.send_packet(b"\xff" * 160, stranger.pt)
        other_worker.send_packet(b"\xff" * 160, other_worker.pt)
        await until(lambda: port.packets_received >= 1)
        for _ in range(5):
            stranger.send_packet(b"\xff" * 160, stranger.pt)
        other_worker.send_packet(b"\xff" * 160, other_worker.pt)
        await until(lambda: port.packets_received >= 2)
        assert port.packets_received == 2  # the stranger's ten: none counted
    finally:
        other_worker.close()
        stranger.close()
        await media.shutdown()
