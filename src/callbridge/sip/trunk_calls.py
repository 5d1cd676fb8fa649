"""Calls through SIP trunks (issue 12): the carrier leg of an outbound call.

An E.164 destination that no application or local user owns reaches :meth:`TrunkCalls.route`
(``core/routing.py`` asks ``controller.trunk_router`` after applications and users). The
account's outbound route with the longest matching prefix names the trunks, in failover
order (:meth:`callbridge.trunks.TrunkDirectory.routes_for`); trunks the OPTIONS health check
marked ``down`` are skipped. The toll-fraud policy is asked first: a refusal fails the
caller's call with the policy's error and no INVITE leaves.

The carrier leg is a core leg rung through a one-device ring group, like a registered phone's
(:mod:`callbridge.sip.calls`), on a :class:`TrunkDevice`::

    core CallIncoming ─► INVITE (plain RTP offer, restricted to the trunk's codecs) to the
                         trunk's host or outbound proxy; Request-URI sip:+E164@host
                         P-Asserted-Identity / Privacy: id when the trunk says (RFC 3325)
    401/407           ─► the same INVITE with digest credentials (sip/digest_client.py)
    183/180 + SDP     ─► early media: the answer is applied and the caller bridged to the
                         carrier at once (RFC 3960 §3.1), the server's ringback stops
    2xx               ─► core answer (the dialog then works as a phone's: hold, DTMF,
                         REFER, BYE — sip/call_dialog.py)
    503 / 408 / no answer to the INVITE (Timer B) ─► the next trunk of the route
                         (not after early media: the caller already hears that carrier)
    486/600 ─► busy, 480/408/timeout ─► no-answer, 603 ─► rejected, others ─► failed
                         (seed 001's end reasons); the status is the call's SIP cause

The SIP status that ended the carrier leg is kept as ``sip_causes[core call id]`` for the
CDR and the ``call.hangup`` webhook (``sip_hangup_cause``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from callbridge.core.calls import Call, Caller, CallState, Leg, LegState
from callbridge.core.events import (
    CallDtmf,
    CallEnded,
    CallHeld,
    CallIncoming,
    CallResumed,
    CallRinging,
    CommandFailed,
    DeviceEvent,
    LegInitiated,
)
from callbridge.core.ringgroup import RingState
from callbridge.core.tenancy import account_of
from callbridge.core.tollfraud import Placer, TollFraudGuard
from callbridge.errors import ErrorCode, MediaError, ProtocolError
from callbridge.sip.call_dialog import CallDialogs, SipLeg, quiet
from callbridge.sip.device import SipDevice
from callbridge.sip.digest_client import AUTH_STATUSES, DigestSession
from callbridge.sip.message import Headers, Request, Response
from callbridge.sip.trunk_attempt import (
    NO_RESPONSE,
    end_late_answer,
    heard_in_time,
    reason_of_carrier_status,
    restrict_codecs,
)
from callbridge.sip.trunk_dns import locate
from callbridge.vocabulary import EndReason

if TYPE_CHECKING:
    from callbridge.core.controller import CallController
    from callbridge.core.ringgroup import RingGroup
    from callbridge.sip.stack import SipStack, Target
    from callbridge.sip.transport import Flow
    from callbridge.trunks import Trunk, TrunkDirectory

__all__ = [
    "E164",
    "FAILOVER_STATUSES",
    "TrunkCalls",
    "TrunkDevice",
    "TrunkPlan",
    "reason_of_carrier_status",
    "restrict_codecs",
]

log = logging.getLogger(__name__)

E164 = re.compile(r"\+[1-9][0-9]{1,14}", re.ASCII)
_SIP_USER = re.compile(r"\+?[A-Za-z0-9._*#-]{1,64}", re.ASCII)  # sent as the Request-URI user
FAILOVER_STATUSES = frozenset({408, 503})  # a next trunk may succeed (issue 12); not 486/603/404
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER"
_CAUSES_KEPT = 1000


def placer_of(device: Any, account_id: str) -> Placer:
    """Who places a call from ``device``, for the toll-fraud rules: an application's device,
    a call that came in from a trunk on a number (``inbound_number``), else a user (a
    ``/ws`` session's token or a phone's SIP digest authenticated it)."""
    application = getattr(device, "application", None)
    if application is not None:
        return Placer("application", str(application.id), account_id, source=device.id)
    number = getattr(device, "inbound_number", None)
    if number is not None:
        return Placer(
            "inbound",
            number.e164,
            account_id,
            source=device.id,
            authenticated=False,
            allow_outbound=number.allow_outbound,
        )
    return Placer("user", device.user_name, account_id, source=device.id)


@dataclass(frozen=True, slots=True)
class TrunkPlan:
    """Where an application's call goes out (:meth:`TrunkCalls.plan`)."""

    trunks: list[Trunk]
    destination: str  # the Request-URI user sent to the carrier
    placer: Placer


