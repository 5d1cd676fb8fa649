"""Legs, calls, moves: the domain model of the control plane (no I/O).

A *leg* is one device's side of a conversation, with its own ``call_id`` and its own media
endpoint at the server. A *call* is a conversation: one origin leg (the caller, or the
transferee after a blind transfer) and the device legs rung for it (a
:class:`~callbridge.core.ringgroup.RingGroup`), of which at most one answers. A *move* hands a
live call from one device of a user to another (seed 002 ``move``).

Each stateful object is a :class:`~callbridge.statemachine.StateMachine`: its states are drawn
in the enum's docstring and its ``TRANSITIONS`` table is the only way it changes state.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar, Literal

from callbridge.core.devices import Device
from callbridge.core.events import CallIncoming, LegFacts
from callbridge.statemachine import StateMachine
from callbridge.vocabulary import EndReason, MediaType

__all__ = [
    "Call",
    "CallState",
    "Caller",
    "Leg",
    "LegState",
    "Modification",
    "Move",
    "MoveState",
    "all_live",
    "new_id",
]

if TYPE_CHECKING:
    from callbridge.core.conferences import Conference
    from callbridge.core.ringgroup import RingGroup
    from callbridge.core.ringing import RingOwner

log = logging.getLogger(__name__)


def new_id() -> str:
    return str(uuid.uuid4())


def all_live(*legs: Leg) -> bool:
    """True while none of ``legs`` has ended. A function rather than an inline test so that
    mypy re-checks, after an ``await``, what an earlier check narrowed."""
    return all(leg.live for leg in legs)


class LegState(StrEnum):
    """State of one leg.

    ::

        outgoing:  new ──► trying ──► ringing ──► active ◄──► held
                              └────────────────────────►▲
        incoming:  new ──► ringing ──► active ◄──► held
        transfer:  active / held ──► ringing   (the transferee of a blind transfer rings
                                                 again; its media stays up)
        every state but ended ──► ended(reason)

    ``trying → active``: a destination that answers at once (an application's).
    """

    NEW = "new"  # created, media not yet negotiated
    TRYING = "trying"  # outgoing: the server is routing the call
    RINGING = "ringing"  # outgoing: the far side rings; incoming: this device rings
    ACTIVE = "active"  # answered, audio flows
    HELD = "held"  # answered, on hold (by either side)
    ENDED = "ended"  # terminal


@dataclass(eq=False)
class Leg(StateMachine[LegState]):
    """One device's side of a conversation (the wire's ``call_id``)."""

    TRANSITIONS: ClassVar[dict[LegState, frozenset[LegState]]] = {
        LegState.NEW: frozenset({LegState.TRYING, LegState.RINGING, LegState.ENDED}),
        LegState.TRYING: frozenset({LegState.RINGING, LegState.ACTIVE, LegState.ENDED}),
        LegState.RINGING: frozenset({LegState.ACTIVE, LegState.ENDED}),
        LegState.ACTIVE: frozenset({LegState.HELD, LegState.RINGING, LegState.ENDED}),
        LegState.HELD: frozenset({LegState.ACTIVE, LegState.RINGING, LegState.ENDED}),
        LegState.ENDED: frozenset(),
    }

    device: Device
    direction: Literal["outgoing", "incoming"]
    id: str = field(default_factory=new_id)
    state: LegState = LegState.NEW
    call: Call | None = None
    peer: Leg | None = None  # bridged partner while answered
    muted: bool = False
    end_reason: EndReason | None = None
    media_generation: int = 0  # bumped by each restart_media (a failure of an older one is moot)
    media_type: MediaType = "audio"  # "video" while video flows on this leg (either way)
    conference: Conference | None = None  # the conference (or call group) it is a member of
    ring_owner: RingOwner | None = None  # who rang this device leg (core.ringing)

    @property
    def kind(self) -> str:
        return "leg"

    @property
    def live(self) -> bool:
        return self.state is not LegState.ENDED

    def facts(self) -> LegFacts:
        """What every leg event says about this leg, now."""
        call = self.call
        return LegFacts(
            call_control_id=self.id,
            call_session_id=call.id if call is not None else self.id,
            direction=self.direction,
            user=self.device.user_name,
            from_=call.caller_id if call is not None else self.device.caller_id,
            to=call.destination if call is not None else "",
            state=self.state.value,
        )

    @property
    def answered(self) -> bool:
        return self.state in (LegState.ACTIVE, LegState.HELD)


class CallState(StrEnum):
    """State of one call (a conversation and its CDR).

    ::

        routing ──► ringing ──► answered ──► ended
           │           │            ▲          ▲
           └───────────┼────────────┘          │
           └───────────┴───────────────────────┘

    ``answered`` starts when a device's answer is *claimed* (its ring group's winner), before
    the media plane has accepted it; ``answered_leg`` is set once it is connected. A call that
    ends in between leaves the winner to its answer, which ends it with ``far_reason`` as the
    reply to the device's ``call.answer``.
    """

    ROUTING = "routing"  # placed: the destination is being resolved, its devices offered
    RINGING = "ringing"  # devices ring for it (the caller hears ringback)
    ANSWERED = "answered"  # a device answered
    ENDED = "ended"  # terminal; the CDR is written


@dataclass(eq=False)
class Call(StateMachine[CallState]):
    """A conversation being set up or in progress, and its CDR facts."""

    TRANSITIONS: ClassVar[dict[CallState, frozenset[CallState]]] = {
        CallState.ROUTING: frozenset({CallState.RINGING, CallState.ANSWERED, CallState.ENDED}),
        CallState.RINGING: frozenset({CallState.ANSWERED, CallState.ENDED}),
        CallState.ANSWERED: frozenset({CallState.ENDED}),
        CallState.ENDED: frozenset(),
    }

    origin: Leg
    destination: str
    caller_id: str
    caller_name: str
    id: str = field(default_factory=new_id)  # the CDR's call_id; a placed call uses its leg id
    callee_name: str = ""
    answered_leg: Leg | None = None  # the far leg, once a device's answer is connected
    held_by: Leg | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    answered_at: datetime | None = None
    media_type: MediaType = "audio"  # what the caller asked for (call.create)
    modification: Modification | None = None  # an upgrade/downgrade waiting for the far party
    ring: RingGroup | None = None  # the devices rung for it (core.routing)
    far_reason: EndReason | None = None  # set when it ends: what its far legs end with
    state: CallState = CallState.ROUTING

    def __post_init__(self) -> None:
        if self.answered_leg is not None:  # built answered (attended transfer, applications)
            self.state = CallState.ANSWERED

    @property
    def kind(self) -> str:
        return "call"

    @property
    def ended(self) -> bool:
        return self.state is CallState.ENDED


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a rung device is told is calling: the :class:`~callbridge.core.ringing.Alert` of
    a call (``call.incoming``)."""

    from_: str
    from_name: str
    to: str
    media_type: MediaType
    moved_from: str | None = None  # a move: the leg the call moves away from

    @property
    def video(self) -> bool:
        return self.media_type == "video"

    def event(self, call_id: str, offer: str) -> CallIncoming:
        return CallIncoming(
            call_id=call_id,
            from_=self.from_,
            from_name=self.from_name,
            to=self.to,
            sdp=offer,
            media_type=self.media_type,
            moved_from=self.moved_from,
        )


