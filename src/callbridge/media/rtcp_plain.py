"""RTCP of a plain RTP leg (a SIP phone): sender and receiver reports, RFC 3550 section 6.4.

A WebRTC leg's RTCP is aiortc's. A plain leg (:mod:`callbridge.media.rtp_plain`) sends its own:
every :data:`RTCP_INTERVAL` seconds (randomised by 0.5-1.5, section 6.3.1, so that legs do not
report in step) one compound packet (section 6.1): an SR when we sent RTP since the last report,
else an RR, with one report block about the device's stream (loss, highest sequence, jitter,
LSR/DLSR, section 6.4.1), then an SDES with our CNAME. On close a BYE (section 6.6) follows.

The device's reports about *our* stream (the report block naming our SSRC in its SR or RR) are
kept as :class:`~callbridge.media.interface.RtcpStats` on the leg, with the round trip from
LSR/DLSR: what the operations side puts in call records.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol, cast

from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import (
    RtcpByePacket,
    RtcpPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
    RtpPacket,
)

from callbridge.media.interface import RtcpStats

__all__ = ["RTCP_INTERVAL", "RtcpSession", "RtpHeader", "ntp_now"]

RTCP_INTERVAL = 5.0  # seconds between reports, before randomisation (RFC 3550 6.2: 5 s minimum)
_NTP_EPOCH = 2208988800  # seconds from 1900 to 1970
_SDES_CNAME = 1


def ntp_now() -> int:
    """The wall clock as a 64-bit NTP timestamp (RFC 3550 section 4)."""
    now = time.time() + _NTP_EPOCH
    return (int(now) << 32) | int((now % 1) * (1 << 32))


def _middle(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp: LSR, DLSR and round trips are in these."""
    return (ntp >> 16) & 0xFFFFFFFF


class RtpHeader(Protocol):
    """What the receive statistics read of an RTP packet (RFC 3550 5.1): aiortc's
    ``RtpPacket`` and :class:`callbridge.rtp.fastpath.RtpView` both have it."""

    @property
    def ssrc(self) -> int: ...

    @property
    def sequence_number(self) -> int: ...

    @property
    def timestamp(self) -> int: ...


@dataclass
class _Remote:
    fraction_lost: int = 0
    packets_lost: int = 0
    jitter: int = 0  # in RTP timestamp units of our codec
    round_trip: float | None = None
    reports: int = 0


