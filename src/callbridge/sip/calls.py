"""Calls with SIP phones: the B2BUA adapter between SIP dialogs and the core's legs.

callbridge is a back-to-back user agent (never a proxy): each SIP phone's call is one core leg
on a plain RTP endpoint, bridged to whatever the core connects it to (a ``/ws`` softphone,
another SIP phone, a conference). This module maps both ways:

A phone calls (UAS side, an INVITE the stack routes here)::

    INVITE ─► 407 challenge unless digest credentials of a user are good (registrar,
              RFC 3261 §22.3; no unauthenticated INVITE is ever routed)
           ─► core ``create_call`` as that user (its account), media ``answer_rtp``
    core CallRinging  ─► 183 Session Progress + the answer SDP: the server's ringback is
                         early media (RFC 3960 gateway model)
    core CallAnswered ─► 200 OK + SDP, sent until ACK (dialog layer, §13.3.1.4)
    core CallEnded    ─► before the answer: 486 busy / 603 rejected / 480 no-answer /
                         404 (no such user) / 500; after it: BYE
    CANCEL (stack: 487) ─► core hangup: the rung devices end ``canceled``
    BYE from the phone  ─► core hangup

A user is called (UAC side): each live registration of the user is a :class:`SipDevice`
rung with the user's ``/ws`` sessions in one ring group (``CallController.device_finders``)::

    core CallIncoming ─► INVITE + ``offer_rtp`` SDP to the binding's connection or source
                         address (RFC 5626 / RFC 3581: the way its REGISTER came)
    2xx               ─► core ``answer`` (first answer wins; a late 2xx is ACKed and BYEd)
    486/600 ─► busy, 603 ─► rejected, 480/408 ─► no-answer, others ─► rejected
    core CallEnded while ringing ─► CANCEL (after a provisional, §9.1) with
        ``Reason: SIP;cause=200;text="Call completed elsewhere"`` for the losers (RFC 3326);
        the ring timeout is the ring group's, so Timer B never ends a ringing call
    core CallEnded after the answer ─► BYE

In a dialog (:mod:`callbridge.sip.call_dialog`): a re-INVITE is applied with
``renegotiate_rtp`` (its hold reaches the core: the far party hears hold music and gets
``call.held {by: "remote"}``); INFO with ``application/dtmf-relay`` or ``application/dtmf`` is
a DTMF digit for the far party; DTMF from the far party reaches the phone as RFC 4733 events,
or as INFO ``application/dtmf-relay`` when its leg negotiated no telephone-event. The far
party's hold reaches the phone as our re-INVITE (``sendonly``, ``sendrecv`` on resume). REFER
(RFC 3515) is a blind transfer: 202, NOTIFYs of sipfrag progress, then our BYE.

An INVITE without SDP (delayed offer, RFC 3261 §13.2.1, RFC 3264 §5) gets our offer in the
200 OK (180 without SDP while ringing: no early media) and the phone's answer in its ACK; an
ACK with no usable answer ends the call with BYE and a Reason naming the problem.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import TYPE_CHECKING

from callbridge.core.devices import Device
from callbridge.core.events import (
    CallAnswered,
    CallDtmf,
    CallEnded,
    CallHeld,
    CallIncoming,
    CallResumed,
    CallRinging,
    CommandFailed,
    DeviceEvent,
    SdpAnswer,
)
from callbridge.errors import ErrorCode, MediaError, ProtocolError
from callbridge.sip.call_dialog import CallDialogs, SipLeg, dtmf_of_info, quiet, sdp_body
from callbridge.sip.device import SipDevice
from callbridge.sip.headers import NameAddr
from callbridge.sip.message import Headers, Request, Response
from callbridge.sip.registrar import Registrar, Source
from callbridge.sip.replaces import invite_with_replaces
from callbridge.sip.syntax import SipParseError
from callbridge.sip.uri import parse_uri
from callbridge.store.sip import Binding, SipCredentials
from callbridge.vocabulary import EndReason

if TYPE_CHECKING:
    from callbridge.abuse import SourceGuard
    from callbridge.core.controller import CallController
    from callbridge.sip.dialog import Dialog
    from callbridge.sip.stack import Incoming, SipStack, Target
    from callbridge.sip.transport import Flow
    from callbridge.store import Store

__all__ = [
    "COMPLETED_ELSEWHERE",
    "SipCalls",
    "SipLeg",
    "attach_sip",
    "dtmf_of_info",
    "final_status",
    "reason_of_status",
    "refusal",
]

log = logging.getLogger(__name__)

COMPLETED_ELSEWHERE = 'SIP;cause=200;text="Call completed elsewhere"'  # RFC 3326 §2
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER"
INFO_DTMF_MS = 160  # the Duration of a digit sent as INFO application/dtmf-relay

# What a phone that called hears when its call ends before an answer (the seed's reasons).
_FINAL: dict[EndReason, tuple[int, str]] = {
    EndReason.BUSY: (486, "Busy Here"),
    EndReason.REJECTED: (603, "Decline"),
    EndReason.NO_ANSWER: (480, "Temporarily Unavailable (no answer)"),
    EndReason.CANCELED: (487, "Request Terminated"),
}


def final_status(reason: EndReason) -> tuple[int, str]:
    """The final response for a caller's call that ended unanswered with ``reason``."""
    return _FINAL.get(reason, (500, f"Server Internal Error (call {reason})"))


