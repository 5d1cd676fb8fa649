"""RFC 4733 telephone-event payloads (DTMF over RTP).

An event payload is 4 bytes (RFC 4733 §2.3):

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |     event     |E|R| volume    |          duration             |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

All packets of one event share the RTP timestamp of the event's start; the duration grows
with each update, and the end packet (E bit) is sent three times (§2.5.1.4).

Sending is planned one 20 ms tick at a time (:func:`event_plan`, :class:`EventTick`): each tick
either carries an event packet *instead of* an audio packet, or is an audio tick (a pause or the
gap between digits). Both the server's media plane and the SDK send DTMF from such a plan.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "DIGITS",
    "END_REPEATS",
    "TICK_MS",
    "DtmfDetector",
    "DtmfEvent",
    "EventTick",
    "decode_event",
    "encode_event",
    "event_plan",
    "event_ticks",
    "valid_digits",
]

# RFC 4733 §3.2: events 0-9, *, #, A-D.
DIGITS = "0123456789*#ABCD"
_EVENT_OF = {d: i for i, d in enumerate(DIGITS)}
END_REPEATS = 3  # §2.5.1.4: the final packet of an event is sent three times
TICK_MS = 20  # one update per 20 ms audio packet interval, as browsers send them (§2.5.1.2)


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    """One decoded telephone-event payload."""

    digit: str
    end: bool
    volume: int
    duration: int  # in RTP clock units of the negotiated telephone-event clock


def encode_event(digit: str, *, end: bool, duration: int, volume: int = 10) -> bytes:
    """Build one telephone-event payload for ``digit``."""
    event = _EVENT_OF[digit.upper()]
    flags = (0x80 if end else 0) | (volume & 0x3F)
    return struct.pack("!BBH", event, flags, min(duration, 0xFFFF))


def decode_event(payload: bytes) -> DtmfEvent | None:
    """Parse a telephone-event payload; ``None`` for a malformed or non-DTMF event."""
    if len(payload) < 4:
        return None
    event, flags, duration = struct.unpack_from("!BBH", payload)
    if event >= len(DIGITS):
        return None
    return DtmfEvent(DIGITS[event], bool(flags & 0x80), flags & 0x3F, duration)


def valid_digits(digits: str) -> bool:
    """True when every character is a DTMF digit (0-9, *, #, A-D) or ',' (a 500 ms pause)."""
    return bool(digits) and all(c.upper() in _EVENT_OF or c == "," for c in digits)


class DtmfDetector:
    """Turns a stream of telephone-event packets into digits, once each.

    Senders repeat the start and end packets for robustness; an event is identified by its RTP
    timestamp (§2.5.1.2), so a digit is reported on the first packet of a new timestamp.
    """

    def __init__(self) -> None:
        self._last_timestamp: int | None = None

    def feed(self, timestamp: int, payload: bytes) -> DtmfEvent | None:
        """Return the event when this packet starts a new one, else ``None``."""
        event = decode_event(payload)
        if event is None or timestamp == self._last_timestamp:
            return None
        self._last_timestamp = timestamp
        return event


@dataclass(frozen=True, slots=True)
class EventTick:
    """One 20 ms tick of an event being sent: the packet that replaces that tick's audio."""

    digit: str
    start: bool  # first packet: it fixes the event's timestamp and carries the marker (§2.5.1.2)
    end: bool  # E bit set (§2.3.3); the last tick of an event is sent END_REPEATS times
    ticks: int  # the event's duration so far, in ticks

    def payload(self, step: int, volume: int = 10) -> bytes:
        """The telephone-event payload, its duration in RTP units (``step`` per tick)."""
        return encode_event(self.digit, end=self.end, duration=self.ticks * step, volume=volume)


def event_ticks(duration_ms: int, step: int) -> int:
    """An event of ``duration_ms`` in ticks, at most what the 16-bit duration field holds at
    ``step`` RTP units per tick (§2.3.5; longer events would need §2.5.1.3 segments)."""
    return max(1, min(0xFFFF // step, math.ceil(duration_ms / TICK_MS)))


def event_plan(
    digits: str, per_event: int, gap: int, pauses: Mapping[str, int]
) -> list[EventTick | None]:
    """The tick-by-tick plan for ``digits``: per digit ``per_event`` ticks of updates (§2.5.1.2),
    then the end packet :data:`END_REPEATS` times (§2.5.1.4), then ``gap`` audio ticks before
    the next digit. A character in ``pauses`` is that many audio ticks instead. ``None`` is an
    audio tick."""
    plan: list[EventTick | None] = []
    for i, digit in enumerate(digits):
        if digit in pauses:
            plan.extend([None] * pauses[digit])
            continue
        digit = digit.upper()
        plan.extend(EventTick(digit, k == 1, False, k) for k in range(1, per_event + 1))
        plan.extend([EventTick(digit, False, True, per_event)] * END_REPEATS)
        if i < len(digits) - 1:
            plan.extend([None] * gap)
    return plan
