"""Counters of one call's received media: loss, lateness and gaps (see ``CallMedia.stats()``)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LATE_SECONDS", "MediaStats", "ReceiveCounters"]

LATE_SECONDS = 0.060  # a packet arriving this much after its due time is late


@dataclass(frozen=True, slots=True)
class MediaStats:
    """Counters of one call's media (see :meth:`CallMedia.stats`)."""

    codec: str | None  # the codec we send, once negotiated
    packets_sent: int
    packets_received: int
    packets_lost: int  # from gaps in the sequence numbers (RFC 3550 A.3)
    packets_late: int  # arrived more than 60 ms after its due time (see ReceiveCounters)
    packets_expected: int  # from the first to the highest sequence number received
    max_interarrival_ms: float


class ReceiveCounters:
    """Loss and lateness of the received RTP stream, O(1) per packet.

    A packet is *late* when it arrives more than 60 ms after it was due. Its due time is its
    RTP timestamp mapped onto the clock through the fastest transit seen so far (RFC 3550
    §6.4.1's transit time, taking the minimum as the no-queueing reference), so one delayed
    packet does not make the ones after it look late, and a steady stream has none late.
    """

    def __init__(self) -> None:
        self.received = 0
        self.late = 0
        self.max_gap = 0.0
        self._base: int | None = None  # extended sequence number of the first packet
        self._highest = 0  # highest extended sequence number seen
        self._last_arrival = 0.0
        self._ts_ext = 0  # RTP timestamp of the latest timed packet, unwrapped, from the first
        self._last_ts = 0
        self._min_transit = float("inf")

    def on_packet(
        self, seq: int, timestamp: int, clock_rate: int, now: float, timed: bool = True
    ) -> None:
        """Count one packet; ``timed`` False for packets whose timestamp is not their due time
        (telephone-event packets carry the event's start)."""
        if self._base is None:
            self._base = self._highest = seq
            self._last_ts = timestamp
        else:
            delta = (seq - self._highest) & 0xFFFF
            if 0 < delta < 0x8000:  # forward (with wrap-around); else duplicate or reordered
                self._highest += delta
            gap = now - self._last_arrival
            self.max_gap = max(self.max_gap, gap)
        self._last_arrival = now
        self.received += 1
        if not timed:
            return
        if self.received > 1:
            step = (timestamp - self._last_ts) & 0xFFFFFFFF
            self._ts_ext += step if step < 0x80000000 else step - (1 << 32)
            self._last_ts = timestamp
        transit = now - self._ts_ext / clock_rate
        self._min_transit = min(self._min_transit, transit)
        if transit - self._min_transit > LATE_SECONDS:
            self.late += 1

    @property
    def expected(self) -> int:
        return 0 if self._base is None else self._highest - self._base + 1

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.received)
