"""Moving a live call to another device of the same user (seed 002 ``move``; docs/protocol.md,
``call.move``).

Every other device of the user rings (one :class:`~callbridge.core.ringgroup.RingGroup`,
``call.incoming {moved_from}``): its other ``/ws`` sessions and its registered SIP phones (an
INVITE from the far party), as a PBX's "move the call to my desk phone" does; the first to
answer takes over: the far party's endpoint is untouched, only the server's bridge moves to the
new leg. The old leg gets ``call.moved`` and ends ``moved``. If nobody takes it, the old leg
gets ``call.move-failed {reason}`` and the call goes on there. If the call ends while its move
rings, the ringing devices get ``call.ended {reason: "canceled"}``.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from callbridge.core.call_events import CallMoved, CallMoveFailed, CallMoving
from callbridge.core.calls import Caller, Leg, LegState, Move, MoveState, all_live
from callbridge.core.devices import Device
from callbridge.core.events import CallAnswered
from callbridge.errors import ErrorCode, ProtocolError
from callbridge.vocabulary import EndReason

if TYPE_CHECKING:
    from callbridge.core.controller import CallController

__all__ = ["Moves"]


class Moves:
    """The moves under way (one per controller), by the id of the leg that moves away."""

    def __init__(self, calls: CallController) -> None:
        self.calls = calls
        self.active: dict[str, Move] = {}

    async def move(self, device: Device, call_id: str, req_id: str | None) -> None:
        """Ring the user's other devices; the first to answer takes over the live call."""
        c = self.calls
        self._movable(device, call_id)
        others = await c.ringable_devices(device.user_name, but=device)  # SIP: the store
        leg = self._movable(device, call_id)  # again: the call may have changed meanwhile
        if not others:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"{device.user_name} has no other device logged in (nor a registered SIP "
                f"phone) to move call {call_id} to",
            )
        far, call = leg.peer, leg.call
        assert far is not None and call is not None
        move = Move(leg)
        move.state_observer = c.observer
        group = c.ring_group(
            "move ring", partial(self._take_over, move), partial(self._nobody, move)
        )
        move.ring = group
        self.active[leg.id] = move  # claimed before any await: a second move is refused
        info = await c.endpoint_info(far)
        # A moved call carries audio only (video is not moved; docs/protocol.md).
        caller = Caller(
            far.device.caller_id, far.device.display_name, call.destination, "audio", leg.id
        )
        await c.ring_devices(group, others, caller, info.codec if info else None)
        if not leg.live:
            raise c.too_late(leg)  # the call ended meanwhile: leg_ended canceled the move
        device.deliver(CallMoving(req_id=req_id, call_id=leg.id))
        await group.start(c.ring_timeout)

    def _movable(self, device: Device, call_id: str) -> Leg:
        """The device's leg ``call_id`` if it may move now: bridged, active, no move under way."""
        leg = self.calls.bridged(device, call_id, "move")
        if leg.state is not LegState.ACTIVE:
            raise ProtocolError(
                ErrorCode.INVALID_STATE, f"call {call_id} is on hold: resume it before moving it"
            )
        if leg.id in self.active:
            raise ProtocolError(ErrorCode.INVALID_STATE, f"call {call_id} is already being moved")
        return leg

    async def leg_ended(self, leg: Leg) -> None:
        """``leg`` ended (any reason): a move of it stops, and its ringing devices get
        ``canceled``. A device whose answer is under way is ended by its answer (its reply)."""
        move = self.active.pop(leg.id, None)
        if move is None or move.ring is None:
            return
        move.transition(MoveState.FAILED, cause="the call ended")
        await move.ring.cancel(EndReason.CANCELED)

    async def _take_over(self, move: Move, leg: Leg, sdp: str, req_id: str | None) -> None:
        """The ring group's winner: swap it in for the old leg."""
        c = self.calls
        old = move.leg
        if move.state is MoveState.RINGING:
            move.transition(MoveState.TAKEN, cause=leg.id)
            if not await c.accept_answer(leg, sdp, req_id):
                await self._nobody(move, EndReason.FAILED)
                return
        far, call = old.peer, old.call
        # Swap the leg in: the far party's endpoint is untouched, only the bridge moves.
        swapped = (
            far is not None
            and all_live(leg, old, far)
            and await c.on_live(c.media.bridge(far.id, leg.id), leg, old, far)
        )
        if not swapped or far is None or call is None:
            # The call ended meanwhile: too late to take it over (the answer's reply).
            await c.end_leg(leg, EndReason.CANCELED, req_id)
            return
        leg.peer, far.peer = far, leg
        leg.call = call
        if call.origin is old:
            call.origin = leg
        else:
            call.answered_leg = leg
        leg.transition(LegState.ACTIVE, cause="move")
        move.transition(MoveState.MOVED)
        del self.active[old.id]
        old.device.deliver(CallMoved(call_id=old.id, to_device=leg.device.id))
        await c.end_leg(old, EndReason.MOVED)
        leg.device.deliver(CallAnswered(req_id=req_id, call_id=leg.id))

    async def _nobody(self, move: Move, reason: EndReason) -> None:
        """Nobody took the call: it stays where it is (``call.move-failed``)."""
        if move.state is MoveState.MOVED or move.state is MoveState.FAILED:
            return
        move.transition(MoveState.FAILED, cause=str(reason))
        old = move.leg
        if self.active.get(old.id) is move:
            del self.active[old.id]
        if old.live:
            # The documented reasons: a busy refusal is a refusal here.
            why = EndReason.REJECTED if reason is EndReason.BUSY else reason
            old.device.deliver(CallMoveFailed(call_id=old.id, reason=why))