class TrunkDevice(SipDevice):
    """The carrier end of one outbound call (a core device that is never logged in)."""

    def __init__(
        self, sink: TrunkCalls, trunks: list[Trunk], destination: str, account_id: str
    ) -> None:
        self._sink = sink
        self.user = None
        self.binding = None
        self.trunks = trunks
        self.destination = destination
        self.user_name = destination  # the CDR's callee: the number dialled
        self.account_id = account_id
        self.caller_id = destination
        self.display_name = destination
        self.id = f"trunk:{trunks[0].name}:{secrets.token_hex(4)}"
        self.trunk: Trunk = trunks[0]  # the one being tried
        self.answer_applied = False  # early media applied the answer (core.routing skips it)
        self.media_lock = asyncio.Lock()  # ringback vs early media on the caller's leg
        self.origin_id: str | None = None
        self.placer: Placer | None = None
        self.call_id = ""  # the core call's id (the toll-fraud guard counts it)
        self.calling: tuple[str, str] = ("", "")  # the caller's number and name, as rung

    @property
    def reachable(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"<TrunkDevice {self.id} {self.destination}>"


class TrunkCalls:
    """Outbound calls through trunks, on one SIP stack (``controller.trunk_router``)."""

    def __init__(
        self,
        stack: SipStack,
        controller: CallController,
        directory: TrunkDirectory,
        guard: TollFraudGuard | None = None,
    ) -> None:
        self.stack = stack
        self.controller = controller
        self.directory = directory
        self.guard = guard
        self.legs: dict[str, SipLeg] = {}
        self.in_dialog = CallDialogs(stack, controller, self._bye_received)
        self.sessions: dict[str, DigestSession] = {}  # trunk id -> its digest state
        self.sip_causes: OrderedDict[str, int] = OrderedDict()  # core call id -> SIP status
        self.resolver: Any = None  # RFC 3263 lookups (None: dnspython's system configuration)

    def attach(self) -> None:
        self.controller.trunk_router = self

    def session(self, trunk: Trunk) -> DigestSession | None:
        """The trunk's digest client (None without credentials)."""
        user = trunk.digest_username
        if not user or not trunk.password:
            return None
        session = self.sessions.get(trunk.id)
        if session is None or (session.username, session.password) != (user, trunk.password):
            session = self.sessions[trunk.id] = DigestSession(user, trunk.password)
        return session

    def _cause(self, leg: SipLeg, status: int) -> None:
        """Keep ``status`` as the SIP cause of the leg's call: under the core call's id (the
        CDR), the id the call was placed as (an application's call: ``call.hangup``) and the
        leg's (an application's answered call goes on as a core call of that id)."""
        placed = getattr(leg.device, "call_id", "") or None
        for key in {self._call_of(leg.call_id), placed, leg.call_id} - {None}:
            assert key is not None
            self.sip_causes[key] = status
            self.sip_causes.move_to_end(key)
        while len(self.sip_causes) > _CAUSES_KEPT:
            self.sip_causes.popitem(last=False)

    def sip_cause(self, call_id: str) -> int | None:
        """The SIP status that ended call ``call_id``'s trunk leg (None: no trunk leg)."""
        return self.sip_causes.get(call_id)

    # routing ---------------------------------------------------------------------------------
    async def route(self, call: Call, destination: str) -> bool:
        """Send the call out through a trunk if a route of its account matches ``destination``
        (E.164); False when none does (the caller then gets ``destination_not_found``)."""
        if not E164.fullmatch(destination):
            return False
        c = self.controller
        origin = call.origin
        account = account_of(origin.device)
        trunks = await self.directory.routes_for(destination, account)
        if not trunks or not origin.live:
            return bool(trunks)
        usable = [t for t in trunks if t.health != "down"]
        if not usable:
            names = ", ".join(t.name for t in trunks)
            why = f"every trunk of the route for {destination} is down ({names})"
            await self._fail(call, ErrorCode.DESTINATION_NOT_FOUND, why)
            return True
        placer = placer_of(origin.device, account)
        if self.guard is not None:
            try:  # before anything rings; each attempt is admitted (counted) in _try
                await self.guard.check(placer, destination, usable[0])
            except ProtocolError as exc:
                await self._fail(call, exc.code, exc.message)
                return True
        device = TrunkDevice(self, usable, destination, account)
        device.origin_id = origin.id
        device.placer = placer
        device.call_id = call.id
        call.callee_name = destination
        group = c.ring_group(
            "trunk", partial(c.routing._answered, call), partial(c.routing._exhausted, call)
        )
        call.ring = group
        caller = Caller(call.caller_id, call.caller_name, call.destination, call.media_type)
        leg = await c.ring_device(group, device, caller, usable[0].codecs[0], call=call)
        if leg is not None:
            c.bus.publish(LegInitiated(leg=leg.facts()))
        if call.ended or not await group.start(c.ring_timeout):
            return True
        if group.state is not RingState.RINGING or call.state is not CallState.ROUTING:
            return True
        call.transition(CallState.RINGING)
        origin.transition(LegState.RINGING)
        async with device.media_lock:  # early media may already be bridged: no ringback then
            if not device.answer_applied:
                await c.on_live(c.media.play(origin.id, "ringback"), origin)
        if group.state is RingState.RINGING and origin.live:
            origin.device.deliver(CallRinging(call_id=origin.id))
        return True

    # an application's call (POST /v2/calls) -------------------------------------------------
    async def plan(
        self, to: str, application: Any, account: str, *, placer: Placer | None = None
    ) -> TrunkPlan | None:
        """Where an application's call to ``to`` goes out, checked by the toll-fraud policy;
        None when ``to`` is no trunk destination (neither E.164 nor a ``sip:`` URI).
        ``placer``: who the policy counts the call against when not ``application`` (a user
        whose forwarding rules ring an outside number, issue 16: that user's limits).

        ``+E164``: the account's outbound route with the longest matching prefix.
        ``sip:USER@HOST``: the account's trunk whose host is ``HOST`` (USER is sent as the
        Request-URI user), else, for an E.164 USER, its outbound route.

        :raises ProtocolError: no route or trunk (``destination_not_found``), every trunk of
            the route down, or the toll-fraud policy's refusal (its code, logged).
        """
        destination, host = to.strip(), None
        if destination.lower().startswith("sip:"):
            user, at, host = destination[4:].partition("@")
            host = host.split(";")[0].split(">")[0].strip().lower()
            if not at or not _SIP_USER.fullmatch(user) or not host:
                raise ProtocolError(
                    ErrorCode.DESTINATION_NOT_FOUND,
                    f"{to!r} is not a SIP URI to dial through a trunk: use sip:NUMBER@TRUNK-HOST "
                    "or an E.164 number (+ and up to 15 digits)",
                )
            destination = user
        elif not E164.fullmatch(destination):
            return None
        trunks: list[Trunk] = []
        if host is not None:  # HOST[:PORT] names the trunk (the port too, when given)
            bare, _, port = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
            trunks = [
                t
                for t in await self.directory.trunks(account)
                if t.host.lower() == bare.strip("[]") and (not port or str(t.port) == port)
            ]
        if not trunks and E164.fullmatch(destination):
            trunks = await self.directory.routes_for(destination, account)
        if not trunks:
            raise ProtocolError(
                ErrorCode.DESTINATION_NOT_FOUND,
                f"no user has the number {to!r} and no outbound route or trunk of the account "
                "reaches it: add one with 'callbridge outbound add PREFIX --trunks NAME'",
            )
        usable = [t for t in trunks if t.health != "down"]
        if not usable:
            names = ", ".join(t.name for t in trunks)
            raise ProtocolError(
                ErrorCode.DESTINATION_NOT_FOUND,
                f"every trunk that reaches {to!r} is down ({names}): see 'callbridge trunks list'",
            )
        if placer is None:
            placer = Placer(
                "application", str(application.id), account, source=f"rest {application.id}"
            )
        if self.guard is not None:
            await self.guard.check(placer, destination, usable[0])
        return TrunkPlan(usable, destination, placer)

    async def ring(
        self, group: RingGroup, plan: TrunkPlan, alert: Caller, key: str, account: str
    ) -> Leg | None:
        """Ring the carrier for an application's call in ``group`` (its ring timeout CANCELs
        the carrier); ``key``: the application call's id (its ``call.hangup`` cause)."""
        device = TrunkDevice(self, plan.trunks, plan.destination, account)
        device.placer = plan.placer
        device.call_id = key
        return await self.controller.ring_device(group, device, alert, plan.trunks[0].codecs[0])

    async def _fail(self, call: Call, code: ErrorCode, why: str) -> None:
        error = ProtocolError(code, why)
        call.origin.device.deliver(CommandFailed(error=error, call_id=call.origin.id))
        await self.controller.end_call(call, EndReason.FAILED, EndReason.FAILED)

    # the core's events -----------------------------------------------------------------------
    def deliver(self, device: SipDevice, event: DeviceEvent) -> None:
        assert isinstance(device, TrunkDevice)
        call_id = getattr(event, "call_id", None)
        if not isinstance(call_id, str):
            return
        leg = self.legs.get(call_id)
        if leg is None:
            if isinstance(event, CallIncoming):
                leg = self.legs[call_id] = SipLeg(device, call_id)
                device.calling = (event.from_, event.from_name)  # the caller ID to present
                self.stack.spawn(self._dial(leg, device, event.sdp), f"INVITE to {device.id}")
            return
        if isinstance(event, CallEnded):
            self._ended(leg, event.reason)
        elif isinstance(event, CallDtmf):
            self.stack.spawn(self.in_dialog.send_dtmf(leg, event.digit), "DTMF to a trunk")
        elif isinstance(event, CallHeld | CallResumed) and event.by == "remote":
            held = isinstance(event, CallHeld)
            self.stack.spawn(self.in_dialog.reoffer(leg, held), "re-INVITE to a trunk")

    def _ended(self, leg: SipLeg, reason: EndReason) -> None:
        self._release(leg)
        if leg.ended:
            return
        leg.ended = True
        self.legs.pop(leg.call_id, None)
        if leg.dialog is not None:
            if leg.dialog.state.value != "terminated":
                self.stack.spawn(quiet(self.in_dialog.bye_after_refer(leg, leg.dialog)), "BYE")
        elif leg.invite is not None:
            self._cause(leg, 487)  # RFC 3261 §9.1: the carrier answers the INVITE 487
            leg.cancel_reason = f'SIP;cause=487;text="{reason}"'
            if leg.provisional.is_set():
                self._cancel(leg)

    def _release(self, leg: SipLeg) -> None:
        """The toll-fraud guard's count of this call ends (idempotent)."""
        device = leg.device
        if self.guard is not None and isinstance(device, TrunkDevice) and device.call_id:
            self.guard.ended(device.call_id)

    def _cancel(self, leg: SipLeg) -> None:
        if leg.invite is not None and leg.flow is not None and leg.cancel_reason is not None:
            self.stack.cancel(leg.invite, leg.flow, leg.cancel_reason)
            leg.cancel_reason = None

    def _bye_received(self, leg: SipLeg) -> None:
        """The carrier hung up (BYE): the core leg ends like a phone's."""
        self._release(leg)
        leg.ended = True
        self.legs.pop(leg.call_id, None)
        self._cause(leg, 200)
        self.stack.spawn(self._hangup(leg), "BYE from a trunk")

    async def _hangup(self, leg: SipLeg) -> None:
        with contextlib.suppress(ProtocolError):
            await self.controller.hangup(leg.device, leg.call_id, None)

    def _call_of(self, leg_id: str) -> str | None:
        core = self.controller.legs.get(leg_id)
        return core.call.id if core is not None and core.call is not None else None

    # dialling --------------------------------------------------------------------------------
    def _invite(self, trunk: Trunk, device: TrunkDevice, sdp: str, leg_id: str) -> Request:
        caller_id = device.calling[0] or "anonymous"
        name = device.calling[1].replace('"', "").replace("\\", "")
        domain = self.stack.domain
        host = f"[{trunk.host}]" if ":" in trunk.host else trunk.host
        port = "" if trunk.port == 5060 and trunk.transport == "udp" else f":{trunk.port}"
        suffix = "" if trunk.transport == "udp" else f";transport={trunk.transport}"
        uri = f"sip:{device.destination}@{host}{port}{suffix}"
        from_ = f'"{name}" <sip:{caller_id}@{domain}>' if name else f"<sip:{caller_id}@{domain}>"
        transport = trunk.transport.upper()
        headers = Headers(
            [
                ("From", f"{from_};tag={secrets.token_hex(6)}"),
                ("To", f"<sip:{device.destination}@{host}{port}>"),
                ("Call-ID", f"{secrets.token_hex(12)}@{domain}"),
                ("CSeq", "1 INVITE"),
                ("Contact", self.stack.contact(transport)),
                ("Allow", ALLOW),
                ("Content-Type", "application/sdp"),
            ]
        )
        if trunk.outbound_proxy:
            headers.add("Route", f"<sip:{trunk.outbound_proxy};lr>", first=True)  # §8.1.2
        if trunk.send_pai and caller_id != "anonymous":  # RFC 3325 §9.1
            headers.add("P-Asserted-Identity", f"<sip:{caller_id}@{domain}>")
        if trunk.privacy == "id":  # RFC 3325 §9.3
            headers.add("Privacy", "id")
        body = restrict_codecs(sdp, trunk.codecs).encode()
        return Request("INVITE", uri, headers, body)

    def target(self, trunk: Trunk) -> Target:
        """Where the trunk's requests go: its outbound proxy, else its host and port."""
        from callbridge.sip.stack import Target

        if trunk.outbound_proxy:
            host, _, port = trunk.outbound_proxy.rpartition(":")
            if host and port.isdigit() and not host.endswith(":"):
                return Target(trunk.transport.upper(), host.strip("[]"), int(port))
            return Target(trunk.transport.upper(), trunk.outbound_proxy.strip("[]"), 5060)
        return Target(trunk.transport.upper(), trunk.host, trunk.port)

    async def flow(self, trunk: Trunk) -> Flow:
        """A flow to the trunk: a host name is located by RFC 3263 (NAPTR, SRV, A/AAAA:
        :mod:`callbridge.sip.trunk_dns`) and its addresses tried in order until one can be
        reached (§4.3; a UDP address always can)."""
        from callbridge.sip.stack import Target

        target = self.target(trunk)
        located = await locate(target.host, target.port, trunk.transport, self.resolver)
        failure: OSError | None = None
        for place in located:
            try:
                return await self.stack.resolve(Target(target.transport, place.address, place.port))
            except OSError as exc:
                failure = exc
        raise failure or OSError(f"{target.host}: no address")

    async def _dial(self, leg: SipLeg, device: TrunkDevice, sdp: str) -> None:
        """Try the route's trunks in order until one answers or fails for good."""
        final: Response | None = None
        for index, trunk in enumerate(device.trunks):
            device.trunk = trunk
            leg.provisional = asyncio.Event()
            final = await self._try(leg, device, trunk, sdp)
            if final is None or leg.ended:  # answered, or the call ended meanwhile
                return
            more = index + 1 < len(device.trunks)
            if final.status in FAILOVER_STATUSES and more and not device.answer_applied:
                log.info(
                    "trunk %s answered %d %s for %s: failing over to %s",
                    trunk.name, final.status, final.reason, device.destination,
                    device.trunks[index + 1].name,
                )  # fmt: skip
                continue
            break
        if final is None or leg.ended:
            return
        status = final.status
        self._release(leg)
        self._cause(leg, status)
        log.info("trunk call to %s failed: %d %s", device.destination, status, final.reason)
        leg.ended = True
        self.legs.pop(leg.call_id, None)
        core = self.controller.legs.get(leg.call_id)
        if core is not None and core.ring_owner is not None:
            await core.ring_owner.decline(core, reason_of_carrier_status(status), None)

    async def _try(
        self, leg: SipLeg, device: TrunkDevice, trunk: Trunk, sdp: str
    ) -> Response | None:
        """One trunk: the final non-2xx response, or None when the call was answered."""
        if self.guard is not None and device.placer is not None:
            try:
                await self.guard.admit(device.placer, device.destination, trunk, device.call_id)
            except ProtocolError as exc:  # logged by the guard
                return Request("INVITE", f"sip:{trunk.host}").response(
                    503, f"Service Unavailable (toll-fraud policy: {exc.code})"
                )
        request = self._invite(trunk, device, sdp, leg.call_id)
        session = self.session(trunk)

        heard = asyncio.Event()  # any response to this attempt (100 Trying included)
        abandoned = False

        def provisional(response: Response) -> None:
            heard.set()
            if abandoned:  # a late answer of an attempt given up: the next trunk has the leg
                return
            if response.status > 100 and not leg.provisional.is_set():
                leg.provisional.set()
                if leg.cancel_reason is not None:
                    self._cancel(leg)  # ended before the carrier said anything (§9.1)
            if response.status > 100 and response.body.strip() and not device.answer_applied:
                self.stack.spawn(self._early(leg, device, response), "early media")

        while True:
            leg.invite, leg.flow = request, None
            try:
                flow = await self.flow(trunk)
                leg.flow = flow
                heard.clear()
                sent = asyncio.ensure_future(
                    self.stack.dialogs.invite(request, flow, on_provisional=provisional)
                )
                if not await heard_in_time(sent, heard):
                    abandoned = True
                    self.stack.spawn(end_late_answer(sent), "late answer of an INVITE given up")
                    log.info("trunk %s: no answer to the INVITE for %s within %g s",
                             trunk.name, device.destination, NO_RESPONSE)  # fmt: skip
                    return request.response(
                        408, f"Request Timeout (no answer in {NO_RESPONSE:g} s)"
                    )
                final, dialog = await sent
            except OSError as exc:
                log.info("trunk %s: cannot reach %s: %s", trunk.name, trunk.host, exc)
                return request.response(503, f"Service Unavailable ({exc})"[:100])
            if final.status in AUTH_STATUSES and session is not None and not leg.ended:
                retry = session.retry(request, final)
                if retry is not None:
                    request = retry
                    continue
                log.warning("trunk %s: %s", trunk.name, session.failure)
            if session is not None:
                session.done(request.call_id)
            break
        if not 200 <= final.status < 300 or dialog is None:
            return final
        if leg.ended:  # the caller hung up as the carrier answered (§15): end it
            await quiet(dialog.bye())
            return None
        leg.dialog = dialog
        self._cause(leg, 200)  # answered: the cause of a normal clearing
        self.in_dialog.serve(leg, dialog)
        try:
            await self.controller.answer(
                device, leg.call_id, final.body.decode(errors="replace"), None
            )
        except ProtocolError as exc:
            log.info("trunk: late answer of %s: %s", leg.call_id, exc.message)
            if not leg.ended:
                leg.ended = True
                self.legs.pop(leg.call_id, None)
                await quiet(dialog.bye())
        return None

    async def _early(self, leg: SipLeg, device: TrunkDevice, response: Response) -> None:
        """A 18x with SDP: the carrier's early media (RFC 3960 §3.1) reaches the caller now."""
        if "application/sdp" not in (response.content_type or "").lower():
            return
        c = self.controller
        async with device.media_lock:
            if device.answer_applied or leg.ended:
                return
            try:
                await c.media.accept_answer(leg.call_id, response.body.decode(errors="replace"))
            except MediaError as exc:
                log.info("trunk %s: unusable early SDP: %s", device.trunk.name, exc.message)
                return
            device.answer_applied = True
            origin_id = device.origin_id
            if origin_id is None or origin_id not in c.legs or leg.call_id not in c.legs:
                return
            with contextlib.suppress(MediaError):
                await c.media.stop_playing(origin_id)
                await c.media.bridge(origin_id, leg.call_id)
