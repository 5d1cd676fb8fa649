"""The operator dashboard at ``/dashboard``: a page (``web/dashboard/``), its JSON and its live
feed.

- ``GET /dashboard``: the page (plain HTML, CSS, JavaScript; assets under ``/dashboard/``).
- ``POST /dashboard/session`` with ``Authorization: Bearer KEY``: checks the API key and sets
  a dashboard cookie (``callbridge_dashboard``: a random ticket, ``HttpOnly``,
  ``SameSite=Strict``, ``Path=/dashboard``, ``Secure`` over HTTPS) valid for
  :data:`TICKET_SECONDS`. ``DELETE /dashboard/session`` forgets it.
- ``GET /dashboard/state``: the snapshot (:mod:`callbridge.dashboard_state`) as JSON.
- ``GET /dashboard/events``: Server-Sent Events, one ``snapshot`` event with the same JSON
  at once and again after each change of the core (any event on the controller's bus),
  coalesced to at most one every :data:`MIN_INTERVAL` seconds, and every
  :data:`HEARTBEAT` seconds regardless (durations, registrations, the outbox).

Both read endpoints take the Bearer key or the cookie. Why a cookie: ``EventSource`` cannot
send an ``Authorization`` header, and a key in the URL would end up in access logs and
browser history. The ticket is only a server-side handle: it keeps the key in this process's
memory and every request and every push checks the key again (``ApiContext.check_api_key``:
cached 10 s), so a revoked key stops the dashboard within seconds. Tickets are per server
process (a restart signs the page out; the page signs in again with the key it kept in
``sessionStorage``).

Any valid key may read the dashboard (a read-only key is enough). An admin key sees every
account; another key sees its own account only, and not the webhook outbox (shared by every
account).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from callbridge.api.context import ApiContext
from callbridge.api.errors import unauthorized
from callbridge.core.events import Event
from callbridge.dashboard_state import snapshot
from callbridge.drain import Drain, DrainState
from callbridge.store.accounts import ApiPrincipal
from callbridge.websdk import web_dir

__all__ = [
    "COOKIE",
    "DASHBOARD_DIR",
    "HEARTBEAT",
    "MIN_INTERVAL",
    "TICKET_SECONDS",
    "install_dashboard",
]

DASHBOARD_DIR = web_dir("dashboard")
COOKIE = "callbridge_dashboard"
TICKET_SECONDS = 8 * 3600  # a working day; the page signs in again with its key after that
MAX_TICKETS = 1000  # the oldest go first beyond this (each sign-in makes one)
MIN_INTERVAL = 0.4  # seconds between two pushes: a burst of events is one snapshot
HEARTBEAT = 5.0  # seconds: a push even without events (durations, registrations, outbox)
DRAIN_POLL = 0.25  # seconds between two looks at the server's drain
STREAM_SECONDS = 300.0  # a stream ends after this; EventSource reconnects with the cookie

# The page needs its own origin only (EventSource and fetch to /dashboard/*).
_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True, slots=True)
class _Ticket:
    key: str  # kept to check the key again on each use (revocation)
    expires: float  # time.monotonic()


class _Tickets:
    """The dashboard cookies this process handed out."""

    def __init__(self) -> None:
        self._tickets: dict[str, _Ticket] = {}

    def issue(self, key: str) -> str:
        now = time.monotonic()
        self._tickets = {t: v for t, v in self._tickets.items() if v.expires > now}
        while len(self._tickets) >= MAX_TICKETS:
            self._tickets.pop(next(iter(self._tickets)))
        ticket = secrets.token_urlsafe(32)
        self._tickets[ticket] = _Ticket(key, now + TICKET_SECONDS)
        return ticket

    def key(self, ticket: str) -> str | None:
        found = self._tickets.get(ticket)
        if found is None or found.expires <= time.monotonic():
            self._tickets.pop(ticket, None)
            return None
        return found.key

    def forget(self, ticket: str) -> None:
        self._tickets.pop(ticket, None)


class _PageFiles(StaticFiles):
    """StaticFiles with the page's headers on every answer."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(_HEADERS)
        return response


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise unauthorized("the Authorization header must be 'Bearer <API key>'")
    return key.strip()


