"""The call controller: routing, ring-all, answer races, hold, mute, DTMF events, blind and
attended transfer, moving a call between devices, audio <-> video modification, CDRs.

It owns every live leg, drives the media plane only through the MediaServer interface, and
tells devices what happened by queueing protocol messages to them. All methods run on the
server's event loop; state is re-checked after every ``await`` because another message may
have ended the leg meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from callbridge.core.calls import (
    Call,
    Device,
    EndReason,
    Leg,
    LegState,
    MediaType,
    Modification,
    Move,
)
from callbridge.core.conferences import ConferenceKind, ConferenceManager
from callbridge.errors import ErrorCode, MediaError, ProtocolError, WarningCode, warning
from callbridge.media.interface import (
    DtmfReceived,
    EndpointStateChanged,
    FloorChanged,
    MediaEvent,
    MediaServer,
    PlaybackStateChanged,
    RecordingSaved,
)

__all__ = ["CallController", "CallRouter", "Directory", "DomainListener", "RingOwner", "leg_facts"]

log = logging.getLogger(__name__)
_RECENTLY_ENDED = 1000  # ended call ids remembered for precise errors
MEDIA_RESTART_GRACE = 10.0  # seconds a leg whose media failed waits for call.restart_media


class Directory(Protocol):
    """What the controller needs from the store."""

    async def find_user(self, destination: str) -> Any: ...

    async def record_cdr(self, cdr: Any) -> None: ...


def _all_live(*legs: Leg) -> bool:
    return all(leg.live for leg in legs)


class CallRouter(Protocol):
    """Routing hook (core.appcalls): takes a call whose destination an application owns."""

    async def route(self, call: Call, destination: str) -> bool:
        """True if the call was taken (the controller then leaves it alone)."""


class RingOwner(Protocol):
    """Who rang a device leg that belongs to no controller ``Call`` (core.appcalls: a device
    rung for an application's dial); the controller hands it the device's answer or refusal."""

    async def answer_ringing(self, leg: Leg, sdp: str, req_id: str | None) -> None: ...

    async def decline_ringing(self, leg: Leg, reason: EndReason, req_id: str | None) -> None: ...


DomainListener = Callable[[str, dict[str, Any]], None]
"""``listener(event_type, data)``: one domain event (``call.answered``, ``conference.created``
…) with plain data; adapters (webhooks, logs) subscribe with :meth:`CallController.subscribe`."""


def leg_facts(leg: Leg) -> dict[str, Any]:
    """What every call event says about its leg (plain data)."""
    call = leg.call
    return {
        "call_control_id": leg.id,
        "call_leg_id": leg.id,
        "call_session_id": call.id if call is not None else leg.id,
        "direction": leg.direction,
        "user": leg.device.user_name,
        "from": call.caller_id if call is not None else leg.device.caller_id,
        "to": call.destination if call is not None else "",
        "state": leg.state.value,
    }


class CallController:
    def __init__(
        self,
        media: MediaServer,
        directory: Directory,
        ring_timeout: float = 30.0,
        cdr_factory: Any = None,
        recordings_dir: Path | None = None,
    ) -> None:
        self.media = media
        self.directory = directory
        self.ring_timeout = ring_timeout
        self._cdr_factory = cdr_factory
        self.devices: dict[str, dict[str, Device]] = {}  # user name -> device id -> device
        self.legs: dict[str, Leg] = {}
        self._ended: OrderedDict[str, tuple[str, EndReason]] = OrderedDict()
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.listeners: list[DomainListener] = []
        self.conferences = ConferenceManager(self, recordings_dir)
        # Application calls (core.appcalls) hook in here: a router for destinations that an
        # application owns, and the owners of device legs rung for an application's dial.
        self.router: CallRouter | None = None
        self.ring_owners: dict[str, RingOwner] = {}
        media.subscribe(self._on_media_event)

    # domain events --------------------------------------------------------------------------
    def subscribe(self, listener: DomainListener) -> None:
        self.listeners.append(listener)

    def publish(self, event: str, **data: Any) -> None:
        """Publish one domain event to every listener (a failing listener is logged)."""
        for listener in self.listeners:
            try:
                listener(event, data)
            except Exception:
                log.exception("domain listener failed for %s", event)

    def publish_leg(self, event: str, leg: Leg, **data: Any) -> None:
        if self.listeners:
            self.publish(event, **leg_facts(leg), **data)

    # devices --------------------------------------------------------------------------------
    def add_device(self, device: Device) -> None:
        self.devices.setdefault(device.user_name, {})[device.id] = device

    async def remove_device(
        self, device: Device, reason: EndReason, far: EndReason = EndReason.HANGUP
    ) -> None:
        """The device is gone (logout, expiry, lost for good): end everything it had.

        Its own legs end with ``reason``, the far parties' with ``far``.
        """
        self.devices.get(device.user_name, {}).pop(device.id, None)
        for leg in [leg for leg in self.legs.values() if leg.device is device]:
            await self._leg_gone(leg, reason, far)

    def notify_peers(self, device: Device, code: str, message: str) -> None:
        """Tell the far party of each of the device's answered calls (``notification``)."""
        for leg in list(self.legs.values()):
            if leg.device is device and leg.peer is not None:
                note = {"type": "notification", "code": code, "message": message}
                leg.peer.device.send({**note, "call_id": leg.peer.id})

    # lookups --------------------------------------------------------------------------------
    def leg_of(self, device: Device, call_id: str) -> Leg:
        leg = self.legs.get(call_id)
        if leg is None:
            ended = self._ended.get(call_id)
            if ended is not None and ended[0] == device.id:
                raise ProtocolError(
                    ErrorCode.CALL_NOT_FOUND, f"call {call_id} has ended ({ended[1]})"
                )
            raise ProtocolError(ErrorCode.CALL_NOT_FOUND, f"no call {call_id}")
        if leg.device is not device:
            raise ProtocolError(
                ErrorCode.NOT_YOUR_CALL, f"call {call_id} belongs to another session"
            )
        return leg

    # placing calls --------------------------------------------------------------------------
    async def create_call(
        self,
        device: Device,
        destination: str,
        sdp: str,
        caller_id: str | None,
        req_id: str | None,
        media_type: MediaType | None = None,
    ) -> None:
        leg = Leg(device=device, direction="outgoing")
        # MediaError -> `error`, no call exists
        answer = await self.media.answer(leg.id, sdp, video=media_type != "audio")
        video = any(self.media.video_state(leg.id))
        if media_type == "video" and not video:
            await self.media.close(leg.id)
            raise ProtocolError(
                ErrorCode.INVALID_SDP,
                "media_type 'video' needs a video m-line with VP8 in the offer",
            )
        self.legs[leg.id] = leg
        call = Call(
            id=leg.id,
            origin=leg,
            destination=destination,
            caller_id=caller_id or device.caller_id,
            caller_name=device.display_name,
            media_type="video" if video else "audio",
        )
        leg.call = call
        leg.media_type = call.media_type
        leg.set_state(LegState.TRYING)
        self.publish_leg("call.initiated", leg)
        device.send(
            {
                "type": "call.trying",
                "req_id": req_id,
                "call_id": leg.id,
                "media_type": call.media_type,
            }
        )
        device.send({"type": "sdp.answer", "call_id": leg.id, "sdp": answer})
        self.send_candidates(leg)
        await self._route(call, destination)

    async def _route(self, call: Call, destination: str) -> None:
        origin = call.origin
        # A destination routed to an application goes there, before users (core.appcalls).
        if self.router is not None and await self.router.route(call, destination):
            return
        target = await self.directory.find_user(destination)
        if not origin.live:
            return
        if target is None:
            await self._fail_route(
                call, f"no user has the extension, number or name {destination!r}"
            )
            return
        call.callee_name = target.name
        devices = [
            d
            for d in self.devices.get(target.name, {}).values()
            if d is not origin.device and d.reachable
        ]
        if not devices:
            await self._fail_route(call, f"{destination!r} ({target.name}) has no device logged in")
            return
        prefer = self.media.codec(origin.id)
        for dev in devices:
            await self._ring(call, dev, prefer)
        if not origin.live or call.ended:
            return
        if call.ringing:
            origin.set_state(LegState.RINGING)
            # Early media: the caller hears ringback from the server until someone answers.
            await self.media.play(origin.id, "ringback")
            origin.device.send({"type": "call.ringing", "call_id": origin.id, "ringback": True})
            loop = asyncio.get_running_loop()
            self._timers[id(call)] = loop.call_later(self.ring_timeout, self._ring_timeout, call)
        else:
            await self.end_call(call, EndReason.FAILED, EndReason.FAILED)

    async def _fail_route(self, call: Call, why: str) -> None:
        error = ProtocolError(ErrorCode.DESTINATION_NOT_FOUND, why)
        call.origin.device.send(error.to_wire(call_id=call.origin.id))
        await self.end_call(call, EndReason.FAILED, EndReason.FAILED)

    async def _ring(self, call: Call, device: Device, prefer: str | None) -> None:
        leg = Leg(device=device, direction="incoming", call=call)
        try:
            offer = await self.media.offer(leg.id, prefer, video=call.media_type == "video")
        except MediaError:
            log.exception("could not create media for %s", device.id)
            return
        if call.ended or call.answered_leg is not None:
            await self.media.close(leg.id)
            return
        self.legs[leg.id] = leg
        leg.set_state(LegState.RINGING)
        call.ringing.append(leg)
        self.publish_leg("call.initiated", leg)
        self._offer_incoming(
            leg, offer, call.caller_id, call.caller_name, call.destination, call.media_type
        )

    def _offer_incoming(
        self,
        leg: Leg,
        offer: str,
        caller_id: str,
        caller_name: str,
        to: str,
        media_type: str,
        **extra: str,
    ) -> None:
        """Ring ``leg``'s device: ``call.incoming`` with the server's offer, then candidates."""
        leg.device.send(
            {
                "type": "call.incoming",
                "call_id": leg.id,
                "from": caller_id,
                "from_name": caller_name,
                "to": to,
                "sdp": offer,
                "media_type": media_type,
                **extra,
            }
        )
        self.send_candidates(leg)

    def send_candidates(self, leg: Leg) -> None:
        for line, mid, index in self.media.local_candidates(leg.id):
            leg.device.send(
                {
                    "type": "ice.candidate",
                    "call_id": leg.id,
                    "candidate": line,
                    "sdp_mid": mid,
                    "sdp_m_line_index": index,
                }
            )
        leg.device.send({"type": "ice.done", "call_id": leg.id})

    def _ring_timeout(self, call: Call) -> None:
        self._timers.pop(id(call), None)
        if not call.ended and call.answered_leg is None:
            self._spawn(self.end_call(call, EndReason.NO_ANSWER, EndReason.NO_ANSWER))

    # answering ------------------------------------------------------------------------------
    async def answer(self, device: Device, call_id: str, sdp: str, req_id: str | None) -> None:
        leg = self.leg_of(device, call_id)
        if leg.invitation is not None:
            await self.conferences.join(leg, sdp, req_id)
            return
        if leg.move is not None:
            await self._take_over(leg, leg.move, sdp, req_id)
            return
        owner = self.ring_owners.get(leg.id)
        if owner is not None:  # rung for an application (core.appcalls)
            await owner.answer_ringing(leg, sdp, req_id)
            return
        call = leg.call
        if not leg.ringing_here or call is None:
            raise ProtocolError(ErrorCode.INVALID_STATE, f"call {call_id} is not ringing here")
        if call.answered_leg is not None:
            raise ProtocolError(ErrorCode.INVALID_STATE, f"call {call_id} was answered elsewhere")
        # Claim the call before the first await: a racing answer sees it taken.
        call.answered_leg = leg
        self._cancel_timer(call)
        for other in list(call.ringing):
            if other is not leg:
                await self.end_leg(other, EndReason.ANSWERED_ELSEWHERE)
        call.ringing = [leg]
        try:
            await self.media.accept_answer(leg.id, sdp)
        except MediaError as exc:
            device.send(exc.to_wire(req_id, call_id))
            await self.end_call(call, EndReason.FAILED, EndReason.FAILED)
            return
        origin = call.origin
        if not (leg.live and origin.live):
            return
        await self.media.stop_playing(origin.id)
        await self.media.bridge(origin.id, leg.id)
        origin.peer, leg.peer = leg, origin
        origin.set_state(LegState.ACTIVE)
        leg.set_state(LegState.ACTIVE)
        # A video call answered as audio (the answer's video m-line inactive) is an audio call.
        video = call.media_type == "video" and any(self.media.video_state(leg.id))
        media_type: MediaType = "video" if video else "audio"
        origin.media_type = leg.media_type = media_type
        call.answered_at = datetime.now(UTC)
        self.publish_leg("call.answered", origin)
        self.publish_leg("call.answered", leg)
        device.send(
            {"type": "call.answered", "req_id": req_id, "call_id": leg.id, "media_type": media_type}
        )
        origin.device.send(
            {"type": "call.answered", "call_id": origin.id, "media_type": media_type}
        )

    async def reject(
        self, device: Device, call_id: str, reason: str | None, req_id: str | None
    ) -> None:
        leg = self.leg_of(device, call_id)
        if leg.invitation is not None:
            await self.conferences.decline(leg, req_id)
            return
        if leg.move is not None:
            await self._decline_move(leg, leg.move, EndReason.REJECTED, req_id)
            return
        end = EndReason.BUSY if reason == "busy" else EndReason.REJECTED
        owner = self.ring_owners.get(leg.id)
        if owner is not None:  # rung for an application (core.appcalls)
            await owner.decline_ringing(leg, end, req_id)
            return
        call = leg.call
        if not leg.ringing_here or call is None:
            raise ProtocolError(ErrorCode.INVALID_STATE, f"call {call_id} is not ringing here")
        if end is EndReason.BUSY:
            call.reject_reason = EndReason.BUSY
        await self.end_leg(leg, end, req_id)
        call.ringing = [x for x in call.ringing if x is not leg]
        if not call.ringing and call.answered_leg is None and not call.ended:
            await self.end_call(call, call.reject_reason, call.reject_reason)

    # hanging up -----------------------------------------------------------------------------
    async def hangup(self, device: Device, call_id: str, req_id: str | None) -> None:
        leg = self.leg_of(device, call_id)
        if leg.move is not None:
            await self._decline_move(leg, leg.move, EndReason.HANGUP, req_id)
            return
        if leg.invitation is not None:
            await self.conferences.decline(leg, req_id)
            return
        if self._hosted_member(leg):
            await self.conferences.leave(leg, EndReason.HANGUP, req_id)
            return
        owner = self.ring_owners.get(leg.id)
        if owner is not None:  # rung for an application (core.appcalls): hanging up declines
            await owner.decline_ringing(leg, EndReason.REJECTED, req_id)
            return
        call = leg.call
        assert call is not None
        if leg.ringing_here:
            await self.reject(device, call_id, None, req_id)
        elif leg is call.origin and not leg.answered:
            # Cancel: the ringing devices get `canceled`.
            await self.end_leg(leg, EndReason.HANGUP, req_id)
            await self.end_call(call, EndReason.HANGUP, EndReason.CANCELED)
        else:
            await self.end_leg(leg, EndReason.HANGUP, req_id)
            await self.end_call(call, EndReason.HANGUP, EndReason.HANGUP)

    async def _leg_gone(
        self, leg: Leg, reason: EndReason, far_reason: EndReason = EndReason.HANGUP
    ) -> None:
        """The leg's device vanished; the rest of its call ends as if it hung up."""
        if leg.move is not None:
            await self._decline_move(leg, leg.move, reason, None)
            return
        if leg.invitation is not None:
            await self.conferences.decline(leg, None)
            return
        if self._hosted_member(leg):
            await self.conferences.leave(leg, reason)
            return
        owner = self.ring_owners.get(leg.id)
        if owner is not None:  # rung for an application (core.appcalls)
            await owner.decline_ringing(leg, reason, None)
            return
        call = leg.call
        if not leg.live or call is None:
            return
        if leg.ringing_here:
            await self.end_leg(leg, reason)
            call.ringing = [x for x in call.ringing if x is not leg]
            if not call.ringing and call.answered_leg is None and not call.ended:
                await self.end_call(call, EndReason.FAILED, EndReason.FAILED)
            return
        await self.end_leg(leg, reason)
        far = EndReason.CANCELED if leg is call.origin and not call.answered_leg else far_reason
        await self.end_call(call, far_reason, far)

    async def end_leg(self, leg: Leg, reason: EndReason, req_id: str | None = None) -> None:
        if not leg.live:
            return
        leg.set_state(LegState.ENDED)
        leg.end_reason = reason
        self.publish_leg("call.hangup", leg, hangup_cause=reason.value)
        if leg.conference is not None or leg.invitation is not None:
            await self.conferences.leg_ending(leg)
        self.legs.pop(leg.id, None)
        self._ended[leg.id] = (leg.device.id, reason)
        while len(self._ended) > _RECENTLY_ENDED:
            self._ended.popitem(last=False)
        if leg.peer is not None and leg.peer.peer is leg:
            leg.peer.peer = None
        leg.peer = None
        leg.device.send(
            {"type": "call.ended", "req_id": req_id, "call_id": leg.id, "reason": reason.value}
        )
        await self.media.close(leg.id)

    async def end_call(
        self,
        call: Call,
        origin_reason: EndReason,
        far_reason: EndReason,
        req_id: str | None = None,
    ) -> None:
        """End every live leg of the call and write its CDR (once); ``req_id`` goes with the
        origin's ``call.ended``."""
        if call.ended:
            return
        call.ended = True
        self._cancel_timer(call)
        await self.end_leg(call.origin, origin_reason, req_id)
        for leg in call.ringing:
            await self.end_leg(leg, far_reason)
        self._write_cdr(call, call.origin.end_reason or origin_reason)

    def _write_cdr(self, call: Call, reason: EndReason) -> None:
        if self._cdr_factory is None:
            return
        callee = call.answered_leg.device.user_name if call.answered_leg else call.callee_name
        cdr = self._cdr_factory(
            call_id=call.id,
            caller=call.origin.device.user_name,
            callee=callee,
            destination=call.destination,
            started_at=call.started_at,
            answered_at=call.answered_at,
            ended_at=datetime.now(UTC),
            end_reason=reason.value,
            direction="internal",
        )
        self._spawn(self.directory.record_cdr(cdr))

    def _cancel_timer(self, call: Call) -> None:
        self._cancel_timer_key(id(call))

    # in-call control ------------------------------------------------------------------------
    def answered_leg(self, device: Device, call_id: str) -> Leg:
        """The device's answered leg ``call_id``: bridged, or in a conference."""
        leg = self.leg_of(device, call_id)
        if not leg.answered or (leg.peer is None and leg.conference is None):
            raise ProtocolError(
                ErrorCode.INVALID_STATE, f"call {call_id} is {leg.state}; it must be answered"
            )
        return leg

    def _hosted_member(self, leg: Leg) -> bool:
        """True for a leg in a hosted (seed 002) conference: its calls are the conference's."""
        conf = leg.conference
        return conf is not None and conf.kind is ConferenceKind.CONFERENCE

    def _bridged(self, device: Device, call_id: str, action: str) -> Leg:
        """An answered leg bridged to one far party (not in a conference or call group)."""
        leg = self.answered_leg(device, call_id)
        if leg.conference is not None:
            what = "call group" if leg.conference.kind is ConferenceKind.GROUP else "conference"
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"call {call_id} is in {what} {leg.conference.id}: {action} works on 1:1 calls"
                + (" (split it out of the group first)" if what == "call group" else ""),
            )
        return leg

    async def hold(self, device: Device, call_id: str, req_id: str | None) -> None:
        leg = self.answered_leg(device, call_id)
        if leg.conference is not None:
            await self.conferences.hold_member(leg, True, req_id)
            return
        call, peer = leg.call, leg.peer
        assert call is not None and peer is not None
        if call.held_by is not None:
            who = "you" if call.held_by is leg else "the other party"
            raise ProtocolError(ErrorCode.INVALID_STATE, f"call {call_id} is already held by {who}")
        call.held_by = leg
        await self.media.play(peer.id, "hold-music")
        await self.media.play(leg.id, "silence")
        leg.set_state(LegState.HELD)
        peer.set_state(LegState.HELD)
        device.send({"type": "call.held", "req_id": req_id, "call_id": leg.id, "by": "local"})
        peer.device.send({"type": "call.held", "call_id": peer.id, "by": "remote"})

    async def resume(self, device: Device, call_id: str, req_id: str | None) -> None:
        leg = self.answered_leg(device, call_id)
        if leg.conference is not None:
            await self.conferences.hold_member(leg, False, req_id)
            return
        call, peer = leg.call, leg.peer
        assert call is not None and peer is not None
        if call.held_by is None:
            raise ProtocolError(ErrorCode.INVALID_STATE, f"call {call_id} is not on hold")
        if call.held_by is not leg:
            raise ProtocolError(
                ErrorCode.INVALID_STATE, f"call {call_id} was held by the other party"
            )
        call.held_by = None
        await self.media.stop_playing(peer.id)
        await self.media.stop_playing(leg.id)
        leg.set_state(LegState.ACTIVE)
        peer.set_state(LegState.ACTIVE)
        device.send({"type": "call.resumed", "req_id": req_id, "call_id": leg.id, "by": "local"})
        peer.device.send({"type": "call.resumed", "call_id": peer.id, "by": "remote"})

    async def set_muted(
        self, device: Device, call_id: str, muted: bool, req_id: str | None
    ) -> None:
        leg = self.leg_of(device, call_id)
        if not leg.answered:  # a call parked by an application (no far party) mutes too
            raise ProtocolError(
                ErrorCode.INVALID_STATE, f"call {call_id} is {leg.state}; it must be answered"
            )
        if leg.muted == muted:
            code = WarningCode.ALREADY_MUTED if muted else WarningCode.NOT_MUTED
            device.send(warning(code, req_id, leg.id))
            return
        leg.muted = muted
        if leg.conference is not None:
            await self.conferences.refresh(leg)  # the host's mute and a hold count too
        else:
            await self.media.set_muted(leg.id, muted)
        kind = "call.muted" if muted else "call.unmuted"
        device.send({"type": kind, "req_id": req_id, "call_id": leg.id})

    async def transfer(
        self, device: Device, call_id: str, destination: str, req_id: str | None
    ) -> None:
        """Blind transfer: the far party (transferee) is connected to ``destination``."""
        leg = self._bridged(device, call_id, "transfer")
        old, transferee = leg.call, leg.peer
        assert old is not None and transferee is not None
        if await self.directory.find_user(destination) is None:
            raise ProtocolError(
                ErrorCode.DESTINATION_NOT_FOUND,
                f"no user has the extension, number or name {destination!r}; call kept",
            )
        if not (leg.live and transferee.live):
            return
        # The transferor's side ends; the transferee's leg and media stay up (no renegotiation).
        old.ended = True
        self._write_cdr(old, EndReason.TRANSFERRED)
        await self.media.unbridge(transferee.id)
        await self.media.stop_playing(transferee.id)
        await self.end_leg(leg, EndReason.TRANSFERRED, req_id)
        transferee.peer = None
        transferee.set_state(LegState.RINGING)
        keep = transferee is old.origin
        new = Call(
            origin=transferee,
            destination=destination,
            caller_id=old.caller_id if keep else transferee.device.caller_id,
            caller_name=old.caller_name if keep else transferee.device.display_name,
        )
        transferee.call = new
        await self._route(new, destination)

    async def complete_transfer(
        self, device: Device, call_id: str, target_call_id: str, req_id: str | None
    ) -> None:
        """Attended transfer: connect the far parties of two answered calls of this device.

        Both of this device's legs end with ``transferred``; the two far parties stay on their
        media endpoints (no renegotiation), are bridged to each other, and each gets
        ``call.transferred`` naming its new peer (after ``call.resumed`` if it was on hold).
        """
        if call_id == target_call_id:
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE, "call_id and target_call_id must be two different calls"
            )
        a = self._bridged(device, call_id, "transfer")
        b = self._bridged(device, target_call_id, "transfer")
        pa, pb = a.peer, b.peer
        assert pa is not None and pb is not None and a.call is not None and b.call is not None
        held = [p for p, leg in ((pa, a), (pb, b)) if leg.call and leg.call.held_by is not None]
        for old in (a.call, b.call):
            old.ended = True
            self._write_cdr(old, EndReason.TRANSFERRED)
        for p in (pa, pb):
            await self.media.stop_playing(p.id)
        await self.end_leg(a, EndReason.TRANSFERRED, req_id)
        await self.end_leg(b, EndReason.TRANSFERRED)
        if not (pa.live and pb.live):
            return
        await self.media.bridge(pa.id, pb.id)
        pa.peer, pb.peer = pb, pa
        new = Call(
            origin=pa,
            destination=pb.device.caller_id,
            caller_id=pa.device.caller_id,
            caller_name=pa.device.display_name,
            callee_name=pb.device.user_name,
            ringing=[pb],
            answered_leg=pb,
            answered_at=datetime.now(UTC),
        )
        for p in (pa, pb):
            p.call = new
            p.set_state(LegState.ACTIVE)
            if p in held:
                p.device.send({"type": "call.resumed", "call_id": p.id, "by": "remote"})
            other = pb if p is pa else pa
            p.device.send(
                {
                    "type": "call.transferred",
                    "call_id": p.id,
                    "peer": other.device.caller_id,
                    "peer_name": other.device.display_name,
                }
            )

    # audio <-> video (seed 002 upgrade / downgrade) ----------------------------------------
    async def modify(
        self, device: Device, call_id: str, media_type: MediaType, sdp: str, req_id: str | None
    ) -> None:
        """Upgrade (``video``) or downgrade (``audio``) an answered call.

        ``sdp`` is the requester's new offer; it is answered (``sdp.answer``) once the far
        party has accepted or rejected the server's own new offer (``call.media-modification``).
        """
        leg = self._bridged(device, call_id, "modify")
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
        call.modification = Modification(leg, media_type, sdp)
        video = media_type == "video"
        try:
            offer = await self.media.reoffer(peer.id, send_video=video, recv_video=video)
        except MediaError:
            call.modification = None
            raise
        if not (leg.live and peer.live):
            return
        operation = "upgrade" if video else "downgrade"
        device.send(
            {
                "type": "call.modification-in-progress",
                "req_id": req_id,
                "call_id": leg.id,
                "media_type": media_type,
                "operation": operation,
            }
        )
        peer.device.send(
            {
                "type": "call.media-modification",
                "call_id": peer.id,
                "media_type": peer.media_type,
                "new_media_type": media_type,
                "operation": operation,
                "sdp": offer,
            }
        )

    async def answer_modification(
        self, device: Device, call_id: str, accepted: bool, sdp: str, req_id: str | None
    ) -> None:
        """The far party's ``call.modify.accept`` / ``call.modify.reject`` with its answer to
        the server's offer; then the requester's offer is answered, and both are told."""
        leg = self._bridged(device, call_id, "a media modification")
        call = leg.call
        assert call is not None
        mod = call.modification
        if mod is None or mod.requester is leg:
            raise ProtocolError(
                ErrorCode.INVALID_STATE, f"call {call_id}: no media modification waits for you"
            )
        call.modification = None  # claimed before any await
        requester = mod.requester
        try:
            await self.media.accept_answer(leg.id, sdp)
        except MediaError as exc:
            # The server's offer to this leg is left unanswered: its media cannot go on.
            device.send(exc.to_wire(req_id, leg.id))
            await self.end_call(call, EndReason.FAILED, EndReason.FAILED)
            return
        operation = "upgrade" if mod.media_type == "video" else "downgrade"
        device.send(
            {
                "type": "call.modification-in-progress",
                "req_id": req_id,
                "call_id": leg.id,
                "media_type": mod.media_type,
                "operation": operation,
            }
        )
        far_sends, far_receives = self.media.video_state(leg.id)
        if not _all_live(requester, leg):
            return
        try:
            answer = await self.media.renegotiate(requester.id, mod.offer_sdp, far_sends)
        except MediaError as exc:
            requester.device.send(exc.to_wire(None, requester.id))
            await self.end_call(call, EndReason.FAILED, EndReason.FAILED)
            return
        if not _all_live(requester, leg):  # a function: mypy must not keep the check above
            return
        requester.device.send({"type": "sdp.answer", "call_id": requester.id, "sdp": answer})
        req_sends, req_receives = self.media.video_state(requester.id)
        flows = {requester: req_sends and far_receives, leg: far_sends and req_receives}
        new: MediaType = "video" if any(flows.values()) else "audio"
        for x, other in ((requester, leg), (leg, requester)):
            old, x.media_type = x.media_type, new
            x.device.send(
                {
                    "type": "call.state-changed",
                    "call_id": x.id,
                    "old_state": old,
                    "new_state": new,
                    "media_type": new,
                    "operation": operation,
                    "accepted": accepted,
                    "video_send": flows[x],
                    "video_receive": flows[other],
                }
            )

    # moving a call between devices (seed 002 move) ----------------------------------------
    async def move(self, device: Device, call_id: str, req_id: str | None) -> None:
        """Ring the user's other devices; the first to answer takes over the live call."""
        leg = self._bridged(device, call_id, "move")
        if leg.state is not LegState.ACTIVE:
            raise ProtocolError(
                ErrorCode.INVALID_STATE, f"call {call_id} is on hold: resume it before moving it"
            )
        if any(x.move is not None and x.move.leg is leg for x in self.legs.values()):
            raise ProtocolError(ErrorCode.INVALID_STATE, f"call {call_id} is already being moved")
        others = [
            d
            for d in self.devices.get(device.user_name, {}).values()
            if d is not device and d.reachable
        ]
        if not others:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"{device.user_name} has no other device logged in to move call {call_id} to",
            )
        assert leg.call is not None and leg.peer is not None
        move = Move(leg)
        prefer = self.media.codec(leg.peer.id)
        far = leg.peer.device
        for other in others:
            candidate = Leg(device=other, direction="incoming", move=move)
            offer = await self.media.offer(candidate.id, prefer)
            self.legs[candidate.id] = candidate
            candidate.set_state(LegState.RINGING)
            move.ringing.append(candidate)
            # A moved call carries audio only (video is not moved; docs/protocol.md).
            self._offer_incoming(
                candidate,
                offer,
                far.caller_id,
                far.display_name,
                leg.call.destination,
                "audio",
                moved_from=leg.id,
            )
        device.send({"type": "call.moving", "req_id": req_id, "call_id": leg.id})
        loop = asyncio.get_running_loop()
        self._timers[id(move)] = loop.call_later(
            self.ring_timeout, lambda: self._spawn(self._move_timeout(move))
        )

    async def _take_over(self, leg: Leg, move: Move, sdp: str, req_id: str | None) -> None:
        old = move.leg
        if move.taken or not old.live or old.peer is None:
            raise ProtocolError(ErrorCode.INVALID_STATE, f"call {leg.id} was taken elsewhere")
        move.taken = True  # claimed before any await
        self._cancel_timer_key(id(move))
        for other in move.ringing:
            if other is not leg:
                await self.end_leg(other, EndReason.ANSWERED_ELSEWHERE)
        try:
            await self.media.accept_answer(leg.id, sdp)
        except MediaError as exc:
            leg.device.send(exc.to_wire(req_id, leg.id))
            await self.end_leg(leg, EndReason.FAILED)
            old.device.send({"type": "call.move-failed", "call_id": old.id, "reason": "failed"})
            return
        far, call = old.peer, old.call
        if not (leg.live and old.live) or far is None or call is None:
            return
        # Swap the leg in: the far party's endpoint is untouched, only the bridge moves.
        await self.media.bridge(far.id, leg.id)
        leg.peer, far.peer = far, leg
        leg.call, leg.move = call, None
        if call.origin is old:
            call.origin = leg
        else:
            call.answered_leg, call.ringing = leg, [leg]
        leg.set_state(LegState.ACTIVE)
        old.device.send({"type": "call.moved", "call_id": old.id, "to_session": leg.device.id})
        await self.end_leg(old, EndReason.MOVED)
        leg.device.send({"type": "call.answered", "req_id": req_id, "call_id": leg.id})

    async def _decline_move(
        self, leg: Leg, move: Move, reason: EndReason, req_id: str | None
    ) -> None:
        await self.end_leg(leg, reason, req_id)
        move.ringing = [x for x in move.ringing if x is not leg]
        if not move.ringing and not move.taken:
            self._cancel_timer_key(id(move))
            if move.leg.live:
                move.leg.device.send(
                    {"type": "call.move-failed", "call_id": move.leg.id, "reason": reason.value}
                )

    async def _move_timeout(self, move: Move) -> None:
        self._timers.pop(id(move), None)
        if move.taken:
            return
        for candidate in list(move.ringing):
            await self.end_leg(candidate, EndReason.NO_ANSWER)
        move.ringing = []
        if move.leg.live:
            move.leg.device.send(
                {"type": "call.move-failed", "call_id": move.leg.id, "reason": "no-answer"}
            )

    def later(self, owner: object, delay: float, action: Callable[[], Awaitable[Any]]) -> None:
        """Run ``action()`` in ``delay`` seconds unless :meth:`cancel_later` (``owner``) first."""

        def fire() -> None:
            self._timers.pop(id(owner), None)
            self._spawn(action())

        self._cancel_timer_key(id(owner))
        self._timers[id(owner)] = asyncio.get_running_loop().call_later(delay, fire)

    def cancel_later(self, owner: object) -> None:
        self._cancel_timer_key(id(owner))

    def _cancel_timer_key(self, key: int) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    async def restart_media(
        self, device: Device, call_id: str, sdp: str, req_id: str | None
    ) -> None:
        """The device lost its media path (e.g. its network changed): answer its new offer on
        a new server-side peer connection; the far party stays bridged (see media.reconnect)."""
        leg = self.leg_of(device, call_id)
        answer = await self.media.reconnect(leg.id, sdp)
        leg.media_generation += 1
        if not leg.live:
            return
        device.send({"type": "sdp.answer", "req_id": req_id, "call_id": leg.id, "sdp": answer})
        self.send_candidates(leg)

    async def add_candidate(
        self,
        device: Device,
        call_id: str,
        candidate: str | None,
        mid: str | None,
        index: int | None,
    ) -> None:
        leg = self.leg_of(device, call_id)
        await self.media.add_candidate(leg.id, candidate, mid, index)

    # media events ---------------------------------------------------------------------------
    def _on_media_event(self, event: MediaEvent) -> None:
        if isinstance(event, FloorChanged | PlaybackStateChanged | RecordingSaved):
            self.conferences.on_media_event(event)
            return
        leg = self.legs.get(event.endpoint_id)
        if leg is None:
            return
        if isinstance(event, DtmfReceived):
            self.publish_leg("call.dtmf.received", leg, digit=event.digit)
            if leg.peer is not None:
                leg.peer.device.send(
                    {"type": "call.dtmf", "call_id": leg.peer.id, "digit": event.digit}
                )
        elif isinstance(event, EndpointStateChanged) and event.state == "failed":
            # The device may restart its media (call.restart_media) in the meantime.
            generation = leg.media_generation
            asyncio.get_running_loop().call_later(
                MEDIA_RESTART_GRACE, lambda: self._spawn(self._media_failed(leg, generation))
            )

    async def _media_failed(self, leg: Leg, generation: int) -> None:
        call = leg.call
        if leg.live and leg.media_generation == generation and call is not None and not call.ended:
            log.warning("media of %s failed and was not restarted; ending its call", leg.id)
            await self.end_call(call, EndReason.FAILED, EndReason.FAILED)

    # housekeeping ---------------------------------------------------------------------------
    def _spawn(self, coro: Awaitable[Any]) -> None:
        async def run() -> None:
            try:
                await coro
            except Exception:
                log.exception("background call task failed")

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def shutdown(self) -> None:
        await self.conferences.shutdown()
        for leg in list(self.legs.values()):
            if leg.call is not None:
                await self.end_call(leg.call, EndReason.HANGUP, EndReason.HANGUP)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.media.shutdown()
