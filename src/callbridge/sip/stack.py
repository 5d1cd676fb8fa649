"""The SIP endpoint the server owns: transports, transactions, dialogs and request routing.

A message's way in (:meth:`SipStack.receive`)::

    bytes + flow --parse--> request  --rport/received (RFC 3581 §4)--> a retransmission?
                        |                  -> its server transaction absorbs it (§17.2.3)
                        |             ACK -> its INVITE transaction, else the dialog (2xx ACK)
                        |          CANCEL -> 200, and 487 for the INVITE it matches (§9.2)
                        |      in-dialog  -> the dialog (``dialog.py``; 481 when unknown)
                        |      otherwise  -> the handler registered for the method; OPTIONS
                        |                    gets 200; others 405 (known) / 501 (unknown)
                        +-----> response --> its client transaction (§17.1.3), else a
                                             retransmitted or forked 2xx for the dialogs

A malformed request is answered ``400`` with a reason phrase naming the problem (when its Via,
From, To, Call-ID and CSeq can be found to address the answer), a malformed response is
dropped. While the server drains, a new INVITE gets ``503`` with ``Retry-After`` (§21.5.4).

Handlers are coroutines run in tasks the stack owns (cancelled and awaited by :meth:`stop`);
an :class:`Incoming` carries the request, its flow and its server transaction, and
:meth:`Incoming.respond` answers.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from callbridge.abuse import SourceGuard
from callbridge.sip import wire
from callbridge.sip.dialog import DialogLayer
from callbridge.sip.message import (
    REASON_PHRASES,
    STREAM_LIMITS,
    Message,
    Request,
    Response,
    error_response,
    parse,
)
from callbridge.sip.syntax import SipParseError
from callbridge.sip.transaction import (
    ServerInvite,
    ServerTransaction,
    Timers,
    TransactionLayer,
)
from callbridge.sip.transport import (
    MAX_MESSAGE_BYTES,
    UDP_MTU_LIMIT,
    Address,
    Flow,
    Transports,
    server_tls_context,
)

if TYPE_CHECKING:
    from callbridge.config import ServerConfig
    from callbridge.drain import Drain

__all__ = ["ALLOWED_METHODS", "Incoming", "SipStack", "Target", "start_sip"]

log = logging.getLogger(__name__)

# What callbridge understands (Allow, RFC 3261 §20.5); anything else is 501.
ALLOWED_METHODS = ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER", "INFO", "REFER",
                   "NOTIFY", "SUBSCRIBE", "MESSAGE", "UPDATE", "PRACK")  # fmt: skip
ACCEPT = "application/sdp"
SUPPORTED = "replaces, outbound, path"
USER_AGENT = "callbridge"
DRAIN_RETRY_AFTER = 30  # seconds, when no drain tells how long it will last

Handler = Callable[["Incoming"], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Target:
    """Where to send a request: a transport (UDP, TCP, TLS) and an address (IP or name)."""

    transport: str
    host: str
    port: int


@dataclass
class Incoming:
    """A request that started a server transaction, with the means to answer it."""

    stack: SipStack
    request: Request
    flow: Flow
    tx: ServerTransaction
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)  # CANCEL arrived (§9.2)
    dialog_tag: str = field(default_factory=wire.new_tag)  # our To tag, if we answer it

    def response(self, status: int, reason: str | None = None, *, tag: bool = True) -> Response:
        """A response to the request (§8.2.6) with our To tag (when the request had none)."""
        to_tag = self.dialog_tag if tag else None
        return self.request.response(status, reason, to_tag=to_tag)

    def respond(self, response: Response | int, reason: str | None = None) -> Response:
        """Send ``response`` (or a plain one with this status) through the transaction."""
        if isinstance(response, int):
            response = self.response(response, reason)
        response.headers.set("Server", USER_AGENT)
        self.tx.respond(response)
        return response


class SipStack:
    """One SIP endpoint: its transports, transactions, dialogs and handlers.

    :param domain: the SIP domain (registrar and digest realm; ``--sip-domain``).
    :param timers: T1/T2/T4 (RFC 3261 defaults; tests pass small ones).
    :param draining: asked for each new INVITE; a (reason phrase, Retry-After seconds) pair
        refuses it with 503 (§21.5.4).
    :param guard: caps the TCP/TLS connections one source address may hold open.
    """

    def __init__(
        self,
        domain: str,
        *,
        timers: Timers | None = None,
        draining: Callable[[], tuple[str, int] | None] | None = None,
        limit: int = MAX_MESSAGE_BYTES,
        guard: SourceGuard | None = None,
    ) -> None:
        self.domain = domain
        self.transactions = TransactionLayer(timers)
        self.transports = Transports(self.receive, self._framing_error, limit=limit, guard=guard)
        self.dialogs = DialogLayer(self)
        self.handlers: dict[str, Handler] = {}
        self.draining = draining
        self._tasks: set[asyncio.Task[None]] = set()
        self.host = "127.0.0.1"

    @property
    def timers(self) -> Timers:
        return self.transactions.timers

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(
        self,
        host: str,
        port: int,
        *,
        tls_port: int | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
    ) -> None:
        """Listen on UDP and TCP ``host:port`` (and TLS on ``tls_port``)."""
        self.host = host
        for attempt in range(20):  # port 0 (tests): one port for both, as 5060 would be
            udp_port = (await self.transports.listen_udp(host, port))[1]
            try:
                await self.transports.listen_stream(host, udp_port)
                break
            except OSError:
                await self.transports.close()
                if port or attempt == 19:
                    raise
        if tls_port is not None and tls_cert and tls_key:
            await self.transports.listen_stream(
                host, tls_port, server_tls_context(tls_cert, tls_key)
            )
        log.info("SIP listening on %s (%s)", host, self.describe())

    def describe(self) -> str:
        return ", ".join(
            f"{name} {addr[1]}"
            for name in self.transports.transports
            if (addr := self.transports.local_address(name)) is not None
        )

    async def stop(self) -> None:
        self.dialogs.close()
        self.transactions.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.transports.close()

    def on(self, method: str, handler: Handler) -> None:
        """Route new (out-of-dialog) requests of ``method`` to ``handler``."""
        self.handlers[method.upper()] = handler

    def spawn(self, work: Awaitable[None], what: str) -> None:
        """Run ``work`` in a task the stack owns (cancelled at :meth:`stop`)."""

        async def run() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("SIP: %s failed", what)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- receiving -----------------------------------------------------------------------------

    def receive(self, data: bytes, flow: Flow) -> None:
        """One message off ``flow``: a datagram, a message the stream framer cut (TCP/TLS), or
        a WebSocket message (RFC 7118 §5.1: parsed as a datagram, with the stream limits)."""
        framed = flow.transport in ("TCP", "TLS")
        limits = STREAM_LIMITS if flow.reliable else None
        try:
            message = parse(data, stream=framed, limits=limits)
        except SipParseError as exc:
            self._refuse(exc, flow)
            return
        if isinstance(message, Response):
            self._receive_response(message, flow)
        else:
            self._receive_request(message, flow)

    def _framing_error(self, exc: SipParseError, flow: Flow) -> None:
        self._refuse(exc, flow)

    def _refuse(self, exc: SipParseError, flow: Flow) -> None:
        """A malformed message: a request gets the 4xx/5xx naming the problem when the parser
        read enough of it to address an answer (§8.2.6, §21.4.1); a response is dropped."""
        log.info("SIP %s from %s:%d: %s", flow.transport, *flow.remote, exc.reason)
        answer = error_response(exc)
        if answer is None:
            return
        try:
            self._apply_rport(answer, flow)
        except SipParseError:
            pass  # a Via we cannot read is echoed as it came; the answer goes to the source
        self.send_response(answer, flow)

    def _apply_rport(self, message: Message, flow: Flow) -> None:
        """§18.2.1 and RFC 3581 §4: record where the request really came from in its top
        Via (``received``, and ``rport`` when the client asked for it)."""
        via = message.top_via
        source, port = flow.remote
        changed = False
        if via.rport_requested:
            via.params.set("rport", str(port))
            changed = True
        if via.host.strip("[]") != source or changed:
            via.params.set("received", source)
            changed = True
        if changed:
            wire.set_top_via(message, via)

    def _receive_request(self, request: Request, flow: Flow) -> None:
        self._apply_rport(request, flow)
        tx = self.transactions.match_request(request)
        if tx is not None:
            tx.receive(request)  # a retransmission, or the ACK of a non-2xx (§17.2.3)
            return
        if request.method == "ACK":
            self.dialogs.receive_ack(request, flow)  # the ACK of a 2xx (§13.3.1.4)
            return
        new = self.transactions.server(request, flow)
        incoming = Incoming(self, request, flow, new)
        if request.method == "CANCEL":
            self._cancel(incoming)
        elif request.to_tag is not None:
            self.dialogs.receive_request(incoming)  # §12.2.2
        else:
            self._dispatch(incoming)

    def _cancel(self, incoming: Incoming) -> None:
        """§9.2: 200 for the CANCEL; 487 for the INVITE if still unanswered (else no effect)."""
        invite = self.transactions.match_cancel(incoming.request)
        if invite is None:
            incoming.respond(481, "Call/Transaction Does Not Exist")
            return
        incoming.respond(incoming.response(200, tag=False))
        if not invite.answered and isinstance(invite, ServerInvite):
            owner = invite.owner
            if isinstance(owner, Incoming):
                owner.cancelled.set()
                owner.respond(487, "Request Terminated")

    def _dispatch(self, incoming: Incoming) -> None:
        method = incoming.request.method
        if method == "INVITE":
            incoming.tx.owner = incoming
            incoming.respond(incoming.response(100, tag=False))  # §17.2.1: stop Timer A now
            refused = self.draining() if self.draining is not None else None
            if refused is not None:  # §21.5.4: a drain or a full spool starts no new calls
                why, retry = refused
                resp = incoming.response(503, f"Service Unavailable ({why})")
                resp.headers.set("Retry-After", str(retry or DRAIN_RETRY_AFTER))
                incoming.respond(resp)
                return
        handler = self.handlers.get(method)
        if handler is not None:
            self.spawn(self._run_handler(handler, incoming), f"{method} handler")
        elif method == "OPTIONS":
            incoming.respond(self.capabilities(incoming.response(200)))
        elif method in ALLOWED_METHODS:
            resp = incoming.response(405, f"Method Not Allowed ({method} is not served here)")
            incoming.respond(self.capabilities(resp))
        else:
            resp = incoming.response(501, f"Not Implemented ({method[:32]})")
            incoming.respond(self.capabilities(resp))

    async def _run_handler(self, handler: Handler, incoming: Incoming) -> None:
        try:
            await handler(incoming)
        finally:
            if not incoming.tx.answered and incoming.request.method != "ACK":
                log.error("SIP %s handler left the request unanswered", incoming.request.method)
                incoming.respond(500, "Server Internal Error (unanswered)")

    def capabilities(self, response: Response) -> Response:
        """Allow, Accept and Supported (§11.2: what an OPTIONS answer tells)."""
        response.headers.set("Allow", ", ".join(ALLOWED_METHODS))
        response.headers.set("Accept", ACCEPT)
        response.headers.set("Supported", SUPPORTED)
        return response

    def _receive_response(self, response: Response, flow: Flow) -> None:
        tx = self.transactions.match_response(response)
        if tx is not None:
            tx.receive(response)
        elif response.cseq_method == "INVITE" and 200 <= response.status < 300:
            self.dialogs.stray_2xx(response, flow)  # §13.2.2.4: ACK again, or a late fork
        else:
            log.debug("SIP: stray %r from %s", response, flow)

    # -- sending -------------------------------------------------------------------------------

    def send_response(self, response: Response, flow: Flow) -> None:
        """§18.2.2: over the request's connection; over UDP to ``received`` and the ``rport``
        (else the sent-by port)."""
        if flow.transport == "UDP":
            try:
                via = response.top_via
            except SipParseError:
                via = None  # echoed as it came (a refused request): answer the source
            if via is not None:
                host = via.received or flow.remote[0]
                port = via.rport or via.port or 5060
                if (host, port) != flow.remote:
                    flow = self.transports.udp_flow((host, port)) or flow
        flow.send(response.serialize())

    def via(self, transport: str, branch: str) -> str:
        """Our Via for a request over ``transport`` (with ``rport``, RFC 3581 §3)."""
        if transport in ("WS", "WSS"):
            sent_by = f"{secrets.token_hex(6)}.invalid"  # RFC 7118 §5
        else:
            host, port = self.transports.local_address(transport) or (self.host, 5060)
            sent_by = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return f"SIP/2.0/{transport} {sent_by};branch={branch};rport"

    def contact(self, transport: str = "UDP", user: str | None = None) -> str:
        """A Contact URI that reaches this endpoint over ``transport``."""
        host, port = self.transports.local_address(transport) or (self.host, 5060)
        host = f"[{host}]" if ":" in host else host
        userinfo = f"{user}@" if user else ""
        suffix = "" if transport == "UDP" else f";transport={transport.lower()}"
        return f"<sip:{userinfo}{host}:{port}{suffix}>"

    async def resolve(self, target: Target | Flow) -> Flow:
        """A flow for ``target`` (names resolved by the system resolver)."""
        if isinstance(target, Flow):
            if target.closed and target.transport in ("TCP", "TLS"):
                return await self.transports.flow_to(target.transport, target.remote)
            return target
        host = target.host.strip("[]")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            loop = asyncio.get_running_loop()
            infos = await loop.getaddrinfo(host, target.port, type=socket.SOCK_DGRAM)
            host = str(infos[0][4][0])
        return await self.transports.flow_to(target.transport, (host, target.port))

    async def send_request(self, request: Request, target: Target | Flow) -> Flow:
        """Put a Via on ``request`` and pick its flow: a request over 1300 bytes to a UDP
        destination goes over TCP (§18.1.1), falling back to UDP if TCP is refused."""
        flow = await self.resolve(target)
        branch = wire.new_branch()
        request.headers.add("Via", self.via(flow.transport, branch), first=True)
        request.headers.set("Max-Forwards", request.headers.get("Max-Forwards") or "70")
        request.headers.set("User-Agent", USER_AGENT)
        if flow.transport == "UDP" and len(request.serialize()) > UDP_MTU_LIMIT:
            try:
                tcp = await self.transports.flow_to("TCP", flow.remote)
            except OSError:
                log.info("SIP: TCP to %s:%d refused; large request over UDP", *flow.remote)
            else:
                flow = tcp
                wire.set_top_via(request, self.via("TCP", branch))
        return flow

    async def request(
        self,
        request: Request,
        target: Target | Flow,
        *,
        on_provisional: Callable[[Response], None] | None = None,
        on_response: Callable[[Response], None] | None = None,
    ) -> Response:
        """Send ``request`` in a client transaction; the final response (a timeout or
        transport failure comes back as a synthesized 408 / 503, §8.1.3.1).

        ``on_provisional`` sees each 1xx; ``on_response`` sees every response the
        transaction passes up (for INVITE: 2xx retransmissions and forks too)."""
        flow = await self.send_request(request, target)
        loop = asyncio.get_running_loop()
        final: asyncio.Future[Response] = loop.create_future()

        def responded(response: Response) -> None:
            if on_response is not None:
                on_response(response)
            if response.status < 200:
                if on_provisional is not None:
                    on_provisional(response)
            elif not final.done():
                final.set_result(response)

        def failed(status: int, why: str) -> None:
            if not final.done():
                reason = f"{REASON_PHRASES[status]} ({why})"
                final.set_result(request.response(status, reason))

        self.transactions.client(request, flow, responded, failed)
        return await final

    def cancel(self, invite: Request, flow: Flow, reason: str | None = None) -> None:
        """§9.1: CANCEL a pending INVITE (sent over the INVITE's flow, its own transaction)."""
        cancel = wire.cancel_for(invite, reason)
        self.transactions.client(cancel, flow, lambda _r: None, lambda _s, _w: None)

    def tls_client(self, context: ssl.SSLContext) -> None:
        self.transports.set_client_tls(context)

    def flow_for(self, transport: str, remote: Address) -> Flow | None:
        return self.transports.flows.get((transport, remote))


def _refusal(drain: Drain) -> tuple[str, int] | None:
    """The reason phrase and Retry-After of a 503 to a new INVITE, or ``None`` to take it:
    the server drains, or its database refuses writes and a spool is full (docs/security.md)."""
    if drain.draining:
        return "server draining", drain.retry_after()
    refused = drain.refusal()
    return ("database backlog", refused[1]) if refused is not None else None


async def start_sip(config: ServerConfig, drain: Drain) -> SipStack | None:
    """The server's SIP endpoint, listening as ``config`` says (``None`` when
    ``sip_port`` is 0). New INVITEs are refused with 503 while ``drain`` runs or a spool
    is full."""
    if not config.sip_port:
        return None
    stack = SipStack(
        config.sip_domain or config.host,
        # T2 and T4 keep RFC 3261's ratios to T1 (4 s and 5 s at the default 0.5 s, §17.1.1.1).
        timers=Timers(t1=config.sip_t1, t2=8 * config.sip_t1, t4=10 * config.sip_t1),
        draining=lambda: _refusal(drain),
        guard=SourceGuard(config.max_connections_per_source, config.login_failures_per_minute),
    )
    await stack.start(
        config.host,
        config.sip_port,
        tls_port=config.sip_tls_port,
        tls_cert=str(config.tls_cert) if config.tls_cert else None,
        tls_key=str(config.tls_key) if config.tls_key else None,
    )
    return stack