async def _principal(request: Request, tickets: _Tickets) -> ApiPrincipal:
    """Who asks: the Bearer key, else the dashboard cookie's key; 401 saying what to do."""
    ctx: ApiContext = request.app.state.api
    key = _bearer(request)
    if key is None:
        ticket = request.cookies.get(COOKIE)
        if ticket is None:
            raise unauthorized(
                "sign in first: POST /dashboard/session with 'Authorization: Bearer <API key>' "
                "(the page at /dashboard does it), or send that header here"
            )
        key = tickets.key(ticket)
        if key is None:
            raise unauthorized(
                "the dashboard session expired or the server restarted: sign in again with "
                "POST /dashboard/session"
            )
    principal = await ctx.check_api_key(key)
    if principal is None:
        raise unauthorized(
            "the API key is unknown or revoked: use a key printed by `callbridge apikey create`"
        )
    return principal


def _scope(principal: ApiPrincipal) -> str | None:
    return None if principal.admin else principal.account_id


def install_dashboard(app: FastAPI, directory: Path | None = DASHBOARD_DIR) -> None:
    """Add the dashboard's routes; the page itself only when ``directory`` has it."""
    tickets = _Tickets()

    @app.post("/dashboard/session", include_in_schema=False)
    async def sign_in(request: Request) -> JSONResponse:
        if _bearer(request) is None:
            raise unauthorized(
                "no Authorization header: send 'Authorization: Bearer <API key>' "
                "(create a key with `callbridge apikey create --read-only`)"
            )
        principal = await _principal(request, tickets)
        key = _bearer(request)
        assert key is not None
        response = JSONResponse(
            {
                "account": _scope(principal),
                "admin": principal.admin,
                "expires_in": TICKET_SECONDS,
            }
        )
        response.set_cookie(
            COOKIE,
            tickets.issue(key),
            max_age=TICKET_SECONDS,
            path="/dashboard",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    @app.delete("/dashboard/session", include_in_schema=False)
    async def sign_out(request: Request) -> Response:
        ticket = request.cookies.get(COOKIE)
        if ticket is not None:
            tickets.forget(ticket)
        response = Response(status_code=204)
        response.delete_cookie(COOKIE, path="/dashboard")
        return response

    @app.get("/dashboard/state", include_in_schema=False)
    async def state(request: Request) -> JSONResponse:
        principal = await _principal(request, tickets)
        body = await snapshot(request.app.state.runtime, _scope(principal))
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    @app.get("/dashboard/events", include_in_schema=False)
    async def events(request: Request) -> StreamingResponse:
        principal = await _principal(request, tickets)
        return StreamingResponse(
            _stream(request, tickets, principal),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    index = directory / "index.html" if directory else None
    if directory is None or index is None or not index.is_file():
        return  # a build without the page: the JSON and the feed still answer

    @app.get("/dashboard", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(index, headers=_HEADERS)

    app.mount("/dashboard/", _PageFiles(directory=directory, html=True), name="dashboard")


async def _stream(
    request: Request, tickets: _Tickets, principal: ApiPrincipal
) -> AsyncIterator[str]:
    """Snapshots as SSE: at once, then after changes (coalesced) and on the heartbeat."""
    runtime = request.app.state.runtime
    drain: Drain | None = getattr(request.app.state, "drain", None)
    changed = asyncio.Event()

    def on_event(_: Event) -> None:
        changed.set()

    unsubscribe = runtime.controller.bus.subscribe(Event, on_event)
    loop = asyncio.get_running_loop()
    ends = loop.time() + STREAM_SECONDS
    scope = _scope(principal)
    try:
        yield "retry: 2000\n\n"
        while loop.time() < ends:
            if await request.is_disconnected():
                return
            body: dict[str, Any] = await snapshot(runtime, scope)
            yield f"event: snapshot\ndata: {json.dumps(body, separators=(',', ':'))}\n\n"
            pushed = loop.time()
            # Wait for a change or the heartbeat, in slices: the stream must end as soon as the
            # server's drain is done (a SIGTERM drains first), or it would hold up the stop
            # (uvicorn waits for open responses). The drain publishes nothing on the bus.
            while not changed.is_set() and loop.time() < pushed + HEARTBEAT:
                try:
                    await asyncio.wait_for(changed.wait(), DRAIN_POLL)
                except TimeoutError:
                    pass
                if drain is not None and drain.state is DrainState.DONE:
                    return
            wait = MIN_INTERVAL - (loop.time() - pushed)
            if wait > 0:
                await asyncio.sleep(wait)  # the rest of a burst joins this push
            changed.clear()
            # A key revoked since: the stream stops (the page's reconnect gets the 401).
            if await request.app.state.api.check_api_key(_stream_key(request, tickets)) is None:
                return
    finally:
        unsubscribe()


def _stream_key(request: Request, tickets: _Tickets) -> str:
    """The key this stream was opened with (the header's, else the cookie's)."""
    key = _bearer(request)
    if key is None:
        key = tickets.key(request.cookies.get(COOKIE, "")) or ""
    return key
