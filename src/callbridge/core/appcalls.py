"""Application-controlled calls (seed 003): calls that an application drives over REST.

An *application* (a call-control application in the store) is not a device: it has no media of
its own. What it drives is a leg whose media endpoint exists at the server — the *media leg* of
an :class:`AppCall`:

- **incoming**: a softphone dials a destination that a route sends to an application. The
  softphone's own leg is *parked* for the app (it rings: ``call.ringing`` with ringback, and
  the app gets ``call.initiated``, state ``parked``). The app answers (the softphone gets
  ``call.answered`` and hears whatever the app plays), rejects, or transfers it. Its
  ``call_control_id`` is the softphone's ``call_id``.
- **outgoing**: ``POST /v2/calls`` rings every device of a user, as a softphone call would
  (``call.incoming`` with ``from`` as the app gave it). The first device to answer becomes the
  media leg. The call has its own ``call_control_id``, fixed before anyone answers.
- **adopted**: any other live softphone leg, acted on by its ``call_id``. It belongs to no
  application, so it sends no webhooks; otherwise it is driven the same way.

::

    incoming:  parked ──answer──► answered ──► ended
               (reject / hangup / no answer within the ring timeout ──► ended)
    outgoing:  dialing ──a device answers──► answered ──► ended
               (every device declines / timeout_secs / hangup ──► ended)

Commands on an answered call: speak and play to it (``play_to`` on its endpoint: what it hears
is replaced while the sound plays), send DTMF (in-band tones plus ``call.dtmf`` to its device,
see :meth:`AppCalls.send_dtmf`), gather DTMF digits (from the controller's
``call.dtmf.received`` events), record it (its endpoint's audio mixed with its bridge
partner's), bridge it to another call or to the longest-waiting call of a queue, transfer it
(dial a destination and bridge when it answers), enqueue it (it hears hold music until it is
bridged, leaves or waits too long) and hang it up. Conferences of application calls are the
:class:`~callbridge.core.conferences.ConferenceManager`'s; this module keeps a record of each
(who created it, where its events go, how it ended).

Two calls bridged by an application keep their own controller ``Call`` (and CDR); only their
media and ``peer`` links join. When one side ends, the other is hung up too unless it was
bridged with ``park_after_unbridge="self"`` (then it stays up, parked) — Telnyx's rule.

Events: this module subscribes to the controller's domain events (a leg ended, a DTMF digit,
an answer, ``conference.*``) and the media plane's (playbacks and recordings it started), and
publishes :class:`AppEvent` — Telnyx's event types with Telnyx-shaped payloads — for calls and
conferences that belong to an application, in the order they happen. The webhook adapter
(``callbridge.api.events``) turns them into deliveries. Devices are told what concerns them by
``/ws`` messages (``call.answered``, ``call.ended``, ``call.bridged``, ``call.dtmf``;
docs/protocol.md, "Calls driven by applications").

All methods run on the server's event loop; state is re-checked after every ``await``.
Errors are :class:`~callbridge.errors.ProtocolError` with a message that says what to do;
:class:`UnknownCall` and :class:`CallEnded` tell a missing call from one that has ended.
"""

from __future__ import annotations

import asyncio
import logging
import math
import wave
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast, get_args

import numpy as np

from callbridge.core.calls import Call, Device, EndReason, Leg, LegState, new_id
from callbridge.core.conferences import BeepMode, Conference
from callbridge.core.events import DeviceEvent
from callbridge.errors import ErrorCode, MediaError, ProtocolError
from callbridge.media.interface import (
    AudioSpec,
    MediaEvent,
    PlaybackStateChanged,
    RecordingFormat,
    RecordingSaved,
)

if TYPE_CHECKING:
    from callbridge.core.controller import CallController

__all__ = [
    "DTMF_DIGITS",
    "AppCall",
    "AppCallState",
    "AppCalls",
    "AppDirectory",
    "AppEvent",
    "ApplicationDevice",
    "CallEnded",
    "ConferenceRecord",
    "EventType",
    "Gather",
    "Queue",
    "QueueEntry",
    "UnknownCall",
]

log = logging.getLogger(__name__)

EventType = Literal[
    "call.initiated",
    "call.answered",
    "call.hangup",
    "call.bridged",
    "call.dtmf.received",
    "call.gather.ended",
    "call.playback.started",
    "call.playback.ended",
    "call.speak.started",
    "call.speak.ended",
    "call.recording.saved",
    "call.enqueued",
    "call.dequeued",
    "conference.created",
    "conference.ended",
    "conference.floor.changed",
    "conference.participant.joined",
    "conference.participant.left",
    "conference.participant.playback.started",
    "conference.participant.playback.ended",
    "conference.participant.speak.started",
    "conference.participant.speak.ended",
    "conference.playback.started",
    "conference.playback.ended",
    "conference.speak.started",
    "conference.speak.ended",
    "conference.recording.saved",
]

_EVENT_TYPES = frozenset(get_args(EventType))


def _event_type(name: str) -> EventType:
    """``name`` as an :data:`EventType` (checked: a typo is a bug, not a webhook)."""
    if name not in _EVENT_TYPES:
        raise ValueError(f"not an application event type: {name!r}")
    return cast(EventType, name)


DTMF_DIGITS = frozenset("0123456789ABCD*#wW")  # w: 0.5 s pause, W: 1 s (Telnyx's)
_RECENTLY_ENDED = 1000  # ended calls and conferences kept for precise errors and retrieval

