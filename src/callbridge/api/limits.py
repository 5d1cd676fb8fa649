"""Bounds on REST requests, enforced before the API sees them: a pure ASGI middleware.

In order, for every HTTP request (``/ws`` is :mod:`callbridge.signalling.ws`'s):

1. a source blocked for failed logins (:class:`~callbridge.abuse.SourceGuard`) gets 429 with
   ``Retry-After`` on every ``/v2`` request, before its key is looked at;
2. a ``Content-Length`` over the limit is answered 413 at once, nothing of the body read;
3. the body is read as it arrives, counted, and cut off with 413 at the limit (a chunked body
   has no ``Content-Length`` to check first);
4. a JSON body nested deeper than the ``/ws`` limit is answered 400 before it is parsed (the
   same bracket scan as :func:`callbridge.signalling.protocol.json_depth_over`);
5. a 401 the API answers to a request that carried ``Authorization`` is a failed login of its
   source (counted and logged, :mod:`callbridge.abuse`).

The limit is ``max_body_bytes`` for JSON and ``max_upload_bytes`` (plus room for the multipart
framing) for a ``multipart/form-data`` upload to ``POST /v2/media``. The API key is checked
after this middleware (a FastAPI dependency), so no body larger than the limit is ever held
for a client that has no key: defect 1 of issue 10 (four 100 MB POSTs took +625 MB).

JSON bodies are read whole here (they are bounded) and replayed to the app in one message;
uploads stream through, counted.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from callbridge.abuse import SourceGuard, source_of
from callbridge.config import ServerConfig
from callbridge.signalling.protocol import MAX_JSON_DEPTH, json_depth_over
from callbridge.signalling.ws import ConnectionLimits

__all__ = ["MULTIPART_SLACK", "RequestLimits", "install_limits"]

API_PREFIX = "/v2"  # as callbridge.api.API_PREFIX (not imported: that would import the API)
UPLOAD_PATH = "/v2/media"
# What multipart framing adds to an uploaded file: boundaries, part headers, other fields.
MULTIPART_SLACK = 64 * 1024
# Telnyx's error codes for these statuses (the SDK maps the status to its typed errors).
_TOO_LARGE = ("10015", "Request too large")
_TOO_DEEP = ("10002", "Malformed JSON")
_TOO_MANY = ("10011", "Too many requests")
_BAD_LENGTH = ("10015", "Invalid value")


def install_limits(app: FastAPI, config: ServerConfig) -> ConnectionLimits:
    """Install the REST bounds on ``app``; the bounds of its ``/ws`` connections, sharing one
    :class:`SourceGuard` (also ``app.state.abuse_guard``)."""
    guard = SourceGuard(config.max_connections_per_source, config.login_failures_per_minute)
    app.state.abuse_guard = guard
    app.add_middleware(
        RequestLimits,
        guard=guard,
        max_body_bytes=config.max_body_bytes,
        max_upload_bytes=config.max_upload_bytes,
    )
    return ConnectionLimits.from_config(config, guard)


class _Refused(Exception):
    """The request is answered here: (status, code and title, detail, extra headers)."""

    def __init__(
        self, status: int, code: tuple[str, str], detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}


class RequestLimits:
    """The ASGI middleware (see the module docstring)."""

    def __init__(
        self, app: ASGIApp, guard: SourceGuard, max_body_bytes: int, max_upload_bytes: int
    ) -> None:
        self.app = app
        self.guard = guard
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        source = source_of(scope)
        headers = _headers(scope)
        upload = _is_upload(scope, headers)
        limit = self.max_upload_bytes + MULTIPART_SLACK if upload else self.max_body_bytes
        answered = False

        async def respond(refusal: _Refused) -> None:
            nonlocal answered
            if answered:
                return
            answered = True
            self.guard.refused(source, "rest", f"{refusal.status} {refusal.detail}")
            await _send_error(send, refusal)

        try:
            self._check_source(scope, source)
            length = _content_length(headers)
            if length is not None and length > limit:
                raise _too_large(length, limit, upload)
            if not upload and (length or "transfer-encoding" in headers):
                body = await _read_json_body(receive, limit)
                if body is None:  # the client left while sending it
                    return
                receive = _replay(body, receive)
        except _Refused as refusal:
            await respond(refusal)
            return

        counted = 0

        async def counting_receive() -> Message:
            nonlocal counted
            message = await receive()
            if message["type"] == "http.request":
                counted += len(message.get("body", b""))
                if counted > limit:
                    await respond(_too_large(counted, limit, upload))
                    return {"type": "http.disconnect"}  # the app stops reading
            return message

        authorized = "authorization" in headers

        async def observing_send(message: Message) -> None:
            if answered:
                return  # the 413 went out; the app's answer to a cut-off body is dropped
            # A key was tried and refused: a failed login (no header at all is no guess).
            if message["type"] == "http.response.start" and message["status"] == 401 and authorized:
                self.guard.login_failed(source, "rest", _request_line(scope) + ": 401")
            await send(message)

        try:
            await self.app(scope, counting_receive, observing_send)
        except Exception:
            if not answered:
                raise
            # The app failed on the body cut off under it (a client disconnect to it): the
            # client has its 413, and the failure is no bug to log.

    def _check_source(self, scope: Scope, source: str) -> None:
        if not scope["path"].startswith(API_PREFIX):
            return
        wait = self.guard.retry_after(source)
        if wait > 0:
            seconds = max(int(wait + 0.999), 1)
            raise _Refused(
                429,
                _TOO_MANY,
                f"too many failed logins from {source}: try again in {seconds} s "
                f"(at most {self.guard.max_failures} a minute)",
                {"retry-after": str(seconds)},
            )


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _is_upload(scope: Scope, headers: dict[str, str]) -> bool:
    return (
        scope["method"] == "POST"
        and scope["path"].rstrip("/") == UPLOAD_PATH
        and headers.get("content-type", "").lower().startswith("multipart/form-data")
    )


def _content_length(headers: dict[str, str]) -> int | None:
    text = headers.get("content-length")
    if text is None:
        return None
    if not text.strip().isdigit():
        raise _Refused(400, _BAD_LENGTH, f"Content-Length {text[:32]!r} is not a number of bytes")
    return int(text)


def _too_large(size: int, limit: int, upload: bool) -> _Refused:
    what = "a media upload" if upload else "a request body"
    setting = "--max-upload-bytes" if upload else "--max-body-bytes"
    shown = limit - MULTIPART_SLACK if upload else limit
    return _Refused(
        413,
        _TOO_LARGE,
        f"{what} is at most {shown} bytes ({setting}); this one is {size} bytes or more",
    )


async def _read_json_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, at most ``limit`` bytes (413 past it; 400 if nested too deep)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit, upload=False)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    if json_depth_over(body.decode("utf-8", "replace")):
        raise _Refused(
            400,
            _TOO_DEEP,
            f"the JSON body nests more than {MAX_JSON_DEPTH} levels deep; "
            f"the limit is {MAX_JSON_DEPTH}",
        )
    return body


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` once, then what the client sends (a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _request_line(scope: Scope) -> str:
    return f"{scope['method']} {scope['path'][:200]}"


async def _send_error(send: Send, refusal: _Refused) -> None:
    code, title = refusal.code
    payload: dict[str, Any] = {"errors": [{"code": code, "title": title, "detail": refusal.detail}]}
    body = json.dumps(payload).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        # No "Connection: close": uvicorn discards the rest of an unread body (bounded memory)
        # and the client reads this answer; closing at once would reset the connection under
        # a client still sending, and it would see a network error instead of the 413.
        *((k.encode(), v.encode()) for k, v in refusal.headers.items()),
    ]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
