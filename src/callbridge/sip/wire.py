"""What the transaction, dialog and stack layers need of a SIP message, in one place.

A stop-gap: the real parser and models are ``message.py``/``headers.py``/``uri.py`` (being
written at the same time). Until they land, this module keeps a deliberately small
representation (ordered raw header values, a handful of accessors and the builders of §8.2.6,
§9.1 and §17.1.1.3), so that ``transaction.py``, ``dialog.py`` and ``stack.py`` depend on
these names only; once the full parser is in, ``parse`` and the classes here delegate to it.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable

__all__ = [
    "Message",
    "ParseError",
    "Request",
    "Response",
    "ack_for_failure",
    "cancel_for",
    "new_branch",
    "new_tag",
    "param",
    "parse",
    "response_to",
    "uri_of",
]

REASONS = {
    100: "Trying", 180: "Ringing", 183: "Session Progress", 200: "OK", 202: "Accepted",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 413: "Request Entity Too Large",
    420: "Bad Extension", 480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 491: "Request Pending", 500: "Server Internal Error",
    501: "Not Implemented", 503: "Service Unavailable", 505: "Version Not Supported",
    603: "Decline",
}  # fmt: skip
_COMPACT = {"i": "Call-ID", "m": "Contact", "e": "Content-Encoding", "l": "Content-Length",
            "c": "Content-Type", "f": "From", "s": "Subject", "k": "Supported", "t": "To",
            "v": "Via", "o": "Event", "r": "Refer-To", "b": "Referred-By", "u": "Allow-Events",
            "x": "Session-Expires"}  # fmt: skip
_CANON = {"call-id": "Call-ID", "cseq": "CSeq", "www-authenticate": "WWW-Authenticate",
          "rack": "RAck", "rseq": "RSeq", "mime-version": "MIME-Version"}  # fmt: skip
_MULTI = {"Via", "Route", "Record-Route", "Contact", "Allow", "Supported", "Require",
          "Proxy-Require", "Unsupported", "Accept"}  # fmt: skip
_REQUEST_LINE = re.compile(r"([A-Za-z!%*_+`'~.-]+) +(\S+) +SIP/2\.0", re.ASCII)
_STATUS_LINE = re.compile(r"SIP/2\.0 +([1-6][0-9][0-9]) *(.*)", re.ASCII)


class ParseError(ValueError):
    """The message could not be read; ``reason`` is the 400's reason phrase."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = 400
        self.answer: Request | Response | None = None  # the full parser's error response


def canonical(name: str) -> str:
    low = name.strip().lower()
    if low in _COMPACT:
        return _COMPACT[low]
    return _CANON.get(low) or "-".join(part.capitalize() for part in low.split("-"))


def _split_commas(value: str) -> list[str]:
    """Split a header value at commas outside quotes and <> (§7.3.1)."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(value):
        if ch == '"' and (i == 0 or value[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch == "<":
            depth += 1
        elif not quoted and ch == ">":
            depth -= 1
        elif ch == "," and not quoted and depth == 0:
            parts.append(value[start:i].strip())
            start = i + 1
    parts.append(value[start:].strip())
    return [p for p in parts if p]


def param(value: str | None, name: str) -> str | None:
    """A header parameter after the URI (``;tag=``, ``;branch=``); '' for a bare flag."""
    if value is None:
        return None
    tail = value[value.rfind(">") + 1 :] if ">" in value else value
    for item in tail.split(";")[1:]:
        key, _, val = item.partition("=")
        if key.strip().lower() == name:
            return val.strip().strip('"')
    return None


def uri_of(value: str) -> str:
    """The URI of a name-addr or addr-spec header value (From, To, Contact, Route)."""
    if "<" in value:
        return value[value.index("<") + 1 : value.index(">")]
    return value.split(";", 1)[0].strip()


class Message:
    """Headers in order (canonical names, one value each) and a body."""

    def __init__(self, headers: Iterable[tuple[str, str]] = (), body: bytes = b"") -> None:
        self.headers: list[tuple[str, str]] = [(canonical(n), v) for n, v in headers]
        self.body = body

    def get(self, name: str) -> str | None:
        name = canonical(name)
        return next((v for n, v in self.headers if n == name), None)

    def get_all(self, name: str) -> list[str]:
        name = canonical(name)
        return [v for n, v in self.headers if n == name]

    def set(self, name: str, value: str) -> None:
        self.remove(name)
        self.headers.append((canonical(name), value))

    def add(self, name: str, value: str, *, first: bool = False) -> None:
        item = (canonical(name), value)
        if first:
            index = next((i for i, (n, _) in enumerate(self.headers) if n == item[0]), 0)
            self.headers.insert(index, item)
        else:
            self.headers.append(item)

    def remove(self, name: str) -> None:
        name = canonical(name)
        self.headers = [(n, v) for n, v in self.headers if n != name]

    # accessors ---------------------------------------------------------------------------
    @property
    def call_id(self) -> str:
        return self.get("Call-ID") or ""

    @property
    def cseq_number(self) -> int:
        return int((self.get("CSeq") or "0").split()[0])

    @property
    def cseq_method(self) -> str:
        parts = (self.get("CSeq") or "").split()
        return parts[1] if len(parts) > 1 else ""

    @property
    def from_tag(self) -> str | None:
        return param(self.get("From"), "tag")

    @property
    def to_tag(self) -> str | None:
        return param(self.get("To"), "tag")

    @property
    def top_via_text(self) -> str:
        return self.get("Via") or ""

    @property
    def branch(self) -> str | None:
        return param(self.top_via_text, "branch")

    @property
    def via_sent_by(self) -> str:
        """The top Via's sent-by (host[:port])."""
        proto_host = self.top_via_text.split(";", 1)[0].split()
        return proto_host[1] if len(proto_host) > 1 else ""

    @property
    def via_transport(self) -> str:
        proto = self.top_via_text.split(None, 1)[0] if self.top_via_text else ""
        return proto.rsplit("/", 1)[-1].upper()

    def start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        lines = [self.start_line()]
        lines += [f"{n}: {v}" for n, v in self.headers if n != "Content-Length"]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


