"""Builders the transaction, dialog and stack layers share, over the real message model.

Messages are :class:`callbridge.sip.Request` / :class:`callbridge.sip.Response`
(``message.py``); this module only builds the ones RFC 3261 derives from others:

* :func:`ack_for_failure` — the ACK of a 300-699 (§17.1.1.3);
* :func:`cancel_for` — the CANCEL of a pending INVITE (§9.1);
* :func:`response_to` — a response copying Via, From, To, Call-ID and CSeq (§8.2.6.2);
* :func:`set_top_via` — rewrite the topmost Via value in place (received/rport, §18.2.1);
* :func:`new_branch`, :func:`new_tag`.

Compatibility (to be removed): :class:`Request` and :class:`Response` here are the real
classes plus the old accessors (``get``, ``get_all``, ``set``, ``add``, ``uri_text``), built
from a list of ``(name, value)`` pairs. The stack and the registrar read only the real API;
what still needs the old one is ``tests/test_sip_digest.py``, which builds its REGISTERs with
:class:`Request` and reads the registrar's responses (:func:`response_to`) with ``get_all``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from callbridge.sip import message
from callbridge.sip.headers import Via
from callbridge.sip.message import REASON_PHRASES, Headers
from callbridge.sip.syntax import split_commas
from callbridge.sip.uri import Uri, parse_uri

__all__ = [
    "REASONS",
    "Request",
    "Response",
    "ack_for_failure",
    "cancel_for",
    "new_branch",
    "new_tag",
    "response_to",
    "set_top_via",
]

REASONS = REASON_PHRASES
_HeaderInput = Headers | Iterable[tuple[str, str]]


def _headers(headers: _HeaderInput) -> Headers:
    return headers if isinstance(headers, Headers) else Headers(headers)


class _Compat:
    """The accessors of the old stop-gap model, on top of ``headers`` (deprecated)."""

    __slots__ = ()
    headers: Headers

    def get(self, name: str) -> str | None:
        return self.headers.get(name)

    def get_all(self, name: str) -> list[str]:
        return self.headers.values(name)

    def set(self, name: str, value: str) -> None:
        self.headers.set(name, value)

    def add(self, name: str, value: str, *, first: bool = False) -> None:
        self.headers.add(name, value, first=first)

    def remove(self, name: str) -> None:
        self.headers.remove(name)


class Request(_Compat, message.Request):
    """A :class:`callbridge.sip.Request` that also has the old accessors."""

    __slots__ = ()

    def __init__(
        self, method: str, uri: Uri | str, headers: _HeaderInput = (), body: bytes = b""
    ) -> None:
        super().__init__(method, uri, _headers(headers), body)

    @property
    def uri_text(self) -> str:
        return str(self.uri)

    @uri_text.setter
    def uri_text(self, text: str) -> None:
        self.uri = parse_uri(text, "Request-URI")


class Response(_Compat, message.Response):
    """A :class:`callbridge.sip.Response` that also has the old accessors."""

    __slots__ = ()

    def __init__(
        self,
        status: int,
        reason: str | None = None,
        headers: _HeaderInput = (),
        body: bytes = b"",
    ) -> None:
        super().__init__(status, reason, _headers(headers), body)


def new_branch() -> str:
    """A branch of our own (§8.1.1.7: the magic cookie, then 64 random bits)."""
    return "z9hG4bK" + secrets.token_hex(8)


def new_tag() -> str:
    return secrets.token_hex(6)


def response_to(request: message.Request, status: int, reason: str | None = None) -> Response:
    """§8.2.6.2: Via, From, To, Call-ID and CSeq copied from the request (no tag added)."""
    headers = Headers()
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        for value in request.headers.get_all(name):
            headers.add(name, value)
    return Response(status, reason, headers)


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
