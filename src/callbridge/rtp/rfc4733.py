"""RFC 4733 telephone-event payloads (DTMF over RTP).

An event payload is 4 bytes (RFC 4733 §2.3):

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |     event     |E|R| volume    |          duration             |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

All packets of one event share the RTP timestamp of the event's start; the duration grows
with each update, and the end packet (E bit) is sent three times (§2.5.1.4).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "DIGITS",
    "DtmfDetector",
    "DtmfEvent",
    "decode_event",
    "encode_event",
    "valid_digits",
]

# RFC 4733 §3.2: events 0-9, *, #, A-D.
DIGITS = "0123456789*#ABCD"
_EVENT_OF = {d: i for i, d in enumerate(DIGITS)}


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
