"""Legs and calls: the domain model of the control plane (no I/O).

A *leg* is one device's side of a conversation, with its own ``call_id`` and its own media
endpoint at the server. A *call* is a conversation: one origin leg (the caller, or the
transferee after a blind transfer) and the legs ringing for it, of which at most one answers.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Literal

from callbridge.core.devices import Device
from callbridge.errors import ErrorCode, ProtocolError
from callbridge.vocabulary import EndReason, MediaType

__all__ = [
    "Call",
    "Device",
    "EndReason",
    "Leg",
    "LegState",
    "MediaType",
    "Modification",
    "Move",
    "new_id",
]

if TYPE_CHECKING:
    from callbridge.core.conferences import Conference, Invitation
    from callbridge.core.ringing import RingOwner

log = logging.getLogger(__name__)


def new_id() -> str:
    return str(uuid.uuid4())


class LegState(StrEnum):
    """State of one leg.

    ::

        new ──► trying ──► ringing ──► active ◄──► held
         │        │           │          │          │
         └────────┴───────────┴──────────┴──────────┴──► ended(reason)

    Outgoing legs go new → trying → ringing → active; incoming legs go new → ringing.
    """

    NEW = "new"  # created, media not yet negotiated
    TRYING = "trying"  # outgoing: the server is routing the call
    RINGING = "ringing"  # outgoing: the far side rings; incoming: this device rings
    ACTIVE = "active"  # answered, audio flows
    HELD = "held"  # answered, on hold (by either side)
    ENDED = "ended"  # terminal


_TRANSITIONS: dict[LegState, frozenset[LegState]] = {
    LegState.NEW: frozenset({LegState.TRYING, LegState.RINGING, LegState.ENDED}),
    LegState.TRYING: frozenset({LegState.RINGING, LegState.ACTIVE, LegState.ENDED}),
    LegState.RINGING: frozenset({LegState.ACTIVE, LegState.ENDED}),
    LegState.ACTIVE: frozenset({LegState.HELD, LegState.RINGING, LegState.ENDED}),
    LegState.HELD: frozenset({LegState.ACTIVE, LegState.RINGING, LegState.ENDED}),
    LegState.ENDED: frozenset(),
}


@dataclass(eq=False)
class Leg:
    device: Device
    direction: Literal["outgoing", "incoming"]
    id: str = field(default_factory=new_id)
    state: LegState = LegState.NEW
    call: Call | None = None
    peer: Leg | None = None  # bridged partner while answered
    muted: bool = False
    end_reason: EndReason | None = None
    move: Move | None = None  # set on a device ringing to take over a moved call
    media_generation: int = 0  # bumped by each restart_media (a failure of an older one is moot)
    media_type: MediaType = "audio"  # "video" while video flows on this leg (either way)
    conference: Conference | None = None  # the conference (or call group) it is a member of
    invitation: Invitation | None = None  # set on a device ringing for a conference invitation
    ring_owner: RingOwner | None = None  # who rang this device leg (core.ringing)

    def set_state(self, new: LegState) -> None:
        """The one place a leg changes state; illegal moves are refused."""
        if new is self.state:
            return
        if new not in _TRANSITIONS[self.state]:
            raise ProtocolError(
                ErrorCode.INVALID_STATE, f"call {self.id} is {self.state}, cannot become {new}"
            )
        log.debug("leg %s: %s -> %s", self.id, self.state, new)
        self.state = new

    @property
    def ringing_here(self) -> bool:
        """True while this leg is one of the devices ringing for its call."""
        return (
            self.call is not None
            and self is not self.call.origin
            and self.state is LegState.RINGING
        )

    @property
    def live(self) -> bool:
        return self.state is not LegState.ENDED

    @property
    def answered(self) -> bool:
        return self.state in (LegState.ACTIVE, LegState.HELD)


@dataclass(eq=False)
class Call:
    """A conversation being set up or in progress, and its CDR facts."""

    origin: Leg
    destination: str
    caller_id: str
    caller_name: str
    id: str = field(default_factory=new_id)  # the CDR's call_id; a placed call uses its leg id
    callee_name: str = ""
    ringing: list[Leg] = field(default_factory=list)
    answered_leg: Leg | None = None
    held_by: Leg | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    answered_at: datetime | None = None
    ended: bool = False
    # The reason to give the origin if every ringing device rejects.
    reject_reason: EndReason = EndReason.REJECTED
    media_type: MediaType = "audio"  # what the caller asked for (call.create)
    modification: Modification | None = None  # an upgrade/downgrade waiting for the far party


@dataclass(eq=False)
class Modification:
    """An upgrade or downgrade (seed 002) asked by one leg, waiting for the other's answer."""

    requester: Leg
    media_type: MediaType  # the media type asked for
    offer_sdp: str  # the requester's new offer, answered once the far party has decided


@dataclass(eq=False)
class Move:
    """A live call being moved from one device of a user to another (seed 002 ``move``)."""

    leg: Leg  # the leg that moves away; its far party stays connected
    ringing: list[Leg] = field(default_factory=list)  # the user's other devices
    taken: bool = False  # a device answered (claimed before any await)
