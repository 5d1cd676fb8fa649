"""The call controller's own facts: device events that only calls tell (transfer, move,
audio <-> video modification, the recording notice) and the bus event every state machine's
change becomes.

The facts every part of the core tells about a leg (``CallAnswered``, ``CallEnded`` …) are in
:mod:`callbridge.core.events`; the ``/ws`` encoders of both are in
:mod:`callbridge.signalling.wire_calls` (docs/protocol.md, "In-call control" and "Audio and
video").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from callbridge.core.events import DeviceEvent, Event, EventBus
from callbridge.statemachine import StateChanged, StateObserver
from callbridge.vocabulary import EndReason, MediaType

__all__ = [
    "CallMediaChanged",
    "CallMediaModification",
    "CallModificationInProgress",
    "CallMoveFailed",
    "CallMoved",
    "CallMoving",
    "CallRecording",
    "CallTransferred",
    "Operation",
    "StateChangedEvent",
    "state_publisher",
]

Operation = Literal["upgrade", "downgrade"]


# Device events ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class CallTransferred(DeviceEvent):
    """An attended transfer connected the device's leg to a new far party."""

    call_id: str
    peer: str  # the new far party's caller id
    peer_name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallModificationInProgress(DeviceEvent):
    """The device's upgrade/downgrade request (or its answer to one) is being carried out."""

    call_id: str
    media_type: MediaType  # the media type asked for
    operation: Operation


@dataclass(frozen=True, slots=True, kw_only=True)
class CallMediaModification(DeviceEvent):
    """The far party asks to change the media: ``sdp`` is the server's new offer to answer."""

    call_id: str
    media_type: MediaType  # the leg's current media type
    new_media_type: MediaType
    operation: Operation
    sdp: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallMediaChanged(DeviceEvent):
    """A modification is done: the leg now carries ``new`` (``video_send``: the device's video
    reaches the far party; ``video_receive``: the far party's reaches the device)."""

    call_id: str
    old: MediaType
    new: MediaType
    operation: Operation
    accepted: bool
    video_send: bool
    video_receive: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class CallMoving(DeviceEvent):
    """The user's other devices ring to take over the device's call."""

    call_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallMoved(DeviceEvent):
    """Another device (``to_device``) took the call over; this leg ends ``moved`` next."""

    call_id: str
    to_device: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallMoveFailed(DeviceEvent):
    """Nobody took the call over; it stays on this device."""

    call_id: str
    reason: EndReason


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRecording(DeviceEvent):
    """The device's call is being recorded (``recording``), or no longer is: a 1:1 call's
    parties are both told, unless their account turned the notice off (core.tenancy)."""

    call_id: str
    recording: bool


# Bus events ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class StateChangedEvent(Event):
    """A state machine of the core changed state (a leg, a call, a move, a ring group …)."""

    kind: str  # what it is ("leg", "call", "move", "ring group", …)
    id: str
    old: str
    new: str
    cause: str = ""


def state_publisher(bus: EventBus) -> StateObserver:
    """A ``state_observer`` that publishes each change on ``bus``."""

    def publish(change: StateChanged[Any]) -> None:
        subject = change.subject
        bus.publish(
            StateChangedEvent(
                kind=str(getattr(subject, "kind", type(subject).__name__)),
                id=str(getattr(subject, "id", "?")),
                old=str(change.old.value),
                new=str(change.new.value),
                cause=change.cause,
            )
        )

    return publish
