"""The webhook adapter: application events become Telnyx webhooks, in order.

:class:`~callbridge.core.appcalls.AppCalls` publishes each fact about an application's call
or conference once, on the bus, as a typed event (:mod:`callbridge.core.app_events`). This
module is the one place that knows Telnyx's shapes for them: each event's ``event_type`` and
payload fields (the ones the official ``telnyx`` SDK's typed events declare), its hangup
causes, and the recording download URLs.

:class:`WebhookEvents` subscribes to those events, queues each at once (so the order of
publication is kept) and a single task writes its webhooks to the durable outbox
(:class:`~callbridge.webhooks.WebhookOutbox`), which signs and delivers them with retries, one
call's (or conference's) events in order (ordering key: the call's session or the
conference's id).

Where an event goes: the call's ``webhook_url`` when the application gave one (dial, answer,
transfer), else the application's ``webhook_event_url`` (and its failover URL). An event of a
call or conference that belongs to no application goes nowhere.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from callbridge.core.app_events import (
    AppCallAnswered,
    AppCallBridged,
    AppCallDequeued,
    AppCallEnqueued,
    AppCallEvent,
    AppCallForwarded,
    AppCallHangup,
    AppCallInitiated,
    AppConferenceCreated,
    AppConferenceEnded,
    AppConferenceEvent,
    AppConferenceFloorChanged,
    AppConferencePlayback,
    AppConferenceRecordingError,
    AppConferenceRecordingSaved,
    AppDtmfReceived,
    AppEvent,
    AppGatherEnded,
    AppParticipantJoined,
    AppParticipantLeft,
    AppPlaybackEnded,
    AppPlaybackStarted,
    AppRecordingSaved,
    ParticipantFacts,
)
from callbridge.core.app_media import AppRecordingError
from callbridge.core.events import EventBus
from callbridge.store.spool import is_refusal
from callbridge.vocabulary import EndReason
from callbridge.webhooks.outbox import WebhookOutbox

__all__ = [
    "HANGUP_CAUSES",
    "Payload",
    "Webhook",
    "WebhookEvents",
    "enqueue_event",
    "telnyx_webhooks",
]

log = logging.getLogger(__name__)

_FIRST_DELAY = 0.1  # seconds before retrying an outbox write the database refused
_BATCH = 500  # events written to the outbox in one transaction at most
_MAX_DELAY = 5.0

Payload = dict[str, Any]
Webhook = tuple[str, Payload]  # (event_type, payload)
E = TypeVar("E", bound=AppEvent)
_SHAPERS: dict[type[AppEvent], Callable[[Any, str], list[Webhook]]] = {}

# A leg's end reason as Telnyx's hangup_cause (the values its SDK's models accept).
HANGUP_CAUSES: dict[EndReason, str] = {
    EndReason.HANGUP: "normal_clearing",
    EndReason.BUSY: "user_busy",
    EndReason.NO_ANSWER: "timeout",
    EndReason.FAILED: "unspecified",
    EndReason.TRANSFERRED: "normal_clearing",
    EndReason.REJECTED: "call_rejected",
    EndReason.CANCELED: "originator_cancel",
    EndReason.ANSWERED_ELSEWHERE: "normal_clearing",
    EndReason.DISCONNECTED: "unspecified",
    EndReason.MOVED: "normal_clearing",
    EndReason.REMOVED: "normal_clearing",
}
# The media plane's end of a playback as call.playback.ended's status.
_PLAYBACK_STATUS = {"stopped": "cancelled"}
# Which conference webhook a play's start or end is: (kind, started, to some participants).
_CONFERENCE_PLAYBACK = {
    ("playback", True, False): "conference.playback.started",
    ("playback", False, False): "conference.playback.ended",
    ("speak", True, False): "conference.speak.started",
    ("speak", False, False): "conference.speak.ended",
    ("playback", True, True): "conference.participant.playback.started",
    ("playback", False, True): "conference.participant.playback.ended",
    ("speak", True, True): "conference.participant.speak.started",
    ("speak", False, True): "conference.participant.speak.ended",
}


def telnyx_webhooks(event: AppEvent, public_url: str) -> list[Webhook]:
    """The Telnyx webhooks for ``event`` (usually one; a play to several participants is one
    per participant). ``public_url``: how applications reach this server (download URLs)."""
    for kind in type(event).__mro__:
        shaper = _SHAPERS.get(kind)
        if shaper is not None:
            return shaper(event, public_url)
    raise LookupError(f"no webhook shape for {type(event).__name__}")


def _shape(kind: type[E]) -> Callable[[Callable[[E, str], list[Webhook]]], None]:
    def register(fn: Callable[[E, str], list[Webhook]]) -> None:
        _SHAPERS[kind] = fn

    return register


def _iso(at: datetime | None) -> str | None:
    return at.isoformat().replace("+00:00", "Z") if at is not None else None


def _connection_id(application: Any) -> str | None:
    return application.id if application is not None else None


def _recording_urls(public_url: str, recording_id: str, fmt: str) -> Payload:
    return {fmt: f"{public_url}/v2/recordings/{recording_id}/download"}


# calls ----------------------------------------------------------------------------------------
def _call(event: AppCallEvent, **extra: Any) -> Payload:
    """What every call webhook says about its call, then ``extra``."""
    f = event.call
    return {
        "call_control_id": f.call_control_id,
        "call_leg_id": f.call_control_id,
        "call_session_id": f.call_session_id,
        "connection_id": _connection_id(f.application),
        "client_state": f.client_state,
        "from": f.from_,
        "to": f.to,
        "direction": f.direction,
        "start_time": _iso(f.started_at),
        **extra,
    }


@_shape(AppCallInitiated)
def _initiated(e: AppCallInitiated, _: str) -> list[Webhook]:
    if e.parked:
        return [("call.initiated", _call(e, state="parked", caller_id_name=e.caller_name))]
    return [("call.initiated", _call(e, state="bridging"))]


@_shape(AppCallAnswered)
def _answered(e: AppCallAnswered, _: str) -> list[Webhook]:
    return [("call.answered", _call(e, state="answered"))]


def _hangup_source(e: AppCallHangup) -> str:
    incoming = e.call.direction == "incoming"
    if e.by_application:
        return "callee" if incoming else "caller"
    if e.reason in (EndReason.HANGUP, EndReason.REJECTED, EndReason.BUSY):
        return "caller" if incoming else "callee"
    return "unknown"


@_shape(AppCallHangup)
def _hangup(e: AppCallHangup, _: str) -> list[Webhook]:
    payload = _call(
        e,
        state="hangup",
        hangup_cause=HANGUP_CAUSES.get(e.reason, "unspecified"),
        hangup_source=_hangup_source(e),
    )
    if e.offline:
        payload["sip_hangup_cause"] = "480"  # Temporarily Unavailable: nobody to ring
    elif e.sip_cause is not None:  # the carrier's final status on a trunk leg (issue 12)
        payload["sip_hangup_cause"] = str(e.sip_cause)
    if e.quality is not None:  # the leg's last RTCP figures, as Telnyx sends them (issue 14)
        payload["call_quality_stats"] = e.quality
    return [("call.hangup", payload)]


@_shape(AppCallBridged)
def _bridged(e: AppCallBridged, _: str) -> list[Webhook]:
    return [
        ("call.bridged", _call(e, state="bridged", peer_call_control_id=e.peer_call_control_id))
    ]


@_shape(AppDtmfReceived)
def _dtmf(e: AppDtmfReceived, _: str) -> list[Webhook]:
    return [("call.dtmf.received", _call(e, digit=e.digit))]


@_shape(AppGatherEnded)
def _gathered(e: AppGatherEnded, _: str) -> list[Webhook]:
    payload = _call(e, digits=e.digits, status=e.status)
    if e.gather_id is not None:
        payload["gather_id"] = e.gather_id
    return [("call.gather.ended", payload)]


def _playback_fields(e: AppPlaybackStarted | AppPlaybackEnded) -> Payload:
    if e.kind == "speak":
        return {}
    return {"media_url": e.media_url, "media_name": e.media_name, "overlay": False}


@_shape(AppPlaybackStarted)
def _playback_started(e: AppPlaybackStarted, _: str) -> list[Webhook]:
    kind = "call.speak.started" if e.kind == "speak" else "call.playback.started"
    return [(kind, _call(e, **_playback_fields(e)))]


@_shape(AppPlaybackEnded)
def _playback_ended(e: AppPlaybackEnded, _: str) -> list[Webhook]:
    if e.kind == "speak":
        kind, status = "call.speak.ended", "call_hangup" if e.outcome == "call_hangup" else None
    else:
        kind, status = "call.playback.ended", _PLAYBACK_STATUS.get(e.outcome, e.outcome)
    payload = _call(e, **_playback_fields(e), status=status or "completed")
    if e.detail:
        payload["status_detail"] = e.detail
    return [(kind, payload)]


@_shape(AppRecordingSaved)
def _call_recording(e: AppRecordingSaved, public_url: str) -> list[Webhook]:
    urls = _recording_urls(public_url, e.recording_id, e.format)
    payload = _call(
        e,
        recording_id=e.recording_id,
        channels="single",
        format=e.format,
        recording_started_at=_iso(e.started_at),
        recording_ended_at=_iso(e.ended_at),
        duration_millis=e.duration_millis,
        recording_urls=urls,
        public_recording_urls=urls,
    )
    return [("call.recording.saved", payload)]


@_shape(AppRecordingError)
def _recording_error(e: AppRecordingError, _: str) -> list[Webhook]:
    # Telnyx's reason is an enum of which only "Internal server error" fits a file that
    # could not be written; callbridge's own words go in "detail" next to it.
    payload = _call(e, reason="Internal server error", detail=e.detail)
    payload["recording_id"] = e.recording_id
    return [("call.recording.error", payload)]


@_shape(AppCallEnqueued)
def _enqueued(e: AppCallEnqueued, _: str) -> list[Webhook]:
    payload = _call(
        e,
        queue=e.queue,
        current_position=e.position,
        queue_avg_wait_time_secs=e.average_wait_secs,
    )
    return [("call.enqueued", payload)]


@_shape(AppCallDequeued)
def _dequeued(e: AppCallDequeued, _: str) -> list[Webhook]:
    payload = _call(
        e, queue=e.queue, queue_position=e.position, reason=e.reason, wait_time_secs=e.wait_secs
    )
    return [("call.dequeued", payload)]


@_shape(AppCallForwarded)
def _forwarded(e: AppCallForwarded, _: str) -> list[Webhook]:
    # callbridge's own event (issue 16): Telnyx has no follow-me, so no event to copy.
    payload = _call(
        e,
        user=e.user,
        step=e.step,
        targets=list(e.targets),
        ring_seconds=e.seconds,
        reason=e.reason,
    )
    return [("call.forwarded", payload)]


# conferences ----------------------------------------------------------------------------------
def _conference(e: AppConferenceEvent) -> Payload:
    """What every conference webhook says about its conference."""
    f = e.conference
    return {
        "conference_id": f.conference_id,
        "connection_id": _connection_id(f.application),
        "occurred_at": _iso(e.at),
        "client_state": f.client_state,
    }


def _participant(p: ParticipantFacts) -> Payload:
    """A participant's fields; an application call's ``client_state`` replaces the
    conference's."""
    payload: Payload = {
        "call_control_id": p.call_control_id,
        "call_leg_id": p.call_control_id,
        "call_session_id": p.call_session_id,
    }
    if p.app_call:
        payload["client_state"] = p.client_state
    return payload


