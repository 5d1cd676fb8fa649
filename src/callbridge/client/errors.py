"""Errors only the SDK raises (the shared tree is in :mod:`callbridge.errors`).

    CallbridgeError                      callbridge.errors
    ├── ProtocolError                    (``invalid_digits``, ``dtmf_not_negotiated`` from DTMF)
    │   └── MediaError                   SDP or ICE the media could not use
    ├── RemoteError                      the server answered a request with ``error``
    └── ClientError                      the SDK itself refused or gave up:
        ├── InvalidArgumentError         a value the SDK cannot use (also a ValueError)
        ├── NotConnectedError            no session (before login, after logout, socket lost)
        ├── CallStateError               the call's state does not allow it (answer outgoing)
        └── CallEndedError               the call ended while we waited for something else

Timeouts raise the built-in :class:`TimeoutError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from callbridge.errors import CallbridgeError, RemoteError

__all__ = [
    "CallEndedError",
    "CallStateError",
    "ClientError",
    "InvalidArgumentError",
    "NotConnectedError",
    "remote_error",
]


class ClientError(CallbridgeError):
    """The SDK refused an action or gave up waiting; nothing was asked of the server."""


class InvalidArgumentError(ClientError, ValueError):
    """An SDK method was given a value it cannot use; the message says what was wrong and
    what is valid. Also a :class:`ValueError`."""


class NotConnectedError(ClientError):
    """The phone has no session: log in first, or the session is over."""


class CallStateError(ClientError):
    """The call's state does not allow this (e.g. answering an outgoing call)."""


class CallEndedError(ClientError):
    """The call ended while waiting for something else; ``reason`` says why it ended."""

    def __init__(self, call_id: str, reason: str | None, waiting_for: str) -> None:
        super().__init__(f"call {call_id} ended ({reason}) before {waiting_for!r}")
        self.call_id = call_id
        self.reason = reason
        self.waiting_for = waiting_for


def remote_error(message: Mapping[str, Any]) -> RemoteError:
    """The :class:`~callbridge.errors.RemoteError` for a server's ``error`` message
    (docs/protocol.md, "Errors": ``code``, ``message``, ``cause``, ``resolution``,
    ``object``, ``method``)."""
    return RemoteError(
        str(message.get("code", "unknown")),
        str(message.get("message", "")),
        str(message.get("cause", "")),
        str(message.get("resolution", "")),
        str(message.get("object", "")),
        str(message.get("method", "")),
        retry_after=_seconds(message.get("retry_after")),
    )


def _seconds(value: object) -> float | None:
    """A number of seconds from the wire, if it is one."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None
