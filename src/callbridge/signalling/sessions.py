"""Sessions: a logged-in device that outlives the WebSocket carrying it.

A session is what the call controller sees as a *device*. A connection attaches to it at
``session.login`` (new session) or ``session.resume`` (existing one). When the socket drops
without ``session.logout``, the session is *detached*: its calls stay up (media keeps flowing
if the client's peer connections are alive), messages for it are kept in order, and it rings
for no new call. If a connection resumes it within the grace period it gets the kept messages;
otherwise its calls end (the far parties get ``call.ended {reason: "disconnected"}``).

A session also ends when its token expires (``session.expired``) unless the client sends
``session.refresh`` with a newer token first.

::

    login ──► ATTACHED ──socket drops──► DETACHED ──grace over──► ENDED (calls: disconnected)
                 ▲  │                       │
                 │  └──logout / expiry──────┼──────────────────► ENDED (calls: hangup)
                 └────────session.resume────┘
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from callbridge.core.calls import EndReason, new_id
from callbridge.core.controller import CallController
from callbridge.core.events import DeviceEvent
from callbridge.signalling import wire_apps, wire_calls, wire_conferences  # noqa: F401 (encoders)
from callbridge.signalling.wire import to_wire

__all__ = ["Session", "SessionManager"]

log = logging.getLogger(__name__)
_MAX_KEPT = 1000  # messages kept for a detached session; older ones are dropped (logged)

Sender = Callable[[dict[str, Any]], None]


class Session:
    """One logged-in device of a user (the controller's ``Device``)."""

    def __init__(self, user: Any, expires_at: datetime, e911_id: str | None) -> None:
        self.id = new_id()
        self.user = user
        self.user_name: str = user.name
        self.caller_id: str = user.number or user.extension
        self.display_name: str = user.display_name or user.name
        self.e911_id = e911_id
        self.expires_at = expires_at
        self._sender: Sender | None = None
        self._kept: deque[dict[str, Any]] = deque()
        self._dropped = 0
        self.ended = False

    @property
    def reachable(self) -> bool:
        """Attached to a connection: new calls may ring it."""
        return self._sender is not None and not self.ended

    def deliver(self, event: DeviceEvent) -> None:
        """The core tells this device a fact: sent as its ``/ws`` message."""
        self.send(to_wire(event))

    def send(self, message: dict[str, Any]) -> None:
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
        if self._dropped:
            log.warning(
                "session %s: %d old messages dropped while detached", self.id, self._dropped
            )
        self._sender = sender
        kept, self._kept, self._dropped = list(self._kept), deque(), 0
        return kept

    def detach(self) -> None:
        self._sender = None


class SessionManager:
    """Creates, resumes, expires and ends sessions; owns their timers."""

    def __init__(self, controller: CallController, grace: float = 60.0) -> None:
        self.controller = controller
        self.grace = grace
        self.sessions: dict[str, Session] = {}
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def create(self, user: Any, expires_at: datetime, e911_id: str | None) -> Session:
        session = Session(user, expires_at, e911_id)
        self.sessions[session.id] = session
        self.controller.add_device(session)
        self._schedule_expiry(session)
        return session

    def refresh(self, session: Session, expires_at: datetime) -> None:
        session.expires_at = expires_at
        self._schedule_expiry(session)

    def detached(self, session: Session) -> None:
        """Its socket dropped without a logout: keep it for the grace period."""
        if session.ended:
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
        self._cancel(session, "grace")
        kept = session.attach(sender)
        self.controller.notify_peers(
            session, "peer-connection-restored", "the other party is connected again"
        )
        return kept

    async def end(self, session: Session, reason: EndReason, far: EndReason) -> None:
        """End the session and every call it has (idempotent)."""
        if session.ended:
            return
        session.ended = True
        for kind in ("grace", "expiry"):
            self._cancel(session, kind)
        self.sessions.pop(session.id, None)
        await self.controller.remove_device(session, reason, far)

    # timers ---------------------------------------------------------------------------------
    def _schedule_expiry(self, session: Session) -> None:
        delay = (session.expires_at - datetime.now(UTC)).total_seconds()
        self._later(session, "expiry", max(0.0, delay), self._expired)

    async def _grace_over(self, session: Session) -> None:
        log.info("session %s: not resumed within %.0f s; ending it", session.id, self.grace)
        await self.end(session, EndReason.DISCONNECTED, EndReason.DISCONNECTED)

    async def _expired(self, session: Session) -> None:
        # The connection closes its socket once it has sent this (see ws.Connection).
        await self.end(session, EndReason.HANGUP, EndReason.HANGUP)
        session.send({"type": "session.expired", "session_id": session.id})

    def _later(self, session: Session, kind: str, delay: float, action: Any) -> None:
        self._cancel(session, kind)

        def fire() -> None:
            self._timers.pop((session.id, kind), None)
            task = asyncio.get_running_loop().create_task(action(session))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        loop = asyncio.get_running_loop()
        self._timers[(session.id, kind)] = loop.call_later(delay, fire)

    def _cancel(self, session: Session, kind: str) -> None:
        timer = self._timers.pop((session.id, kind), None)
        if timer is not None:
            timer.cancel()

    async def shutdown(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
