"""REST errors: one exception, one JSON shape, one mapping from the rest of callbridge.

Every refused request is answered with Telnyx's error envelope, so that the official SDK raises
its typed ``APIStatusError`` subclasses with our ``detail`` in the message::

    {"errors": [{"code": "10015", "title": "Invalid value",
                 "detail": "to: no user has the extension, number or name '999'",
                 "source": {"pointer": "/to"}}]}

``source`` says where the problem is: ``{"pointer": "/field/sub"}`` for the JSON body,
``{"parameter": "page[size]"}`` for a query or path parameter.

Statuses (the SDK retries 408, 409, 429 and 5xx, so a request that a retry cannot fix never
gets one of those):

=====  ======================================================================================
401    no ``Authorization: Bearer KEY`` header, or the key is unknown or revoked
403    the key is valid but the thing may not be used (an inactive application)
404    the resource in the path does not exist (call, conference, application, queue, ...)
422    the body or query is invalid, a resource it names does not exist, or the resource is in
       a state that does not allow the action (a call that has ended, is not answered, ...)
400    the body is not JSON at all
503    the database refuses the write for now (locked by another process, disk full,
       unreachable): ``Retry-After`` says when to try again; nothing was changed
500    a bug: the error body says so (never a plain-text answer); the traceback is logged
=====  ======================================================================================

    CallbridgeError
    └── ApiError            an HTTP status, a code, a title, a detail and a source

``ProtocolError`` from the control plane (``core``) and ``ValueError`` / ``NotFound`` from the
store are translated here (:func:`from_protocol_error`), once, rather than in every endpoint.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from callbridge.errors import CallbridgeError, ErrorCode, ProtocolError
from callbridge.store import NotFound
from callbridge.store.spool import is_refusal

__all__ = [
    "ApiError",
    "ApiErrorCode",
    "call_ended",
    "error_body",
    "forbidden",
    "from_protocol_error",
    "install_error_handlers",
    "invalid",
    "not_found",
    "unauthorized",
    "wrong_state",
]

log = logging.getLogger(__name__)


class ApiErrorCode(StrEnum):
    """The ``code`` of an error. Telnyx's numbers where Telnyx has one for the same thing."""

    AUTHENTICATION_FAILED = "10009"  # 401
    FORBIDDEN = "10010"  # 403
    NOT_FOUND = "10005"  # 404
    INVALID_VALUE = "10015"  # 422: a field or parameter is missing or wrong
    MALFORMED_JSON = "10002"  # 400
    CALL_ENDED = "90018"  # 422: the call has already ended
    INVALID_STATE = "90034"  # 422: the call or conference's state does not allow it
    METHOD_NOT_ALLOWED = "10006"  # 405
    INTERNAL = "10007"  # 500
    SERVICE_UNAVAILABLE = "10011"  # 503: the database refuses writes, or the server drains


_TITLES = {
    ApiErrorCode.AUTHENTICATION_FAILED: "Authentication failed",
    ApiErrorCode.FORBIDDEN: "Forbidden",
    ApiErrorCode.NOT_FOUND: "Resource not found",
    ApiErrorCode.INVALID_VALUE: "Invalid value",
    ApiErrorCode.MALFORMED_JSON: "Malformed JSON",
    ApiErrorCode.CALL_ENDED: "Call has already ended",
    ApiErrorCode.INVALID_STATE: "Invalid state",
    ApiErrorCode.METHOD_NOT_ALLOWED: "Method not allowed",
    ApiErrorCode.INTERNAL: "Internal error",
    ApiErrorCode.SERVICE_UNAVAILABLE: "Service unavailable",
}
# Seconds a client is asked to wait after the database refused a write: about the time
# SQLite's busy timeout lets a writer wait for the lock, so the next try likely gets it.
DATABASE_RETRY_AFTER = 10


