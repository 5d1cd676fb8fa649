"""The call controller: the registry of devices and live legs, and the life and death of legs.

It owns every live leg and tells devices what happened with typed events
(``device.deliver``); it never builds a wire message. The call logic lives in one module per
concept, each a small service holding a reference to the controller:

=====================  ======================================================================
:mod:`.routing`        placing a call, routing it, ringing all of a user's devices (ring-all)
:mod:`.incall`         hold, resume, mute
:mod:`.transfer`       blind and attended transfer
:mod:`.moves`          moving a live call to another device of the user (seed 002 ``move``)
:mod:`.modify`         audio <-> video upgrade and downgrade (seed 002)
:mod:`.legmedia`       media events (DTMF, a failed endpoint), ICE candidates, restarting media
:mod:`.ringgroup`      ringing several devices at once, first answer wins
=====================  ======================================================================

This module keeps what they share: the device and leg registries, the one dispatch of a
ringing leg's answer / refusal / vanished device to whoever rang it (``leg.ring_owner``),
ending legs and calls, CDRs, the typed event bus, timers and tasks (one
:class:`~callbridge.core.scheduler.Scheduler`). All methods run on the server's event loop;
state is re-checked after every ``await`` because another message may have ended the leg
meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from callbridge.core.call_events import state_publisher
from callbridge.core.calls import Call, CallState, Leg, LegState, all_live
from callbridge.core.conferences import ConferenceKind, ConferenceManager
from callbridge.core.devices import Device
from callbridge.core.events import (
    CallEnded,
    CommandFailed,
    EventBus,
    IceCandidateOffered,
    IceGatheringDone,
    LegEnded,
    PeerNotice,
)
from callbridge.core.incall import InCall
from callbridge.core.legmedia import LegMedia
from callbridge.core.modify import Modifications
from callbridge.core.moves import Moves
from callbridge.core.ringgroup import AnswerHook, ExhaustedHook, RingGroup
from callbridge.core.ringing import Alert
from callbridge.core.routing import Routing
from callbridge.core.scheduler import Scheduler
from callbridge.core.transfer import Transfers
from callbridge.errors import ErrorCode, MediaError, ProtocolError
from callbridge.media.interface import Candidate, EndpointInfo, MediaServer
from callbridge.statemachine import StateChanged, StateObserver
from callbridge.vocabulary import EndReason

__all__ = ["CallController", "CallRouter", "CdrWriter", "DeviceFinder", "Directory", "LegTable"]

log = logging.getLogger(__name__)
_RECENTLY_ENDED = 1000  # ended call ids remembered for precise errors


DeviceFinder = Callable[[str], Awaitable[list[Device]]]
"""``finder(user_name)``: more devices of the user to ring (e.g. its SIP contacts)."""


class Directory(Protocol):
    """What the controller needs from the store."""

    async def find_user(self, destination: str, account_id: str) -> Any:
        """The user of the account that ``destination`` (extension, number, name) means."""

    async def record_cdr(self, cdr: Any) -> None: ...


class CdrWriter(Protocol):
    """Where CDRs go when the server keeps them durably (``callbridge.journal``): a record
    written when a call starts and completed when it ends. Without one, the directory's
    ``record_cdr`` gets each ended call's CDR."""

    def opened(self, call: Call) -> None: ...

    async def ended(self, call: Call, cdr: Any) -> None: ...


class CallRouter(Protocol):
    """Routing hook (core.appcalls): takes a call whose destination an application owns."""

    async def route(self, call: Call, destination: str) -> bool:
        """True if the call was taken (the controller then leaves it alone)."""


class LegTable(dict[str, Leg]):
    """The live legs by id. Registering a leg here publishes its state changes on the bus."""

    def __init__(self, observer: StateObserver) -> None:
        super().__init__()
        self._observer = observer

    def __setitem__(self, key: str, leg: Leg) -> None:
        leg.state_observer = self._observer
        super().__setitem__(key, leg)


