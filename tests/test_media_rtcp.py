"""Plain RTP legs beyond their audio: RTCP sender/receiver reports (RFC 3550 section 6.4), the
RTP port range (``--rtp-ports``), and no aiortc peer connection for a plain endpoint. The phone
side is ``test_media_rtp.RtpPhone`` on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from callbridge.errors import MediaError
from callbridge.media.engine import InProcessMediaServer
from callbridge.media.interface import MediaEvent
from callbridge.media.sdp_plain import parse
from test_media_rtp import _phone

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def media() -> AsyncIterator[tuple[InProcessMediaServer, list[MediaEvent]]]:
    server = InProcessMediaServer(["127.0.0.1"])
    events: list[MediaEvent] = []
    server.subscribe(events.append)
    yield server, events
    await server.shutdown()
    assert server.endpoint_count == 0


class _Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.got.put_nowait((data, (addr[0], addr[1])))


@pytest.mark.parametrize("srtp", [False, True])
async def test_rtcp_sender_reports_go_out_and_receiver_reports_are_kept(
    media: Any, monkeypatch: pytest.MonkeyPatch, srtp: bool
) -> None:
    """RFC 3550 6.4 on a plain leg: the phone's SDP names a separate RTCP port (``a=rtcp``,
    RFC 3605); the server, sending hold music and receiving the phone's tone, sends it an SR
    (its packet and octet counts, a report block on the phone's stream) with an SDES CNAME;
    the phone's RR about the server's stream (25 % lost, 12 packets, jitter 80 at 8 kHz, LSR of
    that SR) is kept on the leg: loss, jitter and a round trip in ``endpoint_info().rtcp``.
    Under SDES-SRTP both go as SRTCP (RFC 3711 section 3.4), each side's key."""
    from aiortc.rtp import (
        RtcpPacket,
        RtcpReceiverInfo,
        RtcpRrPacket,
        RtcpSdesPacket,
        RtcpSrPacket,
    )

    from callbridge.media import rtcp_plain

    monkeypatch.setattr(rtcp_plain, "RTCP_INTERVAL", 0.3)
    server, _ = media
    loop = asyncio.get_running_loop()
    collector = _Collector()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: collector, local_addr=("127.0.0.1", 0)
    )
    rtcp_port = transport.get_extra_info("sockname")[1]
    phone = await _phone()
    try:
        offer = phone.offer(srtp=srtp) + f"a=rtcp:{rtcp_port}\r\n"
        answer = await server.answer_rtp("rc", offer)
        phone.use_answer(answer, srtp=srtp)
        await server.play("rc", "hold-music")
        phone.start()
        sr: RtcpSrPacket | None = None
        async with asyncio.timeout(5):
            while sr is None or not sr.reports:
                data, source = await collector.got.get()
                if phone.srtp_in is not None:
                    data = phone.srtp_in.unprotect_rtcp(data)
                packets = RtcpPacket.parse(data)
                assert any(isinstance(p, RtcpSdesPacket) for p in packets), packets
                sr = next((p for p in packets if isinstance(p, RtcpSrPacket)), None)
        assert source == ("127.0.0.1", parse(answer, "answer").media[0].port + 1)
        assert sr.sender_info.packet_count > 0 and sr.sender_info.octet_count > 0
        assert sr.reports[0].ssrc == phone._ssrc
        assert sr.reports[0].highest_sequence > 0
        lsr = (sr.sender_info.ntp_timestamp >> 16) & 0xFFFFFFFF
        block = RtcpReceiverInfo(
            ssrc=sr.ssrc, fraction_lost=64, packets_lost=12, highest_sequence=1000,
            jitter=80, lsr=lsr, dlsr=0,
        )  # fmt: skip
        rr = bytes(RtcpRrPacket(ssrc=phone._ssrc, reports=[block]))
        transport.sendto(phone.srtp_out.protect_rtcp(rr) if phone.srtp_out else rr, source)
        async with asyncio.timeout(5):
            while (info := await server.endpoint_info("rc")).rtcp.reports_received == 0:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        stats = info.rtcp
        assert stats.fraction_lost == 0.25 and stats.packets_lost == 12
        assert stats.jitter_ms == 10.0
        assert stats.round_trip_ms is not None and 0 <= stats.round_trip_ms < 5000
        assert stats.reports_sent >= 1 and stats.received_packets > 0
    finally:
        await phone.stop()
        phone.close()
        transport.close()


async def test_plain_endpoints_bind_in_the_rtp_port_range_and_say_when_it_is_used_up() -> None:
    """``rtp_ports`` (``--rtp-ports``): plain RTP endpoints take an even port and the next
    inside the range; once the range is used up a new leg gets a MediaError naming the range
    and the option, and nothing is left behind."""
    server = InProcessMediaServer(["127.0.0.1"], rtp_ports=(31000, 31003))
    phone = await _phone()
    try:
        ports = set()
        for name in ("p1", "p2"):
            answer = await server.answer_rtp(name, phone.offer())
            ports.add(parse(answer, "answer").media[0].port)
        assert ports == {31000, 31002}
        with pytest.raises(MediaError) as refused:
            await server.offer_rtp("p3")
        assert "31000-31003" in refused.value.message and "--rtp-ports" in refused.value.message
        assert server.current("p3") is None
    finally:
        phone.close()
        await server.shutdown()
    assert server.endpoint_count == 0


def test_the_rtp_ports_option_is_parsed_and_checked(capsys: pytest.CaptureFixture[str]) -> None:
    from callbridge.cli import build_parser
    from callbridge.cli_serve import server_config

    parser = build_parser()
    config = server_config(parser.parse_args(["serve", "--rtp-ports", "10000-20000"]))
    assert config.rtp_ports == (10000, 20000)
    assert server_config(parser.parse_args(["serve"])).rtp_ports == (20000, 59999)
    for bad in ("20000", "20000-10000", "80-90", "a-b", "10001-10001", "10000-70000"):
        with pytest.raises(SystemExit):
            parser.parse_args(["serve", "--rtp-ports", bad])
        assert "invalid RTP port range" in capsys.readouterr().err, bad


async def test_a_plain_endpoint_builds_no_aiortc_peer_connection(media: Any) -> None:
    """A SIP leg never negotiates ICE or DTLS: its endpoint has no RTCPeerConnection (which
    costs a DTLS certificate each), while a WebRTC endpoint made next still gets a real one."""
    from aiortc import RTCPeerConnection

    server, _ = media
    phone = await _phone()
    try:
        await server.answer_rtp("np", phone.offer())
        assert not isinstance(server.endpoint("np").pc, RTCPeerConnection)
        await server.offer("web")
        assert isinstance(server.endpoint("web").pc, RTCPeerConnection)
    finally:
        phone.close()