def reason_of_status(status: int) -> EndReason:
    """What a rung phone's final non-2xx response means for its leg."""
    if status in (486, 600):
        return EndReason.BUSY
    if status in (408, 480):
        return EndReason.NO_ANSWER
    return EndReason.REJECTED  # 603 and anything else a phone refuses with


class SipCalls:
    """The call adapter of one SIP stack (attach with :meth:`attach`)."""

    def __init__(self, stack: SipStack, registrar: Registrar, controller: CallController) -> None:
        self.stack = stack
        self.registrar = registrar
        self.controller = controller
        self.legs: dict[str, SipLeg] = {}  # core leg id -> its SIP side
        self.callers: dict[int, Incoming] = {}  # id(device) -> its INVITE, until CallTrying
        self.in_dialog = CallDialogs(stack, controller, self._bye_received)
        self._dtmf_locks: dict[str, asyncio.Lock] = {}  # core leg id -> its digits in order
        self._bound_connections: tuple[float, set[str]] = (-1e9, set())  # flow_in_use's cache

    def attach(self) -> None:
        """Take INVITEs from the stack and ring users' SIP contacts on their calls."""
        self.stack.on("INVITE", self._on_invite)
        self.controller.device_finders.append(self.devices_of)
        self.stack.transports.in_use.append(self.flow_in_use)

    async def flow_in_use(self, flow: Flow) -> bool:
        """Whether a quiet TCP/TLS connection must stay open (the transports close it when
        not): a call's INVITE or dialog is on it, or a live registration was made over it (the
        phone is reached that way, RFC 5626 §5). Transactions need no check: none outlives
        64*T1 of silence, far less than the idle timeout."""
        for leg in self.legs.values():
            flows = (leg.flow, leg.incoming.flow if leg.incoming else None)
            if flow in flows or (leg.dialog is not None and leg.dialog.flow is flow):
                return True
        connection = f"{flow.transport} {flow.remote[0]}:{flow.remote[1]}"
        loop = asyncio.get_running_loop()
        taken_at, connections = self._bound_connections
        if loop.time() - taken_at > 1.0:  # one query serves a whole sweep of idle connections
            bindings = await self.registrar.store.bindings()
            connections = {b.connection_id for b in bindings if b.connection_id}
            self._bound_connections = (loop.time(), connections)
        return connection in connections

    async def devices_of(self, user_name: str) -> list[Device]:
        """A device for each live registration of the user (what a call to it rings)."""
        bindings = await self.registrar.contacts_of(user_name)
        return [SipDevice(self, binding=b) for b in bindings]

    # a phone calls ---------------------------------------------------------------------------
    async def _on_invite(self, incoming: Incoming) -> None:
        request = incoming.request
        flow = incoming.flow
        source = Source(flow.transport.upper(), flow.remote[0], flow.remote[1])
        verdict = await self.registrar.authenticate(request, source, proxy=True)
        if not isinstance(verdict, SipCredentials):
            incoming.respond(verdict)
            return
        offer = ""  # none: a delayed offer (RFC 3261 §13.2.1), ours goes in the 200 OK
        if request.body.strip():
            if "application/sdp" not in (request.content_type or "").lower():
                incoming.respond(
                    415, "Unsupported Media Type (an INVITE's body must be application/sdp)"
                )
                return
            offer = request.body.decode(errors="replace")
        if "Replaces" in request.headers:  # RFC 3891: takes over a live call (sip/replaces.py)
            await invite_with_replaces(self, incoming, verdict.user)
            return
        destination = request.uri.user or ""
        if not destination:
            incoming.respond(404, "Not Found (the Request-URI names no user)")
            return
        device = SipDevice(self, user=verdict.user)
        self.callers[id(device)] = incoming
        try:
            await self.controller.routing.create_call(
                device, destination, offer, None, None, "audio"
            )
        except (ProtocolError, MediaError) as exc:
            if not incoming.tx.answered:
                incoming.respond(*refusal(exc))
            return
        finally:
            self.callers.pop(id(device), None)
        leg = next((x for x in self.legs.values() if x.device is device), None)
        if leg is not None and not leg.ended:
            # The handler lasts until the INVITE's final response (the stack answers 500 for
            # a handler that returns first): the answer, a refusal, or a CANCEL.
            await self.watch_cancel(leg, incoming)

    async def watch_cancel(self, leg: SipLeg, incoming: Incoming) -> None:
        """CANCEL of the phone's INVITE (the stack answered 487): the caller hung up."""
        cancelled = asyncio.ensure_future(incoming.cancelled.wait())
        try:
            while not leg.ended and not incoming.tx.answered and not cancelled.done():
                await asyncio.wait({cancelled}, timeout=0.5)
        finally:
            cancelled.cancel()
        if incoming.cancelled.is_set() and not leg.ended and leg.dialog is None:
            await self._hangup(leg)

    async def _hangup(self, leg: SipLeg) -> None:
        with contextlib.suppress(ProtocolError):
            await self.controller.hangup(leg.device, leg.call_id, None)

    def _bye_received(self, leg: SipLeg) -> None:
        """The phone hung up in the dialog (the dialog layer answered its BYE)."""
        leg.ended = True
        self.legs.pop(leg.call_id, None)
        self._dtmf_locks.pop(leg.call_id, None)
        self.stack.spawn(self._hangup(leg), "BYE from a phone")

    # the core's events -----------------------------------------------------------------------
    def deliver(self, device: SipDevice, event: DeviceEvent) -> None:
        """One fact for one SIP device; never blocks (work goes to the stack's tasks)."""
        call_id = getattr(event, "call_id", None)
        if not isinstance(call_id, str):
            return
        leg = self.legs.get(call_id)
        if leg is None:
            if isinstance(event, CallIncoming):
                leg = self.legs[call_id] = SipLeg(device, call_id)
                self.stack.spawn(self._ring(leg, event), f"INVITE to {device.id}")
                return
            incoming = self.callers.get(id(device))
            if incoming is None:
                return
            leg = self.legs[call_id] = SipLeg(device, call_id, incoming=incoming)
        if isinstance(event, SdpAnswer):
            leg.answer_sdp = event.sdp
        elif isinstance(event, CallRinging):
            self._early(leg)
        elif isinstance(event, CallAnswered):
            self._answered(leg)
        elif isinstance(event, CommandFailed):
            leg.failure = refusal(event.error)
        elif isinstance(event, CallEnded):
            self._ended(leg, event.reason)
        elif isinstance(event, CallDtmf):
            self.stack.spawn(self._dtmf_to_phone(leg, event.digit), "DTMF to a phone")
        elif isinstance(event, CallHeld | CallResumed) and event.by == "remote":
            held = isinstance(event, CallHeld)
            reoffer = self.in_dialog.reoffer(leg, held)
            self.stack.spawn(reoffer, "re-INVITE hold" if held else "resume")

    async def _dtmf_to_phone(self, leg: SipLeg, digit: str) -> None:
        """The far party's digit, in the form the phone's leg negotiated: RFC 4733 events when
        its SDP has telephone-event, else SIP INFO ``application/dtmf-relay`` (the de-facto
        format phones and PBXs read: ``Signal=5``, ``Duration=`` in ms). Digits of one leg go
        one INFO at a time, in order (the lock is FIFO and the tasks start in event order)."""
        lock = self._dtmf_locks.setdefault(leg.call_id, asyncio.Lock())
        async with lock:
            try:
                info = await self.controller.media.endpoint_info(leg.call_id)
            except MediaError:
                return  # the leg's media is gone: the call is ending
            dialog = leg.dialog
            if info.telephone_event or dialog is None:
                await self.in_dialog.send_dtmf(leg, digit)
                return
            body = f"Signal={digit}\r\nDuration={INFO_DTMF_MS}\r\n".encode()
            try:
                response = await dialog.request(
                    "INFO", [("Content-Type", "application/dtmf-relay")], body
                )
            except (OSError, TimeoutError) as exc:
                log.info("SIP: INFO DTMF to %s failed: %s", leg.call_id, exc)
                return
            if response.status >= 300:
                # The phone takes no INFO DTMF: in-band tones are all that is left.
                log.info("SIP: %s refused INFO DTMF (%s)", leg.call_id, response.status)
                await self.in_dialog.send_dtmf(leg, digit)

    def _early(self, leg: SipLeg) -> None:
        """Ringback as early media: 183 with the answer SDP (the caller hears it at once)."""
        incoming = leg.incoming
        if incoming is None or incoming.tx.answered or leg.early_sent:
            return
        leg.early_sent = True
        if _delayed(leg):
            # Our offer may only go in a reliable response (§13.2.1): 180, no early media.
            self.stack.dialogs.early(incoming, incoming.response(180, "Ringing"))
            return
        response = incoming.response(183, "Session Progress")
        sdp_body(response, leg.answer_sdp)
        self.stack.dialogs.early(incoming, response)

    def _answered(self, leg: SipLeg) -> None:
        incoming = leg.incoming
        if incoming is None or incoming.tx.answered:
            return  # UAC legs: the 2xx was ACKed when it came
        response = incoming.response(200, "OK")
        sdp_body(response, leg.answer_sdp)
        response.headers.set("Allow", ALLOW)
        leg.dialog = self.stack.dialogs.accept(incoming, response)
        self.in_dialog.serve(leg, leg.dialog)
        if _delayed(leg):
            self._await_ack_answer(leg, leg.dialog)

    def _await_ack_answer(self, leg: SipLeg, dialog: Dialog) -> None:
        """Delayed offer (RFC 3264 §5, RFC 3261 §13.2.1): our 200 carried the offer, so the
        phone's ACK must carry the answer: the dialog's ``on_ack`` hands the first ACK here
        (only this one: a later re-INVITE's ACK is the in-dialog code's)."""

        def on_ack(request: Request) -> None:
            dialog.on_ack = None
            self.stack.spawn(self._ack_answer(leg, dialog, request), "ACK answer")

        dialog.on_ack = on_ack

    async def _ack_answer(self, leg: SipLeg, dialog: Dialog, ack: Request) -> None:
        """Apply the ACK's answer; with none or an unusable one the call cannot have media:
        BYE with a Reason (RFC 3326) naming the problem, and the core leg ends."""
        why = ""
        if not ack.body.strip() or "application/sdp" not in (ack.content_type or "").lower():
            why = "the ACK carried no SDP answer to the offer in our 200 (RFC 3264 section 5)"
        else:
            try:
                await self.controller.media.accept_answer(
                    leg.call_id, ack.body.decode(errors="replace")
                )
            except MediaError as exc:
                why = f"the ACK's SDP answer is unusable: {exc.message}"
        if not why or leg.ended:
            return
        log.info("SIP: %s: %s; BYE", leg.call_id, why)
        leg.ended = True
        self.legs.pop(leg.call_id, None)
        text = why.replace('"', "'")[:150]
        await quiet(dialog.bye([("Reason", f'SIP;cause=488;text="{text}"')]))
        await self._hangup(leg)

    def _ended(self, leg: SipLeg, reason: EndReason) -> None:
        if leg.ended:
            return
        leg.ended = True
        self.legs.pop(leg.call_id, None)
        self._dtmf_locks.pop(leg.call_id, None)
        incoming = leg.incoming
        if leg.dialog is not None:
            dialog = leg.dialog
            if dialog.state.value != "terminated":
                self.stack.spawn(quiet(self.in_dialog.bye_after_refer(leg, dialog)), "BYE")
        elif incoming is not None:
            if not incoming.tx.answered:
                status, phrase = leg.failure or final_status(reason)
                incoming.respond(status, phrase)
        elif leg.invite is not None:
            text = COMPLETED_ELSEWHERE if reason is EndReason.ANSWERED_ELSEWHERE else None
            leg.cancel_reason = text or f'SIP;cause=487;text="{reason}"'
            if leg.provisional.is_set():
                self._cancel(leg)

    def _cancel(self, leg: SipLeg) -> None:
        if leg.invite is not None and leg.flow is not None and leg.cancel_reason is not None:
            self.stack.cancel(leg.invite, leg.flow, leg.cancel_reason)
            leg.cancel_reason = None

    # ringing a contact -----------------------------------------------------------------------
    async def _ring(self, leg: SipLeg, alert: CallIncoming) -> None:
        binding = leg.device.binding
        assert binding is not None
        domain = self.stack.domain
        target = self._target(binding)
        flow = await self.stack.resolve(target)
        name = alert.from_name.replace('"', "")
        headers = Headers(
            [
                ("From", f'"{name}" <sip:{alert.from_}@{domain}>;tag={secrets.token_hex(6)}'),
                ("To", f"<sip:{binding.user_name}@{domain}>"),
                ("Call-ID", f"{secrets.token_hex(12)}@{domain}"),
                ("CSeq", "1 INVITE"),
                ("Contact", self.stack.contact(flow.transport)),
                ("Allow", ALLOW),
                ("Content-Type", "application/sdp"),
            ]
        )
        invite = Request("INVITE", _contact_uri(binding.contact), headers, alert.sdp.encode())
        leg.invite, leg.flow = invite, flow

        def provisional(response: Response) -> None:
            if response.status > 100 and not leg.provisional.is_set():
                leg.provisional.set()
                if leg.cancel_reason is not None:
                    self._cancel(leg)  # ended before the phone said anything (§9.1)

        try:
            final, dialog = await self.stack.dialogs.invite(
                invite, flow, on_provisional=provisional
            )
        except OSError as exc:
            log.info("SIP: could not reach %s: %s", binding.contact, exc)
            final, dialog = None, None
        if final is not None and 200 <= final.status < 300 and dialog is not None:
            if leg.ended:  # canceled or answered elsewhere meanwhile: §15, end it
                await quiet(dialog.bye([("Reason", COMPLETED_ELSEWHERE)]))
                return
            leg.dialog = dialog
            self.in_dialog.serve(leg, dialog)
            try:
                await self.controller.answer(
                    leg.device, leg.call_id, final.body.decode(errors="replace"), None
                )
            except ProtocolError as exc:  # the race was lost (answered elsewhere, ended)
                log.info("SIP: late answer of %s: %s", leg.call_id, exc.message)
                if not leg.ended:
                    leg.ended = True
                    self.legs.pop(leg.call_id, None)
                    await quiet(dialog.bye())
            return
        if leg.ended:
            return
        status = final.status if final is not None else 503
        core_leg = self.controller.legs.get(leg.call_id)
        if core_leg is not None and core_leg.ring_owner is not None:
            await core_leg.ring_owner.decline(core_leg, reason_of_status(status), None)

    def _target(self, binding: Binding) -> Flow | Target:
        """The way to the contact: its registration's open connection, else (UDP) the source
        address the REGISTER came from (the NAT's mapping), else the contact URI."""
        from callbridge.sip.stack import Target

        if binding.connection_id:
            transport, _, address = binding.connection_id.partition(" ")
            host, _, port = address.rpartition(":")
            flow = self.stack.flow_for(transport, (host.strip("[]"), int(port)))
            if flow is not None and not flow.closed:
                return flow
        if binding.transport.upper() == "UDP":
            return Target("UDP", binding.source_host, binding.source_port)
        return self.stack.dialogs.target_of(str(_contact_uri(binding.contact)), "UDP")