@_shape(AppConferenceCreated)
def _conference_created(e: AppConferenceCreated, _: str) -> list[Webhook]:
    return [("conference.created", {**_conference(e), **_participant(e.creator)})]


@_shape(AppConferenceEnded)
def _conference_ended(e: AppConferenceEnded, _: str) -> list[Webhook]:
    payload = _conference(e)
    if e.reason != "ended_via_api":  # the SDK's ConferenceEnded has no such reason
        payload["reason"] = e.reason
    return [("conference.ended", payload)]


@_shape(AppConferenceFloorChanged)
def _floor_changed(e: AppConferenceFloorChanged, _: str) -> list[Webhook]:
    talker = _participant(e.talker) if e.talker is not None else {}
    return [("conference.floor.changed", {**_conference(e), **talker})]


@_shape(AppParticipantJoined)
def _joined(e: AppParticipantJoined, _: str) -> list[Webhook]:
    return [("conference.participant.joined", {**_conference(e), **_participant(e.participant)})]


@_shape(AppParticipantLeft)
def _left(e: AppParticipantLeft, _: str) -> list[Webhook]:
    return [("conference.participant.left", {**_conference(e), **_participant(e.participant)})]


@_shape(AppConferencePlayback)
def _conference_playback(e: AppConferencePlayback, _: str) -> list[Webhook]:
    payload = _conference(e)
    if not e.started:
        payload["status"] = "stopped" if e.stopped else "completed"
    kind = _CONFERENCE_PLAYBACK[(e.kind, e.started, bool(e.targets))]
    if not e.targets:
        return [(kind, payload)]
    return [(kind, {**payload, **_participant(p)}) for p in e.targets]


