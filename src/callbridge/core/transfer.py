"""Blind and attended transfer (seed 001 ``transfer`` / ``attendedTransfer`` +
``completeTransfer``; docs/protocol.md, "In-call control").

Media is anchored at the server, so neither kind renegotiates anything: the far parties keep
their endpoints and only the server's bridges change.

- Blind: the transferor's leg ends ``transferred``; its far party (the transferee) becomes the
  origin of a new call to the destination and hears ringing progress, as a caller would.
- Attended: a device with two answered calls connects their far parties to each other; both of
  its legs end ``transferred``. The consultation call itself is an ordinary call the client
  placed (the SDK holds the first call and resumes it if the consultation fails).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from callbridge.core.call_events import CallTransferred
from callbridge.core.calls import Call, CallState, Leg, LegState, all_live
from callbridge.core.devices import Device
from callbridge.core.events import CallAnswered, CallResumed, LegAnswered, LegInitiated, SdpAnswer
from callbridge.core.tenancy import account_of
from callbridge.errors import ErrorCode, ProtocolError
from callbridge.vocabulary import EndReason

if TYPE_CHECKING:
    from callbridge.core.controller import CallController

__all__ = ["Transfers"]


class Transfers:
    """Blind and attended transfer (one per controller)."""

    def __init__(self, calls: CallController) -> None:
        self.calls = calls

    async def blind(
        self, device: Device, call_id: str, destination: str, req_id: str | None
    ) -> None:
        """Connect the far party (transferee) to ``destination``; this leg ends."""
        c = self.calls
        leg = c.bridged(device, call_id, "transfer")
        old, transferee = leg.call, leg.peer
        assert old is not None and transferee is not None
        if await c.directory.find_user(destination, account_of(device)) is None:
            raise ProtocolError(
                ErrorCode.DESTINATION_NOT_FOUND,
                f"no user has the extension, number or name {destination!r}; call kept",
            )
        if not all_live(leg, transferee) or leg.peer is not transferee:
            raise c.too_late(leg)
        # The transferor's side ends; the transferee's leg and media stay up (no renegotiation).
        self._close(old)
        await c.on_live(c.media.unbridge(transferee.id), transferee)
        await c.on_live(c.media.stop_playing(transferee.id), transferee)
        await c.end_leg(leg, EndReason.TRANSFERRED, req_id)
        if not all_live(transferee):
            return
        transferee.peer = None
        transferee.transition(LegState.RINGING, cause="blind transfer")
        keep = transferee is old.origin
        new = Call(
            origin=transferee,
            destination=destination,
            caller_id=old.caller_id if keep else transferee.device.caller_id,
            caller_name=old.caller_name if keep else transferee.device.display_name,
        )
        new.state_observer = c.observer
        transferee.call = new
        await c.routing.route(new, destination)

    async def complete(
        self, device: Device, call_id: str, target_call_id: str, req_id: str | None
    ) -> None:
        """Attended transfer: connect the far parties of two answered calls of this device.

        Both of this device's legs end with ``transferred``; the two far parties stay on their
        media endpoints (no renegotiation), are bridged to each other, and each gets
        ``call.transferred`` naming its new peer (after ``call.resumed`` if it was on hold).
        """
        c = self.calls
        if call_id == target_call_id:
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE, "call_id and target_call_id must be two different calls"
            )
        a = c.bridged(device, call_id, "transfer")
        b = c.bridged(device, target_call_id, "transfer")
        await self.connect(a, b, req_id)

    async def connect(self, a: Leg, b: Leg, req_id: str | None) -> None:
        """The attended transfer of two answered, bridged legs of one user: their far parties
        are connected to each other and both legs end ``transferred``. A ``/ws`` session holds
        both of its calls (:meth:`complete`); a SIP phone's two calls are two dialogs, two core
        devices of the same user (``sip.call_dialog``: REFER with Replaces, RFC 3891)."""
        c = self.calls
        if a is b or a.peer is b:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"calls {a.id} and {b.id} are one conversation: nothing to connect",
            )
        pa, pb = a.peer, b.peer
        assert pa is not None and pb is not None and a.call is not None and b.call is not None
        held = [p for p, leg in ((pa, a), (pb, b)) if leg.call and leg.call.held_by is not None]
        for old in (a.call, b.call):
            self._close(old)
        for p in (pa, pb):
            await c.on_live(c.media.stop_playing(p.id), p)
        await c.end_leg(a, EndReason.TRANSFERRED, req_id)
        await c.end_leg(b, EndReason.TRANSFERRED)
        if not (all_live(pa, pb) and await c.on_live(c.media.bridge(pa.id, pb.id), pa, pb)):
            # A far party hung up meanwhile: the other has nobody left to talk to.
            for p in (pa, pb):
                await c.end_leg(p, EndReason.HANGUP)
            return
        pa.peer, pb.peer = pb, pa
        new = Call(
            origin=pa,
            destination=pb.device.caller_id,
            caller_id=pa.device.caller_id,
            caller_name=pa.device.display_name,
            callee_name=pb.device.user_name,
            answered_leg=pb,
            answered_at=datetime.now(UTC),
        )
        new.state_observer = c.observer
        for p, other in ((pa, pb), (pb, pa)):
            p.call = new
            p.transition(LegState.ACTIVE, cause="attended transfer")
            if p in held:
                p.device.deliver(CallResumed(call_id=p.id, by="remote"))
            p.device.deliver(
                CallTransferred(
                    call_id=p.id, peer=other.device.caller_id, peer_name=other.device.display_name
                )
            )

    async def replace(self, old: Leg, device: Device, sdp: str) -> Leg:
        """A new plain-RTP device takes over ``old``'s side of its 1:1 call (RFC 3891: an
        INVITE with Replaces naming ``old``'s SIP dialog; ``sip.replaces``).

        As a move's take-over (core.moves) does: the far party's endpoint is untouched, only
        the server's bridge moves to the new leg; ``old`` ends ``moved``. The device gets
        ``SdpAnswer`` then ``CallAnswered`` for the new leg. MediaError (an unusable offer) and
        ProtocolError (the call changed or ended meanwhile) leave the call as it was.
        """
        c = self.calls
        far, call = old.peer, old.call
        if not old.answered or far is None or call is None or old.conference is not None:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"call {old.id} is not an answered 1:1 call: it cannot be taken over",
            )
        leg = Leg(device=device, direction="incoming")
        answer = await c.media.answer_rtp(leg.id, sdp)  # MediaError: nothing changed
        c.legs[leg.id] = leg
        leg.transition(LegState.TRYING, cause="replaces")
        held = call.held_by is old  # the far party hears hold music until the bridge moves
        if held:
            await c.on_live(c.media.stop_playing(far.id), far)
        if not (all_live(old, far) and old.peer is far and far.peer is old) or not (
            await c.on_live(c.media.bridge(far.id, leg.id), leg, old, far)
        ):
            await c.end_leg(leg, EndReason.CANCELED)
            raise c.too_late(old)
        leg.call, leg.media_type = call, old.media_type
        leg.peer, far.peer = far, leg
        if call.origin is old:
            call.origin = leg
        else:
            call.answered_leg = leg
        if held:
            call.held_by = None  # the new phone talks at once (its offer is sendrecv)
        leg.transition(LegState.ACTIVE, cause="replaces")
        c.bus.publish(LegInitiated(leg=leg.facts()))
        c.bus.publish(LegAnswered(leg=leg.facts()))
        # The new dialog first, then the old one ends (its BYE): RFC 3891 §3.
        device.deliver(SdpAnswer(call_id=leg.id, sdp=answer))
        device.deliver(CallAnswered(call_id=leg.id))
        await c.end_leg(old, EndReason.MOVED)
        if held:
            far.device.deliver(CallResumed(call_id=far.id, by="remote"))
        return leg

    def _close(self, call: Call) -> None:
        """The call is over for the CDR (``transferred``); its legs live on elsewhere."""
        if not call.ended:
            call.transition(CallState.ENDED, cause="transferred")
            self.calls.write_cdr(call, EndReason.TRANSFERRED)