def _delayed(leg: SipLeg) -> bool:
    """The phone's INVITE had no SDP: our SDP is the offer (RFC 3261 §13.2.1)."""
    return leg.incoming is not None and not leg.incoming.request.body.strip()


def _contact_uri(contact: str) -> str:
    text = contact.strip()
    if "<" in text:
        with contextlib.suppress(SipParseError):
            return str(NameAddr.parse(text, "Contact").uri)
        text = text[text.index("<") + 1 : text.rindex(">")] if ">" in text else text
    return str(parse_uri(text, "Contact"))


def refusal(exc: ProtocolError | MediaError) -> tuple[int, str]:
    """The SIP status and reason phrase for a core refusal of a call (phones and trunks)."""
    code = getattr(exc, "code", None)
    detail = str(getattr(exc, "message", exc))[:100].replace("\r", " ").replace("\n", " ")
    if code in (ErrorCode.INVALID_SDP, ErrorCode.UNSUPPORTED_CODEC):
        return 488, f"Not Acceptable Here ({detail})"
    if code is ErrorCode.DESTINATION_NOT_FOUND:
        return 404, f"Not Found ({detail})"
    if code is ErrorCode.CALLER_ID_NOT_ALLOWED:
        return 403, f"Forbidden ({detail})"
    return 500, f"Server Internal Error ({detail})"


async def attach_sip(
    stack: SipStack | None, store: Store, controller: CallController, guard: SourceGuard | None
) -> Registrar | None:
    """The server's SIP services on its stack: the registrar (REGISTER, digest) and the call
    adapter (INVITE; users' contacts rung on their calls). None when SIP is off."""
    if stack is None:
        return None
    registrar = await Registrar.open(store, stack.domain, guard=guard)
    registrar.attach(stack)
    registrar.start()
    SipCalls(stack, registrar, controller).attach()
    return registrar