# A leg's end reason as Telnyx's hangup_cause (the values its SDK's models accept).
_HANGUP_CAUSE: dict[EndReason, str] = {
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


class UnknownCall(ProtocolError):
    """No call (live or recently ended) has this id."""

    def __init__(self, call_control_id: str) -> None:
        super().__init__(ErrorCode.CALL_NOT_FOUND, f"no call {call_control_id}")
        self.call_control_id = call_control_id


class CallEnded(ProtocolError):
    """The call existed and has ended: no command can act on it."""

    def __init__(self, call_control_id: str, reason: str) -> None:
        super().__init__(
            ErrorCode.INVALID_STATE, f"call {call_control_id} has already ended ({reason})"
        )
        self.call_control_id = call_control_id
        self.reason = reason


class AppDirectory(Protocol):
    """What application calls need from the store."""

    async def find_route(self, destination: str) -> str | None: ...

    async def get_application(self, application_id: str) -> Any: ...

    async def find_user(self, destination: str) -> Any: ...

    async def add_recording(
        self,
        *,
        path: str,
        format: RecordingFormat,
        channels: Literal["single", "dual"],
        duration_millis: int,
        recording_started_at: datetime,
        recording_ended_at: datetime,
        call_control_id: str | None = None,
        call_leg_id: str | None = None,
        call_session_id: str | None = None,
        conference_id: str | None = None,
        recording_id: str | None = None,
    ) -> Any: ...


@dataclass(frozen=True, slots=True)
class AppEvent:
    """One event for an application: Telnyx's ``event_type`` and ``payload``.

    ``application`` (the store's record, or ``None``) and ``webhook_url`` (a per-call
    override) say where it goes; ``ordering_key`` keeps one call's (or conference's) events in
    order.
    """

    event_type: EventType
    payload: dict[str, Any]
    application: Any
    webhook_url: str | None
    ordering_key: str
    occurred_at: datetime


class AppCallState(StrEnum):
    PARKED = "parked"  # incoming, waiting for the application to answer
    DIALING = "dialing"  # outgoing, the user's devices ring
    RINGING = "ringing"  # adopted: a softphone leg that is still being set up
    ANSWERED = "answered"  # media flows; commands act on it
    ENDED = "ended"


@dataclass(eq=False)
class Gather:
    """``gather``: collect DTMF digits until a terminating digit, enough digits or a timeout."""

    call: AppCall
    minimum: int
    maximum: int
    terminating: str
    valid: str
    timeout: float  # whole gather
    initial_timeout: float  # for the first digit
    inter_digit_timeout: float
    gather_id: str | None = None
    digits: str = ""
    done: bool = False
    total_timer: object = field(default_factory=object)  # the timer owner of ``timeout``


@dataclass(eq=False)
class QueueEntry:
    call: AppCall
    queue: Queue
    enqueued_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    max_wait: float | None = None

    @property
    def wait_secs(self) -> int:
        return int((datetime.now(UTC) - self.enqueued_at).total_seconds())


@dataclass(eq=False)
class Queue:
    """A named queue of calls waiting (hearing hold music) for an agent; oldest first."""

    name: str
    max_size: int = 100
    id: str = field(default_factory=new_id)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    entries: list[QueueEntry] = field(default_factory=list)
    _waited: float = 0.0  # seconds waited by calls that left, for the average
    _left: int = 0

    @property
    def average_wait_time_secs(self) -> int:
        waiting = sum(e.wait_secs for e in self.entries)
        count = self._left + len(self.entries)
        return round((self._waited + waiting) / count) if count else 0

    def position(self, call: AppCall) -> int:
        """1 for the longest-waiting call."""
        for i, entry in enumerate(self.entries, 1):
            if entry.call is call:
                return i
        return 0


@dataclass(eq=False)
class _Playback:
    call: AppCall
    kind: Literal["playback", "speak", "dtmf"]
    media_url: str | None = None
    media_name: str | None = None
    reported: bool = False  # its end was reported already (the call ended first)


@dataclass(eq=False)
class _Recording:
    id: str
    call: AppCall
    format: RecordingFormat
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(eq=False)
class AppCall:
    """One call an application drives (or may drive): see the module docstring."""

    id: str  # call_control_id (= call_leg_id)
    direction: Literal["incoming", "outgoing"]  # as the application sees it
    session_id: str
    from_: str
    to: str
    application: Any = None  # the store's Application, or None (adopted)
    webhook_url: str | None = None  # overrides the application's webhook_event_url
    client_state: str | None = None  # base64, as given; goes with every later event
    leg: Leg | None = None  # the media leg (None while an outgoing call rings)
    ringing: list[Leg] = field(default_factory=list)  # outgoing: the devices that ring
    from_display_name: str = ""
    parked: bool = False  # incoming, not answered yet
    ended: bool = False
    end_reason: EndReason | None = None
    by_app: bool = False  # the application hung it up (for hangup_source)
    reject_reason: EndReason = EndReason.REJECTED
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    commands: OrderedDict[str, None] = field(default_factory=OrderedDict)  # command_ids seen
    gather: Gather | None = None
    recording: _Recording | None = None
    queue_entry: QueueEntry | None = None
    bridge_peer: str | None = None  # the leg id an application bridged this call to
    park_after_unbridge: bool = False  # stay up (parked) when that bridge ends
    transfer_of: AppCall | None = None  # this call was dialled to transfer that one
    transfer_to: AppCall | None = None  # this call is being transferred to that one

    @property
    def state(self) -> AppCallState:
        if self.ended:
            return AppCallState.ENDED
        if self.leg is None:
            return AppCallState.DIALING
        if self.parked:
            return AppCallState.PARKED
        if self.leg.answered:
            return AppCallState.ANSWERED
        return AppCallState.RINGING

    @property
    def connection_id(self) -> str | None:
        return self.application.id if self.application is not None else None

    def seen(self, command_id: str | None) -> bool:
        """True if ``command_id`` was used on this call before (the command is then skipped)."""
        return command_id is not None and command_id in self.commands

    def remember(self, command_id: str | None) -> None:
        if command_id is None:
            return
        self.commands[command_id] = None
        while len(self.commands) > 100:
            self.commands.popitem(last=False)


class ApplicationDevice:
    """The owner of a conference an application created (``ConferenceManager`` wants a
    ``Device``). An application has no signalling connection: messages to it are dropped."""

    def __init__(self, application: Any) -> None:
        self.application = application
        self.id = "app:" + new_id()
        self.caller_id = ""
        self.user_name = f"application:{application.id}" if application else "application"
        self.display_name = str(application.application_name) if application else "application"

    @property
    def reachable(self) -> bool:
        return False

    def deliver(self, event: DeviceEvent) -> None:
        log.debug("application device %s: dropping %s", self.id, type(event).__name__)

    def send(self, message: dict[str, Any]) -> None:
        log.debug("application device %s: dropping %s", self.id, message.get("type"))


@dataclass(eq=False)
class ConferenceRecord:
    """What the REST API reports about a conference, kept after it ends."""

    id: str
    name: str
    created_at: datetime
    application: Any = None
    webhook_url: str | None = None
    client_state: str | None = None
    creator: str | None = None  # call_control_id of the call it was created from
    ended_at: datetime | None = None
    end_reason: str | None = None  # all_left, ended_via_api, host_left, time_exceeded
    expires_at: datetime | None = None
    hosted: bool = False  # a seed-002 conference (/ws): it ends when its host leaves
    max_participants: int | None = None
    hold_audio: AudioSpec | None = None  # what a held participant hears unless told otherwise
    pending_plays: list[tuple[str, ...]] = field(default_factory=list)  # REST play targets
    targeted: dict[str, tuple[str, ...]] = field(default_factory=dict)  # playback -> targets


Listener = Callable[[AppEvent], None]


def _up(*legs: Leg) -> bool:
    return all(leg.live for leg in legs)


def _iso(at: datetime | None) -> str | None:
    return at.isoformat().replace("+00:00", "Z") if at is not None else None


class AppCalls:
    """Every application call of this server; driven by the REST API."""

    def __init__(
        self,
        controller: CallController,
        directory: AppDirectory,
        *,
        recordings_dir: Path,
        work_dir: Path,
        public_url: str,
        ring_timeout: float | None = None,
    ) -> None:
        self.controller = controller
        self.media = controller.media
        self.directory = directory
        self.recordings_dir = recordings_dir
        self.work_dir = work_dir
        self.public_url = public_url.rstrip("/")
        self.ring_timeout = ring_timeout if ring_timeout is not None else controller.ring_timeout
        self.calls: dict[str, AppCall] = {}  # call_control_id -> call
        self.by_leg: dict[str, AppCall] = {}  # media or ringing leg id -> call
        self._ended: OrderedDict[str, AppCall] = OrderedDict()
        self.queues: dict[str, Queue] = {}
        self.conferences: OrderedDict[str, ConferenceRecord] = OrderedDict()
        self._playbacks: dict[str, _Playback] = {}
        self._recordings: dict[str, _Recording] = {}
        self._listeners: list[Listener] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._creating: dict[str, ConferenceRecord] = {}  # creator's leg id -> its record
        controller.subscribe(self._on_domain_event)
        self.media.subscribe(self._on_media_event)
        controller.router = self  # inbound calls to an application's route come here

    # events ---------------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _publish(self, event: AppEvent) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("application event listener failed for %s", event.event_type)

    def facts(self, call: AppCall) -> dict[str, Any]:
        """What every event of this call says about it (Telnyx's payload fields)."""
        return {
            "call_control_id": call.id,
            "call_leg_id": call.id,
            "call_session_id": call.session_id,
            "connection_id": call.connection_id,
            "client_state": call.client_state,
            "from": call.from_,
            "to": call.to,
            "direction": call.direction,
            "start_time": _iso(call.started_at),
        }

    def _emit(self, event_type: EventType, call: AppCall, **extra: Any) -> None:
        if call.application is None and call.webhook_url is None:
            return  # adopted: nobody to tell
        payload = {**self.facts(call), **extra}
        self._publish(
            AppEvent(
                event_type,
                payload,
                call.application,
                call.webhook_url,
                call.session_id,
                datetime.now(UTC),
            )
        )

    # lookups --------------------------------------------------------------------------------
    def get(self, call_control_id: str) -> AppCall:
        """The live call with this id (an application call, or any softphone leg, adopted).

        :raises CallEnded: it has ended. :raises UnknownCall: there never was such a call.
        """
        call = self.calls.get(call_control_id) or self.by_leg.get(call_control_id)
        if call is not None and not call.ended:
            return call
        leg = self.controller.legs.get(call_control_id)
        if leg is not None and leg.live:
            return self._adopt(leg)
        ended = self._ended.get(call_control_id)
        if ended is not None:
            reason = ended.end_reason.value if ended.end_reason else "hangup"
            raise CallEnded(call_control_id, reason)
        raise UnknownCall(call_control_id)

    def find(self, call_control_id: str) -> AppCall | None:
        """A live or recently ended call, for status queries (no adoption)."""
        call = self.calls.get(call_control_id) or self.by_leg.get(call_control_id)
        if call is not None:
            return call
        leg = self.controller.legs.get(call_control_id)
        if leg is not None and leg.live:
            return self._adopt(leg)
        return self._ended.get(call_control_id)

    def _adopt(self, leg: Leg) -> AppCall:
        call = leg.call
        direction: Literal["incoming", "outgoing"] = (
            "incoming" if leg.direction == "outgoing" else "outgoing"
        )
        acall = AppCall(
            id=leg.id,
            direction=direction,
            session_id=call.id if call is not None else leg.id,
            from_=call.caller_id if call is not None else leg.device.caller_id,
            to=call.destination if call is not None else "",
            leg=leg,
        )
        if call is not None:
            acall.started_at = call.started_at
            acall.answered_at = call.answered_at
        self._register(acall)
        return acall

    def _register(self, call: AppCall) -> None:
        self.calls[call.id] = call
        if call.leg is not None:
            self.by_leg[call.leg.id] = call

    def _live(self, call: AppCall) -> Leg:
        """The call's media leg, which must be up."""
        if call.ended:
            raise CallEnded(call.id, call.end_reason.value if call.end_reason else "hangup")
        leg = call.leg
        if leg is None:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"call {call.id} is still ringing: wait for call.answered",
            )
        if not leg.live:
            raise CallEnded(call.id, leg.end_reason.value if leg.end_reason else "hangup")
        return leg

    def answered_leg(self, call: AppCall, action: str) -> Leg:
        """The media leg of an answered call (``action`` names the command, for the error)."""
        leg = self._live(call)
        if call.parked:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"{action}: call {call.id} is not answered: answer it first",
            )
        if not leg.answered:
            raise ProtocolError(
                ErrorCode.INVALID_STATE, f"{action}: call {call.id} is {leg.state}, not answered"
            )
        return leg

    def _bridgeable(self, call: AppCall, action: str) -> Leg:
        leg = self.answered_leg(call, action)
        if leg.conference is not None:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"{action}: call {call.id} is in conference {leg.conference.id}: "
                "make it leave the conference first",
            )
        return leg

    # incoming: routing to an application ------------------------------------------------------
    async def route(self, call: Call, destination: str) -> bool:
        """The controller's routing hook: park ``call`` for the application that a route sends
        ``destination`` to (returns False when no route applies: users are tried)."""
        application_id = await self.directory.find_route(destination)
        if application_id is None:
            return False
        application = await self.directory.get_application(application_id)
        if application is None or not application.active:
            return False
        origin = call.origin
        if not origin.live or call.ended:
            return True
        old = self.by_leg.get(origin.id)
        if old is not None and not old.ended:
            # An application call's leg is routed to an application again (a /ws transfer of
            # its far party): the old application is done with it.
            self._finish(old, EndReason.TRANSFERRED)
        acall = AppCall(
            id=origin.id if origin.id not in self.calls else new_id(),
            direction="incoming",
            session_id=call.id,
            from_=call.caller_id,
            to=destination,
            application=application,
            leg=origin,
            from_display_name=call.caller_name,
            parked=True,
        )
        self._register(acall)
        call.callee_name = application.application_name
        origin.set_state(LegState.RINGING)
        await self.media.play(origin.id, "ringback")
        if not origin.live or acall.ended:
            return True
        origin.device.send({"type": "call.ringing", "call_id": origin.id, "ringback": True})
        self._emit(
            "call.initiated",
            acall,
            state="parked",
            caller_id_name=call.caller_name,
        )
        self.controller.later(acall, self.ring_timeout, lambda: self._parked_timeout(acall))
        return True

    async def _parked_timeout(self, call: AppCall) -> None:
        leg = call.leg
        if call.parked and not call.ended and leg is not None and leg.call is not None:
            await self.controller.end_call(leg.call, EndReason.NO_ANSWER, EndReason.NO_ANSWER)

    async def answer(self, call: AppCall) -> None:
        """Answer a parked incoming call: its device gets ``call.answered``."""
        leg = self._live(call)
        if not call.parked:
            what = "answered already" if leg.answered else f"{leg.state}: nothing to answer"
            raise ProtocolError(ErrorCode.INVALID_STATE, f"call {call.id} is {what}")
        await self._answer_parked(call, leg)

    async def _answer_parked(self, call: AppCall, leg: Leg) -> None:
        call.parked = False  # claimed before any await
        self.controller.cancel_later(call)
        await self.media.stop_playing(leg.id)
        if not leg.live or call.ended:
            return
        leg.set_state(LegState.ACTIVE)
        call.answered_at = datetime.now(UTC)
        if leg.call is not None:
            leg.call.answered_at = call.answered_at
        leg.device.send({"type": "call.answered", "call_id": leg.id, "media_type": leg.media_type})
        self._emit("call.answered", call, state="answered")

    async def reject(self, call: AppCall, busy: bool) -> None:
        leg = self._live(call)
        if not call.parked:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"call {call.id} is not a parked incoming call: only those can be rejected "
                "(hang it up instead)",
            )
        reason = EndReason.BUSY if busy else EndReason.REJECTED
        call.by_app = True
        call.parked = False
        self.controller.cancel_later(call)
        assert leg.call is not None
        await self.controller.end_call(leg.call, reason, reason)

    # outgoing: dialling ---------------------------------------------------------------------
    async def dial(
        self,
        application: Any,
        to: str,
        from_: str,
        *,
        from_display_name: str = "",
        webhook_url: str | None = None,
        timeout_secs: float = 30.0,
        client_state: str | None = None,
        session_id: str | None = None,
    ) -> AppCall:
        """Ring every device of the user ``to`` names; the first to answer is the call."""
        user = await self.directory.find_user(to)
        if user is None:
            if await self.directory.find_route(to) is not None:
                raise ProtocolError(
                    ErrorCode.DESTINATION_NOT_FOUND,
                    f"{to!r} is routed to an application: dial a user's extension, number or "
                    "name (an application cannot call an application)",
                )
            raise ProtocolError(
                ErrorCode.DESTINATION_NOT_FOUND,
                f"no user has the extension, number or name {to!r}",
            )
        call = AppCall(
            id=new_id(),
            direction="outgoing",
            session_id=session_id or new_id(),
            from_=from_,
            to=to,
            application=application,
            webhook_url=webhook_url,
            client_state=client_state,
            from_display_name=from_display_name,
        )
        self._register(call)
        self._emit("call.initiated", call, state="bridging")
        devices = [d for d in self.controller.devices.get(user.name, {}).values() if d.reachable]
        for device in devices:
            await self._ring(call, device)
        if call.ended:
            return call
        if not call.ringing:
            # Nobody to ring: the user is offline (SIP would answer 480 Temporarily Unavailable).
            self._finish(call, EndReason.FAILED, sip_hangup_cause="480")
            return call
        self.controller.later(call, timeout_secs, lambda: self._dial_timeout(call))
        return call

    async def _ring(self, call: AppCall, device: Device) -> None:
        leg = Leg(device=device, direction="incoming")
        try:
            offer = await self.media.offer(leg.id)
        except MediaError:
            log.exception("could not create media to ring %s", device.id)
            return
        if call.ended or call.leg is not None:
            await self.media.close(leg.id)
            return
        self.controller.legs[leg.id] = leg
        self.controller.ring_owners[leg.id] = self
        self.by_leg[leg.id] = call
        leg.set_state(LegState.RINGING)
        call.ringing.append(leg)
        device.send(
            {
                "type": "call.incoming",
                "call_id": leg.id,
                "from": call.from_,
                "from_name": call.from_display_name,
                "to": call.to,
                "sdp": offer,
                "media_type": "audio",
            }
        )
        self.controller.send_candidates(leg)

    async def _dial_timeout(self, call: AppCall) -> None:
        if call.leg is None and not call.ended:
            await self._stop_ringing(call, EndReason.NO_ANSWER)
            self._finish(call, EndReason.NO_ANSWER)

    async def _stop_ringing(self, call: AppCall, reason: EndReason) -> None:
        legs, call.ringing = call.ringing, []
        for leg in legs:
            self._forget_ringing(leg)
            await self.controller.end_leg(leg, reason)

    def _forget_ringing(self, leg: Leg) -> None:
        self.controller.ring_owners.pop(leg.id, None)
        self.by_leg.pop(leg.id, None)

    async def answer_ringing(self, leg: Leg, sdp: str, req_id: str | None) -> None:
        """A device rung by :meth:`dial` answers (the controller's ``call.answer`` hook)."""
        call = self.by_leg.get(leg.id)
        if call is None or call.ended or call.leg is not None or leg not in call.ringing:
            raise ProtocolError(ErrorCode.INVALID_STATE, f"call {leg.id} is no longer ringing")
        call.leg = leg  # claimed before any await: a racing answer sees it taken
        self.controller.cancel_later(call)
        self.controller.ring_owners.pop(leg.id, None)
        # From here the leg is an ordinary call's origin (a hangup meanwhile ends it as such).
        leg.call = Call(
            id=leg.id,
            origin=leg,
            destination=call.to,
            caller_id=call.from_,
            caller_name=call.from_display_name,
            callee_name=leg.device.user_name,
            answered_leg=leg,
            started_at=call.started_at,
        )
        others = [x for x in call.ringing if x is not leg]
        call.ringing = []
        for other in others:
            self._forget_ringing(other)
            await self.controller.end_leg(other, EndReason.ANSWERED_ELSEWHERE)
        try:
            await self.media.accept_answer(leg.id, sdp)
        except MediaError as exc:
            leg.device.send(exc.to_wire(req_id, leg.id))
            self._forget_ringing(leg)
            await self.controller.end_leg(leg, EndReason.FAILED)
            self._finish(call, EndReason.FAILED)
            return
        if not leg.live or call.ended:
            return
        call.answered_at = leg.call.answered_at = datetime.now(UTC)
        leg.set_state(LegState.ACTIVE)
        leg.device.send(
            {"type": "call.answered", "req_id": req_id, "call_id": leg.id, "media_type": "audio"}
        )
        self._emit("call.answered", call, state="answered")
        original = call.transfer_of
        if original is not None:
            await self._complete_transfer(original, call)

    async def decline_ringing(self, leg: Leg, reason: EndReason, req_id: str | None) -> None:
        """A device rung by :meth:`dial` rejects, hangs up or goes away (controller hook)."""
        call = self.by_leg.get(leg.id)
        self._forget_ringing(leg)
        await self.controller.end_leg(leg, reason, req_id)
        if call is None or call.ended:
            return
        call.ringing = [x for x in call.ringing if x is not leg]
        if reason is EndReason.BUSY:
            call.reject_reason = EndReason.BUSY
        if not call.ringing and call.leg is None:
            self.controller.cancel_later(call)
            final = call.reject_reason if reason in (EndReason.REJECTED, EndReason.BUSY) else reason
            self._finish(call, final)

    # hanging up -----------------------------------------------------------------------------
    async def hangup(self, call: AppCall) -> None:
        """End the call (cancel it while it rings). Its device gets ``call.ended``."""
        if call.ended:
            raise CallEnded(call.id, call.end_reason.value if call.end_reason else "hangup")
        call.by_app = True
        leg = call.leg
        if leg is None:
            self.controller.cancel_later(call)
            await self._stop_ringing(call, EndReason.CANCELED)
            self._finish(call, EndReason.CANCELED)
            return
        await self._hangup_leg(leg)

    async def _hangup_leg(self, leg: Leg) -> None:
        if not leg.live:
            return
        try:
            await self.controller.hangup(leg.device, leg.id, None)
        except ProtocolError as exc:  # it ended meanwhile
            log.debug("hangup of %s: %s", leg.id, exc)

    def _finish(
        self, call: AppCall, reason: EndReason, *, sip_hangup_cause: str | None = None
    ) -> None:
        """The call is over: tell the application (queue, gather, playbacks, then hangup)."""
        if call.ended:
            return
        call.ended = True
        call.end_reason = reason
        call.ended_at = datetime.now(UTC)
        self.controller.cancel_later(call)
        if call.queue_entry is not None:
            self._leave_queue(call, "hangup")
        gather = call.gather
        if gather is not None:
            self._gather_over(gather, "call_hangup")
        for playback in list(self._playbacks.values()):
            if playback.call is call and not playback.reported:
                playback.reported = True
                self._playback_event(playback, "ended", "call_hangup")
        if call.transfer_to is not None and not call.transfer_to.ended:
            target = call.transfer_to
            call.transfer_to = None
            target.transfer_of = None
            self._spawn(self.hangup(target))
        original = call.transfer_of
        if original is not None:
            call.transfer_of = None
            original.transfer_to = None
            self._spawn(self._transfer_failed(original))
        if call.by_app:
            source = "callee" if call.direction == "incoming" else "caller"
        elif reason in (EndReason.HANGUP, EndReason.REJECTED, EndReason.BUSY):
            source = "caller" if call.direction == "incoming" else "callee"
        else:
            source = "unknown"
        extra: dict[str, Any] = {
            "state": "hangup",
            "hangup_cause": _HANGUP_CAUSE.get(reason, "unspecified"),
            "hangup_source": source,
        }
        if sip_hangup_cause is not None:
            extra["sip_hangup_cause"] = sip_hangup_cause
        self._emit("call.hangup", call, **extra)
        self.calls.pop(call.id, None)
        for leg in [call.leg, *call.ringing]:
            if leg is not None and self.by_leg.get(leg.id) is call:
                del self.by_leg[leg.id]
        self._ended[call.id] = call
        if call.leg is not None and call.leg.id != call.id:
            self._ended[call.leg.id] = call
        while len(self._ended) > _RECENTLY_ENDED:
            self._ended.popitem(last=False)

    # bridging -------------------------------------------------------------------------------
    async def bridge(
        self,
        a: AppCall,
        b: AppCall,
        *,
        park_after_unbridge: bool = False,
        queue: Queue | None = None,
        wait_secs: int | None = None,
    ) -> None:
        """Connect two calls: each hears the other. A parked call is answered first."""
        if a is b or (a.leg is not None and a.leg is b.leg):
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, "a call cannot be bridged to itself")
        for call in (a, b):
            leg = self._live(call)
            if leg.conference is not None:
                raise ProtocolError(
                    ErrorCode.INVALID_STATE,
                    f"call {call.id} is in conference {leg.conference.id}: make it leave first",
                )
            if not call.parked and not leg.answered:
                raise ProtocolError(
                    ErrorCode.INVALID_STATE, f"call {call.id} is {leg.state}, not answered"
                )
        la, lb = self._live(a), self._live(b)
        if la.peer is lb:
            a.park_after_unbridge = park_after_unbridge
            return
        for call, leg in ((a, la), (b, lb)):
            if leg.peer is not None or call.bridge_peer is not None:
                raise ProtocolError(
                    ErrorCode.INVALID_STATE,
                    f"call {call.id} is bridged (or being bridged) to another call already: "
                    "hang that up or transfer it first",
                )
        a.bridge_peer, b.bridge_peer = lb.id, la.id  # claimed before any await
        for call in (a, b):
            if call.queue_entry is not None:
                self._leave_queue(call, "bridged")
            self.controller.cancel_later(call)
        try:
            for call, leg in ((a, la), (b, lb)):
                if call.parked:
                    await self._answer_parked(call, leg)
            for leg in (la, lb):
                await self._stop_app_audio(leg)
            if not (la.live and lb.live) or a.ended or b.ended:
                self._unclaim(a, b)
                return
            await self.media.bridge(la.id, lb.id)
        except BaseException:
            self._unclaim(a, b)
            raise
        if not _up(la, lb):  # a function: mypy must not keep the check above
            self._unclaim(a, b)
            return
        la.peer, lb.peer = lb, la
        a.park_after_unbridge = park_after_unbridge
        for call, leg, other in ((a, la, lb), (b, lb, la)):
            if leg.state is LegState.HELD:
                leg.set_state(LegState.ACTIVE)
            message: dict[str, Any] = {
                "type": "call.bridged",
                "call_id": leg.id,
                "peer": other.device.caller_id,
                "peer_name": other.device.display_name,
            }
            if queue is not None:  # b waited in the queue (both learn for how long)
                message["queue"] = queue.name
                message["wait_time_secs"] = wait_secs
            leg.device.send(message)
            self._emit(
                "call.bridged", call, state="bridged", peer_call_control_id=self._id_of(other)
            )

    @staticmethod
    def _unclaim(a: AppCall, b: AppCall) -> None:
        """A bridge that did not happen (one side ended meanwhile)."""
        a.bridge_peer = b.bridge_peer = None

    def _id_of(self, leg: Leg) -> str:
        call = self.by_leg.get(leg.id)
        return call.id if call is not None else leg.id

    async def _stop_app_audio(self, leg: Leg) -> None:
        """Stop what the application played to a leg (and ringback / hold music)."""
        for pid, playback in list(self._playbacks.items()):
            if playback.call.leg is leg:
                await self.media.stop_playback(pid)
        await self.media.stop_playing(leg.id)

    async def bridge_queue(
        self, call: AppCall, queue_name: str, *, park_after_unbridge: bool = False
    ) -> AppCall:
        """Bridge ``call`` to the longest-waiting call of a queue (which leaves the queue)."""
        self._bridgeable(call, "bridge")
        queue = self.queues.get(queue_name)
        if queue is None or not queue.entries:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"queue {queue_name!r} is empty: no call waits in it"
                if queue is not None
                else f"there is no queue {queue_name!r}",
            )
        entry = queue.entries[0]
        waiting = entry.call
        if waiting is call:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, "a call cannot be bridged to itself")
        wait_secs = entry.wait_secs
        self._leave_queue(waiting, "bridged")  # always, even if bridging fails (Telnyx's rule)
        await self.bridge(
            call, waiting, park_after_unbridge=park_after_unbridge, queue=queue, wait_secs=wait_secs
        )
        return waiting

    def _leg_left_bridge(self, leg: Leg, reason: EndReason) -> None:
        """``leg`` is ending; if an application bridged it, its partner follows the rule."""
        peer = leg.peer
        if peer is None or reason in (EndReason.TRANSFERRED, EndReason.MOVED):
            return
        partner = self.by_leg.get(peer.id)
        if partner is None or partner.bridge_peer != leg.id:
            return
        partner.bridge_peer = None
        if partner.park_after_unbridge:
            return  # it stays up, parked: the application decides what comes next
        self._spawn(self._hangup_leg(peer))

    # transfer -------------------------------------------------------------------------------
    async def transfer(
        self,
        call: AppCall,
        to: str,
        *,
        from_: str | None = None,
        from_display_name: str = "",
        webhook_url: str | None = None,
        timeout_secs: float = 30.0,
        target_client_state: str | None = None,
    ) -> AppCall:
        """Dial ``to`` and bridge ``call`` to it when it answers; ``call`` hears ringback
        meanwhile. If ``to`` does not answer, ``call`` stays as it was (Telnyx's rule)."""
        leg = self._live(call)
        if leg.conference is not None:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"call {call.id} is in conference {leg.conference.id}: make it leave first",
            )
        if not call.parked and not leg.answered:
            raise ProtocolError(ErrorCode.INVALID_STATE, f"call {call.id} is {leg.state}")
        if call.transfer_to is not None:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"call {call.id} is being transferred already (to {call.transfer_to.to})",
            )
        if call.application is None:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"call {call.id} belongs to no application: transfer it with the softphone "
                "(call.transfer) or dial and bridge",
            )
        self.controller.cancel_later(call)  # a parked call waits for the transfer instead
        target = await self.dial(
            call.application,
            to,
            from_ or call.from_,
            from_display_name=from_display_name or call.from_display_name,
            webhook_url=webhook_url or call.webhook_url,
            timeout_secs=timeout_secs,
            client_state=target_client_state,
            session_id=call.session_id,
        )
        if target.ended:
            return target
        if call.ended or not leg.live:
            await self.hangup(target)
            return target
        target.transfer_of, call.transfer_to = call, target
        if leg.peer is not None and call.bridge_peer == leg.peer.id:
            # The transferred call leaves its bridge: the old partner follows its rule.
            old = leg.peer
            self._leg_left_bridge(leg, EndReason.HANGUP)
            call.bridge_peer = None
            await self.media.unbridge(leg.id)
            leg.peer = old.peer = None
        if not call.parked:
            await self.media.play(leg.id, "ringback")
        return target

    async def _complete_transfer(self, original: AppCall, target: AppCall) -> None:
        target.transfer_of, original.transfer_to = None, None
        if original.ended or original.leg is None or not original.leg.live:
            await self.hangup(target)
            return
        try:
            await self.bridge(original, target)
        except ProtocolError as exc:
            log.info("transfer of %s to %s failed: %s", original.id, target.id, exc)
            await self.hangup(target)

    async def _transfer_failed(self, original: AppCall) -> None:
        """The transfer target did not answer: the original call goes on as it was (a parked
        one waits for the application again, within the ring timeout)."""
        leg = original.leg
        if leg is None or not leg.live or original.ended:
            return
        if original.parked:
            self.controller.later(
                original, self.ring_timeout, lambda: self._parked_timeout(original)
            )
        else:
            await self.media.stop_playing(leg.id)

    # audio ----------------------------------------------------------------------------------
    def _targets(self, call: AppCall, target_legs: str, action: str) -> list[Leg]:
        leg = self.answered_leg(call, action)
        if target_legs == "self":
            return [leg]
        if leg.peer is None:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"{action}: target_legs {target_legs!r} needs a bridged call; call {call.id} "
                "is not bridged (use 'self')",
            )
        return [leg.peer] if target_legs == "opposite" else [leg, leg.peer]

    async def play(
        self,
        call: AppCall,
        audio: AudioSpec,
        *,
        kind: Literal["playback", "speak"],
        target_legs: str = "self",
        media_url: str | None = None,
        media_name: str | None = None,
    ) -> list[str]:
        """Play a file/URL (``playback``) or speak text (``speak``) to the call; returns the
        playback ids (``call.playback.*`` / ``call.speak.*`` events follow)."""
        action = "playback_start" if kind == "playback" else "speak"
        legs = self._targets(call, target_legs, action)
        ids: list[str] = []
        for leg in legs:
            owner = self.by_leg.get(leg.id, call)
            pid = new_id()
            self._playbacks[pid] = _Playback(owner, kind, media_url, media_name)
            try:
                await self.media.play_to(leg.id, pid, audio)
            except BaseException:
                self._playbacks.pop(pid, None)
                raise
            ids.append(pid)
        return ids

    async def stop_playback(self, call: AppCall, kind: Literal["playback", "speak"]) -> None:
        leg = self._live(call)
        for pid, playback in list(self._playbacks.items()):
            if playback.kind == kind and playback.call.leg is leg:
                await self.media.stop_playback(pid)

    async def send_dtmf(self, call: AppCall, digits: str, duration_millis: int = 250) -> None:
        """Send DTMF to the call's device: in-band tones it hears, and one ``call.dtmf`` message
        per digit. (The MediaServer interface has no RFC 4733 sender, so there are no
        telephone-event packets; a device that only listens for those will not see them.)"""
        leg = self.answered_leg(call, "send_dtmf")
        bad = sorted(set(digits) - DTMF_DIGITS)
        if bad or not digits:
            raise ProtocolError(
                ErrorCode.INVALID_DIGITS,
                f"digits {digits!r}: use 0-9, A-D, * and #, w for a 0.5 s pause, W for 1 s",
            )
        path = await asyncio.to_thread(self._dtmf_file, digits, duration_millis)
        if not leg.live:
            return
        pid = new_id()
        self._playbacks[pid] = _Playback(call, "dtmf")
        try:
            await self.media.play_to(leg.id, pid, AudioSpec("file", str(path)))
        except BaseException:
            self._playbacks.pop(pid, None)
            raise
        for digit in digits:
            if digit not in "wW":
                leg.device.send({"type": "call.dtmf", "call_id": leg.id, "digit": digit})

    def _dtmf_file(self, digits: str, duration_millis: int) -> Path:
        """A WAV of the digits' tones (ITU-T Q.23 frequency pairs), cached by content."""
        safe = digits.replace("*", "s").replace("#", "p")
        path = self.work_dir / f"dtmf-{safe}-{duration_millis}.wav"
        if path.exists():
            return path
        self.work_dir.mkdir(parents=True, exist_ok=True)
        rate = 8000
        parts: list[np.ndarray[Any, np.dtype[np.int16]]] = []
        gap = np.zeros(int(rate * 0.08), dtype=np.int16)
        for digit in digits:
            if digit in "wW":
                parts.append(np.zeros(int(rate * (0.5 if digit == "w" else 1.0)), dtype=np.int16))
                continue
            low, high = _DTMF_FREQS[digit]
            t = np.arange(int(rate * duration_millis / 1000)) / rate
            tone = 0.25 * (np.sin(2 * math.pi * low * t) + np.sin(2 * math.pi * high * t))
            parts.extend([(tone * 32767).astype(np.int16), gap])
        tmp = path.with_suffix(".tmp")
        with wave.open(str(tmp), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(rate)
            out.writeframes(np.concatenate(parts).tobytes())
        tmp.replace(path)
        return path

    # gather ---------------------------------------------------------------------------------
    def start_gather(self, call: AppCall, gather: Gather) -> None:
        """Collect digits; ``call.gather.ended`` reports them. A new gather replaces one that
        is running (which ends ``cancelled``)."""
        self.answered_leg(call, "gather")
        if call.gather is not None:
            self._gather_over(call.gather, "cancelled")
        call.gather = gather
        self.controller.later(gather, gather.initial_timeout, lambda: self._gather_timeout(gather))
        self.controller.later(
            gather.total_timer, gather.timeout, lambda: self._gather_timeout(gather)
        )

    def stop_gather(self, call: AppCall) -> None:
        self._live(call)
        if call.gather is None:
            raise ProtocolError(ErrorCode.INVALID_STATE, f"call {call.id} is not gathering")
        self._gather_over(call.gather, "cancelled")

    def _gather_digit(self, gather: Gather, digit: str) -> None:
        if gather.done:
            return
        if digit == gather.terminating:
            self._gather_over(gather, self._gather_status(gather))
            return
        gather.digits += digit
        if len(gather.digits) >= gather.maximum:
            self._gather_over(gather, self._gather_status(gather))
            return
        self.controller.later(
            gather, gather.inter_digit_timeout, lambda: self._gather_timeout(gather)
        )

    @staticmethod
    def _gather_status(gather: Gather) -> str:
        digits = gather.digits
        ok = gather.minimum <= len(digits) <= gather.maximum and all(
            d in gather.valid for d in digits
        )
        return "valid" if ok else "invalid"

    async def _gather_timeout(self, gather: Gather) -> None:
        if gather.done:
            return
        enough = gather.digits and len(gather.digits) >= gather.minimum
        self._gather_over(gather, self._gather_status(gather) if enough else "timeout")

    def _gather_over(self, gather: Gather, status: str) -> None:
        if gather.done:
            return
        gather.done = True
        self.controller.cancel_later(gather)
        self.controller.cancel_later(gather.total_timer)
        call = gather.call
        if call.gather is gather:
            call.gather = None
        extra: dict[str, Any] = {"digits": gather.digits, "status": status}
        if gather.gather_id is not None:
            extra["gather_id"] = gather.gather_id
        self._emit("call.gather.ended", call, **extra)

    # recording ------------------------------------------------------------------------------
    async def record_start(self, call: AppCall, fmt: RecordingFormat) -> str:
        """Record the call (its audio mixed with its bridge partner's) to a WAV or MP3 file;
        ``call.recording.saved`` follows :meth:`record_stop` (or the call's end)."""
        leg = self.answered_leg(call, "record_start")
        if leg.conference is not None:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"call {call.id} is in conference {leg.conference.id}: record the conference",
            )
        if call.recording is not None:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"call {call.id} is being recorded already (recording {call.recording.id})",
            )
        rid = new_id()
        self.recordings_dir.mkdir(parents=True, exist_ok=True)
        path = self.recordings_dir / f"{rid}.{fmt}"
        recording = _Recording(rid, call, fmt)
        self._recordings[rid] = recording
        call.recording = recording
        try:
            await self.media.record_start(rid, leg.id, str(path), fmt)
        except BaseException:
            self._recordings.pop(rid, None)
            call.recording = None
            raise
        return rid

    def _recording_of(self, call: AppCall, recording_id: str | None) -> _Recording:
        self._live(call)
        recording = call.recording
        if recording is None or (recording_id is not None and recording.id != recording_id):
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"call {call.id} is not being recorded"
                + (f" as {recording_id}" if recording_id else ""),
            )
        return recording

    async def record_stop(self, call: AppCall, recording_id: str | None = None) -> None:
        recording = self._recording_of(call, recording_id)
        call.recording = None
        await self.media.record_stop(recording.id)

    async def record_pause(self, call: AppCall, paused: bool, recording_id: str | None) -> None:
        recording = self._recording_of(call, recording_id)
        if paused:
            await self.media.record_pause(recording.id)
        else:
            await self.media.record_resume(recording.id)

    def recording_urls(self, recording_id: str, fmt: str) -> dict[str, str]:
        return {fmt: f"{self.public_url}/v2/recordings/{recording_id}/download"}

    async def _save_call_recording(self, recording: _Recording, event: RecordingSaved) -> None:
        call = recording.call
        if call.recording is recording:
            call.recording = None
        ended = datetime.now(UTC)
        await self.directory.add_recording(
            recording_id=recording.id,
            path=event.path,
            format=recording.format,
            channels="single",
            duration_millis=round(event.duration_secs * 1000),
            recording_started_at=recording.started_at,
            recording_ended_at=max(ended, recording.started_at),
            call_control_id=call.id,
            call_leg_id=call.id,
            call_session_id=call.session_id,
        )
        urls = self.recording_urls(recording.id, recording.format)
        self._emit(
            "call.recording.saved",
            call,
            recording_id=recording.id,
            channels="single",
            format=recording.format,
            recording_started_at=_iso(recording.started_at),
            recording_ended_at=_iso(ended),
            duration_millis=round(event.duration_secs * 1000),
            recording_urls=urls,
            public_recording_urls=urls,
        )

    # queues ---------------------------------------------------------------------------------
    def queue(self, name: str) -> Queue | None:
        return self.queues.get(name)

    def create_queue(self, name: str, max_size: int | None) -> Queue:
        if name in self.queues:
            raise ProtocolError(ErrorCode.INVALID_STATE, f"queue {name!r} exists already")
        queue = Queue(name, max_size if max_size is not None else 100)
        self.queues[name] = queue
        return queue

    async def enqueue(
        self,
        call: AppCall,
        name: str,
        *,
        max_size: int | None = None,
        max_wait_time_secs: float | None = None,
    ) -> Queue:
        """Park the call in a queue (created on first use) hearing hold music; the longest-
        waiting call is the one ``bridge`` with ``queue`` takes."""
        leg = self._bridgeable(call, "enqueue")
        if leg.peer is not None:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"enqueue: call {call.id} is bridged to another call: hang that up first",
            )
        if call.queue_entry is not None:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"call {call.id} is in queue {call.queue_entry.queue.name!r} already",
            )
        queue = self.queues.get(name)
        if queue is None:
            queue = self.queues[name] = Queue(name, max_size if max_size is not None else 100)
        if len(queue.entries) >= queue.max_size:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"queue {name!r} is full ({len(queue.entries)} calls, max_size {queue.max_size})",
            )
        entry = QueueEntry(call, queue, max_wait=max_wait_time_secs)
        queue.entries.append(entry)
        queue.updated_at = entry.enqueued_at
        call.queue_entry = entry
        await self._stop_app_audio(leg)
        if call.queue_entry is entry and leg.live:
            await self.media.play(leg.id, "hold-music")
        if call.queue_entry is not entry:
            return queue  # it left (hung up, bridged) while the music started
        if max_wait_time_secs is not None:
            self.controller.later(entry, max_wait_time_secs, lambda: self._queue_timeout(entry))
        self._emit(
            "call.enqueued",
            call,
            queue=name,
            current_position=queue.position(call),
            queue_avg_wait_time_secs=queue.average_wait_time_secs,
        )
        return queue

    async def leave_queue(self, call: AppCall) -> None:
        leg = self._live(call)
        if call.queue_entry is None:
            raise ProtocolError(ErrorCode.INVALID_STATE, f"call {call.id} is in no queue")
        self._leave_queue(call, "leave")
        await self.media.stop_playing(leg.id)

    async def _queue_timeout(self, entry: QueueEntry) -> None:
        call = entry.call
        if call.queue_entry is entry and not call.ended:
            self._leave_queue(call, "timeout")
            if call.leg is not None and call.leg.live:
                await self.media.stop_playing(call.leg.id)

    def _leave_queue(self, call: AppCall, reason: str) -> None:
        entry = call.queue_entry
        if entry is None:
            return
        queue = entry.queue
        position = queue.position(call)
        wait = entry.wait_secs
        queue.entries.remove(entry)
        queue._waited += (datetime.now(UTC) - entry.enqueued_at).total_seconds()
        queue._left += 1
        queue.updated_at = datetime.now(UTC)
        call.queue_entry = None
        self.controller.cancel_later(entry)
        self._emit(
            "call.dequeued",
            call,
            queue=queue.name,
            queue_position=position,
            reason=reason,
            wait_time_secs=wait,
        )

    # conferences ----------------------------------------------------------------------------
    async def create_conference(
        self,
        call: AppCall,
        name: str,
        *,
        beep: BeepMode = "never",
        client_state: str | None = None,
        duration_minutes: int | None = None,
    ) -> ConferenceRecord:
        """A conference whose first participant is the (answered) call; it belongs to the
        call's application and ends when its last participant leaves."""
        leg = await self.ready_for_conference(call)
        owner = ApplicationDevice(call.application)
        record = ConferenceRecord(
            id="",
            name=name,
            created_at=datetime.now(UTC),
            application=call.application,
            webhook_url=call.webhook_url,
            client_state=client_state,
            creator=call.id,
        )
        # conference.created is published inside create_for_leg: the record is found by the
        # creator's leg until the conference's id is known.
        self._creating[leg.id] = record
        try:
            conf = await self.controller.conferences.create_for_leg(owner, leg, name, beep)
        finally:
            self._creating.pop(leg.id, None)
        record.id = conf.id
        self.conferences.setdefault(conf.id, record)
        if duration_minutes:
            record.expires_at = record.created_at + timedelta(minutes=duration_minutes)
            self.controller.later(
                record, duration_minutes * 60.0, lambda: self._conference_expired(record)
            )
        else:
            record.expires_at = record.created_at + timedelta(hours=4)
        return self.conferences[conf.id]

    async def _conference_expired(self, record: ConferenceRecord) -> None:
        conf = self.controller.conferences.conferences.get(record.id)
        if conf is not None and not conf.ended:
            record.end_reason = "time_exceeded"
            await self.controller.conferences.finish(conf, "time-exceeded")

    async def end_conference(self, conf: Conference) -> None:
        record = self.conferences.get(conf.id)
        if record is not None and record.end_reason is None:
            record.end_reason = "ended_via_api"
        await self.controller.conferences.finish(conf, "ended-via-api")

    def conference_record(self, conference_id: str) -> ConferenceRecord | None:
        return self.conferences.get(conference_id)

    async def ready_for_conference(self, call: AppCall) -> Leg:
        """The call's leg, out of its queue and with the application's audio stopped, to join
        a conference (the conference refuses legs that are not answered or are bridged)."""
        leg = self._bridgeable(call, "join")
        if call.queue_entry is not None:
            self._leave_queue(call, "leave")
        await self._stop_app_audio(leg)
        return leg

    def expect_play(self, conference_id: str, targets: tuple[str, ...]) -> None:
        """A REST play to ``targets`` (leg ids; empty: everyone) is about to start: its
        ``conference.playback.started`` says which participants hear it."""
        record = self.conferences.get(conference_id)
        if record is not None:
            record.pending_plays.append(targets)

    def played(self, conference_id: str, playback_id: str | None) -> None:
        """The REST play returned (or failed, ``None``): its pending entry is used up."""
        record = self.conferences.get(conference_id)
        if record is not None and playback_id is None and record.pending_plays:
            record.pending_plays.pop()

    def _conference_event(self, event: str, data: dict[str, Any]) -> None:
        conference_id = str(data.get("conference_id", ""))
        if event == "conference.created":
            creator = self._creating.get(str(data.get("call_control_id", "")))
            if creator is not None:
                creator.id = conference_id
                self.conferences[conference_id] = creator
            else:  # a /ws conference: recorded for the REST API, no application to tell
                conf = self.controller.conferences.conferences.get(conference_id)
                self.conferences[conference_id] = ConferenceRecord(
                    conference_id,
                    str(data.get("name", "")),
                    datetime.now(UTC),
                    hosted=conf is not None and conf.host_leg is not None,
                )
            while len(self.conferences) > _RECENTLY_ENDED:
                oldest = next(iter(self.conferences))
                if self.conferences[oldest].ended_at is None:
                    break
                self.conferences.popitem(last=False)
        record = self.conferences.get(conference_id)
        if record is None:
            return
        if event == "conference.recording.saved":
            self._spawn(self._save_conference_recording(record, data))
            return
        if event == "conference.ended":
            record.ended_at = datetime.now(UTC)
            self.controller.cancel_later(record)
            if record.end_reason is None:
                record.end_reason = "host_left" if record.hosted else "all_left"
        if record.application is None and record.webhook_url is None:
            return
        payload: dict[str, Any] = {
            "conference_id": conference_id,
            "connection_id": record.application.id if record.application else None,
            "occurred_at": _iso(datetime.now(UTC)),
            "client_state": record.client_state,
        }
        leg_id = data.get("call_control_id")
        if isinstance(leg_id, str):
            payload.update(self._participant_facts(leg_id))
        if event.startswith(("conference.playback.", "conference.speak.")):
            self._conference_playback(record, event, data, payload)
            return
        if event == "conference.ended" and record.end_reason in (
            "all_left",
            "host_left",
            "time_exceeded",
        ):
            payload["reason"] = record.end_reason
        if event in _EVENT_TYPES:
            self._publish_conference(record, _event_type(event), payload)

    def _participant_facts(self, leg_id: str) -> dict[str, Any]:
        call = self.by_leg.get(leg_id) or self._ended.get(leg_id)
        if call is None:
            return {"call_control_id": leg_id, "call_leg_id": leg_id, "call_session_id": leg_id}
        return {
            "call_control_id": call.id,
            "call_leg_id": call.id,
            "call_session_id": call.session_id,
            "client_state": call.client_state,
        }

    def _conference_playback(
        self, record: ConferenceRecord, event: str, data: dict[str, Any], payload: dict[str, Any]
    ) -> None:
        pid = str(data.get("playback_id", ""))
        kind, _, state = event.removeprefix("conference.").partition(".")  # playback/speak
        if state == "started" and pid not in record.targeted:
            record.targeted[pid] = record.pending_plays.pop(0) if record.pending_plays else ()
        targets = record.targeted.get(pid, ())
        if state == "ended":
            record.targeted.pop(pid, None)
            payload["status"] = "completed" if data.get("status") == "completed" else "stopped"
        if not targets:
            self._publish_conference(record, _event_type(f"conference.{kind}.{state}"), payload)
            return
        participant_event = _event_type(f"conference.participant.{kind}.{state}")
        for leg_id in targets:
            one = {**payload, **self._participant_facts(leg_id)}
            self._publish_conference(record, participant_event, one)

    def _publish_conference(
        self, record: ConferenceRecord, event_type: EventType, payload: dict[str, Any]
    ) -> None:
        self._publish(
            AppEvent(
                event_type,
                payload,
                record.application,
                record.webhook_url,
                record.id,
                datetime.now(UTC),
            )
        )

    async def _save_conference_recording(
        self, record: ConferenceRecord, data: dict[str, Any]
    ) -> None:
        rid = str(data["recording_id"])
        path = str(data["path"])
        duration = float(data.get("duration_secs", 0.0))
        fmt: RecordingFormat = "mp3" if path.endswith(".mp3") else "wav"
        ended = datetime.now(UTC)
        started = ended - timedelta(seconds=duration)
        await self.directory.add_recording(
            recording_id=rid,
            path=path,
            format=fmt,
            channels="single",
            duration_millis=round(duration * 1000),
            recording_started_at=started,
            recording_ended_at=ended,
            conference_id=record.id,
            call_control_id=record.creator,
        )
        if record.application is None and record.webhook_url is None:
            return
        urls = self.recording_urls(rid, fmt)
        self._publish_conference(
            record,
            "conference.recording.saved",
            {
                "conference_id": record.id,
                "connection_id": record.application.id if record.application else None,
                "client_state": record.client_state,
                "call_control_id": record.creator,
                "recording_id": rid,
                "channels": "single",
                "format": fmt,
                "recording_started_at": _iso(started),
                "recording_ended_at": _iso(ended),
                "duration_millis": round(duration * 1000),
                "recording_urls": urls,
                "public_recording_urls": urls,
            },
        )

    # domain and media events ----------------------------------------------------------------
    def _on_domain_event(self, event: str, data: dict[str, Any]) -> None:
        if event == "call.hangup":
            self._leg_ended(str(data["call_control_id"]), str(data.get("hangup_cause", "")))
        elif event == "call.dtmf.received":
            self._dtmf(str(data["call_control_id"]), str(data.get("digit", "")))
        elif event == "call.answered":
            self._leg_answered(str(data["call_control_id"]))
        elif event.startswith("conference."):
            self._conference_event(event, data)

    def _leg_ended(self, leg_id: str, cause: str) -> None:
        call = self.by_leg.get(leg_id)
        if call is None or call.ended:
            return
        try:
            reason = EndReason(cause)
        except ValueError:
            reason = EndReason.HANGUP
        leg = self.controller.legs.get(leg_id)
        if call.leg is None or call.leg.id != leg_id:
            # A ringing device of an outgoing call ended by someone else (e.g. shutdown).
            self.by_leg.pop(leg_id, None)
            self.controller.ring_owners.pop(leg_id, None)
            call.ringing = [x for x in call.ringing if x.id != leg_id]
            if not call.ringing and call.leg is None:
                self._finish(call, reason)
            return
        if reason is EndReason.MOVED and leg is not None and leg.peer is not None:
            successor = leg.peer.peer
            if successor is not None and successor is not leg:
                # call.move: another device of the same user took the call over.
                del self.by_leg[leg_id]
                call.leg = successor
                self.by_leg[successor.id] = call
                return
        if leg is not None:
            self._leg_left_bridge(leg, reason)
        self._finish(call, reason)

    def _leg_answered(self, leg_id: str) -> None:
        """A controller answer involving an application call's leg: after a /ws transfer its
        far party changed, so the application hears ``call.bridged``."""
        call = self.by_leg.get(leg_id)
        leg = self.controller.legs.get(leg_id)
        if call is None or leg is None or call.parked or leg.peer is None:
            return
        call.bridge_peer = None
        self._emit(
            "call.bridged", call, state="bridged", peer_call_control_id=self._id_of(leg.peer)
        )

    def _dtmf(self, leg_id: str, digit: str) -> None:
        call = self.by_leg.get(leg_id)
        if call is None or call.ended or call.leg is None or call.leg.id != leg_id:
            return
        self._emit("call.dtmf.received", call, digit=digit)
        if call.gather is not None:
            self._gather_digit(call.gather, digit)

    def _on_media_event(self, event: MediaEvent) -> None:
        if isinstance(event, PlaybackStateChanged):
            playback = self._playbacks.get(event.playback_id)
            if playback is None:
                return
            if event.state == "ended":
                del self._playbacks[event.playback_id]
            if playback.reported:
                return
            if event.state == "ended":
                playback.reported = True
            status = {"completed": "completed", "stopped": "cancelled", "failed": "failed"}.get(
                event.status, ""
            )
            self._playback_event(playback, event.state, status, event.detail)
        elif isinstance(event, RecordingSaved):
            recording = self._recordings.pop(event.recording_id, None)
            if recording is not None:
                self._spawn(self._save_call_recording(recording, event))

    def _playback_event(
        self, playback: _Playback, state: str, status: str, detail: str = ""
    ) -> None:
        if playback.kind == "dtmf":
            return
        extra: dict[str, Any] = {}
        if playback.kind == "playback":
            extra = {"media_url": playback.media_url, "media_name": playback.media_name}
            extra["overlay"] = False
        if state == "ended":
            if playback.kind == "speak":
                status = "call_hangup" if status == "call_hangup" else "completed"
            extra["status"] = status or "completed"
            if detail:
                extra["status_detail"] = detail
        self._emit(_event_type(f"call.{playback.kind}.{state}"), playback.call, **extra)

    # housekeeping ---------------------------------------------------------------------------
    def _spawn(self, coro: Any) -> None:
        async def run() -> None:
            try:
                await coro
            except Exception:
                log.exception("application call task failed")

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def shutdown(self) -> None:
        """End every call that is still ringing (the controller ends the others)."""
        for call in list(self.calls.values()):
            if call.leg is None and not call.ended:
                await self._stop_ringing(call, EndReason.CANCELED)
                self._finish(call, EndReason.CANCELED)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def drain(self) -> None:
        """Wait for the background tasks (recordings being stored) of this moment."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


_DTMF_FREQS: dict[str, tuple[float, float]] = {
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
