"""The SDK's RFC 4733 DTMF sender: digits as telephone-event packets on the audio clock.

A call's sending loop (:meth:`callbridge.client.media.CallMedia`'s pump) asks the
:class:`DtmfSender` once per 20 ms tick whether a DTMF packet replaces that tick's audio packet
(:meth:`DtmfSender.next_packet`). The digits' plan is the one the server's sender uses too
(:func:`callbridge.rtp.rfc4733.event_plan`), as RFC 4733 §2.5.1 describes:

- updates every tick, all carrying the RTP timestamp of the event's start, the first with the
  marker bit (§2.5.1.2), the duration growing by one tick each time;
- then the end packet (E bit, final duration) three times (§2.5.1.4);
- the audio clock keeps running underneath, so the audio that follows has the right timestamp.

Between digits the loop sends audio for ``gap_ms``; ``,`` pauses 500 ms. Durations are clamped
as the W3C ``RTCDTMFSender.insertDTMF`` does. Strings queue behind each other, each one awaited
by its caller.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from dataclasses import dataclass

from callbridge.errors import ErrorCode, MediaError, ProtocolError
from callbridge.rtp.rfc4733 import TICK_MS, EventTick, event_plan, event_ticks, valid_digits

__all__ = ["DtmfSender", "check_digits"]

PAUSES = {",": 500 // TICK_MS}  # ',' pauses 500 ms (W3C RTCDTMFSender), in ticks
MIN_DURATION_MS, MAX_DURATION_MS = 40, 6000  # RTCDTMFSender's clamp of the tone duration
MIN_GAP_MS = 30  # RTCDTMFSender's minimum gap between tones


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
        clamped = min(max(duration_ms, MIN_DURATION_MS), MAX_DURATION_MS)
        gap_ticks = math.ceil(max(gap_ms, MIN_GAP_MS) / TICK_MS)
        job = _Job(
            event_plan(digits, event_ticks(clamped, step), gap_ticks, PAUSES),
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
        return tick.payload(step), self._event_timestamp, int(tick.start)

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
