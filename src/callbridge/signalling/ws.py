"""One ``/ws`` connection: login or resume of a session, message dispatch, ordered delivery.

Messages about one call or conference are handled in order, those about different ones
concurrently (:mod:`callbridge.signalling.lanes`): an ICE candidate never overtakes the offer
it belongs to, and a slow ``conference.play`` does not hold up a hold on another call.
Outgoing messages go through a queue drained by a writer task, so the control plane never
blocks on a slow socket. Any error in handling one message becomes an ``error`` message; the
connection keeps serving.

Bounds (:class:`ConnectionLimits`, docs/security.md):

- the send queue holds at most ``max_send_queue`` messages and ``max_send_queue_bytes`` bytes.
  A client that does not read fills it; the connection is then closed with 1008 ("send queue
  full: the client is not reading") and its session detached as for any dropped socket, so
  one stalled reader never grows the server (it grew by ~80 MB/s without this bound);
- a socket must log in (``session.login`` or ``session.resume``) within ``login_timeout``
  seconds of its opening, or it is closed with 1008;
- at most ``max_connections_per_source`` sockets are open from one address: the next is
  closed with 1008 (:class:`~callbridge.abuse.SourceGuard`, shared with the REST API);
- a source with ``login_failures_per_minute`` failed logins in the last minute gets
  ``rate_limited`` for its next login and its socket is closed with 1008;
- an SDP over ``max_sdp_bytes`` or with more than ``max_sdp_media`` m-lines is refused with
  ``invalid_sdp`` before anything parses it; past ``max_candidates_per_leg`` trickled
  candidates of one call, more get ``invalid_candidate`` and the call goes on with those it has.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from starlette.websockets import WebSocket, WebSocketDisconnect

from callbridge.abuse import LogThrottle, SourceGuard, source_of
from callbridge.config import ServerConfig
from callbridge.core.controller import CallController
from callbridge.errors import ErrorCode, ProtocolError
from callbridge.signalling import protocol as p
from callbridge.signalling.lanes import BARRIER, INLINE, Lanes, Route
from callbridge.signalling.sessions import Session, SessionManager, token_digest
from callbridge.signalling.ws_conferences import dispatch_conference
from callbridge.signalling.ws_forwarding import forwarding_message
from callbridge.signalling.ws_history import history_page
from callbridge.store import TokenExpired, TokenInvalid
from callbridge.vocabulary import EndReason

__all__ = ["SEND_QUEUE_FULL", "Authenticator", "Connection", "ConnectionLimits"]

log = logging.getLogger(__name__)
# A bug hit by every message of a flood logs its traceback a few times a minute, not per message.
_failures = LogThrottle(log)

POLICY_VIOLATION = 1008  # RFC 6455 section 7.4.1: a message that violates the server's policy
SEND_QUEUE_FULL = "send queue full: the client is not reading"
# How long the 1008 close frame of a full send queue may wait for the client to read what is
# ahead of it; after that the socket is dropped without it.
CLOSE_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """Per-connection bounds; ``callbridge serve`` options of the same names."""

    # > sessions._MAX_KEPT (1000): a resume sends every kept message at once.
    max_send_queue: int = 4096  # messages queued for the socket
    max_send_queue_bytes: int = 8 * 1024 * 1024  # their JSON text, bytes
    login_timeout: float = 10.0  # seconds from the socket's opening to a session
    max_sdp_bytes: int = 32 * 1024  # one SDP offer or answer
    max_sdp_media: int = 8  # its m-lines
    max_candidates_per_leg: int = 32  # trickled ICE candidates of one call
    max_pending: int = 32  # messages queued or running in lanes (fixed)
    # Connections and failed logins per source, shared by every connection of the server
    # (and the REST API); None: not counted (a Connection made outside a server).
    guard: SourceGuard | None = None

    @classmethod
    def from_config(cls, config: ServerConfig, guard: SourceGuard | None) -> ConnectionLimits:
        return cls(
            max_send_queue=config.max_send_queue,
            max_send_queue_bytes=config.max_send_queue_bytes,
            login_timeout=config.login_timeout,
            max_sdp_bytes=config.max_sdp_bytes,
            max_sdp_media=config.max_sdp_media,
            max_candidates_per_leg=config.max_candidates_per_leg,
            guard=guard,
        )


# What the writer task takes from the queue: a message's JSON text, a close (code, reason)
# once what is ahead of it is sent, or None when the reader is done.
_Item = str | tuple[int, str] | None


class Authenticator(Protocol):
    async def check_token_expiry(self, token: str) -> tuple[Any, datetime]:
        """The user and the token's expiry; raises TokenInvalid / TokenExpired."""