@dataclass(eq=False)
class Modification:
    """An upgrade or downgrade (seed 002) asked by one leg, waiting for the other's answer.

    Not a state machine: it exists exactly while it waits (``Call.modification``)."""

    requester: Leg
    media_type: MediaType  # the media type asked for
    offer_sdp: str  # the requester's new offer, answered once the far party has decided


class MoveState(StrEnum):
    """State of one move (seed 002 ``move``).

    ::

        ringing ──► taken ──► moved
           │          │
           └──────────┴──► failed   (declined, no answer, the answer failed, the call ended)
    """

    RINGING = "ringing"  # the user's other devices ring
    TAKEN = "taken"  # one answered (claimed before any await); the bridge is being moved
    MOVED = "moved"  # the new device has the call; the old leg ended with ``moved``
    FAILED = "failed"  # nobody took it; the call stays where it was


@dataclass(eq=False)
class Move(StateMachine[MoveState]):
    """A live call being moved from one device of a user to another (seed 002 ``move``)."""

    TRANSITIONS: ClassVar[dict[MoveState, frozenset[MoveState]]] = {
        MoveState.RINGING: frozenset({MoveState.TAKEN, MoveState.FAILED}),
        MoveState.TAKEN: frozenset({MoveState.MOVED, MoveState.FAILED}),
        MoveState.MOVED: frozenset(),
        MoveState.FAILED: frozenset(),
    }

    leg: Leg  # the leg that moves away; its far party stays connected
    ring: RingGroup | None = None  # the user's other devices, ringing
    id: str = field(default_factory=new_id)
    state: MoveState = MoveState.RINGING

    @property
    def kind(self) -> str:
        return "move"

    @property
    def taken(self) -> bool:
        """A device answered (or the move is over)."""
        return self.state is not MoveState.RINGING
