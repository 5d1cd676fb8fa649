"""DTMF the server sends to a device (:meth:`MediaServer.send_dtmf`).

Two ways, chosen per endpoint by what its offer/answer settled:

- **RFC 4733 named events** when the endpoint negotiated ``telephone-event``: an
  :class:`EventSender` walks the digits' plan (:func:`callbridge.rtp.rfc4733.event_plan`) one
  20 ms tick of the server's ticker at a time. An event's packets share the timestamp of its
  first packet, which carries the marker bit (§2.5.1.2); the duration grows with each update
  (§2.3.5) and the end packet, E bit set (§2.3.3), goes three times (§2.5.1.4). While an event
  is sent the endpoint's audio waits (:attr:`~callbridge.media.endpoint.Endpoint.sending_event`),
  so the events replace the audio packets for their duration, as a browser's DTMF sender does.
- **In-band tones** otherwise: the ITU-T Q.23 frequency pairs, synthesised here as 48 kHz PCM
  (:func:`tone_pcm`, nothing written to disk) and played like a ``play_to`` playback.

Digits are ``0-9``, ``A-D``, ``*``, ``#``; ``w`` pauses 0.5 s and ``W`` 1 s (what the REST API's
``send_dtmf`` accepts). Each digit lasts ``duration_ms``, and :data:`GAP_MS` separates digits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from callbridge.errors import ErrorCode, MediaError
from callbridge.rtp.codecs import MIX_RATE, Pcm
from callbridge.rtp.rfc4733 import TICK_MS, EventTick, event_plan, event_ticks
from callbridge.rtp.webrtc import OutboundClock, RtpPort

__all__ = [
    "DIGITS",
    "DURATION_MS",
    "GAP_MS",
    "PAUSE_MS",
    "Q23",
    "EventSender",
    "check_digits",
    "tone_pcm",
]

DIGITS = "0123456789ABCD*#wW"
PAUSE_MS = {"w": 500, "W": 1000}
GAP_MS = 80  # silence between two digits (ITU-T Q.24 asks for at least 40 ms)
DURATION_MS = (40, 1000)  # accepted tone lengths; 1 s still fits §2.3.5's 16 bits at 48 kHz
# ITU-T Q.23: each key is one frequency of the low group plus one of the high group (Hz).
Q23: dict[str, tuple[float, float]] = {
    "1": (697, 1209),
    "2": (697, 1336),
    "3": (697, 1477),
    "A": (697, 1633),
    "4": (770, 1209),
    "5": (770, 1336),
    "6": (770, 1477),
    "B": (770, 1633),
    "7": (852, 1209),
    "8": (852, 1336),
    "9": (852, 1477),
    "C": (852, 1633),
    "*": (941, 1209),
    "0": (941, 1336),
    "#": (941, 1477),
    "D": (941, 1633),
}
_AMPLITUDE = 0.25  # per frequency, of full scale: the pair peaks at -6 dBFS
_RAMP_SECONDS = 0.003  # raised-cosine edges, so a tone starts and stops without a click


def check_digits(digits: str, duration_ms: int) -> None:
    """:raises MediaError: ``invalid_digits`` for an empty string, another character or a
    duration out of :data:`DURATION_MS`."""
    bad = sorted(set(digits) - set(DIGITS))
    if bad or not digits:
        found = f" ({', '.join(repr(c) for c in bad)} not allowed)" if bad else ""
        raise MediaError(
            ErrorCode.INVALID_DIGITS,
            f"DTMF digits {digits!r}{found}: use 0-9, A-D, * and #, w for a 0.5 s pause, W for 1 s",
        )
    low, high = DURATION_MS
    if not low <= duration_ms <= high:
        raise MediaError(
            ErrorCode.INVALID_DIGITS,
            f"DTMF duration {duration_ms} ms: use {low} to {high} ms per digit",
        )


def _ticks(ms: int) -> int:
    return math.ceil(ms / TICK_MS)


def tone_pcm(digits: str, duration_ms: int) -> Pcm:
    """The digits as in-band tones: 48 kHz mono int16, each digit's Q.23 pair for
    ``duration_ms``, :data:`GAP_MS` of silence between digits, pauses as silence."""
    rate = MIX_RATE
    n = int(rate * duration_ms / 1000)
    t = np.arange(n) / rate
    ramp = min(n // 2, int(rate * _RAMP_SECONDS))
    envelope = np.ones(n)
    edge = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp) if ramp else np.zeros(0)
    envelope[:ramp] = edge
    envelope[n - ramp :] = edge[::-1]
    gap = np.zeros(int(rate * GAP_MS / 1000))
    parts: list[np.ndarray[tuple[int], np.dtype[np.float64]]] = []
    for i, digit in enumerate(digits):
        if digit in PAUSE_MS:
            parts.append(np.zeros(int(rate * PAUSE_MS[digit] / 1000)))
            continue
        low, high = Q23[digit]
        pair = np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t)
        parts.append(pair * envelope * _AMPLITUDE)
        if i < len(digits) - 1:
            parts.append(gap)
    return (np.concatenate(parts) * 32767).astype(np.int16)


class EventSender:
    """One :meth:`send_dtmf`'s RFC 4733 events to one endpoint, a tick at a time.

    The events have their own timestamp clock (``step`` RTP units per tick), which the
    endpoint's :class:`~callbridge.rtp.webrtc.OutboundClock` maps into its stream like any other
    source: each event starts at least one tick after the audio before it, and the audio after
    it goes on from there.
    """

    def __init__(self, digits: str, duration_ms: int, step: int) -> None:
        pauses = {c: _ticks(ms) for c, ms in PAUSE_MS.items()}
        self.plan: Sequence[EventTick | None] = event_plan(
            digits, event_ticks(duration_ms, step), _ticks(GAP_MS), pauses
        )
        self.step = step
        self.index = 0
        self._timestamp = 0  # this sender's own clock, in RTP units
        self._event_ts = 0  # the current event's timestamp in the endpoint's stream
        self._target: object = None  # the port the current event goes to

    @property
    def finished(self) -> bool:
        return self.index >= len(self.plan)

    async def tick(self, port: RtpPort, payload_type: int, clock: OutboundClock) -> bool:
        """Send this tick's packet, if it has one; True while an event is being sent (the
        endpoint's audio must wait)."""
        tick = self.plan[self.index]
        self.index += 1
        timestamp = self._timestamp
        self._timestamp += self.step
        if tick is None:
            return False
        out, _ = clock.map(self, timestamp)
        # A reconnected endpoint (a new port and stream) gets the event afresh: its receiver
        # has not seen this event's first packet.
        start = tick.start or port is not self._target
        if start:
            self._event_ts, self._target = out, port
        await port.send(tick.payload(self.step), payload_type, self._event_ts, int(start))
        return True