class CallController:
    """Owns the devices and live legs of this node and drives calls between them.

    Device adapters (``/ws`` sessions, later SIP) call the commands: :meth:`answer`,
    :meth:`reject`, :meth:`hangup` here, the others on its services (``routing``, ``incall``,
    ``transfers``, ``moves``, ``modifications``, ``leg_media``). Listeners subscribe to
    :attr:`bus`. ``media`` is the media plane, ``directory`` the store.
    """

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
        self.bus = EventBus()
        self._publish_state = state_publisher(self.bus)
        self.observer: StateObserver = self._observe  # every machine here reports its changes
        self.cdrs: CdrWriter | None = None  # set by the server: CDRs open at a call's start
        self._opened: set[str] = set()  # calls whose start went to ``cdrs``
        self._handed = asyncio.Event()  # set (and replaced) when a CDR goes to ``cdrs``
        self.scheduler = Scheduler("calls")
        self.devices: dict[str, dict[str, Device]] = {}  # user name -> device id -> device
        self.legs = LegTable(self.observer)
        self._ended: OrderedDict[str, tuple[str, EndReason]] = OrderedDict()
        self.routing = Routing(self)
        self.incall = InCall(self)
        self.transfers = Transfers(self)
        self.moves = Moves(self)
        self.modifications = Modifications(self)
        self.leg_media = LegMedia(self)
        self.conferences = ConferenceManager(self, recordings_dir)
        # Application calls (core.appcalls) hook in here: a router for destinations that an
        # application owns.
        self.router: CallRouter | None = None
        # SIP trunks (sip/trunk_calls.py): E.164 destinations no application or user owns.
        self.trunk_router: CallRouter | None = None
        # The accounts' dial plans (issue 16, core.dialplan): asked before everything else.
        self.dial_plan: CallRouter | None = None
        # Devices kept outside this registry (SIP bindings live in the store): each finder
        # returns the user's devices to ring on a call (``ringable_devices``).
        self.device_finders: list[DeviceFinder] = []
        media.subscribe(self.leg_media.on_media_event)

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
                leg.peer.device.deliver(PeerNotice(call_id=leg.peer.id, code=code, message=message))

    def reachable_devices(self, user_name: str, but: Device | None = None) -> list[Device]:
        """The user's devices that can ring now (``but`` left out)."""
        return [d for d in self.devices.get(user_name, {}).values() if d is not but and d.reachable]

    async def ringable_devices(self, user_name: str, but: Device | None = None) -> list[Device]:
        """What a call to the user rings: its reachable devices here (``/ws`` sessions) and
        those the finders know (SIP contacts of the user's registrations)."""
        devices = self.reachable_devices(user_name, but)
        for finder in self.device_finders:
            try:
                devices += [d for d in await finder(user_name) if d is not but and d.reachable]
            except Exception:  # a finder's store away: ring what can be rung
                log.exception("finding the devices of %s failed", user_name)
        return devices

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

    def answered_leg(self, device: Device, call_id: str) -> Leg:
        """The device's answered leg ``call_id``: bridged, or in a conference."""
        leg = self.leg_of(device, call_id)
        if not leg.answered or (leg.peer is None and leg.conference is None):
            raise ProtocolError(
                ErrorCode.INVALID_STATE, f"call {call_id} is {leg.state}; it must be answered"
            )
        return leg

    def bridged(self, device: Device, call_id: str, action: str) -> Leg:
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

    def too_late(self, leg: Leg) -> ProtocolError:
        """The error that answers a command whose call ended (or changed) while it was being
        carried out: the device's request still gets a reply."""
        if not leg.live:
            return ProtocolError(
                ErrorCode.CALL_NOT_FOUND, f"call {leg.id} has ended ({leg.end_reason})"
            )
        return ProtocolError(
            ErrorCode.INVALID_STATE, f"call {leg.id} changed while this request was carried out"
        )

    def hosted_member(self, leg: Leg) -> bool:
        """True for a leg in a hosted (seed 002) conference: its calls are the conference's."""
        conf = leg.conference
        return conf is not None and conf.kind is ConferenceKind.CONFERENCE

    # the media plane ------------------------------------------------------------------------
    async def on_live(self, op: Awaitable[object], *legs: Leg) -> bool:
        """Await a media-plane operation on ``legs``: True if they are all still live after
        it. A leg may end during the await and close its endpoint under the operation; its
        ``MediaError`` then just means "too late" (False). Any other raises."""
        try:
            await op
        except MediaError:
            if all_live(*legs):
                raise
            return False
        return all_live(*legs)

    async def accept_answer(self, leg: Leg, sdp: str, req_id: str | None) -> bool:
        """Complete a rung leg's media with its device's answer. False when the media plane
        refused it: the device is told (the reply to its answer) and the leg ends ``failed``.
        A leg that ended meanwhile is no failure: the caller's own checks see it ended."""
        try:
            await self.on_live(self.media.accept_answer(leg.id, sdp), leg)
        except MediaError as exc:
            leg.device.deliver(CommandFailed(error=exc, call_id=leg.id, req_id=req_id))
            await self.end_leg(leg, EndReason.FAILED)
            return False
        return True

    async def endpoint_info(self, leg: Leg) -> EndpointInfo | None:
        """What the media plane negotiated for the leg; None once the leg or endpoint is gone."""
        if not leg.live:
            return None
        try:
            return await self.media.endpoint_info(leg.id)
        except MediaError as exc:
            if leg.live:  # not a leg that ended meanwhile: worth knowing
                log.warning("no media information for live leg %s: %s", leg.id, exc)
            return None

    def deliver_candidates(self, leg: Leg, candidates: tuple[Candidate, ...]) -> None:
        """Trickle the server's ICE candidates to the leg's device, then ``ice.done``."""
        for candidate in candidates:
            leg.device.deliver(IceCandidateOffered(call_id=leg.id, candidate=candidate))
        leg.device.deliver(IceGatheringDone(call_id=leg.id))

    # ringing devices ------------------------------------------------------------------------
    def ring_group(
        self,
        what: str,
        on_answer: AnswerHook,
        on_exhausted: ExhaustedHook,
        *,
        refusal: EndReason | None = None,
    ) -> RingGroup:
        """A new ring group on this controller's scheduler, its changes on the bus."""
        group = RingGroup(
            self,
            self.scheduler,
            on_answer=on_answer,
            on_exhausted=on_exhausted,
            what=what,
            refusal=refusal,
        )
        group.state_observer = self.observer
        return group

    async def ring_devices(
        self,
        group: RingGroup,
        devices: list[Device],
        alert: Alert,
        prefer: str | None,
        *,
        call: Call | None = None,
    ) -> list[Leg]:
        """Ring each device in ``group`` (:meth:`ring_device`) until the group closes (a
        device answered, or the owner canceled); the legs that ring."""
        legs: list[Leg] = []
        for device in devices:
            if not group.open:
                break
            leg = await self.ring_device(group, device, alert, prefer, call=call)
            if leg is not None:
                legs.append(leg)
        return legs

    async def ring_device(
        self,
        group: RingGroup,
        device: Device,
        alert: Alert,
        prefer: str | None,
        *,
        call: Call | None = None,
    ) -> Leg | None:
        """Create a leg for ``device``, offer it media (``prefer``: a codec), register it and
        ring it as part of ``group``: the device gets ``alert``'s event, then the server's
        candidates. None when the media plane failed or the group closed meanwhile."""
        leg = Leg(device=device, direction="incoming", call=call)
        try:
            if getattr(device, "plain_rtp", False):  # a SIP phone: RTP/AVP, no ICE
                offer = await self.media.offer_rtp(leg.id, prefer)
            else:
                offer = await self.media.offer(leg.id, prefer, video=alert.video)
            info = await self.media.endpoint_info(leg.id)
        except MediaError:
            log.exception("could not create media for %s", device.id)
            await self.media.close(leg.id)
            return None
        if not group.open:
            await self.media.close(leg.id)
            return None
        self.legs[leg.id] = leg
        leg.transition(LegState.RINGING)
        group.add(leg)
        device.deliver(alert.event(leg.id, offer))
        self.deliver_candidates(leg, info.candidates)
        return leg

    # a ringing leg's device answers, refuses, goes away ---------------------------------------
    # Whoever rang the leg (``leg.ring_owner``: a ring group) decides what that means.
    async def answer(self, device: Device, call_id: str, sdp: str, req_id: str | None) -> None:
        leg = self.leg_of(device, call_id)
        if leg.ring_owner is None:
            raise ProtocolError(ErrorCode.INVALID_STATE, f"call {call_id} is not ringing here")
        await leg.ring_owner.answer(leg, sdp, req_id)

    async def reject(
        self, device: Device, call_id: str, reason: str | None, req_id: str | None
    ) -> None:
        leg = self.leg_of(device, call_id)
        if leg.ring_owner is None:
            raise ProtocolError(ErrorCode.INVALID_STATE, f"call {call_id} is not ringing here")
        refusal = EndReason.BUSY if reason == "busy" else EndReason.REJECTED
        await leg.ring_owner.decline(leg, refusal, req_id)

    async def hangup(self, device: Device, call_id: str, req_id: str | None) -> None:
        leg = self.leg_of(device, call_id)
        if leg.ring_owner is not None:  # hanging up a ringing leg declines it (docs/protocol.md)
            await leg.ring_owner.decline(leg, EndReason.REJECTED, req_id)
            return
        if self.hosted_member(leg):
            await self.conferences.hosting.leave(leg, EndReason.HANGUP, req_id)
            return
        call = leg.call
        # The caller hanging up before an answer cancels: the rung devices get `canceled`.
        cancel = call is not None and leg is call.origin and not leg.answered
        await self.end_leg(leg, EndReason.HANGUP, req_id)
        if call is not None:
            far = EndReason.CANCELED if cancel else EndReason.HANGUP
            await self.end_call(call, EndReason.HANGUP, far)

    async def _leg_gone(
        self, leg: Leg, reason: EndReason, far_reason: EndReason = EndReason.HANGUP
    ) -> None:
        """The leg's device vanished; the rest of its call ends as if it hung up."""
        if leg.ring_owner is not None:
            await leg.ring_owner.decline(leg, reason, None)
            return
        if self.hosted_member(leg):
            await self.conferences.hosting.leave(leg, reason)
            return
        await self.end_leg(leg, reason)
        call = leg.call
        if call is not None:
            cancel = leg is call.origin and call.answered_leg is None
            await self.end_call(call, far_reason, EndReason.CANCELED if cancel else far_reason)

    # ending ---------------------------------------------------------------------------------
    async def end_leg(self, leg: Leg, reason: EndReason, req_id: str | None = None) -> None:
        """End one leg: its state, the bus, its device (``call.ended``), its media."""
        if not leg.live:
            return
        leg.transition(LegState.ENDED, cause=reason.value)
        leg.end_reason = reason
        leg.ring_owner = None
        self.bus.publish(LegEnded(leg=leg.facts(), reason=reason))
        if leg.conference is not None:
            await self.conferences.leg_ending(leg)
        await self.moves.leg_ended(leg)
        self.legs.pop(leg.id, None)
        self._ended[leg.id] = (leg.device.id, reason)
        while len(self._ended) > _RECENTLY_ENDED:
            self._ended.popitem(last=False)
        if leg.peer is not None and leg.peer.peer is leg:
            leg.peer.peer = None
        leg.peer = None
        leg.device.deliver(CallEnded(req_id=req_id, call_id=leg.id, reason=reason))
        await self.media.close(leg.id)

    async def end_call(
        self,
        call: Call,
        origin_reason: EndReason,
        far_reason: EndReason,
        req_id: str | None = None,
    ) -> None:
        """End every live leg of the call and write its CDR (once); ``req_id`` goes with the
        origin's ``call.ended``. Devices still ringing for it and the answered one get
        ``far_reason`` (one whose answer is under way gets it from its answer, see Call)."""
        if call.ended:
            return
        call.transition(CallState.ENDED, cause=origin_reason.value)
        call.far_reason = far_reason
        await self.end_leg(call.origin, origin_reason, req_id)
        if call.ring is not None:
            await call.ring.cancel(far_reason)
        if call.answered_leg is not None:
            await self.end_leg(call.answered_leg, far_reason)
        self.write_cdr(call, call.origin.end_reason or origin_reason)

    def _observe(self, change: StateChanged[Any]) -> None:
        """Every state change of the core: published on the bus; the first change of a call
        (or of a leg of it) that is not its end opens its CDR. Calls start in several places
        (routing, transfers, conferences, applications), each with a change of its call or
        origin leg right away: this one hook sees them all."""
        self._publish_state(change)
        if self.cdrs is None or self._cdr_factory is None:
            return
        subject = change.subject
        call = subject if isinstance(subject, Call) else getattr(subject, "call", None)
        if not isinstance(call, Call) or call.ended or call.id in self._opened:
            return
        if isinstance(subject, Leg) and not subject.live:
            return  # a leg that ends before its call started: the end writes the CDR
        self._opened.add(call.id)
        self.cdrs.opened(call)

    @property
    def cdr_pending(self) -> frozenset[str]:
        """The calls whose CDR was opened and not yet handed to ``cdrs`` (write_cdr)."""
        return frozenset(self._opened)

    def cdr_handed(self) -> Coroutine[Any, Any, Literal[True]]:
        """Await it: done when the next call's CDR is handed to ``cdrs``. The event is taken
        now, so a hand-over between this call and the first await is not missed."""
        return self._handed.wait()

    def write_cdr(self, call: Call, reason: EndReason) -> None:
        if self._cdr_factory is None:
            return
        far = call.answered_leg
        cdr = self._cdr_factory(
            call_id=call.id,
            caller=call.origin.device.user_name,
            callee=far.device.user_name if far is not None else call.callee_name,
            destination=call.destination,
            started_at=call.started_at,
            answered_at=call.answered_at,
            ended_at=datetime.now(UTC),
            end_reason=reason.value,
            direction="internal",
        )
        # Drained by shutdown(): a CDR is a record that must not be lost to a cancellation.
        if self.cdrs is not None:
            self._opened.discard(call.id)
            self.scheduler.spawn(self.cdrs.ended(call, cdr), f"CDR of call {call.id}")
            self._handed.set()  # wakes cdr_handed() waiters; the next wait is on a new one
            self._handed = asyncio.Event()
            return
        self.scheduler.spawn(self.directory.record_cdr(cdr), f"CDR of call {call.id}")

    async def shutdown(self) -> None:
        await self.conferences.shutdown()
        for leg in list(self.legs.values()):
            if leg.call is not None:
                await self.end_call(leg.call, EndReason.HANGUP, EndReason.HANGUP)
        for leg in list(self.legs.values()):  # rung for a move, an invitation, an app's dial
            await self.end_leg(leg, EndReason.HANGUP)
        await self.scheduler.drain()  # the CDRs those calls wrote
        await self.scheduler.close()
        await self.media.shutdown()