class RtcpSession:
    """One plain leg's RTCP state: what we received (for our report blocks), what we sent
    (for our SR), the device's last SR (for LSR/DLSR) and its reports about our stream."""

    def __init__(self, ssrc: int) -> None:
        self.ssrc = ssrc
        self.cname = f"callbridge-{ssrc:08x}"
        self.stats: StreamStatistics | None = None
        self.remote_ssrc: int | None = None
        self.clock_rate = 8000
        self.packets_sent = 0
        self.octets_sent = 0
        self.sent_since_report = False
        self.last_rtp_timestamp = 0
        self._last_rtp_wall = 0.0
        self._last_sr: tuple[int, float] | None = None  # its NTP middle bits, when it came
        self._remote = _Remote()
        self.reports_sent = 0

    # what flows ---------------------------------------------------------------------------------
    def received(self, packet: RtpHeader, clock_rate: int) -> None:
        """An RTP packet of the device's (accepted by the port)."""
        if self.stats is None or packet.ssrc != self.remote_ssrc or clock_rate != self.clock_rate:
            self.stats = StreamStatistics(clock_rate)  # a new stream: its counts start afresh
            self.remote_ssrc, self.clock_rate = packet.ssrc, clock_rate
        # aiortc types add() for its RtpPacket; it reads only sequence_number and timestamp.
        self.stats.add(cast(RtpPacket, packet))

    def sent(self, payload_bytes: int, timestamp: int, clock_rate: int) -> None:
        """An RTP packet of ours."""
        self.packets_sent += 1
        self.octets_sent += payload_bytes
        self.sent_since_report = True
        self.last_rtp_timestamp = timestamp
        self._last_rtp_wall = time.monotonic()
        self.clock_rate = clock_rate if self.stats is None else self.clock_rate

    # out ----------------------------------------------------------------------------------------
    def report(self) -> bytes:
        """The compound packet for this interval: SR or RR, then SDES CNAME (section 6.1)."""
        blocks = []
        stats = self.stats
        if stats is not None and self.remote_ssrc is not None and stats.max_seq is not None:
            lsr, dlsr = 0, 0
            if self._last_sr is not None:
                lsr = self._last_sr[0]
                dlsr = int((time.monotonic() - self._last_sr[1]) * 65536) & 0xFFFFFFFF
            blocks.append(
                RtcpReceiverInfo(
                    ssrc=self.remote_ssrc,
                    fraction_lost=stats.fraction_lost,
                    packets_lost=stats.packets_lost,
                    highest_sequence=(stats.cycles + stats.max_seq) & 0xFFFFFFFF,
                    jitter=stats.jitter,
                    lsr=lsr,
                    dlsr=dlsr,
                )
            )
        first: RtcpSrPacket | RtcpRrPacket
        if self.sent_since_report:
            # The RTP timestamp that corresponds to "now" (section 6.4.1): the last one sent,
            # advanced by the wall time since, at the codec's clock.
            elapsed = time.monotonic() - self._last_rtp_wall
            rtp_now = (self.last_rtp_timestamp + int(elapsed * self.clock_rate)) & 0xFFFFFFFF
            info = RtcpSenderInfo(
                ntp_timestamp=ntp_now(),
                rtp_timestamp=rtp_now,
                packet_count=self.packets_sent & 0xFFFFFFFF,
                octet_count=self.octets_sent & 0xFFFFFFFF,
            )
            first = RtcpSrPacket(ssrc=self.ssrc, sender_info=info, reports=blocks)
        else:
            first = RtcpRrPacket(ssrc=self.ssrc, reports=blocks)
        self.sent_since_report = False
        self.reports_sent += 1
        sdes = RtcpSdesPacket(
            chunks=[RtcpSourceInfo(ssrc=self.ssrc, items=[(_SDES_CNAME, self.cname.encode())])]
        )
        return bytes(first) + bytes(sdes)

    def bye(self) -> bytes:
        """Leaving the session (section 6.6): an RR then BYE."""
        return bytes(RtcpRrPacket(ssrc=self.ssrc)) + bytes(RtcpByePacket(sources=[self.ssrc]))

    # in -----------------------------------------------------------------------------------------
    def receive(self, data: bytes) -> None:
        """A compound RTCP packet from the device (authenticated already under SRTP); parts
        that do not parse are ignored (a bad report must not hurt the call)."""
        try:
            packets = RtcpPacket.parse(data)
        except ValueError:
            return
        for packet in packets:
            if isinstance(packet, RtcpSrPacket):
                self._last_sr = (_middle(packet.sender_info.ntp_timestamp), time.monotonic())
            if isinstance(packet, RtcpSrPacket | RtcpRrPacket):
                for block in packet.reports:
                    if block.ssrc == self.ssrc:
                        self._about_us(block)

    def _about_us(self, block: RtcpReceiverInfo) -> None:
        remote = self._remote
        remote.fraction_lost = block.fraction_lost
        remote.packets_lost = block.packets_lost
        remote.jitter = block.jitter
        remote.reports += 1
        if block.lsr:  # round trip = now - LSR - DLSR (section 6.4.1), in 1/65536 s
            rtt = (_middle(ntp_now()) - block.lsr - block.dlsr) & 0xFFFFFFFF
            if rtt < 0x80000000:  # a clock step or a bogus report gives a "negative" time
                remote.round_trip = rtt / 65536

    def snapshot(self) -> RtcpStats:
        """The leg's RTCP figures now."""
        remote, stats = self._remote, self.stats
        rate = self.clock_rate or 8000
        return RtcpStats(
            reports_sent=self.reports_sent,
            reports_received=remote.reports,
            fraction_lost=remote.fraction_lost / 256,
            packets_lost=remote.packets_lost,
            jitter_ms=remote.jitter * 1000 / rate,
            round_trip_ms=None if remote.round_trip is None else remote.round_trip * 1000,
            received_packets=stats.packets_received if stats else 0,
            received_lost=stats.packets_lost if stats and stats.max_seq is not None else 0,
            received_jitter_ms=(stats.jitter * 1000 / rate) if stats else 0.0,
        )