@_shape(AppConferenceRecordingSaved)
def _conference_recording(e: AppConferenceRecordingSaved, public_url: str) -> list[Webhook]:
    f = e.conference
    urls = _recording_urls(public_url, e.recording_id, e.format)
    payload = {
        "conference_id": f.conference_id,
        "connection_id": _connection_id(f.application),
        "client_state": f.client_state,
        "call_control_id": e.creator_call_control_id,
        "recording_id": e.recording_id,
        "channels": "single",
        "format": e.format,
        "recording_started_at": _iso(e.started_at),
        "recording_ended_at": _iso(e.ended_at),
        "duration_millis": e.duration_millis,
        "recording_urls": urls,
        "public_recording_urls": urls,
    }
    return [("conference.recording.saved", payload)]


@_shape(AppConferenceRecordingError)
def _conference_recording_error(e: AppConferenceRecordingError, _: str) -> list[Webhook]:
    # Telnyx has no conference recording error; this is call.recording.error's shape
    # (reason, callbridge's detail) with conference.recording.saved's ids.
    f = e.conference
    payload = {
        "conference_id": f.conference_id,
        "connection_id": _connection_id(f.application),
        "client_state": f.client_state,
        "call_control_id": e.creator_call_control_id,
        "recording_id": e.recording_id,
        "reason": "Internal server error",
        "detail": e.detail,
    }
    return [("conference.recording.error", payload)]


