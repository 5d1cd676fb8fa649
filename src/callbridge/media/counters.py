"""Packet counters of the media plane, read by ``/metrics`` (:mod:`callbridge.metrics`).

Cost on the packet path: :meth:`ReceiveStats.feed` is a handful of integer operations per
inbound RTP packet (no allocation, no lock, no clock read) and a relayed packet adds one
increment. Nothing here is read on the packet path; a scrape sums the live endpoints' counts
with those of the endpoints already closed (:meth:`PacketCounts.add`).

What the counts mean (per inbound RTP stream, after RFC 3550 appendix A.1 and A.3):

- ``received``: RTP packets that reached the endpoint (before any payload-type filter);
- ``lost``: packets expected (by sequence number) but never received, so far; a packet that
  arrives late fills the gap it had opened;
- ``late``: packets that arrived after a later one (reordered): a jitter buffer would have had
  to wait for them; the relay forwards them anyway;
- ``relayed``: audio packets passed to the bridged leg (as they are, or transcoded);
- ``srtp_rejected``: SRTP packets the fast path dropped, not authentic or replayed (RFC 3711
  3.3): a few come from a device's glitch or a duplicate in the network, a steady rate from
  someone forging or replaying packets at the media ports;
- ``handler_errors``: inbound packets whose handling raised (a bug, logged once per port).

The last two are counted by the endpoint's :class:`~callbridge.rtp.webrtc.RtpPort`, not
here: :attr:`ReceiveStats.port` names it, and :meth:`PacketCounts.add` reads it, so a closed
endpoint's counts stay in the totals like its packets.

A jump of more than :data:`MAX_DROPOUT` ahead, or of more than :data:`MAX_MISORDER` back, is
taken as a restarted stream (a new sender, a re-INVITE), not as loss or lateness; so is a new
SSRC.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["MAX_DROPOUT", "MAX_MISORDER", "FastPathCounts", "PacketCounts", "ReceiveStats"]

MAX_DROPOUT = 3000  # packets: RFC 3550 A.1's value
MAX_MISORDER = 100  # packets: likewise
_SEQ_MOD = 1 << 16


class FastPathCounts(Protocol):
    """What an endpoint's RTP port counts on its fast path (:class:`~callbridge.rtp.webrtc.
    RtpPort`)."""

    srtp_rejected: int
    handler_errors: int


class PacketCounts:
    """Totals of some endpoints' packets (see the module docstring for each count)."""

    __slots__ = ("handler_errors", "late", "lost", "received", "relayed", "srtp_rejected")

    def __init__(self) -> None:
        self.received = 0
        self.lost = 0
        self.late = 0
        self.relayed = 0
        self.srtp_rejected = 0
        self.handler_errors = 0

    def add(self, other: PacketCounts) -> None:
        self.received += other.received
        self.lost += other.lost
        self.late += other.late
        self.relayed += other.relayed
        rejected, errors = other.fast_path()
        self.srtp_rejected += rejected
        self.handler_errors += errors

    def fast_path(self) -> tuple[int, int]:
        """(SRTP packets rejected, handler errors)."""
        return self.srtp_rejected, self.handler_errors


class ReceiveStats(PacketCounts):
    """One endpoint's counts and the sequence state of the stream it receives."""

    __slots__ = ("_highest", "_ssrc", "port")

    def __init__(self) -> None:
        super().__init__()
        self._ssrc = -1
        self._highest = 0  # the highest sequence number seen (mod 2^16)
        # The endpoint's RTP port, once it has one (the endpoint sets it): its fast path
        # counts the SRTP packets it rejects and the handler errors.
        self.port: FastPathCounts | None = None

    def fast_path(self) -> tuple[int, int]:
        port = self.port
        if port is None:
            return 0, 0
        return port.srtp_rejected, port.handler_errors

    def feed(self, ssrc: int, seq: int) -> None:
        """Count one inbound RTP packet."""
        self.received += 1
        if ssrc != self._ssrc:
            self._ssrc, self._highest = ssrc, seq
            return
        ahead = (seq - self._highest) % _SEQ_MOD
        if 0 < ahead < MAX_DROPOUT:
            self.lost += ahead - 1
            self._highest = seq
        elif ahead == 0:
            return  # a duplicate
        elif _SEQ_MOD - ahead <= MAX_MISORDER:
            self.late += 1
            if self.lost > 0:
                self.lost -= 1  # it was counted lost when the gap opened
        else:
            self._highest = seq  # a restarted stream: start counting again from here
