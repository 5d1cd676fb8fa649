"""Builders the transaction, dialog and stack layers share, over the real message model.

Messages are :class:`callbridge.sip.Request` / :class:`callbridge.sip.Response`
(``message.py``); this module only builds the ones RFC 3261 derives from others:

* :func:`ack_for_failure` — the ACK of a 300-699 (§17.1.1.3);
* :func:`cancel_for` — the CANCEL of a pending INVITE (§9.1);
* :func:`set_top_via` — rewrite the topmost Via value in place (received/rport, §18.2.1);
* :func:`new_branch`, :func:`new_tag`.
"""

from __future__ import annotations

import secrets

from callbridge.sip import message
from callbridge.sip.headers import Via
from callbridge.sip.message import REASON_PHRASES, Headers
from callbridge.sip.syntax import split_commas

__all__ = [
    "REASONS",
    "ack_for_failure",
    "cancel_for",
    "new_branch",
    "new_tag",
    "set_top_via",
]

REASONS = REASON_PHRASES


def new_branch() -> str:
    """A branch of our own (§8.1.1.7: the magic cookie, then 64 random bits)."""
    return "z9hG4bK" + secrets.token_hex(8)


def new_tag() -> str:
    return secrets.token_hex(6)


def _top_via_value(msg: message.Message) -> str:
    values = msg.headers.values("Via")
    return values[0] if values else ""


def ack_for_failure(invite: message.Request, response: message.Response) -> message.Request:
    """§17.1.1.3: the ACK for a 300-699: the INVITE's Request-URI, Call-ID, From, top Via and
    Route; the response's To (with its tag); CSeq number of the INVITE with method ACK."""
    headers = Headers([("Via", _top_via_value(invite)), ("From", invite.headers.get("From") or "")])
    headers.add("To", response.headers.get("To") or "")
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", f"{invite.cseq_number} ACK")
    headers.add("Max-Forwards", "70")
    for route in invite.headers.get_all("Route"):
        headers.add("Route", route)
    return message.Request("ACK", invite.uri.copy(), headers)


def cancel_for(invite: message.Request, reason: str | None = None) -> message.Request:
    """§9.1: the CANCEL of a pending INVITE (same branch, so it matches at the far end)."""
    headers = Headers([("Via", _top_via_value(invite)), ("From", invite.headers.get("From") or "")])
    headers.add("To", invite.headers.get("To") or "")
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", f"{invite.cseq_number} CANCEL")
    headers.add("Max-Forwards", "70")
    for route in invite.headers.get_all("Route"):
        headers.add("Route", route)
    if reason:
        headers.add("Reason", reason)  # RFC 3326
    return message.Request("CANCEL", invite.uri.copy(), headers)


def set_top_via(msg: message.Message, via: Via | str) -> None:
    """Replace the topmost Via value (the first element of the first Via line), keeping the
    others where they are (``Via: a, b`` stays one line)."""
    fields = list(msg.headers)
    for index, (name, value) in enumerate(fields):
        if name == "Via":
            rest = split_commas(value, "Via")[1:]
            fields[index] = ("Via", ", ".join([str(via), *rest]))
            msg.headers = Headers(fields)
            return
    msg.headers.add("Via", str(via), first=True)
