"""A WebRTC endpoint's RTCP figures, from aiortc's ``RTCPeerConnection.getStats()``.

Plain RTP legs count their RTCP themselves (:mod:`callbridge.media.rtcp_plain`); a WebRTC
leg's peer connection already keeps the same figures, named as in the W3C WebRTC statistics
(``inbound-rtp``: the device's stream as the server received it; ``remote-inbound-rtp``: the
device's receiver reports about the server's stream, RFC 3550 section 6.4). This maps the
audio ones onto :class:`~callbridge.media.interface.RtcpStats`, so CDRs and ``call.hangup``
treat both kinds of legs alike.

It is read on demand (:meth:`MediaServer.endpoint_info`, which the CDR details sample every
few seconds), never per packet: ``getStats`` walks the peer connection's senders and
receivers once.
"""

from __future__ import annotations

from typing import Any

from aiortc import RTCPeerConnection

from callbridge.media.interface import RtcpStats

__all__ = ["webrtc_rtcp"]


def _ms(units: Any, clock_rate: int) -> float:
    """A jitter in RTP timestamp units (what aiortc and RFC 3550 report) in milliseconds."""
    return round(1000.0 * float(units or 0) / clock_rate, 3) if clock_rate > 0 else 0.0


async def webrtc_rtcp(pc: RTCPeerConnection, clock_rate: int) -> RtcpStats | None:
    """The audio figures of ``pc`` (jitters converted with the audio codec's ``clock_rate``);
    ``None`` until the device's audio has arrived (no ``inbound-rtp`` yet: nothing to say)."""
    inbound: Any = None
    remote: Any = None
    for stats in (await pc.getStats()).values():
        if getattr(stats, "kind", None) != "audio":
            continue
        if stats.type == "inbound-rtp":
            inbound = stats
        elif stats.type == "remote-inbound-rtp":
            remote = stats
    if inbound is None:
        return None
    rtt = getattr(remote, "roundTripTime", None)
    return RtcpStats(
        # aiortc does not count the reports themselves; "one or none" is what it knows.
        reports_sent=0,
        reports_received=0 if remote is None else 1,
        fraction_lost=0.0 if remote is None else float(remote.fractionLost) / 256,
        packets_lost=0 if remote is None else int(remote.packetsLost),
        jitter_ms=0.0 if remote is None else _ms(remote.jitter, clock_rate),
        round_trip_ms=None if rtt is None else round(1000.0 * float(rtt), 3),
        received_packets=int(inbound.packetsReceived),
        received_lost=int(inbound.packetsLost),
        received_jitter_ms=_ms(inbound.jitter, clock_rate),
    )
