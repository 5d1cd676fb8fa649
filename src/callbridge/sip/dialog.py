"""SIP dialogs (RFC 3261 §12-§15): the state two user agents share for the life of a call.

A dialog is identified by (Call-ID, local tag, remote tag) and holds the route set, the
remote target and both CSeq counters (§12.1). :class:`DialogLayer` makes them:

- UAS side: :meth:`DialogLayer.accept` answers an INVITE with a 2xx (or ``early`` with a
  1xx carrying our tag) and keeps sending the 2xx, T1 doubling up to T2, until the ACK comes
  (§13.3.1.4). No ACK within 64*T1: the dialog is confirmed and ended at once with BYE.
- UAC side: :meth:`DialogLayer.invite` sends an INVITE and builds the dialog from the first
  1xx with a To tag or the 2xx; it sends the ACK for each 2xx itself (§13.2.2.4: the ACK of
  a 2xx is the TU's, a new transaction-less request) and ACKs again when the 2xx is
  retransmitted. A second 2xx with another To tag is a fork: ACKed, then ended with BYE.

In-dialog requests (re-INVITE, BYE, INFO, REFER, NOTIFY, ...) are built by
:meth:`Dialog.build` (§12.2.1.1: Request-URI = remote target, Route = route set, CSeq + 1)
and received by :meth:`Dialog.receive` (§12.2.2: a CSeq lower than the last one gets 500).
Glare (§14): an INVITE arriving while ours is pending gets 491; ours, refused with 491, is
sent again after 2.1-4 s when we own the Call-ID, else after 0-2 s (§14.1). An INVITE
arriving while an earlier one is unanswered gets 500 with Retry-After (§14.2).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from enum import Enum
from typing import TYPE_CHECKING, ClassVar

from callbridge.sip.headers import NameAddr
from callbridge.sip.message import Headers, Message, Request, Response
from callbridge.sip.syntax import SipParseError
from callbridge.sip.transport import Flow
from callbridge.sip.uri import parse_uri
from callbridge.statemachine import StateMachine

if TYPE_CHECKING:
    from callbridge.sip.stack import Incoming, SipStack, Target

__all__ = ["Dialog", "DialogLayer", "DialogState"]

log = logging.getLogger(__name__)

GLARE_ATTEMPTS = 3  # re-INVITEs sent again after a 491 before giving up with it
DialogKey = tuple[str, str, str]  # Call-ID, local tag, remote tag
RequestHandler = Callable[["Incoming"], Awaitable[None]]


class DialogState(Enum):
    """::

    Early --(2xx)--> Confirmed --(BYE, no ACK, failure)--> Terminated
      \\______________(non-2xx final, CANCEL)_____________/
    """

    EARLY = "early"  # made by a 1xx with a To tag
    CONFIRMED = "confirmed"  # made or confirmed by a 2xx
    TERMINATED = "terminated"  # BYE sent or received, or the INVITE failed


class Dialog(StateMachine[DialogState]):
    """One dialog. ``on_request`` serves in-dialog requests other than BYE and ACK (the call
    adapter's); ``on_terminated`` hears why the dialog ended."""

    TRANSITIONS: ClassVar[dict[DialogState, frozenset[DialogState]]] = {
        DialogState.EARLY: frozenset({DialogState.CONFIRMED, DialogState.TERMINATED}),
        DialogState.CONFIRMED: frozenset({DialogState.TERMINATED}),
        DialogState.TERMINATED: frozenset(),
    }

    def __init__(
        self,
        layer: DialogLayer,
        *,
        call_id: str,
        local_tag: str,
        remote_tag: str,
        local_uri: str,
        remote_uri: str,
        remote_target: str,
        route_set: list[str],
        local_seq: int,
        remote_seq: int | None,
        flow: Flow,
        our_call_id: bool,
        state: DialogState,
    ) -> None:
        self.layer = layer
        self.call_id, self.local_tag, self.remote_tag = call_id, local_tag, remote_tag
        self.id = f"{call_id[:16]}/{remote_tag}"
        self.local_uri, self.remote_uri = local_uri, remote_uri  # From / To values, tagged
        self.remote_target = remote_target
        self.route_set = route_set
        self.local_seq = local_seq
        self.remote_seq = remote_seq
        self.flow = flow
        self.our_call_id = our_call_id  # we generated the Call-ID (glare timers, §14.1)
        self.state = state
        self.on_request: RequestHandler | None = None
        self.on_terminated: Callable[[str], None] | None = None
        # UAS: hears the first ACK of each 2xx we send, body and all; with a delayed offer
        # (our 2xx carried the offer) that ACK carries the answer (RFC 3261 §13.2.1).
        self.on_ack: Callable[[Request], None] | None = None
        self.acked = asyncio.Event()  # UAS: the ACK of our last 2xx came
        self._ack: bytes | None = None  # UAC: the ACK of the 2xx, sent again on retransmits
        self._ack_flow: Flow | None = None
        self._sent_ack_cseq = -1  # UAC: the CSeq number of the INVITE ``_ack`` acknowledges
        self._client_invite = False  # our INVITE in this dialog awaits its final response
        self._server_invite: Incoming | None = None  # theirs awaits our final response
        self._retransmit: asyncio.TimerHandle | None = None
        self._ack_cseq: int | None = None  # UAS: the CSeq number our last 2xx's ACK carries

    @property
    def key(self) -> DialogKey:
        return (self.call_id, self.local_tag, self.remote_tag)

    @property
    def stack(self) -> SipStack:
        return self.layer.stack

    # -- sending -------------------------------------------------------------------------------

    def build(
        self,
        method: str,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        *,
        cseq: int | None = None,
    ) -> Request:
        """§12.2.1.1: a request within the dialog (ACK and CANCEL reuse a CSeq: pass it)."""
        if cseq is None:
            self.local_seq += 1
            cseq = self.local_seq
        routes = list(self.route_set)
        uri = self.remote_target
        if routes and "lr" not in (first := NameAddr.parse(routes[0], "Route")).uri.params:
            # A strict router (RFC 2543): it takes the Request-URI; the target goes last.
            routes.pop(0)
            uri = str(first.uri)
            routes.append(f"<{self.remote_target}>")
        base = [("From", self.local_uri), ("To", self.remote_uri), ("Call-ID", self.call_id),
                ("CSeq", f"{cseq} {method}")]  # fmt: skip
        base += [("Route", r) for r in routes]
        if method in ("INVITE", "REFER", "SUBSCRIBE", "NOTIFY", "UPDATE"):
            base.append(("Contact", self.stack.contact(self.flow.transport)))
        return Request(method, uri, Headers([*base, *headers]), body)

    def target(self) -> Flow | Target:
        """The dialog's flow while it is open (a phone behind NAT, a WebSocket client);
        else the remote target's address (§12.2.1.1)."""
        if not self.flow.closed or self.flow.transport in ("WS", "WSS"):
            return self.flow
        return self.layer.target_of(self.remote_target, self.flow.transport)

    async def request(
        self, method: str, headers: Iterable[tuple[str, str]] = (), body: bytes = b""
    ) -> Response:
        """Send an in-dialog request and wait for its final response. A re-INVITE refused
        with 491 (glare) is sent again after the §14.1 wait, up to ``GLARE_ATTEMPTS``."""
        headers = list(headers)
        for attempt in range(GLARE_ATTEMPTS):
            request = self.build(method, headers, body)
            if method == "INVITE":
                self._client_invite = True
            try:
                response = await self.stack.request(
                    request, self.target(), on_response=self._on_reinvite_response
                )
            finally:
                if method == "INVITE":
                    self._client_invite = False
            if method == "INVITE" and 200 <= response.status < 300:
                self.remote_target = self._contact_of(response) or self.remote_target
                await self.send_ack(request, response)
            if method == "INVITE" and response.status == 491 and attempt + 1 < GLARE_ATTEMPTS:
                await asyncio.sleep(self.glare_delay())
                continue
            if response.status in (408, 481) or (method == "BYE"):
                self._end(f"{method} answered {response.status}")  # §12.2.1.2
            return response
        raise AssertionError("unreachable")

    def _on_reinvite_response(self, response: Response) -> None:
        if 200 <= response.status < 300 and response.cseq_method == "INVITE":
            # A retransmitted 2xx of a re-INVITE already ACKed; the first 2xx of this
            # re-INVITE is ACKed by request() and must not get the previous INVITE's ACK.
            self.resend_ack(response.cseq_number)

    def glare_delay(self) -> float:
        """§14.1: 2.1-4 s (Call-ID ours) or 0-2 s, in 10 ms steps; scaled with T1 in tests."""
        low, high = (210, 400) if self.our_call_id else (0, 200)
        return random.randint(low, high) / 100 * (self.stack.timers.t1 / 0.5)

    async def bye(self, headers: Iterable[tuple[str, str]] = ()) -> Response:
        """End the dialog with BYE (§15.1.1): it is over for us whatever the answer."""
        self._end("BYE sent")
        request = self.build("BYE", headers)
        return await self.stack.request(request, self.target())

    async def _bye_quietly(self) -> None:
        await self.bye()

    async def send_ack(self, invite: Request, response: Response) -> None:
        """§13.2.2.4: the ACK of a 2xx: the INVITE's CSeq number, its credentials, a branch
        of its own, sent straight to the transport (no transaction)."""
        credentials = [(n, v) for n, v in invite.headers if n in _CREDENTIALS]
        ack = self.build("ACK", credentials, cseq=invite.cseq_number)
        flow = await self.stack.send_request(ack, self.target())
        self._ack, self._ack_flow = ack.to_bytes(), flow
        self._sent_ack_cseq = invite.cseq_number
        flow.send(self._ack)

    def resend_ack(self, cseq: int) -> None:
        """§13.2.2.4: a retransmitted 2xx gets the ACK sent for it again; only the ACK of the
        INVITE with that CSeq (an older ACK would acknowledge the wrong transaction)."""
        if self._ack is not None and self._ack_flow is not None and cseq == self._sent_ack_cseq:
            self._ack_flow.send(self._ack)

    # -- receiving -----------------------------------------------------------------------------

    def receive(self, incoming: Incoming) -> None:
        """§12.2.2: an in-dialog request."""
        request = incoming.request
        cseq = request.cseq_number
        if self.remote_seq is not None and cseq <= self.remote_seq:
            incoming.respond(500, "Server Internal Error (CSeq out of order)")
            return
        if request.method == "INVITE":
            if self._client_invite:  # §14.2: both sides re-INVITEd at once
                incoming.respond(491, "Request Pending")
                return
            if self._server_invite is not None and not self._server_invite.tx.answered:
                resp = incoming.response(500, "Server Internal Error (INVITE pending)")
                resp.headers.set("Retry-After", str(random.randint(0, 10)))
                incoming.respond(resp)
                return
            self._server_invite = incoming
        self.remote_seq = cseq
        if request.method == "BYE":
            incoming.respond(200)
            self._end("BYE received")
            return
        if request.method == "INVITE" or request.method in ("UPDATE", "NOTIFY"):
            self.remote_target = request_contact(request) or self.remote_target  # §12.2.2
        handler = self.on_request
        if handler is None:
            incoming.respond(501, f"Not Implemented ({request.method} in this dialog)")
            return
        self.stack.spawn(self.layer.run_handler(handler, incoming), f"in-dialog {request.method}")

    def send_2xx(self, incoming: Incoming, response: Response) -> None:
        """Answer an INVITE (initial or re-) with a 2xx and send it again, T1 doubling up to
        T2, until its ACK (§13.3.1.4). No ACK after 64*T1: BYE."""
        incoming.respond(response)
        self.transition(DialogState.CONFIRMED)
        self.acked.clear()
        self._ack_cseq = incoming.request.cseq_number
        if self._retransmit is not None:
            self._retransmit.cancel()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.stack.timers.b
        interval = self.stack.timers.t1

        def again() -> None:
            nonlocal interval
            self._retransmit = None
            if self.acked.is_set() or self.state is DialogState.TERMINATED:
                return
            if loop.time() >= deadline:
                log.info("SIP dialog %s: no ACK for the 2xx in 64*T1; BYE (§13.3.1.4)", self.id)
                # Ended here, with its own cause, so that the TU ends the call too; bye()
                # then only sends the BYE.
                self._end(NO_ACK)
                self.stack.spawn(self._bye_quietly(), "BYE after a missing ACK")
                return
            self.stack.send_response(response, incoming.flow)
            interval = min(2 * interval, self.stack.timers.t2)
            self._retransmit = loop.call_later(interval, again)

        self._retransmit = loop.call_later(interval, again)

    def receive_ack(self, request: Request) -> None:
        # The ACK of a 2xx has its INVITE's CSeq number (§13.2.2.4): a late or resent ACK of
        # an earlier 2xx neither stops this one's retransmissions nor counts as its ACK.
        if self._ack_cseq is not None and request.cseq_number != self._ack_cseq:
            log.debug("SIP dialog %s: ACK of CSeq %d ignored (awaiting %d)", self.id,
                      request.cseq_number, self._ack_cseq)  # fmt: skip
            return
        if self._retransmit is not None:
            self._retransmit.cancel()
            self._retransmit = None
        first = not self.acked.is_set()  # a UAC resends its ACK for each 2xx resent (§13.2.2.4)
        self.acked.set()
        if first and self.on_ack is not None:
            try:
                self.on_ack(request)
            except Exception:
                log.exception("SIP: a dialog's on_ack raised")

    def _contact_of(self, response: Response) -> str | None:
        return request_contact(response)

    def _end(self, why: str) -> None:
        if self.state is DialogState.TERMINATED:
            return
        self.transition(DialogState.TERMINATED, cause=why)
        if self._retransmit is not None:
            self._retransmit.cancel()
            self._retransmit = None
        self.layer.forget(self)
        if self.on_terminated is not None:
            try:
                self.on_terminated(why)
            except Exception:
                log.exception("SIP: a dialog's on_terminated raised")

    def terminate(self, why: str) -> None:
        """Forget the dialog without sending anything (the TU ended it otherwise)."""
        self._end(why)


_CREDENTIALS = ("Authorization", "Proxy-Authorization")
NO_ACK = "no ACK"  # on_terminated's cause when the 2xx was never ACKed (§13.3.1.4)


def request_contact(message: Message) -> str | None:
    """The URI of the first Contact (the remote target, §12.1), None when absent or bad."""
    try:
        contacts = message.contacts
    except SipParseError:
        return None
    return str(contacts[0].uri) if contacts else None


class DialogLayer:
    """The live dialogs of a stack, keyed by (Call-ID, local tag, remote tag)."""

    def __init__(self, stack: SipStack) -> None:
        self.stack = stack
        self.dialogs: dict[DialogKey, Dialog] = {}

    def __len__(self) -> int:
        return len(self.dialogs)

    def forget(self, dialog: Dialog) -> None:
        if self.dialogs.get(dialog.key) is dialog:
            del self.dialogs[dialog.key]

    def close(self) -> None:
        for dialog in list(self.dialogs.values()):
            dialog.terminate("stack closed")

    async def run_handler(self, handler: RequestHandler, incoming: Incoming) -> None:
        try:
            await handler(incoming)
        finally:
            if not incoming.tx.answered:
                incoming.respond(500, "Server Internal Error (unanswered)")

    def target_of(self, uri: str, transport: str) -> Target:
        from callbridge.sip.stack import Target

        parsed = parse_uri(uri, "remote target")
        param = parsed.params.get("transport")
        default = 5061 if parsed.scheme == "sips" else 5060
        return Target((param or transport).upper(), parsed.host.strip("[]"), parsed.port or default)

    # -- UAS -----------------------------------------------------------------------------------

    def _uas(self, incoming: Incoming, response: Response, state: DialogState) -> Dialog:
        """§12.1.1: the dialog of an INVITE we answer with a tagged 1xx/2xx."""
        request = incoming.request
        key = (request.call_id, response.to_tag or "", request.from_tag or "")
        existing = self.dialogs.get(key)
        if existing is not None:
            return existing
        dialog = Dialog(
            self,
            call_id=request.call_id,
            local_tag=key[1],
            remote_tag=key[2],
            local_uri=response.headers.get("To") or "",
            remote_uri=request.headers.get("From") or "",
            remote_target=request_contact(request) or str(request.from_.uri),
            route_set=request.headers.values("Record-Route"),
            local_seq=random.randint(1, 2**31 - 1) // 2,
            remote_seq=request.cseq_number,
            flow=incoming.flow,
            our_call_id=False,
            state=state,
        )
        self.dialogs[key] = dialog
        return dialog

    def early(self, incoming: Incoming, response: Response) -> Dialog:
        """Send a 1xx with our tag and Contact (an early dialog, §12.1.1)."""
        response.headers.set("Contact", self.stack.contact(incoming.flow.transport))
        dialog = self._uas(incoming, response, DialogState.EARLY)
        incoming.respond(response)
        return dialog

    def accept(self, incoming: Incoming, response: Response) -> Dialog:
        """Answer an INVITE with ``response`` (a 2xx): the dialog, its 2xx sent until ACK."""
        if "Contact" not in response.headers:
            response.headers.set("Contact", self.stack.contact(incoming.flow.transport))
        dialog = self._uas(incoming, response, DialogState.CONFIRMED)
        dialog.send_2xx(incoming, response)
        return dialog

    def receive_request(self, incoming: Incoming) -> None:
        request = incoming.request
        key = (request.call_id, request.to_tag or "", request.from_tag or "")
        dialog = self.dialogs.get(key)
        if dialog is None:
            incoming.respond(481, "Call/Transaction Does Not Exist (no such dialog)")
            return
        dialog.receive(incoming)

    def receive_ack(self, request: Request, flow: Flow) -> None:
        key = (request.call_id, request.to_tag or "", request.from_tag or "")
        dialog = self.dialogs.get(key)
        if dialog is not None:
            dialog.receive_ack(request)

    # -- UAC -----------------------------------------------------------------------------------

    async def invite(
        self,
        request: Request,
        target: Flow | Target,
        *,
        on_provisional: Callable[[Response], None] | None = None,
    ) -> tuple[Response, Dialog | None]:
        """Send an out-of-dialog INVITE (its From has our tag); the final response and, for
        a 2xx, the confirmed dialog. Forked extra 2xx are ACKed and ended with BYE."""
        confirmed: dict[str, Dialog] = {}
        early: dict[str, Dialog] = {}
        flow_box: list[Flow] = []

        def on_response(response: Response) -> None:
            tag = response.to_tag
            if tag is None or response.status < 101:
                return
            if response.status < 200:
                if tag not in early and flow_box:
                    early[tag] = self._uac(request, response, flow_box[0], DialogState.EARLY)
                return
            if response.status >= 300:
                return
            dialog = confirmed.get(tag)
            if dialog is not None:
                dialog.resend_ack(response.cseq_number)  # a retransmitted 2xx (§13.2.2.4)
                return
            dialog = early.pop(tag, None) or self._uac(
                request, response, flow_box[0], DialogState.CONFIRMED
            )
            dialog.remote_target = request_contact(response) or dialog.remote_target
            dialog.route_set = list(reversed(response.headers.values("Record-Route")))
            dialog.transition(DialogState.CONFIRMED)
            first = not confirmed
            confirmed[tag] = dialog
            self.stack.spawn(self._ack_fork(dialog, request, response, first), "ACK of a 2xx")

        flow = await self.stack.resolve(target)
        flow_box.append(flow)
        final = await self.stack.request(
            request, flow, on_response=on_response, on_provisional=on_provisional
        )
        if not 200 <= final.status < 300:
            for dialog in early.values():
                dialog.terminate(f"INVITE answered {final.status}")
            return final, None
        for dialog in early.values():  # §13.2.2.4: early dialogs that never got a 2xx
            dialog.terminate("another fork answered")
        return final, confirmed.get(final.to_tag or "")

    async def _ack_fork(
        self, dialog: Dialog, invite: Request, response: Response, first: bool
    ) -> None:
        await dialog.send_ack(invite, response)
        if not first:
            log.info("SIP: a second 2xx (fork %s) for %s: ACK then BYE", dialog.remote_tag,
                     invite.call_id)  # fmt: skip
            await dialog._bye_quietly()

    def _uac(self, invite: Request, response: Response, flow: Flow, state: DialogState) -> Dialog:
        """§12.1.2: the dialog of our INVITE, from a tagged 1xx or a 2xx."""
        key = (invite.call_id, invite.from_tag or "", response.to_tag or "")
        dialog = Dialog(
            self,
            call_id=invite.call_id,
            local_tag=key[1],
            remote_tag=key[2],
            local_uri=invite.headers.get("From") or "",
            remote_uri=response.headers.get("To") or "",
            remote_target=request_contact(response) or str(invite.uri),
            route_set=list(reversed(response.headers.values("Record-Route"))),
            local_seq=invite.cseq_number,
            remote_seq=None,
            flow=flow,
            our_call_id=True,
            state=state,
        )
        self.dialogs[key] = dialog
        return dialog

    def stray_2xx(self, response: Response, flow: Flow) -> None:
        """A 2xx after the INVITE transaction ended: ACK it again if its dialog is ours."""
        key = (response.call_id, response.from_tag or "", response.to_tag or "")
        dialog = self.dialogs.get(key)
        if dialog is not None:
            dialog.resend_ack(response.cseq_number)
