"""One ring group for everything that rings devices: several legs at once, first answer wins.

Whoever rings devices (a call to a user: ring-all; a move of a user's call to their other
devices; a conference invitation; an application's dial) creates one :class:`RingGroup`,
creates and offers each device leg, and hands it to :meth:`RingGroup.add`. The group becomes
each leg's ``ring_owner`` (:class:`~callbridge.core.ringing.RingOwner`), so the controller
passes it every answer, refusal and vanished device without knowing what kind of ringing it
is. There is one path for each outcome:

===========  ====================================================================
answer       the first answer claims the group (before any await, so a racing answer
             gets ``invalid_state``), the other legs end ``answered-elsewhere``, then
             ``on_answer(leg, sdp, req_id)`` connects the winner
decline      the leg ends with the reason given (``rejected``, ``busy``, ``disconnected``,
             ``hangup`` on logout), or with the group's ``refusal`` when it has one; when
             it was the last one and the group was started, ``on_exhausted(reason)`` (the
             last reason; :attr:`busy` says if any said busy)
timeout      :meth:`start` arms it on the scheduler: every leg still ringing ends
             ``no-answer``, then ``on_exhausted(NO_ANSWER)``
cancel       the owner gives up (the caller hung up, the call moved on): every leg still
             ringing ends with the reason given; no callback
===========  ====================================================================

Legs are added while the group is ``new`` (each device's offer takes an await); a device may
already answer or decline then. :meth:`start` arms the timeout, or ends the group at once when
nobody rings any more. ::

    group = controller.ring_group("move ring", on_answer=take_over, on_exhausted=give_up)
    owner.ring = group  # before any await: whoever ends the owner can cancel it
    # Each device: a leg created, offered, registered, RINGING, alerted (call.incoming),
    # added; it stops early when the group closes (answered or canceled meanwhile).
    await controller.ring_devices(group, devices, caller, prefer_codec)
    await group.start(ring_timeout)  # False: nobody rang; on_exhausted has run

(``controller.ring_group`` is ``RingGroup(controller, controller.scheduler, ...)`` with its
state changes published on the bus.) The group itself never touches the media plane or the
wire: legs end through ``ender.end_leg``, which tells the device ``call.ended``.

A conference invitation's group has a ``refusal``: whatever a device says (``busy``, a
hangup, going away), its leg ends ``rejected``, as docs/protocol.md promises for invitations.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import ClassVar, Protocol

from callbridge.core.calls import Leg, new_id
from callbridge.core.scheduler import Scheduler
from callbridge.errors import ErrorCode, ProtocolError
from callbridge.statemachine import StateMachine
from callbridge.vocabulary import EndReason

__all__ = ["AnswerHook", "ExhaustedHook", "LegEnder", "RingGroup", "RingState"]

log = logging.getLogger(__name__)

AnswerHook = Callable[[Leg, str, str | None], Awaitable[None]]
"""``on_answer(leg, sdp, req_id)``: connect the winner (the group is claimed, the rest ended)."""
ExhaustedHook = Callable[[EndReason], Awaitable[None]]
"""``on_exhausted(reason)``: nobody will answer (the last decline's reason, or no-answer)."""


class LegEnder(Protocol):
    """What ends a leg (the call controller): state, event to its device, media closed."""

    async def end_leg(self, leg: Leg, reason: EndReason, req_id: str | None = None) -> None: ...


class RingState(StrEnum):
    """State of a ring group.

    ::

        new ──start──► ringing ──first answer──► answered
         │  │             ├──all declined / timeout──► exhausted
         │  │             └──cancel───────────────────► canceled
         │  └──start with nobody left──► exhausted
         └──answer while legs are still being added──► answered;  cancel ──► canceled
    """

    NEW = "new"  # legs are being added
    RINGING = "ringing"  # started: the timeout is armed
    ANSWERED = "answered"  # a leg answered (claimed)
    EXHAUSTED = "exhausted"  # every leg declined, or nobody answered in time
    CANCELED = "canceled"  # the owner stopped the ringing


_OPEN = frozenset({RingState.NEW, RingState.RINGING})


class RingGroup(StateMachine[RingState]):
    """Device legs ringing for one thing at once; the first answer wins."""

    TRANSITIONS: ClassVar[dict[RingState, frozenset[RingState]]] = {
        RingState.NEW: frozenset(
            {RingState.RINGING, RingState.ANSWERED, RingState.EXHAUSTED, RingState.CANCELED}
        ),
        RingState.RINGING: frozenset({RingState.ANSWERED, RingState.EXHAUSTED, RingState.CANCELED}),
        RingState.ANSWERED: frozenset(),
        RingState.EXHAUSTED: frozenset(),
        RingState.CANCELED: frozenset(),
    }

    def __init__(
        self,
        ender: LegEnder,
        scheduler: Scheduler,
        *,
        on_answer: AnswerHook,
        on_exhausted: ExhaustedHook,
        what: str = "ring group",
        refusal: EndReason | None = None,
    ) -> None:
        self.id = new_id()
        self.state = RingState.NEW
        self.legs: list[Leg] = []  # still ringing
        self.winner: Leg | None = None
        self.busy = False  # a device declined with ``busy``
        self._last_decline: EndReason | None = None
        self._ender = ender
        self._scheduler = scheduler
        self._on_answer = on_answer
        self._on_exhausted = on_exhausted
        self._what = what
        self._refusal = refusal  # every decline ends with this reason, when set

    @property
    def kind(self) -> str:
        return self._what

    @property
    def open(self) -> bool:
        """Nobody answered and nobody gave up yet: more devices may be added."""
        return self.state in _OPEN

    def add(self, leg: Leg) -> None:
        """Ring ``leg`` as part of the group (its device was told ``call.incoming``)."""
        if not self.open:
            raise RuntimeError(f"{self._what} {self.id} is {self.state}: cannot add {leg.id}")
        leg.ring_owner = self
        self.legs.append(leg)

    async def start(self, ring_timeout: float) -> bool:
        """Every device has been rung: arm the timeout and return True. When nobody rings any
        more (each declined while others were being added, or none could be offered) the
        group is exhausted now: ``on_exhausted`` runs (``FAILED`` if nobody was ever rung) and
        this returns False. Answered or canceled meanwhile: True, nothing to do."""
        if self.state is not RingState.NEW:
            return True
        if self.legs:
            self.transition(RingState.RINGING)
            self._scheduler.later(ring_timeout, self, self._timeout, f"{self._what} timeout")
            return True
        reason = self._last_decline or EndReason.FAILED
        self.transition(RingState.EXHAUSTED, cause=f"nobody rings: {reason}")
        await self._on_exhausted(reason)
        return False

    # RingOwner --------------------------------------------------------------------------------
    async def answer(self, leg: Leg, sdp: str, req_id: str | None) -> None:
        if not self.open or leg not in self.legs:
            why = "was answered elsewhere" if self.winner else "is no longer ringing"
            raise ProtocolError(ErrorCode.INVALID_STATE, f"call {leg.id} {why}")
        # Claimed before the first await: a racing answer or decline sees it taken.
        self.winner = leg
        self.transition(RingState.ANSWERED, cause=leg.id)
        self._scheduler.cancel(self)
        leg.ring_owner = None
        others = [x for x in self.legs if x is not leg]
        self.legs = []
        for other in others:
            other.ring_owner = None
            await self._ender.end_leg(other, EndReason.ANSWERED_ELSEWHERE)
        await self._on_answer(leg, sdp, req_id)

    async def decline(self, leg: Leg, reason: EndReason, req_id: str | None) -> None:
        if leg not in self.legs:
            raise ProtocolError(ErrorCode.INVALID_STATE, f"call {leg.id} is no longer ringing")
        self.legs.remove(leg)
        leg.ring_owner = None
        reason = self._refusal or reason
        self.busy = self.busy or reason is EndReason.BUSY
        self._last_decline = reason
        await self._ender.end_leg(leg, reason, req_id)
        if not self.legs and self.state is RingState.RINGING:
            self.transition(RingState.EXHAUSTED, cause=f"last device: {reason}")
            self._scheduler.cancel(self)
            await self._on_exhausted(reason)

    # the owner's side -------------------------------------------------------------------------
    async def cancel(self, reason: EndReason) -> None:
        """Stop ringing: every leg still ringing ends with ``reason`` (no callback)."""
        if self.open:
            self.transition(RingState.CANCELED, cause=str(reason))
            self._scheduler.cancel(self)
        legs, self.legs = self.legs, []
        for leg in legs:
            leg.ring_owner = None
            await self._ender.end_leg(leg, reason)

    async def _timeout(self) -> None:
        if self.state is not RingState.RINGING:
            return
        self.transition(RingState.EXHAUSTED, cause="timeout")
        legs, self.legs = self.legs, []
        for leg in legs:
            leg.ring_owner = None
            await self._ender.end_leg(leg, EndReason.NO_ANSWER)
        await self._on_exhausted(EndReason.NO_ANSWER)
