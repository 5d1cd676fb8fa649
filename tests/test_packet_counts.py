"""The media plane's packet counters (media/counters.py) as ``/metrics`` sums them: the SRTP
packets an endpoint's RTP port rejected and its handler errors (counted by the port's fast
path, tests/test_packet_path.py) reach the totals through the endpoint's ``ReceiveStats``,
and stay there once the endpoint closed."""

from __future__ import annotations

from aiortc import RTCPeerConnection

from callbridge.media.counters import PacketCounts, ReceiveStats
from callbridge.media.rtp_plain import PlainRtpPort
from callbridge.rtp.webrtc import RtpPort


async def _ignore(_: object) -> None:
    return None


async def test_a_ports_rejections_and_errors_reach_the_totals_and_outlive_it() -> None:
    pc = RTCPeerConnection()
    try:
        port = RtpPort(pc.addTransceiver("audio"), on_rtp=_ignore, fast_inbound=True)
        stats = ReceiveStats()
        stats.feed(0x1234, 1)
        assert stats.fast_path() == (0, 0)  # no port yet
        stats.port = port
        port.srtp_rejected += 3  # as the fast path counts a forged, a replayed, a cut packet
        port.handler_errors += 1
        closed = PacketCounts()
        live = PacketCounts()
        live.add(stats)
        assert (live.received, live.srtp_rejected, live.handler_errors) == (1, 3, 1)
        closed.add(stats)  # the engine, as the endpoint closes
        port.srtp_rejected += 5  # after the close: not counted twice, not counted again
        total = PacketCounts()
        total.add(closed)
        assert (total.received, total.srtp_rejected, total.handler_errors) == (1, 3, 1)
        # A SIP leg's plain RTP port counts neither: its endpoint's stats add 0 for them.
        plain = ReceiveStats()
        plain.port = PlainRtpPort(_ignore)
        total.add(plain)
        assert total.fast_path() == (3, 1)
    finally:
        await pc.close()
