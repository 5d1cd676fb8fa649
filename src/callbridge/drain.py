"""Graceful drain: how a server stops without cutting calls off (SIGTERM, ``callbridge drain``).

::

    SERVING ──SIGTERM, `callbridge drain`, Ctrl-C──► DRAINING ──no call left, or the deadline──►
    ENDING ──► FLUSHING ──► DONE (the server stops: uvicorn's shutdown, then the lifespan's)

- **DRAINING.** Nothing new starts: on ``/ws``, ``session.login``, ``call.create`` and the
  other requests that ring someone get the ``draining`` error with ``retry_after``
  (:meth:`SessionManager.admit <callbridge.signalling.sessions.SessionManager.admit>`); on
  REST, the requests that start calls get ``503`` with ``Retry-After`` and the API's JSON
  error body (:class:`DrainMiddleware`). Every session is told (``session.draining {deadline_ms,
  retry_after}``). Everything else goes on: the sockets and calls that are up, their
  commands, REST reads, ``session.resume``, ``/healthz`` (``"status": "draining"``).
- **ENDING.** Once no call is left, or at the deadline (``--drain-timeout`` after the start),
  the calls still up end with ``hangup`` while their devices are still connected, so each
  gets ``call.ended`` and each application ``call.hangup``; then every session ends
  (``session.disconnected {reason: "draining"}``).
- **FLUSHING.** The webhook events of those calls go into the outbox, then the drain waits (at
  most ``flush_timeout``) until no message is due or being sent. What is still in backoff
  stays in the database for the next server (the outbox is durable).

The same places refuse new calls while the database refuses writes and a spool of the records
that wait meanwhile is full (:meth:`Drain.backlog`: the call records' and the webhook
events'): ``database_backlog`` on ``/ws``, ``503`` on REST, both with a retry time. Records of
calls already up are still taken, so nothing is lost; new calls would only add to the backlog.

Ctrl-C (SIGINT) is the same drain with no wait for the calls (``drain_timeout`` 0); the
process then exits 130, as for any Ctrl-C. A second Ctrl-C stops at once (the lifespan's
teardown still ends the calls and writes their records), a third exits without it (uvicorn's
force exit).

``serve`` also keeps a pid file in the data directory (:mod:`callbridge.pidfile`) so that
``callbridge drain --data-dir DIR`` (:mod:`callbridge.cli_drain`) can find the server and
send it SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from starlette.types import ASGIApp, Receive, Scope, Send

from callbridge.api.errors import ApiError, ApiErrorCode
from callbridge.core.events import Event
from callbridge.signalling.sessions import BACKLOG_RETRY_AFTER
from callbridge.statemachine import StateMachine
from callbridge.vocabulary import EndReason

if TYPE_CHECKING:
    from callbridge.core.appcalls import AppCalls
    from callbridge.core.controller import CallController
    from callbridge.journal import Journal
    from callbridge.signalling.sessions import SessionManager
    from callbridge.store import Store
    from callbridge.webhooks.telnyx import WebhookEvents

__all__ = ["Drain", "DrainMiddleware", "DrainState"]

log = logging.getLogger(__name__)

FLUSH_TIMEOUT = 10.0  # seconds the drain waits for the webhook outbox, at most
_FLUSH_POLL = 0.1  # seconds between looks at the outbox while flushing

# REST requests that start a call (refused while draining): dialling, a transfer (rings a new
# party), parking a call in a queue (a wait meant to outlive this server), a new conference.
_STARTS_A_CALL = re.compile(
    r"/v2/(calls|conferences|calls/[^/]+/actions/(transfer|enqueue))/?", re.ASCII
)


class DrainState(StrEnum):
    """The drain of one server (the machine is drawn in the module docstring)."""

    SERVING = "serving"  # no drain: everything is accepted
    DRAINING = "draining"  # nothing new starts; the calls that are up may finish
    ENDING = "ending"  # the calls still up are being ended (hangup), then the sessions
    FLUSHING = "flushing"  # waiting (bounded) for the webhooks of the ended calls to go out
    DONE = "done"  # the server may stop


class Drain(StateMachine[DrainState]):
    """The drain of one server: started once (:meth:`start`), run as a task it owns.

    :param drain_timeout: seconds calls may go on after the start (``--drain-timeout``).
    :param on_done: called once the drain is over (``serve`` tells uvicorn to stop there).
    """

    TRANSITIONS: ClassVar[dict[DrainState, frozenset[DrainState]]] = {
        DrainState.SERVING: frozenset({DrainState.DRAINING}),
        DrainState.DRAINING: frozenset({DrainState.ENDING}),
        DrainState.ENDING: frozenset({DrainState.FLUSHING}),
        DrainState.FLUSHING: frozenset({DrainState.DONE}),
        DrainState.DONE: frozenset(),
    }

    def __init__(
        self,
        drain_timeout: float,
        *,
        flush_timeout: float = FLUSH_TIMEOUT,
        on_done: Callable[[], None] | None = None,
    ) -> None:
        self.id = "server"
        self.state = DrainState.SERVING
        self.drain_timeout = drain_timeout
        self.flush_timeout = flush_timeout
        self.on_done = on_done
        self.deadline: float | None = None  # loop time the calls still up are ended at
        self._parts: _Parts | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    @property
    def kind(self) -> str:
        return "drain"

    @property
    def draining(self) -> bool:
        """Nothing new may start (any state past SERVING)."""
        return self.state is not DrainState.SERVING

    def retry_after(self) -> int:
        """Whole seconds (at least 1) the drain may still last."""
        if self._parts is not None:
            return max(1, self._parts.sessions.retry_after())
        return 1

    def backlog(self) -> str | None:
        """The name of a spool that is full (the database refuses writes and ``--spool-limit``
        records wait): new calls are refused until it empties; ``None`` when none is."""
        return self._parts.backlog() if self._parts is not None else None

    def refusal(self) -> tuple[str, int] | None:
        """Why a new call is refused now and after how many seconds to retry: the drain, or
        a full spool; ``None`` when calls are welcome."""
        if self.draining:
            seconds = self.retry_after()
            return (
                "this server is draining (shutting down) and starts no new calls; send the "
                f"request to another server, or retry here in {seconds} s",
                seconds,
            )
        spool = self.backlog()
        if spool is None:
            return None
        return (
            f"this server starts no new calls for now: its database refuses writes and the "
            f"{spool} waiting in memory reached --spool-limit (nothing is lost; calls already "
            f"up go on); retry in {BACKLOG_RETRY_AFTER} s or use another server",
            BACKLOG_RETRY_AFTER,
        )

    def attach(
        self,
        *,
        sessions: SessionManager,
        controller: CallController,
        appcalls: AppCalls,
        events: WebhookEvents,
        store: Store,
        journal: Journal | None = None,
    ) -> None:
        """The server's parts, once they run (the lifespan's start-up)."""
        self._parts = _Parts(sessions, controller, appcalls, events, store, journal)
        sessions.backlog = self.backlog  # /ws: call.create and the like check it

    def status(self) -> dict[str, Any]:
        """What ``/healthz`` says about the drain (``{}`` while serving)."""
        if not self.draining or self._parts is None:
            return {}
        left = 0.0
        if self.deadline is not None:
            left = max(0.0, self.deadline - asyncio.get_running_loop().time())
        return {"state": self.state.value, "calls": self._parts.live_calls(), "ends_in": left}

    # running ---------------------------------------------------------------------------------
    def start(self, why: str, timeout: float | None = None) -> bool:
        """Start draining (``timeout`` overrides ``drain_timeout``); False if already started
        or the server is not running yet (nothing to drain: the caller stops it directly)."""
        if self.draining or self._parts is None:
            return False
        seconds = self.drain_timeout if timeout is None else timeout
        parts = self._parts
        self.deadline = asyncio.get_running_loop().time() + seconds
        self.transition(DrainState.DRAINING, cause=why)
        parts.sessions.start_draining(self.deadline)
        log.warning(
            "draining (%s): no new sessions or calls; %d calls live, ended in %g s if still up",
            why,
            parts.live_calls(),
            seconds,
        )
        self._task = asyncio.get_running_loop().create_task(self._run(parts), name="drain")
        return True

    async def cancel(self) -> None:
        """Stop a drain under way (the server stops at once); the lifespan's teardown ends
        what is left."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, parts: _Parts) -> None:
        try:
            await self._wait_for_calls(parts)
            self.transition(DrainState.ENDING)
            left = parts.live_calls()
            if left:
                log.warning("drain deadline: ending %d calls still up (hangup)", left)
            await parts.end_calls()
            await parts.sessions.end_all("server draining")
            self.transition(DrainState.FLUSHING)
            await self._flush(parts)
            self.transition(DrainState.DONE)
            log.warning("drained: every call ended and its webhooks handed on; stopping")
        except Exception:  # the server must stop anyway; the lifespan's teardown takes over
            log.exception("the drain failed; stopping the server without it")
        if self.on_done is not None:
            self.on_done()

    async def _wait_for_calls(self, parts: _Parts) -> None:
        """Until no call is live or the deadline passes; woken by every bus event."""
        assert self.deadline is not None
        loop = asyncio.get_running_loop()
        unsubscribe = parts.controller.bus.subscribe(Event, lambda _: self._changed.set())
        try:
            while parts.live_calls() and (left := self.deadline - loop.time()) > 0:
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), left)
        finally:
            unsubscribe()

    async def _flush(self, parts: _Parts) -> None:
        """The ended calls' events into the outbox, then until nothing there is due now (sent
        or in flight), at most ``flush_timeout`` seconds."""
        try:
            async with asyncio.timeout(self.flush_timeout):
                await parts.events.flush()
                # Polled: the outbox signals no "all sent" (its state is in the database).
                while await parts.webhooks_due():  # noqa: ASYNC110
                    await asyncio.sleep(_FLUSH_POLL)
        except TimeoutError:
            log.warning(
                "drain: webhooks still due after %g s; they stay in the outbox for the next server",
                self.flush_timeout,
            )


