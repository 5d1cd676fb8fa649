"""Error codes and the exception tree, shared by the server and the client SDK.

Every error a peer can cause has a stable ``code`` (the table below, documented in
docs/protocol.md), a ``message`` saying what was wrong, a ``cause`` and a ``resolution``.

    CallbridgeError                 base of everything callbridge raises on purpose
    ├── ProtocolError               a peer sent something wrong; carries an ErrorCode
    │   ├── (server side: sent back as an `error` message, the connection stays open)
    │   └── RetryLater              refused for now; `retry_after` says when to try again
    │       └── ServerDraining      `draining`: the server takes no new sessions or calls
    ├── MediaError                  the media plane could not do what was asked (bad SDP, …)
    ├── RemoteError                 SDK side: the server answered a request with `error`
    └── SipError                    a SIP peer sent something wrong; carries status and reason
        └── SipParseError           (callbridge.sip.syntax) bytes that are no SIP message we take

Warnings (``WarningCode``) are not errors: a request that changed nothing (muting a muted
call) is answered with a ``warning`` message instead of the usual event.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "ERRORS",
    "WARNINGS",
    "CallbridgeError",
    "ErrorCode",
    "ErrorInfo",
    "MediaError",
    "ProtocolError",
    "RemoteError",
    "RetryLater",
    "ServerDraining",
    "SipError",
    "WarningCode",
    "warning",
]


class ErrorCode(StrEnum):
    INVALID_JSON = "invalid_json"
    MESSAGE_TOO_LARGE = "message_too_large"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_MESSAGE = "invalid_message"
    NOT_LOGGED_IN = "not_logged_in"
    ALREADY_LOGGED_IN = "already_logged_in"
    INVALID_TOKEN = "invalid_token"
    TOKEN_EXPIRED = "token_expired"
    SESSION_NOT_FOUND = "session_not_found"
    CALL_NOT_FOUND = "call_not_found"
    NOT_YOUR_CALL = "not_your_call"
    INVALID_STATE = "invalid_state"
    INVALID_SDP = "invalid_sdp"
    UNSUPPORTED_CODEC = "unsupported_codec"
    INVALID_CANDIDATE = "invalid_candidate"
    DESTINATION_NOT_FOUND = "destination_not_found"
    CALLER_ID_NOT_ALLOWED = "caller_id_not_allowed"
    DTMF_NOT_NEGOTIATED = "dtmf_not_negotiated"
    INVALID_DIGITS = "invalid_digits"
    CONFERENCE_NOT_FOUND = "conference_not_found"
    NOT_CONFERENCE_HOST = "not_conference_host"
    INVALID_AUDIO = "invalid_audio"
    DRAINING = "draining"
    RATE_LIMITED = "rate_limited"
    TRUNK_NOT_ALLOWED = "trunk_not_allowed"
    DESTINATION_BLOCKED = "destination_blocked"
    TOO_MANY_CALLS = "too_many_calls"
    CALL_RATE_EXCEEDED = "call_rate_exceeded"
    RECORDING_FAILED = "recording_failed"
    DATABASE_BACKLOG = "database_backlog"
    INTERNAL = "internal_error"


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    cause: str
    resolution: str


ERRORS: dict[ErrorCode, ErrorInfo] = {
    ErrorCode.INVALID_JSON: ErrorInfo(
        "The frame is not a JSON object.",
        "Send each message as one JSON object in a text frame.",
    ),
    ErrorCode.MESSAGE_TOO_LARGE: ErrorInfo(
        "The message is larger than the server accepts (64 KiB).",
        "Send smaller messages; an SDP offer is normally a few KiB.",
    ),
    ErrorCode.UNKNOWN_TYPE: ErrorInfo(
        "The `type` field names no message of the protocol.",
        "Use one of the message types in docs/protocol.md.",
    ),
    ErrorCode.INVALID_MESSAGE: ErrorInfo(
        "A field is missing or has the wrong type or value.",
        "Fix the field named in the message (see docs/protocol.md).",
    ),
    ErrorCode.NOT_LOGGED_IN: ErrorInfo(
        "Calls need a session.",
        "Send session.login with a token first and wait for session.ready.",
    ),
    ErrorCode.ALREADY_LOGGED_IN: ErrorInfo(
        "This connection already has a session.",
        "Open another connection for another session.",
    ),
    ErrorCode.INVALID_TOKEN: ErrorInfo(
        "The token is unknown or was revoked.",
        "Get a new token (`callbridge token USER`).",
    ),
    ErrorCode.TOKEN_EXPIRED: ErrorInfo(
        "The token's lifetime is over.",
        "Get a new token (`callbridge token USER --ttl ...`).",
    ),
    ErrorCode.SESSION_NOT_FOUND: ErrorInfo(
        "The session to resume no longer exists.",
        "Send session.login for a new session; its calls have ended.",
    ),
    ErrorCode.CALL_NOT_FOUND: ErrorInfo(
        "No call with this id exists (it may have ended).",
        "Use a call_id from call.trying or call.incoming of a call that has not ended.",
    ),
    ErrorCode.NOT_YOUR_CALL: ErrorInfo(
        "The call belongs to another session.",
        "Act only on calls this connection placed or was offered.",
    ),
    ErrorCode.INVALID_STATE: ErrorInfo(
        "The call is not in a state that allows this.",
        "Check the call's state; e.g. hold needs an answered call.",
    ),
    ErrorCode.INVALID_SDP: ErrorInfo(
        "The SDP could not be used.",
        "Send the SDP exactly as RTCPeerConnection produced it, with one audio m-line.",
    ),
    ErrorCode.UNSUPPORTED_CODEC: ErrorInfo(
        "The SDP offers no audio codec callbridge carries.",
        "Offer opus, PCMU or PCMA.",
    ),
    ErrorCode.INVALID_CANDIDATE: ErrorInfo(
        "The ICE candidate could not be parsed or used.",
        "Send event.candidate.candidate as is; mDNS (.local) candidates are not resolved.",
    ),
    ErrorCode.DESTINATION_NOT_FOUND: ErrorInfo(
        "No user has this extension, number or name.",
        "Dial an existing extension, number or user name.",
    ),
    ErrorCode.CALLER_ID_NOT_ALLOWED: ErrorInfo(
        "The caller ID is not one this caller may present.",
        "Present your own extension or number, or a number your account owns (or send no "
        "caller_id: the server presents your number, else your extension).",
    ),
    ErrorCode.DTMF_NOT_NEGOTIATED: ErrorInfo(
        "The call did not negotiate telephone-event (RFC 4733).",
        "Offer telephone-event at the audio codec's clock rate.",
    ),
    ErrorCode.INVALID_DIGITS: ErrorInfo(
        "DTMF digits are 0-9, *, #, A-D and ',' for a pause.",
        "Send only those characters.",
    ),
    ErrorCode.CONFERENCE_NOT_FOUND: ErrorInfo(
        "No conference with this id exists here (it may have ended).",
        "Use a conference_id from conference.started, conference.invitation or "
        "conference.merged of a conference that has not ended.",
    ),
    ErrorCode.NOT_CONFERENCE_HOST: ErrorInfo(
        "Only the conference's host may do this.",
        "Ask the host (the session that started the conference) to do it.",
    ),
    ErrorCode.INVALID_AUDIO: ErrorInfo(
        "The audio to play could not be used: the file or URL is missing or not audio, "
        "or the text could not be spoken.",
        "Give a readable WAV/MP3 file or http(s) URL, or a voice of 'female' or 'male'.",
    ),
    ErrorCode.DRAINING: ErrorInfo(
        "The server is shutting down gracefully (a drain): it takes no new sessions or calls; "
        "calls already up go on until the drain deadline.",
        "Connect to another server of the service now, or retry here after `retry_after` seconds.",
    ),
    ErrorCode.RATE_LIMITED: ErrorInfo(
        "Too many failed logins came from this address in the last minute.",
        "Wait the seconds the message names, then log in with a valid token.",
    ),
    ErrorCode.TRUNK_NOT_ALLOWED: ErrorInfo(
        "Only an authenticated user, an application of the trunk's account, or a call arriving "
        "on a number that allows it may place a call through a SIP trunk.",
        "Log in as a user of the trunk's account, dial from its application, or allow the "
        "number to send calls on (callbridge numbers add … --allow-outbound).",
    ),
    ErrorCode.DESTINATION_BLOCKED: ErrorInfo(
        "The account's dial policy does not let calls reach this destination through a trunk "
        "(a denied prefix such as a premium-rate range, or one outside the allow-list).",
        "Dial another number, or change the account's allow/deny prefixes "
        "(callbridge outbound policy).",
    ),
    ErrorCode.TOO_MANY_CALLS: ErrorInfo(
        "The caller or the trunk has as many calls through trunks up as it may.",
        "Hang up a call first, or raise the limit (the trunk's max_calls, the account's "
        "user_max_calls).",
    ),
    ErrorCode.CALL_RATE_EXCEEDED: ErrorInfo(
        "The caller or the trunk placed as many trunk calls in the last minute as it may.",
        "Wait the seconds the message names, or raise calls_per_minute.",
    ),
    ErrorCode.RECORDING_FAILED: ErrorInfo(
        "A recording you started could not be written or finished (a full disk, a failed "
        "encoder): nothing was saved.",
        "Free space or fix the recordings directory on the server, then record again.",
    ),
    ErrorCode.DATABASE_BACKLOG: ErrorInfo(
        "The server's database refuses writes and the records it keeps in memory meanwhile "
        "reached their limit: it starts no new calls until the database takes writes again "
        "(calls already up go on; nothing is lost).",
        "Retry after `retry_after` seconds, or use another server of the service.",
    ),
    ErrorCode.INTERNAL: ErrorInfo(
        "The server failed unexpectedly; the failure is logged.",
        "Retry; report it if it persists.",
    ),
}


class CallbridgeError(Exception):
    """Base of every error callbridge raises on purpose."""


class ProtocolError(CallbridgeError):
    """A peer sent something wrong. ``message`` says exactly what."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def to_wire(
        self, req_id: str | None = None, call_id: str | None = None, method: str | None = None
    ) -> dict[str, object]:
        """The ``error`` message. ``method`` is the message type that failed (seed 002's
        *method*); its prefix (``call``, ``session``, ``ice``) is the *object*."""
        info = ERRORS[self.code]
        msg: dict[str, object] = {
            "type": "error",
            "req_id": req_id,
            "code": self.code.value,
            "message": self.message,
            "cause": info.cause,
            "resolution": info.resolution,
        }
        if method is not None:
            msg["method"] = method
            msg["object"] = method.partition(".")[0]
        if call_id is not None:
            msg["call_id"] = call_id
        return msg


