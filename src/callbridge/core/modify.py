"""Audio <-> video modification of an answered call (seed 002 upgrade / downgrade;
docs/protocol.md, "Audio and video").

One leg asks (``call.modify`` with its new offer). The server sends the far party its own new
offer (``call.media-modification``); the far party answers it accepting or rejecting
(``call.modify.accept`` / ``.reject``). Only then is the requester's offer answered, so that
the answer says exactly what the server will send (RFC 3264 section 8: an offer is answered
once, with what the answerer will really do). Both parties get ``call.state-changed`` with the
video directions that result. One modification at a time per call, by either party.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from callbridge.core.call_events import (
    CallMediaChanged,
    CallMediaModification,
    CallModificationInProgress,
    Operation,
)
from callbridge.core.calls import LegState, Modification, all_live
from callbridge.core.devices import Device
from callbridge.core.events import CommandFailed, SdpAnswer
from callbridge.errors import ErrorCode, MediaError, ProtocolError
from callbridge.vocabulary import EndReason, MediaType

if TYPE_CHECKING:
    from callbridge.core.controller import CallController

__all__ = ["Modifications"]


def _operation(media_type: MediaType) -> Operation:
    return "upgrade" if media_type == "video" else "downgrade"


class Modifications:
    """Upgrade and downgrade (one per controller)."""

    def __init__(self, calls: CallController) -> None:
        self.calls = calls

    async def modify(
        self, device: Device, call_id: str, media_type: MediaType, sdp: str, req_id: str | None
    ) -> None:
        """Upgrade (``video``) or downgrade (``audio``) an answered call; ``sdp`` is the
        requester's new offer, answered once the far party has decided."""
        c = self.calls
        leg = c.bridged(device, call_id, "modify")
        call, peer = leg.call, leg.peer
        assert call is not None and peer is not None
        if leg.state is not LegState.ACTIVE:
            raise ProtocolError(
                ErrorCode.INVALID_STATE, f"call {call_id} is on hold: resume it before modifying it"
            )
        if call.modification is not None:
            raise ProtocolError(
                ErrorCode.INVALID_STATE, f"call {call_id}: a media modification is under way"
            )
        if leg.media_type == media_type:
            raise ProtocolError(ErrorCode.INVALID_STATE, f"call {call_id} is {media_type} already")
        call.modification = Modification(leg, media_type, sdp)  # claimed before any await
        video = media_type == "video"
        try:
            offer = await c.media.reoffer(peer.id, send_video=video, recv_video=video)
        except MediaError:
            call.modification = None
            raise
        if not all_live(leg, peer):
            raise c.too_late(leg)
        operation = _operation(media_type)
        device.deliver(
            CallModificationInProgress(
                req_id=req_id, call_id=leg.id, media_type=media_type, operation=operation
            )
        )
        peer.device.deliver(
            CallMediaModification(
                call_id=peer.id,
                media_type=peer.media_type,
                new_media_type=media_type,
                operation=operation,
                sdp=offer,
            )
        )

    async def answer(
        self, device: Device, call_id: str, accepted: bool, sdp: str, req_id: str | None
    ) -> None:
        """The far party's ``call.modify.accept`` / ``call.modify.reject`` with its answer to
        the server's offer; then the requester's offer is answered, and both are told."""
        c = self.calls
        leg = c.bridged(device, call_id, "a media modification")
        call = leg.call
        assert call is not None
        mod = call.modification
        if mod is None or mod.requester is leg:
            raise ProtocolError(
                ErrorCode.INVALID_STATE, f"call {call_id}: no media modification waits for you"
            )
        call.modification = None  # claimed before any await
        requester = mod.requester
        operation = _operation(mod.media_type)
        try:
            await c.on_live(c.media.accept_answer(leg.id, sdp), leg)
        except MediaError as exc:
            # The server's offer to this leg is left unanswered: its media cannot go on.
            device.deliver(CommandFailed(error=exc, call_id=leg.id, req_id=req_id))
            await c.end_call(call, EndReason.FAILED, EndReason.FAILED)
            return
        device.deliver(
            CallModificationInProgress(
                req_id=req_id, call_id=leg.id, media_type=mod.media_type, operation=operation
            )
        )
        far = await c.endpoint_info(leg)
        if far is None or not all_live(requester, leg):
            return
        try:
            answer = await c.media.renegotiate(requester.id, mod.offer_sdp, far.device_sends_video)
        except MediaError as exc:
            if not all_live(requester, leg):
                return  # ended meanwhile (its endpoint closed under the renegotiation)
            requester.device.deliver(CommandFailed(error=exc, call_id=requester.id))
            await c.end_call(call, EndReason.FAILED, EndReason.FAILED)
            return
        near = await c.endpoint_info(requester)
        if near is None or not all_live(requester, leg):  # mypy must not keep the check above
            return
        requester.device.deliver(SdpAnswer(call_id=requester.id, sdp=answer))
        flows = {
            requester: near.device_sends_video and far.device_receives_video,
            leg: far.device_sends_video and near.device_receives_video,
        }
        new: MediaType = "video" if any(flows.values()) else "audio"
        for x, other in ((requester, leg), (leg, requester)):
            old, x.media_type = x.media_type, new
            x.device.deliver(
                CallMediaChanged(
                    call_id=x.id,
                    old=old,
                    new=new,
                    operation=operation,
                    accepted=accepted,
                    video_send=flows[x],
                    video_receive=flows[other],
                )
            )
