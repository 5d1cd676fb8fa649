"""Placing a call: a device's ``call.create``, routing its destination, ring-all.

A destination an application owns goes to it (``controller.router``, core.appcalls). Otherwise
it names a user, and every reachable device of that user rings at once in one
:class:`~callbridge.core.ringgroup.RingGroup`: the first to answer is bridged to the caller,
the others end ``answered-elsewhere``. While they ring the caller hears ringback from the
server (early media, ``call.ringing {ringback: true}``).

Outcomes for the caller (docs/protocol.md, "Placing a call"): answered; every device
declined (``rejected``, or ``busy`` if one said busy); nobody answered in the ring timeout
(``no-answer``); no such user or no device (``destination_not_found``, then ``failed``).

A device reaches only users of its own account (a user of another account is "no such user");
a route of that account may send the destination to an application first (core.tenancy). What
the call presents as caller ID is checked first (core.callerid): a refused ``caller_id``
answers the ``call.create`` with ``caller_id_not_allowed`` and no call exists.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from callbridge.core.callerid import CallerIds, clean_display_name
from callbridge.core.calls import Call, Caller, CallState, Leg, LegState, all_live
from callbridge.core.devices import Device
from callbridge.core.events import (
    CallAnswered,
    CallRinging,
    CallTrying,
    CommandFailed,
    LegAnswered,
    LegInitiated,
    SdpAnswer,
)
from callbridge.core.followme import FollowMe
from callbridge.core.ringgroup import RingState
from callbridge.core.tenancy import account_of
from callbridge.errors import ErrorCode, MediaError, ProtocolError
from callbridge.vocabulary import EndReason, MediaType

if TYPE_CHECKING:
    from callbridge.core.controller import CallController

__all__ = ["Routing"]

log = logging.getLogger(__name__)


class Routing:
    """Placing calls and ringing the callee's devices (one per controller)."""

    def __init__(self, calls: CallController) -> None:
        self.calls = calls
        self.caller_ids = CallerIds(calls.directory)
        self.followme = FollowMe(calls)  # issue 16: a called user's forwarding rules

    async def create_call(
        self,
        device: Device,
        destination: str,
        sdp: str,
        caller_id: str | None,
        req_id: str | None,
        media_type: MediaType | None = None,
    ) -> None:
        """``call.create``: answer the device's offer, then route the call."""
        c = self.calls
        presented = await self.caller_ids.for_device(device, caller_id)  # refused: no call
        leg = Leg(device=device, direction="outgoing")
        # MediaError -> `error`, no call exists
        if getattr(device, "plain_rtp", False):  # a SIP phone's RTP/AVP offer (no ICE)
            answer = await c.media.answer_rtp(leg.id, sdp)
        else:
            answer = await c.media.answer(leg.id, sdp, video=media_type != "audio")
        try:
            info = await c.media.endpoint_info(leg.id)
            if media_type == "video" and not info.video:
                raise ProtocolError(
                    ErrorCode.INVALID_SDP,
                    "media_type 'video' needs a video m-line with VP8 in the offer",
                )
        except ProtocolError:
            await c.media.close(leg.id)
            raise
        c.legs[leg.id] = leg
        call = Call(
            id=leg.id,
            origin=leg,
            destination=destination,
            caller_id=presented or device.caller_id,
            caller_name=clean_display_name(device.display_name) or device.user_name,
            media_type="video" if info.video else "audio",
        )
        call.state_observer = c.observer
        leg.call = call
        leg.media_type = call.media_type
        leg.transition(LegState.TRYING)
        c.bus.publish(LegInitiated(leg=leg.facts()))
        device.deliver(CallTrying(req_id=req_id, call_id=leg.id, media_type=call.media_type))
        device.deliver(SdpAnswer(call_id=leg.id, sdp=answer))
        c.deliver_candidates(leg, info.candidates)
        await self.route(call, destination)

    async def route(self, call: Call, destination: str) -> None:
        """Ring ``destination`` for the call's origin (a new call, or a blind transfer's)."""
        c = self.calls
        origin = call.origin
        # The store caches the reads below (dial rules, routes, forwarding: store.readcache);
        # one small query brings it up to date with changes made anywhere before this call.
        check = getattr(c.directory, "check_routing", None)
        if check is not None:
            await check()
        # The account's dial plan first (issue 16, core.dialplan): a rule matching the
        # destination decides; no rule, or no dial plan, leaves the call to what follows.
        if c.dial_plan is not None and await c.dial_plan.route(call, destination):
            return
        # A destination routed to an application goes there, before users (core.appcalls).
        if c.router is not None and await c.router.route(call, destination):
            return
        target = await c.directory.find_user(destination, account_of(origin.device))
        if not origin.live:
            return
        if target is None:
            # Out through a SIP trunk (issue 12: after applications and users).
            trunks = c.trunk_router
            if trunks is not None and await trunks.route(call, destination):
                return
            await self._fail(call, f"no user has the extension, number or name {destination!r}")
            return
        await self.ring_user(call, target, destination)

    async def ring_user(self, call: Call, target: Any, destination: str) -> None:
        """Ring every device of the user ``target`` (a store ``User``) for the call: ring-all
        (``destination``: what was dialled, for the error when nothing can ring)."""
        c = self.calls
        origin = call.origin
        call.callee_name = target.name
        rules = await self.followme.rules_of(target.name)
        if rules is not None:  # issue 16: the user's forwarding rules (core.followme)
            await self.followme.run(call, target, rules)
            return
        devices = await c.ringable_devices(target.name, but=origin.device)
        if not devices:
            await self._fail(call, f"{destination!r} ({target.name}) has no device logged in")
            return
        info = await c.endpoint_info(origin)
        group = c.ring_group(
            "ring-all", partial(self._answered, call), partial(self._exhausted, call)
        )
        call.ring = group  # before any await: a hangup meanwhile cancels it
        caller = Caller(call.caller_id, call.caller_name, call.destination, call.media_type)
        prefer = info.codec if info else None
        for leg in await c.ring_devices(group, devices, caller, prefer, call=call):
            c.bus.publish(LegInitiated(leg=leg.facts()))
        if call.ended or not await group.start(c.ring_timeout):
            return
        if group.state is not RingState.RINGING or call.state is not CallState.ROUTING:
            return  # a device answered while the others were being rung
        call.transition(CallState.RINGING)
        origin.transition(LegState.RINGING)
        # Early media: the caller hears ringback from the server until someone answers.
        # Not after the call ended or was answered meanwhile: call.ringing would follow its
        # call.ended (or call.answered) on the caller's wire.
        ringback = await c.on_live(c.media.play(origin.id, "ringback"), origin)
        if ringback and group.state is RingState.RINGING:
            origin.device.deliver(CallRinging(call_id=origin.id))

    async def _fail(self, call: Call, why: str) -> None:
        error = ProtocolError(ErrorCode.DESTINATION_NOT_FOUND, why)
        call.origin.device.deliver(CommandFailed(error=error, call_id=call.origin.id))
        await self.calls.end_call(call, EndReason.FAILED, EndReason.FAILED)

    async def _answered(self, call: Call, leg: Leg, sdp: str, req_id: str | None) -> None:
        """The ring group's winner: accept its answer and bridge it to the caller.

        Until it is connected the call does not end this leg (see Call): if the call ends
        meanwhile, the leg ends here with the call's ``far_reason``, as the answer's reply."""
        c = self.calls
        origin = call.origin
        if not call.ended:
            call.transition(CallState.ANSWERED, cause=leg.id)
            # A trunk leg's early media (183 + SDP) already applied the answer (trunk_calls).
            applied = getattr(leg.device, "answer_applied", False)
            if not applied and not await c.accept_answer(leg, sdp, req_id):
                await c.end_call(call, EndReason.FAILED, EndReason.FAILED)
                return
        info = await c.endpoint_info(leg)
        try:
            connected = (
                all_live(leg, origin)
                and await c.on_live(c.media.stop_playing(origin.id), leg, origin)
                and await c.on_live(c.media.bridge(origin.id, leg.id), leg, origin)
            )
        except MediaError as exc:
            # The media plane cannot connect these two (video between two media worker
            # processes): the answerer is told why (its answer's reply) and the call fails,
            # rather than staying answered with neither leg connected.
            leg.device.deliver(CommandFailed(error=exc, call_id=leg.id, req_id=req_id))
            await c.end_leg(leg, EndReason.FAILED)
            await c.end_call(call, EndReason.FAILED, EndReason.FAILED)
            return
        if not connected:
            # The caller went first (hung up, vanished): too late to connect.
            await c.end_leg(leg, call.far_reason or EndReason.CANCELED, req_id)
            return
        call.answered_leg = leg
        origin.peer, leg.peer = leg, origin
        origin.transition(LegState.ACTIVE)
        leg.transition(LegState.ACTIVE)
        # A video call answered as audio (the answer's video m-line inactive) is an audio call.
        video = call.media_type == "video" and info is not None and info.video
        media_type: MediaType = "video" if video else "audio"
        origin.media_type = leg.media_type = media_type
        call.answered_at = datetime.now(UTC)
        c.bus.publish(LegAnswered(leg=origin.facts()))
        c.bus.publish(LegAnswered(leg=leg.facts()))
        leg.device.deliver(CallAnswered(req_id=req_id, call_id=leg.id, media_type=media_type))
        origin.device.deliver(CallAnswered(call_id=origin.id, media_type=media_type))

    async def _exhausted(self, call: Call, reason: EndReason) -> None:
        """Nobody will answer: the caller's call ends with why."""
        ring = call.ring
        if reason is EndReason.NO_ANSWER:
            final = EndReason.NO_ANSWER
        elif reason in (EndReason.REJECTED, EndReason.BUSY):
            final = EndReason.BUSY if ring is not None and ring.busy else EndReason.REJECTED
        else:  # the last device vanished, or none could be rung
            final = EndReason.FAILED
        await self.calls.end_call(call, final, final)
