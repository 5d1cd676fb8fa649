"""Domain events: what the core says happened, as frozen dataclasses on one typed bus.

Two families, one base:

- :class:`DeviceEvent`: a fact addressed to one device (``device.deliver(event)``): the call
  it rings is answered, its call is held by the far party, its command failed. The device's
  adapter turns it into its own wire format: a ``/ws`` message
  (:mod:`callbridge.signalling.wire`), a SIP request or response, or nothing at all.
- Bus events (:class:`Event` subclasses published on :class:`EventBus`): facts for
  listeners that watch everything (the application layer, the webhook adapter, logs,
  metrics, tests).

Events that answer a device's command carry that command's ``req_id``: an opaque correlation
id that the adapter took from its wire request and gets back on the event that answers it.
The core never reads it; an adapter without one (REST, SIP) leaves it ``None``.

Events are facts: published once, never mutated, and listeners must not raise (a failing
listener is logged and the others still run). Handlers are synchronous; a listener that
needs I/O queues it (the webhook outbox, a session's send queue).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from callbridge.errors import ProtocolError, WarningCode
from callbridge.media.interface import Candidate
from callbridge.vocabulary import EndReason, HeldBy, MediaType

__all__ = [
    "CallAnswered",
    "CallDtmf",
    "CallEnded",
    "CallHeld",
    "CallIncoming",
    "CallMuteChanged",
    "CallResumed",
    "CallRinging",
    "CallTrying",
    "CommandFailed",
    "ConferenceCreated",
    "ConferenceEnded",
    "ConferenceEvent",
    "ConferenceFloorChanged",
    "ConferencePlaybackChanged",
    "ConferenceRecordingFailed",
    "ConferenceRecordingSaved",
    "DeviceEvent",
    "Event",
    "EventBus",
    "IceCandidateOffered",
    "IceGatheringDone",
    "LegAnswered",
    "LegDtmf",
    "LegEnded",
    "LegEvent",
    "LegFacts",
    "LegInitiated",
    "ParticipantJoined",
    "ParticipantLeft",
    "PeerNotice",
    "SdpAnswer",
    "Warned",
]

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every domain event: ``at`` is when it happened (UTC)."""

    at: datetime = field(default_factory=_now)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceEvent(Event):
    """A fact addressed to one device; ``req_id`` correlates it with that device's command."""

    req_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandFailed(DeviceEvent):
    """A command of the device (or a step it started) failed with ``error``.

    ``call_id``/``conference_id`` name what it was about, when it was about one."""

    error: ProtocolError
    call_id: str | None = None
    conference_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Warned(DeviceEvent):
    """A command changed nothing (muting a muted call): a warning instead of the usual event."""

    code: WarningCode
    call_id: str | None = None


# Device events: calls ------------------------------------------------------------------------
# The facts about one of the device's legs that every part of the core tells (calls, moves,
# conferences, application calls). Topic-specific ones live next to their topic.
@dataclass(frozen=True, slots=True, kw_only=True)
class CallTrying(DeviceEvent):
    """The device's outgoing call is being routed."""

    call_id: str
    media_type: MediaType


@dataclass(frozen=True, slots=True, kw_only=True)
class SdpAnswer(DeviceEvent):
    """The server's answer to the device's offer for ``call_id``."""

    call_id: str
    sdp: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRinging(DeviceEvent):
    """The far side of the device's outgoing call rings (``ringback``: the server plays it)."""

    call_id: str
    ringback: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class CallIncoming(DeviceEvent):
    """The device rings for a new leg; ``sdp`` is the server's offer."""

    call_id: str
    from_: str
    from_name: str
    to: str
    sdp: str
    media_type: MediaType
    moved_from: str | None = None  # set when the user's call moves here (seed 002 move)


@dataclass(frozen=True, slots=True, kw_only=True)
class IceCandidateOffered(DeviceEvent):
    """One of the server's ICE candidates for ``call_id``."""

    call_id: str
    candidate: Candidate


@dataclass(frozen=True, slots=True, kw_only=True)
class IceGatheringDone(DeviceEvent):
    """The server has no more ICE candidates for ``call_id``."""

    call_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallAnswered(DeviceEvent):
    """The leg is answered; ``media_type`` is what it carries (``None``: not restated)."""

    call_id: str
    media_type: MediaType | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEnded(DeviceEvent):
    call_id: str
    reason: EndReason


@dataclass(frozen=True, slots=True, kw_only=True)
class CallHeld(DeviceEvent):
    call_id: str
    by: HeldBy