class Connection:
    """A WebSocket connection, carrying at most one session at a time."""

    def __init__(
        self,
        ws: WebSocket,
        controller: CallController,
        sessions: SessionManager,
        auth: Authenticator,
        limits: ConnectionLimits | None = None,
    ) -> None:
        self.ws = ws
        self.controller = controller
        self.sessions = sessions
        self.auth = auth
        self.limits = limits or ConnectionLimits()
        self.session: Session | None = None
        self._out: asyncio.Queue[_Item] = asyncio.Queue()  # bounded by send(), not by put
        self._queued_messages = 0
        self._queued_bytes = 0
        self._overflowed = False  # the send queue overflowed: nothing more is queued
        # Done when the reader must stop at once (overflow), even while it awaits a frame.
        self._stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._writer_task: asyncio.Task[None] | None = None
        self._closing = False  # logged out or expired: close the socket after the last message
        self.source = source_of(ws.scope)
        self._lanes: Lanes[tuple[p.ClientMessage, dict[str, Any]]] = Lanes(
            self._handle_message, self.limits.max_pending
        )
        self._candidates: dict[str, int] = {}  # call id -> trickled candidates accepted

    def send(self, message: dict[str, Any]) -> None:
        if self._overflowed:
            return
        if message.get("req_id", "") is None:
            del message["req_id"]
        text = json.dumps(message)  # ASCII: its length is its size in bytes
        limits = self.limits
        if (
            self._queued_messages >= limits.max_send_queue
            or self._queued_bytes + len(text) > limits.max_send_queue_bytes
        ):
            self._overflow()
            return
        self._queued_messages += 1
        self._queued_bytes += len(text)
        self._out.put_nowait(text)
        if message["type"] == "session.expired":
            self._out.put_nowait((POLICY_VIOLATION, "session expired"))

    def _overflow(self) -> None:
        """The client does not read: drop what is queued, stop reading and close (1008)."""
        log.warning(
            "session %s: send queue full (%d messages, %d bytes): closing the socket (1008)",
            self.session.id if self.session else "-",
            self._queued_messages,
            self._queued_bytes,
        )
        self._overflowed = True
        self._out = asyncio.Queue()  # the writer is cancelled and never reads the old one
        self._queued_messages = self._queued_bytes = 0
        if not self._stop.done():
            self._stop.set_result(None)
        if self._writer_task is not None:
            self._writer_task.cancel()  # it waits for the client to read; it never will

    async def _writer(self) -> None:
        try:
            while (item := await self._out.get()) is not None:
                if isinstance(item, tuple):
                    await self.ws.close(*item)
                    return
                self._queued_messages -= 1
                self._queued_bytes -= len(item)
                await self.ws.send_text(item)
        except asyncio.CancelledError:
            if not self._overflowed:
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]  # our own cancel
        except Exception:  # the peer is gone; the reader will notice
            return
        if self._overflowed:
            try:
                await asyncio.wait_for(
                    self.ws.close(POLICY_VIOLATION, SEND_QUEUE_FULL), CLOSE_TIMEOUT
                )
            except Exception:  # gone, or still not reading: the server drops the socket
                pass

    async def _receive(self, deadline: float | None) -> dict[str, Any] | None:
        """The next ASGI frame; ``None`` if the reader must stop or the loop time ``deadline``
        passed."""
        left = None if deadline is None else max(deadline - asyncio.get_running_loop().time(), 0)
        receive = asyncio.ensure_future(self.ws.receive())
        either: set[asyncio.Future[Any]] = {receive, self._stop}
        try:
            await asyncio.wait(either, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not receive.done():
                receive.cancel()  # the ASGI receive queue's get: nothing is lost
        if not receive.done() or receive.cancelled():  # cancelled above: still pending
            return None
        return dict(receive.result())

    async def run(self) -> None:
        guard = self.limits.guard
        if guard is not None and not guard.connect(self.source):
            await self._refuse_connection(guard)
            return
        try:
            await self._run()
        finally:
            if guard is not None:
                guard.disconnect(self.source)

    async def _refuse_connection(self, guard: SourceGuard) -> None:
        """Over the per-source limit: accepted only to be closed with a reason (1008)."""
        reason = (
            f"too many connections from {self.source}: at most {guard.max_connections} "
            "(--max-connections-per-source)"
        )
        guard.refused(self.source, "ws", reason)
        try:
            await self.ws.accept()
            await self.ws.close(POLICY_VIOLATION, reason)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass  # gone already

    async def _run(self) -> None:
        await self.ws.accept()
        self._writer_task = writer = asyncio.create_task(self._writer())
        login_deadline = asyncio.get_running_loop().time() + self.limits.login_timeout
        try:
            while not self._closing and not self._stop.done():
                frame = await self._receive(None if self.session is not None else login_deadline)
                if frame is None:
                    if not self._stop.done():  # the login deadline passed
                        self._close_for_login_timeout()
                    break
                if frame["type"] == "websocket.disconnect":
                    break
                await self._handle_frame(frame.get("text"), frame.get("bytes"))
        except (WebSocketDisconnect, RuntimeError):  # RuntimeError: closed by the writer
            pass
        finally:
            if self._stop.done():
                self._lanes.drop_queued()  # nobody reads the answers
            await self._lanes.join()  # what the client sent before it left is done
            if self.session is not None and not self.session.ended:
                self.sessions.detached(self.session)  # kept for the grace period
            self._out.put_nowait(None)
            await writer
        if self._closing:
            try:
                await self.ws.close(1000)
            except (WebSocketDisconnect, RuntimeError, OSError):
                pass  # the client closed first, right after its logout

    def _close_for_login_timeout(self) -> None:
        seconds = self.limits.login_timeout
        reason = f"login timeout: no session.login or session.resume in {seconds:g} s"
        log.info("a socket sent no session.login or session.resume in %g s: closed (1008)", seconds)
        self._out.put_nowait((POLICY_VIOLATION, reason))

    async def _handle_frame(self, text: str | None, data: bytes | None) -> None:
        """Parse and check a frame (here, so its errors come at once), then run it in its
        lane."""
        raw: dict[str, Any] | None = None
        try:
            raw = p.decode_frame(text if text is not None else data)
            msg = p.parse_message(raw)
            self._check_bounds(msg)
        except ProtocolError as exc:
            self._error(exc, raw)
            return
        await self._lanes.submit(_lane(msg), (msg, raw))

    def _check_bounds(self, msg: p.ClientMessage) -> None:
        sdp = getattr(msg, "sdp", None)
        if isinstance(sdp, str):
            p.check_sdp(sdp, self.limits.max_sdp_bytes, self.limits.max_sdp_media)
            if isinstance(msg, p.CallRestartMedia | p.CallModify | p.CallModifyAccept):
                self._candidates.pop(msg.call_id, None)  # a new ICE session counts afresh
        if isinstance(msg, p.IceCandidate):
            accepted = self._candidates.get(msg.call_id, 0)
            if accepted >= self.limits.max_candidates_per_leg:
                raise ProtocolError(
                    ErrorCode.INVALID_CANDIDATE,
                    f"call {msg.call_id} has {accepted} ICE candidates, the most one call "
                    "may trickle (--max-candidates-per-leg); this one is ignored and the call "
                    "goes on with those it has",
                )
            # Counted here, when the message arrives, not once it has been handled: handling
            # awaits the media plane (a round trip to a media worker), and candidates trickled
            # meanwhile would all pass the check above. One the media refuses counts too.
            self._count_candidate(msg.call_id)

    async def _handle_message(self, job: tuple[p.ClientMessage, dict[str, Any]]) -> None:
        msg, raw = job
        try:
            await self._dispatch(msg)
        except ProtocolError as exc:
            self._error(exc, raw)
            if isinstance(exc, _ClosingError):  # after the error, so the client reads why
                self._out.put_nowait((POLICY_VIOLATION, exc.close_reason))
        except (TokenExpired, TokenInvalid) as exc:
            self._login_failed(msg, exc, raw)
        except Exception:
            _failures.log(
                logging.ERROR,
                ("internal", msg.type),
                f"failed to handle {msg.type}",
                "failed to handle a message (%s)",
                msg.type,
                exc_info=True,
            )
            self._error(
                ProtocolError(ErrorCode.INTERNAL, "the server failed to handle this message"), raw
            )

    def _login_failed(
        self, msg: p.ClientMessage, exc: TokenExpired | TokenInvalid, raw: dict[str, Any]
    ) -> None:
        code = ErrorCode.TOKEN_EXPIRED if isinstance(exc, TokenExpired) else ErrorCode.INVALID_TOKEN
        if self.limits.guard is not None:
            self.limits.guard.login_failed(self.source, "ws", f"{msg.type}: {code.value}")
        self._error(ProtocolError(code, str(exc)), raw)

    def _check_login_rate(self) -> None:
        """Refuse a login from a source with too many failed ones (and close the socket)."""
        guard = self.limits.guard
        wait = guard.retry_after(self.source) if guard is not None else 0.0
        if guard is None or wait <= 0:
            return
        seconds = max(int(wait + 0.999), 1)
        reason = f"too many failed logins from {self.source}: try again in {seconds} s"
        guard.refused(self.source, "ws", reason)
        raise _ClosingError(
            ErrorCode.RATE_LIMITED,
            f"{reason} (at most {guard.max_failures} a minute, --login-failures-per-minute)",
            reason,
        )

    def _error(self, exc: ProtocolError, raw: dict[str, Any] | None) -> None:
        call_id = raw.get("call_id") if raw else None
        method = raw.get("type") if raw else None
        message = exc.to_wire(
            p.peek_req_id(raw),
            call_id if isinstance(call_id, str) else None,
            method if isinstance(method, str) and method in p.MESSAGE_TYPES else None,
        )
        conference_id = raw.get("conference_id") if raw else None
        if isinstance(conference_id, str) and len(conference_id) <= 64:
            message["conference_id"] = conference_id
        self.send(message)

    async def _dispatch(self, msg: p.ClientMessage) -> None:
        self.sessions.admit(msg.type)  # while draining: `draining` for what starts a call
        if isinstance(msg, p.SessionLogin | p.SessionResume):
            if self.session is not None and not self.session.ended:
                raise ProtocolError(ErrorCode.ALREADY_LOGGED_IN, "this connection has a session")
            self._check_login_rate()
            await (self._login(msg) if isinstance(msg, p.SessionLogin) else self._resume(msg))
            return
        session = self.session
        if session is None or session.ended:
            raise ProtocolError(
                ErrorCode.NOT_LOGGED_IN, f"{msg.type} needs a session: send session.login first"
            )
        c = self.controller
        match msg:
            case p.SessionLogout():
                await self.sessions.end(session, EndReason.HANGUP, EndReason.HANGUP)
                self.send(
                    {"type": "session.disconnected", "req_id": msg.req_id, "reason": "logout"}
                )
                self._closing = True
            case p.SessionRefresh():
                user, expires_at = await self.auth.check_token_expiry(msg.token)
                if user.name != session.user_name:
                    raise ProtocolError(
                        ErrorCode.INVALID_TOKEN, "the new token belongs to another user"
                    )
                self.sessions.refresh(session, expires_at)
                session.token_digest = token_digest(msg.token)
                self.send(
                    {
                        "type": "session.refreshed",
                        "req_id": msg.req_id,
                        "expires_at": expires_at.isoformat(),
                    }
                )
            case p.SessionAssociateE911():
                session.e911_id = msg.e911_id
                self.send(
                    {
                        "type": "session.address-updated",
                        "req_id": msg.req_id,
                        "e911_id": msg.e911_id,
                    }
                )
            case p.CallCreate():
                await c.routing.create_call(
                    session, msg.destination, msg.sdp, msg.caller_id, msg.req_id, msg.media_type
                )
            case p.CallAnswer():
                await c.answer(session, msg.call_id, msg.sdp, msg.req_id)
            case p.CallReject():
                await c.reject(session, msg.call_id, msg.reason, msg.req_id)
            case p.CallHangup():
                await c.hangup(session, msg.call_id, msg.req_id)
            case p.CallHold():
                await c.incall.hold(session, msg.call_id, msg.req_id)
            case p.CallResume():
                await c.incall.resume(session, msg.call_id, msg.req_id)
            case p.CallMute() | p.CallUnmute():
                muted = isinstance(msg, p.CallMute)
                await c.incall.set_muted(session, msg.call_id, muted, msg.req_id)
            case p.CallTransfer():
                await c.transfers.blind(session, msg.call_id, msg.destination, msg.req_id)
            case p.CallCompleteTransfer():
                await c.transfers.complete(session, msg.call_id, msg.target_call_id, msg.req_id)
            case p.CallRestartMedia():
                await c.leg_media.restart_media(session, msg.call_id, msg.sdp, msg.req_id)
            case p.CallMove():
                await c.moves.move(session, msg.call_id, msg.req_id)
            case p.CallModify():
                await c.modifications.modify(
                    session, msg.call_id, msg.media_type, msg.sdp, msg.req_id
                )
            case p.CallModifyAccept() | p.CallModifyReject():
                accepted = isinstance(msg, p.CallModifyAccept)
                await c.modifications.answer(session, msg.call_id, accepted, msg.sdp, msg.req_id)
            case p.IceCandidate():
                await c.leg_media.add_candidate(
                    session, msg.call_id, msg.candidate, msg.sdp_mid, msg.sdp_m_line_index
                )
            case p.IceDone():
                await c.leg_media.add_candidate(session, msg.call_id, None, None, None)
            case p.HistoryList():
                self.send(await history_page(self.auth, c, session, msg))
            case p.ForwardingGet() | p.ForwardingSet() | p.ForwardingDnd():
                self.send(await forwarding_message(self.auth, session.user_name, msg))
            case _:
                await dispatch_conference(self.controller.conferences, session, msg)

    async def _login(self, msg: p.SessionLogin) -> None:
        user, expires_at = await self.auth.check_token_expiry(msg.token)
        if msg.user_id is not None and msg.user_id not in (user.name, user.extension, user.number):
            raise ProtocolError(
                ErrorCode.INVALID_TOKEN,
                f"user_id {msg.user_id!r} is not the user of this token ({user.name})",
            )
        session = self.sessions.create(user, expires_at, msg.e911_id)
        session.token_digest = token_digest(msg.token)
        self.session = session
        session.attach(self.send)
        self.send(
            {
                "type": "session.ready",
                "req_id": msg.req_id,
                "session_id": session.id,
                "user": {
                    "name": user.name,
                    "extension": user.extension,
                    "number": user.number,
                    "display_name": user.display_name,
                },
                "e911_id": session.e911_id,
                "expires_at": expires_at.isoformat(),
                "resume_grace": self.sessions.grace,
            }
        )

    async def _resume(self, msg: p.SessionResume) -> None:
        user, _ = await self.auth.check_token_expiry(msg.token)
        session = self.sessions.sessions.get(msg.session_id)
        if session is None or session.ended:
            raise ProtocolError(
                ErrorCode.SESSION_NOT_FOUND,
                f"session {msg.session_id} is gone (not resumed within "
                f"{self.sessions.grace:.0f} s, logged out or expired); log in again",
            )
        if session.user_name != user.name:
            raise ProtocolError(ErrorCode.INVALID_TOKEN, "the token belongs to another user")
        if session.reachable:
            raise ProtocolError(
                ErrorCode.INVALID_STATE, f"session {session.id} is attached to another connection"
            )
        self.session = session
        session.token_digest = token_digest(msg.token)
        kept = self.sessions.resume(session, self.send)
        calls = [
            {"call_id": leg.id, "state": leg.state.value}
            for leg in self.controller.legs.values()
            if leg.device is session
        ]
        self.send(
            {
                "type": "session.resumed",
                "req_id": msg.req_id,
                "session_id": session.id,
                "calls": calls,
            }
        )
        for message in kept:
            self.send(message)

    def _count_candidate(self, call_id: str) -> None:
        if len(self._candidates) >= _MAX_COUNTED_CALLS and call_id not in self._candidates:
            legs = self.controller.legs
            self._candidates = {k: v for k, v in self._candidates.items() if k in legs}
        self._candidates[call_id] = self._candidates.get(call_id, 0) + 1


class _ClosingError(ProtocolError):
    """An error after which the server closes the socket (1008, ``close_reason``)."""

    def __init__(self, code: ErrorCode, message: str, close_reason: str) -> None:
        super().__init__(code, message)
        self.close_reason = close_reason


# Calls whose candidates one connection counts before it forgets those that ended.
_MAX_COUNTED_CALLS = 256
# Messages about several calls or the session wait for every lane (lanes.py).
# history.list waits for the calls a hang-up just sent is ending (its answer lists them).
_BARRIERS = (p.ConferenceMerge, p.ConferenceSplit, p.CallCompleteTransfer, p.HistoryList)


def _lane(msg: p.ClientMessage) -> str | Route:
    """The lane of a message (docs/protocol.md, "Order"; lanes.py)."""
    if isinstance(msg, _BARRIERS) or msg.type.startswith("session."):
        return BARRIER
    conference_id = getattr(msg, "conference_id", None)
    if isinstance(conference_id, str):
        return f"conference:{conference_id}"
    call_id = getattr(msg, "call_id", None)
    if isinstance(call_id, str):
        return f"call:{call_id}"
    return INLINE  # call.create, conference.start: about nothing that exists yet