class RetryLater(ProtocolError):
    """The server refuses for a while, not for good: ``retry_after`` (whole seconds, at
    least 1) says when to try again; the wire ``error`` carries it."""

    def __init__(self, code: ErrorCode, message: str, retry_after: int) -> None:
        super().__init__(code, message)
        self.retry_after = retry_after

    def to_wire(
        self, req_id: str | None = None, call_id: str | None = None, method: str | None = None
    ) -> dict[str, object]:
        return {**super().to_wire(req_id, call_id, method), "retry_after": self.retry_after}


class ServerDraining(RetryLater):
    """``draining``: the server is draining (callbridge.drain) and refuses what would start a
    session or a call. ``retry_after`` is how long the drain may still last."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(ErrorCode.DRAINING, message, retry_after)


class MediaError(ProtocolError):
    """The media plane refused a request (bad SDP, no common codec, …)."""


class SipError(CallbridgeError):
    """A SIP peer sent something wrong. ``status`` and ``reason`` are the SIP response it
    earns (RFC 3261 §21): a 4xx/5xx code and a reason phrase naming the problem."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


class RemoteError(CallbridgeError):
    """SDK side: the server answered a request with an ``error`` message.

    ``object`` (``call``, ``session``, ``ice``) and ``method`` (the message type that failed,
    e.g. ``call.hold``) are seed 002's error fields; empty when the server could not tell.
    ``retry_after`` (seconds) comes with ``draining``: how long the server's drain may last.
    """

    def __init__(
        self,
        code: str,
        message: str,
        cause: str = "",
        resolution: str = "",
        object: str = "",  # seed 002 names the field so
        method: str = "",
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.cause = cause
        self.resolution = resolution
        self.object = object
        self.method = method
        self.retry_after = retry_after


class WarningCode(StrEnum):
    """``warning`` messages: the request did nothing, but nothing is wrong either."""

    ALREADY_MUTED = "already_muted"
    NOT_MUTED = "not_muted"


WARNINGS: dict[WarningCode, str] = {
    WarningCode.ALREADY_MUTED: "the call is already muted; nothing changed",
    WarningCode.NOT_MUTED: "the call is not muted; nothing changed",
}


def warning(code: WarningCode, req_id: str | None, call_id: str) -> dict[str, object]:
    """A ``warning`` message (answers the request like an event would)."""
    return {
        "type": "warning",
        "req_id": req_id,
        "call_id": call_id,
        "code": code.value,
        "message": WARNINGS[code],
    }
