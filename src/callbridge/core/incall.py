"""In-call control of an answered call: hold, resume, mute (docs/protocol.md, "In-call
control").

Hold is the server's: the held party hears hold music and the holder silence, with no
renegotiation. Mute is authoritative: the server stops forwarding the leg's audio even if its
client keeps sending. Legs in a conference or call group are held and muted by the conference
(core.conferences), which accounts for the host's mute and holds too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from callbridge.core.calls import LegState
from callbridge.core.devices import Device
from callbridge.core.events import CallHeld, CallMuteChanged, CallResumed, Warned
from callbridge.errors import ErrorCode, ProtocolError, WarningCode

if TYPE_CHECKING:
    from callbridge.core.controller import CallController

__all__ = ["InCall"]


class InCall:
    """Hold, resume and mute (one per controller)."""

    def __init__(self, calls: CallController) -> None:
        self.calls = calls

    async def hold(self, device: Device, call_id: str, req_id: str | None) -> None:
        await self._hold(device, call_id, True, req_id)

    async def resume(self, device: Device, call_id: str, req_id: str | None) -> None:
        await self._hold(device, call_id, False, req_id)

    async def _hold(self, device: Device, call_id: str, held: bool, req_id: str | None) -> None:
        c = self.calls
        leg = c.answered_leg(device, call_id)
        if leg.conference is not None:
            await c.conferences.hosting.hold_member(leg, held, req_id)
            return
        call, peer = leg.call, leg.peer
        assert call is not None and peer is not None
        if held and call.held_by is not None:
            who = "you" if call.held_by is leg else "the other party"
            raise ProtocolError(ErrorCode.INVALID_STATE, f"call {call_id} is already held by {who}")
        if not held and call.held_by is None:
            raise ProtocolError(ErrorCode.INVALID_STATE, f"call {call_id} is not on hold")
        if not held and call.held_by is not leg:
            raise ProtocolError(
                ErrorCode.INVALID_STATE, f"call {call_id} was held by the other party"
            )
        call.held_by = leg if held else None  # claimed before any await
        media = c.media
        if held:  # the held party hears hold music, the holder silence
            done = await c.on_live(media.play(peer.id, "hold-music"), leg, peer)
            done = done and await c.on_live(media.play(leg.id, "silence"), leg, peer)
        else:
            done = await c.on_live(media.stop_playing(peer.id), leg, peer)
            done = done and await c.on_live(media.stop_playing(leg.id), leg, peer)
        if not done or leg.peer is not peer:
            raise c.too_late(leg)  # ended or transferred meanwhile
        state = LegState.HELD if held else LegState.ACTIVE
        leg.transition(state)
        peer.transition(state)
        event = CallHeld if held else CallResumed
        device.deliver(event(req_id=req_id, call_id=leg.id, by="local"))
        peer.device.deliver(event(call_id=peer.id, by="remote"))

    async def set_muted(
        self, device: Device, call_id: str, muted: bool, req_id: str | None
    ) -> None:
        c = self.calls
        leg = c.leg_of(device, call_id)
        if not leg.answered:  # a call parked by an application (no far party) mutes too
            raise ProtocolError(
                ErrorCode.INVALID_STATE, f"call {call_id} is {leg.state}; it must be answered"
            )
        if leg.muted == muted:
            code = WarningCode.ALREADY_MUTED if muted else WarningCode.NOT_MUTED
            device.deliver(Warned(req_id=req_id, code=code, call_id=leg.id))
            return
        leg.muted = muted
        if leg.conference is not None:
            await c.conferences.refresh(leg)  # the host's mute and a hold count too
        else:
            await c.media.set_muted(leg.id, muted)
        device.deliver(CallMuteChanged(req_id=req_id, call_id=leg.id, muted=muted))
