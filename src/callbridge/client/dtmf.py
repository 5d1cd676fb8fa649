"""The SDK's RFC 4733 DTMF sender: digits as telephone-event packets on the audio clock.

A call's sending loop (:meth:`callbridge.client.media.CallMedia`'s pump) asks the
:class:`DtmfSender` once per 20 ms tick whether a DTMF packet replaces that tick's audio packet
(:meth:`DtmfSender.next_packet`). An event is sent as RFC 4733 §2.5.1 describes:

- updates every tick, all carrying the RTP timestamp of the event's start, the first with the
  marker bit (§2.5.1.2), the duration growing by one tick each time;
- then the end packet (E bit, final duration) three times (§2.5.1.4);
- the audio clock keeps running underneath, so the audio that follows has the right timestamp.

Between digits the loop sends audio for ``gap_ms``; ``,`` pauses 500 ms (W3C
``RTCDTMFSender.insertDTMF``). Strings queue behind each other, each one awaited by its caller.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from dataclasses import dataclass

from callbridge.errors import ErrorCode, MediaError, ProtocolError
from callbridge.rtp.codecs import FRAME_MS
from callbridge.rtp.rfc4733 import encode_event, valid_digits

__all__ = ["DtmfSender", "EventTick", "check_digits", "dtmf_schedule"]

PAUSE_MS = 500  # ',' in a DTMF string (W3C RTCDTMFSender)
END_REPEATS = 3  # RFC 4733 §2.5.1.4: the end packet is sent three times
MIN_DURATION_MS, MAX_DURATION_MS = 40, 6000  # RTCDTMFSender's clamp of the tone duration
MIN_GAP_MS = 30  # RTCDTMFSender's minimum gap between tones


@dataclass(frozen=True, slots=True)
class EventTick:
    """One 20 ms tick of a DTMF event: what the sending loop sends instead of audio."""

    digit: str
    start: bool  # first packet of the event: it takes the event's timestamp and the marker
    end: bool
    ticks: int  # duration so far, in ticks


def dtmf_schedule(digits: str, event_ticks: int, gap_ticks: int) -> list[EventTick | None]:
    """The tick-by-tick plan for ``digits`` (RFC 4733 §2.5: updates, then the end packet ×3);
    ``None`` is a tick of normal audio (a pause or the gap between digits)."""
    plan: list[EventTick | None] = []
    for i, digit in enumerate(digits):
        if digit == ",":
            plan.extend([None] * (PAUSE_MS // FRAME_MS))
            continue
        digit = digit.upper()
        plan.extend(EventTick(digit, k == 1, False, k) for k in range(1, event_ticks + 1))
        plan.extend([EventTick(digit, False, True, event_ticks)] * END_REPEATS)
        if i < len(digits) - 1:
            plan.extend([None] * gap_ticks)
    return plan


def check_digits(digits: str) -> None:
    """:class:`ProtocolError` ``invalid_digits`` unless ``digits`` are ``0-9 * # A-D ,``."""
    if not valid_digits(digits):
        raise ProtocolError(
            ErrorCode.INVALID_DIGITS,
            f"invalid DTMF digits {digits!r}: use 0-9, *, #, A-D and ',' (pause)",
        )


@dataclass(eq=False)
class _Job:
    ticks: list[EventTick | None]
    done: asyncio.Future[None]
    index: int = 0


class DtmfSender:
    """The DTMF strings of one call waiting to be sent, and the event being sent."""

    def __init__(self) -> None:
        self._queue: deque[_Job] = deque()
        self._job: _Job | None = None
        self._event_timestamp = 0

    async def send(self, digits: str, duration_ms: int, gap_ms: int, step: int) -> None:
        """Queue ``digits`` and return once all are sent. ``step`` is the codec's RTP
        timestamp units per 20 ms tick: the 16-bit duration field caps an event at
        ``0xFFFF // step`` ticks (§2.5.1.3). Cancelling drops a string not started yet; a
        started one completes."""
        max_ticks = 0xFFFF // step
        clamped = min(max(duration_ms, MIN_DURATION_MS), MAX_DURATION_MS)
        event_ticks = min(max_ticks, math.ceil(clamped / FRAME_MS))
        gap_ticks = math.ceil(max(gap_ms, MIN_GAP_MS) / FRAME_MS)
        job = _Job(
            dtmf_schedule(digits, event_ticks, gap_ticks),
            asyncio.get_running_loop().create_future(),
        )
        self._queue.append(job)
        try:
            await job.done
        except asyncio.CancelledError:
            if job in self._queue:
                self._queue.remove(job)
            raise

    def next_packet(self, timestamp: int, step: int) -> tuple[bytes, int, int] | None:
        """For the tick whose audio timestamp is ``timestamp``: ``(payload, rtp timestamp,
        marker)`` of the telephone-event packet that replaces its audio, or ``None`` to send
        audio."""
        tick = self._next_tick()
        if tick is None:
            return None
        if tick.start:
            self._event_timestamp = timestamp
        payload = encode_event(tick.digit, end=tick.end, duration=tick.ticks * step)
        return payload, self._event_timestamp, int(tick.start)

    def _next_tick(self) -> EventTick | None:
        job = self._job
        if job is None:
            if not self._queue:
                return None
            job = self._job = self._queue.popleft()
        tick = job.ticks[job.index] if job.index < len(job.ticks) else None
        job.index += 1
        if job.index >= len(job.ticks):
            self._job = None
            if not job.done.done():
                job.done.set_result(None)
        return tick

    def fail(self) -> None:
        """The media closed: every string still queued or sending fails."""
        jobs = [*self._queue, *([self._job] if self._job else [])]
        self._queue.clear()
        self._job = None
        for job in jobs:
            if not job.done.done():
                job.done.set_exception(
                    MediaError(ErrorCode.INVALID_STATE, "the call's media closed during DTMF")
                )