@dataclass(frozen=True, slots=True)
class _Parts:
    """The parts of a running server that a drain works with."""

    sessions: SessionManager
    controller: CallController
    appcalls: AppCalls
    events: WebhookEvents
    store: Store
    journal: Journal | None

    def backlog(self) -> str | None:
        if self.journal is not None and self.journal.spool.full:
            return "call records"
        if self.events.full:
            return "webhook events"
        return None

    def live_calls(self) -> int:
        """Calls with a live leg (a leg rung for no call counts as one), plus application
        calls that ring with no leg yet."""
        calls = {leg.call.id if leg.call else leg.id for leg in self.controller.legs.values()}
        ringing = sum(1 for call in self.appcalls.calls.values() if call.leg is None)
        return len(calls) + ringing

    async def end_calls(self) -> None:
        """End every call still up with ``hangup``, in the order of the controller's
        shutdown (conferences, calls, then legs rung for no call), without stopping it."""
        c = self.controller
        await self.appcalls.shutdown()  # application calls still ringing: canceled
        await c.conferences.shutdown()
        for leg in list(c.legs.values()):
            if leg.call is not None:
                await c.end_call(leg.call, EndReason.HANGUP, EndReason.HANGUP)
        for leg in list(c.legs.values()):
            await c.end_leg(leg, EndReason.HANGUP)

    async def webhooks_due(self) -> bool:
        """Whether the outbox holds a message due now (waiting to be sent, or being sent)."""
        at = datetime.now(UTC)
        pending = await self.store.list_webhooks(status="pending", limit=1000)
        return any(m.next_attempt_at <= at for m in pending)


# REST ---------------------------------------------------------------------------------------
class DrainMiddleware:
    """ASGI middleware: while draining, or while a spool is full (:meth:`Drain.refusal`), the
    REST requests that start calls get ``503`` with ``Retry-After`` and the API's error body;
    everything else passes."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = None
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and _STARTS_A_CALL.fullmatch(scope["path"])
        ):
            refusal = self.drain.refusal()
        if refusal is None:
            await self.app(scope, receive, send)
            return
        detail, seconds = refusal
        # 503 is a status the SDKs retry, after Retry-After: what a client should do.
        error = ApiError(503, ApiErrorCode.SERVICE_UNAVAILABLE, detail)
        body = json.dumps(error.body()).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(seconds).encode()),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})
