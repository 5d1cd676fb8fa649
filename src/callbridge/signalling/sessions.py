"""Sessions: a logged-in device that outlives the WebSocket carrying it.

A session is what the call controller sees as a *device*. A connection attaches to it at
``session.login`` (new session) or ``session.resume`` (existing one). When the socket drops
without ``session.logout``, the session is *detached*: its calls stay up (media keeps flowing
if the client's peer connections are alive), messages for it are kept in order, and it rings
for no new call. If a connection resumes it within the grace period it gets the kept messages;
otherwise its calls end (the far parties get ``call.ended {reason: "disconnected"}``).

A session also ends when its token expires (``session.expired``) unless the client sends
``session.refresh`` with a newer token first.

While the server drains (:mod:`callbridge.drain`), :meth:`SessionManager.admit` refuses what
would start a session or a call (``draining``), every session is told (``session.draining``,
again after a ``session.resume``), and once the drain has ended the calls every session ends
(``session.disconnected {reason: "draining"}``). While a spool of records is full (the
database refuses writes, :meth:`~callbridge.drain.Drain.backlog`) it refuses what would start
a call (``database_backlog``); logins still work.

::

    login ──► NEW ──► ATTACHED ──socket drops──► DETACHED ──grace over──► ENDED (calls:
                         ▲  │                       │                          disconnected)
                         │  └──logout / expiry──────┼──────────────────► ENDED (calls: hangup)
                         └────────session.resume────┘
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from callbridge.core.calls import new_id
from callbridge.core.controller import CallController
from callbridge.core.events import DeviceEvent
from callbridge.core.scheduler import Scheduler
from callbridge.errors import ErrorCode, RetryLater, ServerDraining
from callbridge.signalling import wire_apps, wire_calls, wire_conferences  # noqa: F401 (encoders)
from callbridge.signalling.wire import to_wire
from callbridge.statemachine import StateMachine
from callbridge.vocabulary import EndReason

__all__ = [
    "BACKLOG_RETRY_AFTER",
    "REFUSED_WHILE_BACKLOGGED",
    "REFUSED_WHILE_DRAINING",
    "Session",
    "SessionManager",
    "SessionState",
    "token_digest",
]

log = logging.getLogger(__name__)
_MAX_KEPT = 1000  # messages kept for a detached session; older ones are dropped (logged)

Sender = Callable[[dict[str, Any]], None]

# The /ws requests that start a session or a call (a blind transfer and a conference
# invitation ring someone new): refused with `draining` while the server drains. Everything
# else (answering, hanging up, hold, ICE, session.resume, ...) still works, so the calls that
# are up can finish.
REFUSED_WHILE_DRAINING = frozenset(
    {"session.login", "call.create", "call.transfer", "conference.start", "conference.invite"}
)
# While the records of calls cannot be written (a full spool), no new call starts; a login
# writes nothing, so it goes on.
REFUSED_WHILE_BACKLOGGED = REFUSED_WHILE_DRAINING - {"session.login"}
# Seconds a call refused for a full spool is told to wait (/ws and REST): the spool retries
# every 5 s at most, and a lock held past the busy timeout (10 s) has been held long already.
BACKLOG_RETRY_AFTER = 10


def token_digest(token: str) -> str:
    """How the store and a session name a login token: its SHA-256, never the token."""
    return hashlib.sha256(token.strip().encode()).hexdigest()


class SessionState(StrEnum):
    """State of a session (the diagram is the module's)."""

    NEW = "new"  # created at session.login, not yet attached to its connection
    ATTACHED = "attached"  # a connection carries it: it rings, messages go out at once
    DETACHED = "detached"  # its socket dropped: calls stay up, messages are kept, no ringing
    ENDED = "ended"  # logged out, expired, or not resumed in time; its calls have ended


class Session(StateMachine[SessionState]):
    """One logged-in device of a user (the controller's ``Device``)."""

    TRANSITIONS: ClassVar[dict[SessionState, frozenset[SessionState]]] = {
        SessionState.NEW: frozenset({SessionState.ATTACHED, SessionState.ENDED}),
        SessionState.ATTACHED: frozenset({SessionState.DETACHED, SessionState.ENDED}),
        SessionState.DETACHED: frozenset({SessionState.ATTACHED, SessionState.ENDED}),
        SessionState.ENDED: frozenset(),
    }

    def __init__(self, user: Any, expires_at: datetime, e911_id: str | None) -> None:
        self.id = new_id()
        self.state = SessionState.NEW
        self.user = user
        self.user_name: str = user.name
        self.caller_id: str = user.number or user.extension
        self.display_name: str = user.display_name or user.name
        self.e911_id = e911_id
        self.expires_at = expires_at
        # The SHA-256 of the token it signed in, resumed or refreshed with last: revoking
        # that token ends it (callbridge.api.revocation).
        self.token_digest: str | None = None
        self._sender: Sender | None = None
        self._kept: deque[dict[str, Any]] = deque()
        self._dropped = 0

    @property
    def kind(self) -> str:
        return "session"

    @property
    def ended(self) -> bool:
        return self.state is SessionState.ENDED

    @property
    def reachable(self) -> bool:
        """Attached to a connection: new calls may ring it."""
        return self.state is SessionState.ATTACHED

    def deliver(self, event: DeviceEvent) -> None:
        """The core tells this device a fact: sent as its ``/ws`` message."""
        self.queue(to_wire(event))

    def queue(self, message: dict[str, Any]) -> None:
        """Queue one ``/ws`` message (this adapter's, never the core's): sent now while
        attached, kept while not."""
        if message.get("req_id", "") is None:
            del message["req_id"]
        if self._sender is not None:
            self._sender(message)
            return
        if len(self._kept) >= _MAX_KEPT:
            self._kept.popleft()
            self._dropped += 1
        self._kept.append(message)

    def attach(self, sender: Sender) -> list[dict[str, Any]]:
        """Deliver to ``sender`` from now on; returns the messages kept while detached."""
        self.transition(SessionState.ATTACHED)
        if self._dropped:
            log.warning(
                "session %s: %d old messages dropped while detached", self.id, self._dropped
            )
        self._sender = sender
        kept, self._kept, self._dropped = list(self._kept), deque(), 0
        return kept

    def detach(self) -> None:
        self.transition(SessionState.DETACHED, cause="socket dropped")
        self._sender = None

    def end(self, cause: str) -> None:
        """Over for good. An attached connection still gets what follows (the ``call.ended``
        of its calls, ``session.expired``) and then closes."""
        self.transition(SessionState.ENDED, cause=cause)


class SessionManager:
    """Creates, resumes, expires and ends sessions; owns their timers."""

    def __init__(self, controller: CallController, grace: float = 60.0) -> None:
        self.controller = controller
        self.grace = grace
        self.sessions: dict[str, Session] = {}
        self.scheduler = Scheduler("sessions")
        self._drain_deadline: float | None = None  # loop time the drain ends calls at
        # Which spool of records is full, if one is (set by callbridge.drain.Drain.attach).
        self.backlog: Callable[[], str | None] | None = None

    # draining -------------------------------------------------------------------------------
    @property
    def draining(self) -> bool:
        return self._drain_deadline is not None

    def retry_after(self) -> int:
        """Whole seconds (at least 1) the drain may still last: the ``retry_after`` of
        ``draining`` errors and ``session.draining``."""
        if self._drain_deadline is None:
            return 0
        left = self._drain_deadline - asyncio.get_running_loop().time()
        return max(1, math.ceil(left))

    def admit(self, message_type: str) -> None:
        """Raise ``draining`` for a request that would start a session or a call while the
        server drains (:data:`REFUSED_WHILE_DRAINING`); anything else passes."""
        if self._drain_deadline is None or message_type not in REFUSED_WHILE_DRAINING:
            self._admit_backlogged(message_type)
            return
        seconds = self.retry_after()
        raise ServerDraining(
            f"{message_type} refused: this server is draining (shutting down) and takes no new "
            f"sessions or calls; use another server, or retry here in {seconds} s",
            seconds,
        )

    def _admit_backlogged(self, message_type: str) -> None:
        if message_type not in REFUSED_WHILE_BACKLOGGED or self.backlog is None:
            return
        spool = self.backlog()
        if spool is None:
            return
        raise RetryLater(
            ErrorCode.DATABASE_BACKLOG,
            f"{message_type} refused: the server's database refuses writes and the {spool} "
            f"waiting in memory reached --spool-limit, so it starts no new calls for now "
            f"(nothing is lost; calls already up go on); retry in {BACKLOG_RETRY_AFTER} s",
            BACKLOG_RETRY_AFTER,
        )

    def start_draining(self, deadline: float) -> None:
        """The server drains; the calls still up at loop time ``deadline`` will be ended.
        Every session is told now (``session.draining``), detached ones when they resume."""
        self._drain_deadline = deadline
        for session in list(self.sessions.values()):
            session.queue(self._draining_message(session))

    def _draining_message(self, session: Session) -> dict[str, Any]:
        assert self._drain_deadline is not None
        left = max(0.0, self._drain_deadline - asyncio.get_running_loop().time())
        return {
            "type": "session.draining",
            "session_id": session.id,
            "deadline_ms": round(left * 1000),
            "retry_after": self.retry_after(),
        }

    async def end_all(self, cause: str) -> None:
        """End every session (the drain's last step, after the calls ended): each connection
        gets ``session.disconnected {reason: "draining"}``; logins stay refused."""
        for session in list(self.sessions.values()):
            await self.end(session, EndReason.HANGUP, EndReason.HANGUP, cause)
            session.queue({"type": "session.disconnected", "reason": "draining"})

    def create(self, user: Any, expires_at: datetime, e911_id: str | None) -> Session:
        session = Session(user, expires_at, e911_id)
        session.state_observer = self.controller.observer
        self.sessions[session.id] = session
        self.controller.add_device(session)
        self._schedule_expiry(session)
        return session

    def refresh(self, session: Session, expires_at: datetime) -> None:
        session.expires_at = expires_at
        self._schedule_expiry(session)

    def detached(self, session: Session) -> None:
        """Its socket dropped without a logout: keep it for the grace period."""
        if session.state is not SessionState.ATTACHED:
            return
        session.detach()
        log.info("session %s detached; kept for %.0f s", session.id, self.grace)
        self.controller.notify_peers(
            session,
            "peer-connection-lost",
            f"the other party lost its connection; the call waits up to {self.grace:.0f} s",
        )
        self._later(session, "grace", self.grace, self._grace_over)

    def resume(self, session: Session, sender: Sender) -> list[dict[str, Any]]:
        self.scheduler.cancel((session.id, "grace"))
        kept = session.attach(sender)
        self.controller.notify_peers(
            session, "peer-connection-restored", "the other party is connected again"
        )
        if self.draining:  # a notice kept while away is stale: its deadline_ms counts from then
            kept = [m for m in kept if m.get("type") != "session.draining"]
            kept.append(self._draining_message(session))
        return kept

    async def end(
        self, session: Session, reason: EndReason, far: EndReason, cause: str = "logout"
    ) -> None:
        """End the session and every call it has (idempotent)."""
        if session.ended:
            return
        session.end(cause)
        for kind in ("grace", "expiry"):
            self.scheduler.cancel((session.id, kind))
        self.sessions.pop(session.id, None)
        await self.controller.remove_device(session, reason, far)

    # timers ---------------------------------------------------------------------------------
    def _schedule_expiry(self, session: Session) -> None:
        delay = (session.expires_at - datetime.now(UTC)).total_seconds()
        self._later(session, "expiry", max(0.0, delay), self._expired)

    async def _grace_over(self, session: Session) -> None:
        log.info("session %s: not resumed within %.0f s; ending it", session.id, self.grace)
        await self.end(session, EndReason.DISCONNECTED, EndReason.DISCONNECTED, "grace over")

    async def _expired(self, session: Session) -> None:
        # The connection closes its socket once it has sent this (see ws.Connection).
        await self.end(session, EndReason.HANGUP, EndReason.HANGUP, "token expired")
        session.queue({"type": "session.expired", "session_id": session.id})

    def _later(
        self,
        session: Session,
        kind: str,
        delay: float,
        action: Callable[[Session], Any],
    ) -> None:
        self.scheduler.later(
            delay, (session.id, kind), lambda: action(session), f"session {session.id} {kind}"
        )

    async def shutdown(self) -> None:
        await self.scheduler.close()