@dataclass(frozen=True, slots=True, kw_only=True)
class CallResumed(DeviceEvent):
    call_id: str
    by: HeldBy


@dataclass(frozen=True, slots=True, kw_only=True)
class CallMuteChanged(DeviceEvent):
    """The server now drops (``muted``) or forwards the leg's audio."""

    call_id: str
    muted: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class CallDtmf(DeviceEvent):
    """The far party sent a DTMF ``digit`` on ``call_id``."""

    call_id: str
    digit: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerNotice(DeviceEvent):
    """News about the far party of ``call_id`` (``peer-connection-lost``/``-restored``)."""

    call_id: str
    code: str
    message: str


E = TypeVar("E", bound=Event)
Handler = Callable[[Any], None]


class EventBus:
    """Typed publish/subscribe: a handler subscribed to a class gets its subclasses too."""

    def __init__(self) -> None:
        self._handlers: dict[type[Event], list[Handler]] = {}
        self._routes: dict[type[Event], list[Handler]] = {}  # per concrete class, cached

    def subscribe(self, kind: type[E], handler: Callable[[E], None]) -> Callable[[], None]:
        """Call ``handler`` with every published ``kind`` (and subclass); returns an
        unsubscribe function."""
        self._handlers.setdefault(kind, []).append(handler)
        self._routes.clear()

        def unsubscribe() -> None:
            handlers = self._handlers.get(kind, [])
            if handler in handlers:
                handlers.remove(handler)
                self._routes.clear()

        return unsubscribe

    def publish(self, event: Event) -> None:
        for handler in self._route(type(event)):
            try:
                handler(event)
            except Exception:
                log.exception("event handler failed for %s", type(event).__name__)

    def _route(self, kind: type[Event]) -> list[Handler]:
        route = self._routes.get(kind)
        if route is None:
            route = [h for base in kind.__mro__ for h in self._handlers.get(base, [])]
            self._routes[kind] = route
        return route


# Bus events: legs ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LegFacts:
    """What every call event says about its leg, as it was when the event happened."""

    call_control_id: str  # the leg's id
    call_session_id: str  # its call's id (the leg's own id when it has no call)
    direction: str  # "outgoing" (the device placed it) or "incoming" (the device was rung)
    user: str  # the device's user name
    from_: str  # the call's caller id
    to: str  # the call's destination ("" when it has none)
    state: str  # the leg's state value


@dataclass(frozen=True, slots=True, kw_only=True)
class LegEvent(Event):
    """Base of the bus events about one leg."""

    leg: LegFacts


@dataclass(frozen=True, slots=True, kw_only=True)
class LegInitiated(LegEvent):
    """A leg exists: a device placed a call, or a device is being rung."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LegAnswered(LegEvent):
    """The leg is answered and bridged."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LegEnded(LegEvent):
    """The leg ended with ``reason``."""

    reason: EndReason


@dataclass(frozen=True, slots=True, kw_only=True)
class LegDtmf(LegEvent):
    """The leg's device sent a DTMF ``digit`` (RFC 4733 or ``call.dtmf``)."""

    digit: str


# Bus events: conferences ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class ConferenceEvent(Event):
    """Base of the bus events about one conference (or call group)."""

    conference_id: str
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConferenceCreated(ConferenceEvent):
    call_control_id: str  # the leg it was created from
    hosted: bool  # a seed-002 conference with a host (it ends when the host leaves)


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantJoined(ConferenceEvent):
    call_control_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantLeft(ConferenceEvent):
    call_control_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConferenceEnded(ConferenceEvent):
    # What its members were told: "ended-by-host", "host-left", "ended-via-api",
    # "time-exceeded", "last-left", "dissolved" (a call group of one call), "shutdown".
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConferenceFloorChanged(ConferenceEvent):
    call_control_id: str | None  # the new talker's leg; None: nobody talks


@dataclass(frozen=True, slots=True, kw_only=True)
class ConferencePlaybackChanged(ConferenceEvent):
    """A play (``kind="playback"``) or speak (``"speak"``) started or ended, to the room or to
    some participants (``targets``: their leg ids; empty: everyone)."""

    playback_id: str
    kind: Literal["playback", "speak"]
    state: Literal["started", "ended"]
    status: str  # the media plane's PlaybackStatus
    targets: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ConferenceRecordingSaved(ConferenceEvent):
    recording_id: str
    path: str
    duration_secs: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ConferenceRecordingFailed(ConferenceEvent):
    """The conference's recording could not be written or finished: nothing was saved."""

    recording_id: str
    detail: str