class Request(Message):
    def __init__(
        self, method: str, uri: str, headers: Iterable[tuple[str, str]] = (), body: bytes = b""
    ) -> None:
        super().__init__(headers, body)
        self.method = method
        self.uri_text = uri

    def start_line(self) -> str:
        return f"{self.method} {self.uri_text} SIP/2.0"

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri_text}>"


class Response(Message):
    def __init__(
        self,
        status: int,
        reason: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> None:
        super().__init__(headers, body)
        self.status = status
        self.reason = reason if reason is not None else REASONS.get(status, "Unknown")

    def start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason} ({self.cseq_method})>"


def parse(data: bytes, *, stream: bool = False) -> Request | Response:
    """One message (a datagram, or one framed off a stream), checked by the full parser
    (``parser.py``: RFC 4475 refusals, limits); its error's reason is the 400's phrase."""
    from callbridge.sip import message, parser
    from callbridge.sip.headers import LIST_HEADERS
    from callbridge.sip.syntax import SipParseError, split_commas

    try:
        full = parser.parse(data, stream=stream)
    except SipParseError as exc:
        error = ParseError(exc.reason)
        error.status = exc.status
        answer = parser.error_response(exc)
        if answer is not None:  # its fields as they came (the bad one echoed, §8.2.6.2)
            error.answer = Response(answer.status, answer.reason, list(answer.headers))
        raise error from None
    headers: list[tuple[str, str]] = []
    for name, value in full.headers:
        if name.lower() in LIST_HEADERS:
            headers += [(name, v) for v in split_commas(value, name)]
        else:
            headers.append((name, value))
    if isinstance(full, message.Response):
        return Response(full.status, full.reason, headers, full.body)
    return Request(full.method, str(full.uri), headers, full.body)


def _parse_lenient(data: bytes) -> Request | Response:
    """The stop-gap reader (kept for answers built from a refused message)."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError("Header Not UTF-8") from None
    lines = text.replace("\r\n", "\n").split("\n")
    first = lines[0].strip()
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:  # §7.3.1 folding
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise ParseError(f"Malformed Header Line {line[:40]!r}")
        name = canonical(name)
        values = _split_commas(value) if name in _MULTI else [value.strip()]
        headers += [(name, v) for v in values]
    for needed in ("Via", "CSeq", "Call-ID", "From", "To"):
        if not any(n == needed for n, _ in headers):
            raise ParseError(f"Missing {needed} Header")
    match = _STATUS_LINE.fullmatch(first)
    message: Request | Response
    if match:
        message = Response(int(match[1]), match[2], headers)
    elif request := _REQUEST_LINE.fullmatch(first):
        message = Request(request[1], request[2], headers)
    else:
        raise ParseError("Malformed Start Line")
    try:
        message.cseq_number  # noqa: B018 (validates)
    except ValueError:
        raise ParseError("Malformed CSeq Header") from None
    length = message.get("Content-Length")
    message.body = body[: int(length)] if length and length.isdigit() else body
    return message


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(8)


def new_tag() -> str:
    return secrets.token_hex(6)


def response_to(request: Request, status: int, reason: str | None = None) -> Response:
    """§8.2.6.2: Via, From, To, Call-ID and CSeq copied from the request."""
    copied = [(n, v) for n, v in request.headers if n in ("Via", "From", "To", "Call-ID", "CSeq")]
    return Response(status, reason, copied)


def ack_for_failure(invite: Request, response: Response) -> Request:
    """§17.1.1.3: the ACK for a 300-699: the INVITE's Request-URI, Call-ID, From, top Via and
    Route; the response's To (with its tag); CSeq number of the INVITE with method ACK."""
    headers = [("Via", invite.top_via_text), ("From", invite.get("From") or "")]
    headers += [("To", response.get("To") or ""), ("Call-ID", invite.call_id)]
    headers += [("CSeq", f"{invite.cseq_number} ACK"), ("Max-Forwards", "70")]
    headers += [("Route", r) for r in invite.get_all("Route")]
    return Request("ACK", invite.uri_text, headers)


def cancel_for(invite: Request, reason: str | None = None) -> Request:
    """§9.1: the CANCEL of a pending INVITE (same branch, so it matches at the far end)."""
    headers = [("Via", invite.top_via_text), ("From", invite.get("From") or "")]
    headers += [("To", invite.get("To") or ""), ("Call-ID", invite.call_id)]
    headers += [("CSeq", f"{invite.cseq_number} CANCEL"), ("Max-Forwards", "70")]
    headers += [("Route", r) for r in invite.get_all("Route")]
    if reason:
        headers.append(("Reason", reason))  # RFC 3326
    return Request("CANCEL", invite.uri_text, headers)