class ApiError(CallbridgeError):
    """A request the REST API refuses; the handler turns it into the error envelope."""

    def __init__(
        self,
        status: int,
        code: ApiErrorCode,
        detail: str,
        *,
        pointer: str | None = None,
        parameter: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.pointer = pointer
        self.parameter = parameter

    def body(self) -> dict[str, Any]:
        return error_body([self])


def error_body(errors: list[ApiError]) -> dict[str, Any]:
    out = []
    for e in errors:
        item: dict[str, Any] = {"code": e.code.value, "title": _TITLES[e.code], "detail": e.detail}
        if e.pointer is not None:
            item["source"] = {"pointer": e.pointer}
        elif e.parameter is not None:
            item["source"] = {"parameter": e.parameter}
        out.append(item)
    return {"errors": out}


def unauthorized(detail: str) -> ApiError:
    return ApiError(401, ApiErrorCode.AUTHENTICATION_FAILED, detail)


def forbidden(detail: str, pointer: str | None = None) -> ApiError:
    return ApiError(403, ApiErrorCode.FORBIDDEN, detail, pointer=pointer)


def not_found(detail: str, parameter: str | None = None) -> ApiError:
    return ApiError(404, ApiErrorCode.NOT_FOUND, detail, parameter=parameter)


def invalid(detail: str, pointer: str | None = None, parameter: str | None = None) -> ApiError:
    return ApiError(422, ApiErrorCode.INVALID_VALUE, detail, pointer=pointer, parameter=parameter)


def wrong_state(detail: str, pointer: str | None = None) -> ApiError:
    return ApiError(422, ApiErrorCode.INVALID_STATE, detail, pointer=pointer)


def call_ended(call_control_id: str, reason: str) -> ApiError:
    return ApiError(
        422,
        ApiErrorCode.CALL_ENDED,
        f"call {call_control_id} has already ended ({reason}); no command can act on it",
    )


# ProtocolError codes (core) that mean "the thing you named does not exist": a 422 when the
# name came in the body (the path's own resource is looked up by the API layer first -> 404).
_MISSING = {
    ErrorCode.CALL_NOT_FOUND,
    ErrorCode.CONFERENCE_NOT_FOUND,
    ErrorCode.DESTINATION_NOT_FOUND,
    ErrorCode.NOT_YOUR_CALL,
}


def from_protocol_error(exc: ProtocolError, pointer: str | None = None) -> ApiError:
    """The REST form of a control-plane refusal (see the table in the module docstring)."""
    if exc.code is ErrorCode.INTERNAL:
        return ApiError(500, ApiErrorCode.INTERNAL, exc.message)
    if exc.code is ErrorCode.INVALID_STATE:
        return wrong_state(exc.message, pointer)
    if exc.code in _MISSING:
        return invalid(exc.message, pointer)
    return invalid(exc.message, pointer)


def _pointer(loc: tuple[Any, ...]) -> tuple[str | None, str | None]:
    """(body pointer, parameter) for a pydantic error location."""
    where, *rest = loc if loc else ("body",)
    if where == "body":
        return "/" + "/".join(str(part) for part in rest), None
    return None, ".".join(str(part) for part in rest) or None


def _describe(error: dict[str, Any]) -> str:
    loc = tuple(error.get("loc", ()))
    field = ".".join(str(x) for x in loc[1:]) or "the body"
    kind = error.get("type", "")
    if kind == "missing":
        return f"{field} is required"
    if kind == "json_invalid":
        return "the body is not valid JSON: " + str(error.get("ctx", {}).get("error", ""))
    return f"{field}: {error.get('msg', 'invalid value')}"


def _internal(request: Request, exc: BaseException, *, logged: bool = False) -> JSONResponse:
    """A bug: answered in the API's shape (not plain text), logged with its traceback unless
    the server logs it anyway (``logged``: Starlette re-raises what reaches its last-resort
    handler, and uvicorn logs it)."""
    if not logged:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    err = ApiError(
        500,
        ApiErrorCode.INTERNAL,
        "the server failed to handle this request (a bug, logged on the server); "
        "retrying may not help",
    )
    return JSONResponse(err.body(), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every refusal (ours, FastAPI's validation, Starlette's 404/405) in one shape."""

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(ProtocolError)
    async def protocol_error(_: Request, exc: ProtocolError) -> JSONResponse:
        err = from_protocol_error(exc)
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(NotFound)
    async def store_not_found(_: Request, exc: NotFound) -> JSONResponse:
        err = not_found(str(exc))
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(SQLAlchemyError)
    async def database_error(request: Request, exc: SQLAlchemyError) -> JSONResponse:
        if not is_refusal(exc):
            return _internal(request, exc)
        log.warning(
            "%s %s: the database refused it (%s); answered 503",
            request.method,
            request.url.path,
            str(getattr(exc, "orig", None) or exc).splitlines()[0][:200],
        )
        err = ApiError(
            503,
            ApiErrorCode.SERVICE_UNAVAILABLE,
            "the database cannot take writes at the moment (it is locked by another process, "
            f"or full); nothing was changed: retry in {DATABASE_RETRY_AFTER} s",
        )
        return JSONResponse(
            err.body(), status_code=503, headers={"Retry-After": str(DATABASE_RETRY_AFTER)}
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        return _internal(request, exc, logged=True)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors: list[ApiError] = []
        status = 422
        for error in exc.errors():
            pointer, parameter = _pointer(tuple(error.get("loc", ())))
            if error.get("type") == "json_invalid":
                status = 400
                errors.append(ApiError(400, ApiErrorCode.MALFORMED_JSON, _describe(error)))
                continue
            errors.append(invalid(_describe(error), pointer, parameter))
        return JSONResponse(error_body(errors), status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            err = not_found(f"no such endpoint: {request.method} {request.url.path}")
        elif exc.status_code == 405:
            err = ApiError(
                405,
                ApiErrorCode.METHOD_NOT_ALLOWED,
                f"{request.method} is not allowed on {request.url.path}",
            )
        else:
            err = ApiError(exc.status_code, ApiErrorCode.INVALID_VALUE, str(exc.detail))
            if exc.status_code >= 500:
                err.code = ApiErrorCode.INTERNAL
        return JSONResponse(err.body(), status_code=exc.status_code, headers=exc.headers)