# delivery -------------------------------------------------------------------------------------
async def enqueue_event(outbox: WebhookOutbox, event: AppEvent, public_url: str) -> int:
    """Write ``event``'s webhooks to the outbox; how many (0: it goes nowhere)."""
    return len(await outbox.enqueue_many(_messages(event, public_url)))


async def enqueue_events(outbox: WebhookOutbox, events: list[AppEvent], public_url: str) -> int:
    """Write the webhooks of several events to the outbox in one transaction, in order."""
    return len(
        await outbox.enqueue_many([m for event in events for m in _messages(event, public_url)])
    )


def _messages(event: AppEvent, public_url: str) -> list[dict[str, Any]]:
    app: Any = event.application
    url = event.webhook_url or (app.webhook_event_url if app is not None else None)
    if url is None:
        return []
    return [
        {
            "event_type": event_type,
            "payload": payload,
            "url": url,
            "failover_url": None if event.webhook_url else app.webhook_event_failover_url,
            "ordering_key": event.ordering_key,
            "application_id": app.id if app is not None else None,
            "occurred_at": event.at,
        }
        for event_type, payload in telnyx_webhooks(event, public_url)
    ]


class WebhookEvents:
    """Subscribes to application events and feeds the outbox; ``close()`` flushes it.

    The queue of events not yet in the outbox is also its spool: when the database refuses
    the outbox's write (locked, full: :func:`~callbridge.store.spool.is_refusal`), the event
    stays at the head and is tried again with a backoff (0.1 s doubling to 5 s), the events
    behind it waiting in order; nothing is dropped. Past ``spool_limit`` waiting events an
    ERROR says so (once per episode), and :attr:`full` tells the server to refuse new calls.
    """

    def __init__(
        self, bus: EventBus, outbox: WebhookOutbox, public_url: str, *, spool_limit: int = 10_000
    ) -> None:
        self.outbox = outbox
        self.public_url = public_url.rstrip("/")
        self.spool_limit = spool_limit
        self._queue: asyncio.Queue[AppEvent | None] = asyncio.Queue()
        self._progress = asyncio.Condition()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="webhook-events")
        self.published = 0  # events received for an application
        self.done = 0  # events handled (enqueued, or given up with a logged error)
        self._refused_since: float | None = None
        self._told_full = False
        self._unsubscribe = bus.subscribe(AppEvent, self._publish)

    @property
    def waiting(self) -> int:
        """Events not in the outbox yet."""
        return self.published - self.done

    @property
    def full(self) -> bool:
        return self.waiting >= self.spool_limit

    def _publish(self, event: AppEvent) -> None:
        if event.application is None and event.webhook_url is None:
            return  # a call or conference no application owns: nowhere to send it
        self.published += 1
        self._queue.put_nowait(event)
        if self.full and not self._told_full:
            self._told_full = True
            log.error(
                "webhooks: the spool is full: %d events wait for the database (limit %d); new "
                "calls are refused until it takes writes again. Nothing is dropped.",
                self.waiting,
                self.spool_limit,
            )

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            # Every event waiting now goes in one transaction (one commit for many: what
            # keeps up with a burst), in the order they were published.
            batch: list[AppEvent] = []
            event = await self._queue.get()
            while event is not None:
                batch.append(event)
                if len(batch) >= _BATCH or self._queue.empty():
                    break
                event = self._queue.get_nowait()
            stopping = event is None
            if batch:
                await self._enqueue_until_taken(batch)
            async with self._progress:
                self.done += len(batch)
                self._progress.notify_all()
            if self.waiting == 0:
                self._told_full = False

    async def _enqueue_until_taken(self, events: list[AppEvent]) -> None:
        delay = _FIRST_DELAY
        while True:
            try:
                await enqueue_events(self.outbox, events, self.public_url)
            except Exception as exc:
                if not is_refusal(exc):
                    if len(events) > 1:  # find the one that cannot go; the others go
                        for event in events:
                            await self._enqueue_until_taken([event])
                        return
                    # A bug or a payload the outbox refuses: retrying cannot help.
                    log.exception("could not enqueue the webhooks of %s", type(events[0]).__name__)
                    return
                self._refused(events[0], exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_DELAY)
                continue
            if self._refused_since is not None:
                log.warning(
                    "webhooks: the database takes writes again after %.1f s; %d spooled "
                    "events left to enqueue",
                    time.monotonic() - self._refused_since,
                    self.waiting - len(events),
                )
                self._refused_since = None
            return

    def _refused(self, event: AppEvent, exc: BaseException, delay: float) -> None:
        if self._refused_since is not None:
            log.debug("webhooks: the database still refuses writes (%s)", exc)
            return
        self._refused_since = time.monotonic()
        log.warning(
            "webhooks: the database refuses writes (%s); spooling in memory: %d events wait, "
            "retrying %s in %.1f s",
            str(getattr(exc, "orig", None) or exc).splitlines()[0][:200],
            self.waiting,
            type(event).__name__,
            delay,
        )

    async def flush(self) -> None:
        """Wait until every event published so far is in the outbox."""
        target = self.published
        async with self._progress:
            await self._progress.wait_for(lambda: self.done >= target or self._task.done())

    async def close(self) -> None:
        self._unsubscribe()
        self._queue.put_nowait(None)
        await self._task
