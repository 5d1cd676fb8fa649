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

:class:`DtmfSending` is what the in-process server (:mod:`callbridge.media.engine`) keeps of it:
the sends per endpoint, queued behind each other, and the RFC 4733 senders its ticker drives.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from callbridge.errors import ErrorCode, MediaError
from callbridge.media.endpoint import Endpoint
from callbridge.media.interface import PlaybackStatus
from callbridge.rtp.codecs import MIX_RATE, Pcm
from callbridge.rtp.rfc4733 import TICK_MS, EventTick, event_plan, event_ticks
from callbridge.rtp.webrtc import OutboundClock, RtpPort

__all__ = [
    "DIGITS",
    "DURATION_MS",
    "GAP_MS",
    "PAUSE_MS",
    "Q23",
    "DtmfHost",
    "DtmfSending",
    "EventSender",
    "ToneEnd",
    "check_digits",
    "tone_pcm",
]

log = logging.getLogger(__name__)
DIGITS = "0123456789ABCD*#wW"
PAUSE_MS = {"w": 500, "W": 1000}
GAP_MS = 80  # silence between two digits (ITU-T Q.24 asks for at least 40 ms)
DURATION_MS = (40, 1000)  # accepted tone lengths; 1 s still fits §2.3.5's 16 bits at 48 kHz
_CONNECT_TIMEOUT = 10.0  # a send waits this long for an endpoint's media to connect
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


ToneEnd = Callable[[PlaybackStatus, str], None]  # (status, detail) of a tones playback's end


class DtmfHost(Protocol):
    """What :class:`DtmfSending` needs of the server that holds the endpoints."""

    def endpoint(self, endpoint_id: str) -> Endpoint:
        """The live endpoint of that id (MediaError when there is none)."""

    def current(self, endpoint_id: str) -> Endpoint | None:
        """The live endpoint of that id, or None."""

    def ensure_ticker(self) -> None:
        """Start the 20 ms clock if it does not run yet."""

    def play_tones(self, ep: Endpoint, playback_id: str, pcm: Pcm, on_end: ToneEnd) -> None:
        """Play ``pcm`` to ``ep`` in place of what it hears, without playback events."""

    async def stop_playback(self, playback_id: str) -> None:
        """Stop a playback (its ``on_end`` runs)."""


class DtmfSending:
    """The DTMF being sent, per endpoint: each :meth:`send` (``MediaServer.send_dtmf``) waits
    for the endpoint's media, then sends RFC 4733 events on the server's ticker (:meth:`tick`)
    or plays the tones; calls for one endpoint queue behind each other."""

    def __init__(self, host: DtmfHost) -> None:
        self._host = host
        self._senders: dict[str, tuple[EventSender, asyncio.Future[None]]] = {}
        self._queue: dict[str, asyncio.Future[None]] = {}  # the last send per endpoint
        self._tones = 0

    def __len__(self) -> int:
        """RFC 4733 senders running (media objects alive, for ``endpoint_count``)."""
        return len(self._senders)

    async def send(self, endpoint_id: str, digits: str, duration_ms: int) -> None:
        check_digits(digits, duration_ms)
        self._host.endpoint(endpoint_id)
        previous = self._queue.get(endpoint_id)
        mine = self._queue[endpoint_id] = asyncio.get_running_loop().create_future()
        try:
            if previous is not None:
                await asyncio.shield(previous)  # our cancellation must not cancel theirs
            await self._send(endpoint_id, digits, duration_ms)
        finally:
            mine.set_result(None)
            if self._queue.get(endpoint_id) is mine:
                del self._queue[endpoint_id]

    async def _send(self, endpoint_id: str, digits: str, duration_ms: int) -> None:
        ep = self._host.endpoint(endpoint_id)
        if ep.ready_task is not None:  # the codecs are known once the media connected
            await asyncio.wait([ep.ready_task], timeout=_CONNECT_TIMEOUT)
        ep = self._host.endpoint(endpoint_id)  # it may have closed or reconnected meanwhile
        audio = ep.port.audio if ep.port is not None else None
        if audio is None or ep.clock is None:
            raise MediaError(
                ErrorCode.INVALID_STATE,
                f"media endpoint {endpoint_id} is not connected: DTMF needs its media flowing",
            )
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        tones: str | None = None
        if audio.te_payload_type is not None:
            sender = EventSender(digits, duration_ms, audio.codec.timestamp_step)
            self._senders[endpoint_id] = (sender, done)
        else:
            tones = self._play_tones(ep, digits, duration_ms, done)
        self._host.ensure_ticker()
        try:
            await done
        finally:
            if not done.done():
                done.cancel()
            if tones is not None:
                await self._host.stop_playback(tones)  # cancelled: the tones stop too
            else:
                self.end(endpoint_id, "")

    def _play_tones(
        self, ep: Endpoint, digits: str, duration_ms: int, done: asyncio.Future[None]
    ) -> str:
        """Play the digits' Q.23 tones to the endpoint; ``done`` completes with them."""

        def ended(status: PlaybackStatus, detail: str) -> None:
            if done.done():
                return
            if status == "completed":
                done.set_result(None)
            else:
                done.set_exception(
                    MediaError(
                        ErrorCode.INVALID_STATE,
                        f"DTMF to media endpoint {ep.id} was cut short: {detail or status}",
                    )
                )

        self._tones += 1
        playback_id = f"dtmf#{self._tones}"
        self._host.play_tones(ep, playback_id, tone_pcm(digits, duration_ms), ended)
        return playback_id

    async def tick(self) -> None:
        """Send this tick's packet of every RFC 4733 sender."""
        for endpoint_id, (sender, done) in list(self._senders.items()):
            await self._tick(endpoint_id, sender, done)

    async def _tick(
        self, endpoint_id: str, sender: EventSender, done: asyncio.Future[None]
    ) -> None:
        ep = self._host.current(endpoint_id)
        port = ep.port if ep is not None else None
        audio = port.audio if port is not None else None
        if ep is None or port is None or audio is None or ep.clock is None:
            return  # closed (the server's close() ends the sender) or reconnecting: wait
        if audio.te_payload_type is None or audio.codec.timestamp_step != sender.step:
            self.end(endpoint_id, "the endpoint reconnected with other codecs")
            return
        try:
            ep.sending_event = await sender.tick(port, audio.te_payload_type, ep.clock)
        except Exception:  # a bug here must not stop the ticker (everyone's audio)
            log.exception("DTMF to %s failed", endpoint_id)
            self.end(endpoint_id, "sending failed (see the server log)")
            return
        if sender.finished:
            self._senders.pop(endpoint_id, None)
            ep.sending_event = False
            if not done.done():
                done.set_result(None)

    def end(self, endpoint_id: str, why: str) -> None:
        """Stop the RFC 4733 sender of an endpoint, if any; its caller gets ``why`` (if it
        still waits and ``why`` is given)."""
        entry = self._senders.pop(endpoint_id, None)
        ep = self._host.current(endpoint_id)
        if ep is not None:
            ep.sending_event = False
        if entry is not None and why and not entry[1].done():
            entry[1].set_exception(
                MediaError(ErrorCode.INVALID_STATE, f"DTMF to media endpoint {endpoint_id}: {why}")
            )
