"""``/ws`` encoders of the device events of calls driven by applications (docs/protocol.md,
"Calls driven by applications"). The other facts such a call's device hears (``call.ringing``,
``call.answered``, ``call.incoming``, ``call.dtmf``) are the shared call events of
:mod:`callbridge.signalling.wire_calls`."""

from __future__ import annotations

from callbridge.core.app_events import CallBridged
from callbridge.signalling.wire import WireMessage, encoder

__all__: list[str] = []


@encoder(CallBridged)
def _bridged(e: CallBridged) -> WireMessage:
    message: WireMessage = {
        "type": "call.bridged",
        "call_id": e.call_id,
        "peer": e.peer,
        "peer_name": e.peer_name,
    }
    if e.queue is not None:  # the other call waited in this queue (both learn for how long)
        message["queue"] = e.queue
        message["wait_time_secs"] = e.wait_secs
    return message
