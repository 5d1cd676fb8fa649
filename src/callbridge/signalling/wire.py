"""The ``/ws`` adapter's encoder table: one function per device event type.

The core tells a device what happened with a typed
:class:`~callbridge.core.events.DeviceEvent`; a ``/ws`` session turns it into the JSON
message of docs/protocol.md with :func:`to_wire`. Each event type has exactly one encoder,
registered with :func:`encoder` next to the others of its topic (``wire_calls``,
``wire_conferences``, …). :func:`to_wire` adds the event's ``req_id`` (when it answers one
of the device's requests) and looks the encoder up along the event's class hierarchy.

An event with no encoder is a bug in callbridge: :func:`to_wire` raises ``LookupError``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from callbridge.core.events import CommandFailed, DeviceEvent, Warned
from callbridge.errors import WARNINGS

__all__ = ["WireMessage", "encoder", "to_wire"]

WireMessage = dict[str, Any]
E = TypeVar("E", bound=DeviceEvent)
_ENCODERS: dict[type[DeviceEvent], Callable[[Any], WireMessage]] = {}


def encoder(kind: type[E]) -> Callable[[Callable[[E], WireMessage]], Callable[[E], WireMessage]]:
    """Register the function as the one encoder of ``kind``."""

    def register(fn: Callable[[E], WireMessage]) -> Callable[[E], WireMessage]:
        if kind in _ENCODERS:
            raise RuntimeError(f"{kind.__name__} already has an encoder")
        _ENCODERS[kind] = fn
        return fn

    return register


def to_wire(event: DeviceEvent) -> WireMessage:
    """The ``/ws`` message for ``event`` (``req_id`` included when it answers a request)."""
    for kind in type(event).__mro__:
        fn = _ENCODERS.get(kind)
        if fn is not None:
            message = fn(event)
            if event.req_id is not None:
                message = {"type": message["type"], "req_id": event.req_id, **message}
            return message
    raise LookupError(f"no /ws encoder for {type(event).__name__}")


@encoder(CommandFailed)
def _command_failed(event: CommandFailed) -> WireMessage:
    message = event.error.to_wire(None, event.call_id)
    del message["req_id"]
    if event.conference_id is not None:
        message["conference_id"] = event.conference_id
    return message


@encoder(Warned)
def _warned(event: Warned) -> WireMessage:
    message: WireMessage = {"type": "warning"}
    if event.call_id is not None:
        message["call_id"] = event.call_id
    message["code"] = event.code.value
    message["message"] = WARNINGS[event.code]
    return message
