"""SIP requests and responses: parsing (RFC 3261 §7, §25), serializing, stream framing (§18.3).

    msg = parse(datagram)              # Request | Response, or raises SipParseError
    msg.method, msg.uri, msg.cseq, msg.top_via.branch, msg.from_.tag, msg.body
    data = msg.serialize()             # bytes; Content-Length set from the body

    framer = StreamFramer()            # one per TCP/TLS connection
    for item in framer.feed(chunk):    # bytes of one message, PING, or a final SipParseError
        ...

What :func:`parse` refuses (each a :class:`SipParseError`, status 400 unless noted, whose
reason names the problem; RFC 4475 has a message for most of these):

* a Request-Line that is not exactly ``Method SP Request-URI SP SIP/2.0`` (extra, leading or
  trailing spaces, ``<…>`` around the URI, whitespace in it, URI headers in it), another
  SIP version (505), a Status-Line whose code is not 3 digits 100-699;
* a header line without a colon or with a name that is not a token, a fold before the
  first header, a bare CR or LF;
* a missing Via, From, To, Call-ID or CSeq; one of From, To, Call-ID, CSeq, Max-Forwards,
  Content-Length, Content-Type, Expires given twice; a CSeq method other than the
  request's; values out of range (CSeq ≥ 2**31, Max-Forwards > 255, Expires > 2**32-1);
  malformed Via, From/To/Contact/Route (unbalanced quotes, spaces inside ``<…>``, a bare
  URI with '?'), Date not in GMT, Content-Type not ``type/subtype``;
* Content-Length larger than the body received (datagram; extra bytes are ignored, §18.3);
* the limits of :class:`ParseLimits`: message size (513), body size (413), header count and
  header line length (400).

Header fields are kept in order, unfolded, with their names spelled canonically (compact
forms expanded); :class:`Headers` reads them case-insensitively. The typed properties of
:class:`Message` (``via``, ``from_``, ``cseq``, …) parse on each access.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from callbridge.sip.headers import (
    LIST_HEADERS,
    Auth,
    CSeq,
    NameAddr,
    Reason,
    Replaces,
    Via,
    canonical_name,
    parse_uint,
)
from callbridge.sip.syntax import WS, SipParseError, split_commas
from callbridge.sip.uri import Uri, parse_uri

__all__ = [
    "DATAGRAM_LIMITS",
    "PING",
    "REASON_PHRASES",
    "STREAM_LIMITS",
    "Headers",
    "Message",
    "ParseLimits",
    "Request",
    "Response",
    "SipParseError",
    "StreamFramer",
    "application_check",
    "error_response",
    "parse",
]


# The reason phrases of RFC 3261 §21 and the extensions the stack sends.
REASON_PHRASES: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 204: "No Notification",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily",
    305: "Use Proxy", 380: "Alternative Service", 400: "Bad Request", 401: "Unauthorized",
    402: "Payment Required", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    406: "Not Acceptable", 407: "Proxy Authentication Required", 408: "Request Timeout",
    410: "Gone", 413: "Request Entity Too Large", 414: "Request-URI Too Long",
    415: "Unsupported Media Type", 416: "Unsupported URI Scheme", 420: "Bad Extension",
    421: "Extension Required", 423: "Interval Too Brief", 429: "Too Many Requests",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete", 485: "Ambiguous",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
    489: "Bad Event", 491: "Request Pending", 493: "Undecipherable",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 600: "Busy Everywhere", 603: "Decline",
    604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}  # fmt: skip


class Headers:
    """Ordered header fields, read case-insensitively by full or compact name.

    Each field is ``(name, value)``: the name canonical (``v`` → ``Via``), the value unfolded
    and stripped. :meth:`get` gives a field's whole value; :meth:`values` splits the values
    of a list header (:data:`~callbridge.sip.headers.LIST_HEADERS`) at their commas, so
    ``Via: a, b`` and two Via lines read the same.
    """

    __slots__ = ("_fields",)

    def __init__(self, fields: Iterable[tuple[str, str]] = ()) -> None:
        self._fields: list[tuple[str, str]] = [(canonical_name(n), v) for n, v in fields]

    def get(self, name: str) -> str | None:
        """The value of the first field called ``name``, or None."""
        key = canonical_name(name).lower()
        return next((v for n, v in self._fields if n.lower() == key), None)

    def get_all(self, name: str) -> list[str]:
        """The value of every field called ``name``, one per line, in order."""
        key = canonical_name(name).lower()
        return [v for n, v in self._fields if n.lower() == key]

    def values(self, name: str) -> list[str]:
        """Every element of a list header across its lines (§7.3.1); for other headers
        the same as :meth:`get_all`."""
        name = canonical_name(name)
        if name.lower() not in LIST_HEADERS:
            return self.get_all(name)
        return [v for line in self.get_all(name) for v in split_commas(line, name)]

    def add(self, name: str, value: str, *, first: bool = False) -> None:
        """Append a field (or put it first: a new top Via, a Record-Route)."""
        item = (canonical_name(name), _clean(value))
        if first:
            self._fields.insert(0, item)
        else:
            self._fields.append(item)

    def set(self, name: str, value: str) -> None:
        """Replace every field called ``name`` by one, where the first was (else append)."""
        name = canonical_name(name)
        key = name.lower()
        idx = next((i for i, (n, _) in enumerate(self._fields) if n.lower() == key), None)
        self.remove(name)
        if idx is None:
            self._fields.append((name, _clean(value)))
        else:
            self._fields.insert(idx, (name, _clean(value)))

    def remove(self, name: str) -> None:
        key = canonical_name(name).lower()
        self._fields = [(n, v) for n, v in self._fields if n.lower() != key]

    def copy(self) -> Headers:
        return Headers(self._fields)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._fields))

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"


def _clean(value: str) -> str:
    # A value given in code must not smuggle a line break into the message.
    if "\r" in value or "\n" in value:
        raise ValueError("a header value may not contain CR or LF")
    return value.strip(WS)


class Message:
    """What requests and responses share: ``headers``, ``body`` (bytes), ``version``, and
    typed accessors of the header fields that the stack reads."""

    __slots__ = ("body", "headers", "version")

    def __init__(self, headers: Headers | None = None, body: bytes = b"") -> None:
        self.headers = headers if headers is not None else Headers()
        self.body = body
        self.version = "SIP/2.0"

    # --- typed accessors (each parses the current header value; SipParseError when bad) ---
    @property
    def via(self) -> list[Via]:
        """Every Via value, topmost first."""
        return [Via.parse(v) for v in self.headers.values("Via")]

    @property
    def top_via(self) -> Via:
        values = self.headers.values("Via")
        if not values:
            raise SipParseError("Via: missing")
        return Via.parse(values[0])

    @property
    def branch(self) -> str | None:
        """The top Via's branch (the transaction id, §17.2.3)."""
        return self.top_via.branch

    def _name_addr(self, name: str) -> NameAddr:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"{name}: missing")
        return NameAddr.parse(value, name)

    @property
    def from_(self) -> NameAddr:
        return self._name_addr("From")

    @property
    def to(self) -> NameAddr:
        return self._name_addr("To")

    @property
    def from_tag(self) -> str | None:
        return self.from_.tag

    @property
    def to_tag(self) -> str | None:
        return self.to.tag

    @property
    def call_id(self) -> str:
        value = self.headers.get("Call-ID")
        if not value:
            raise SipParseError("Call-ID: missing")
        return value

    @property
    def cseq(self) -> CSeq:
        value = self.headers.get("CSeq")
        if value is None:
            raise SipParseError("CSeq: missing")
        return CSeq.parse(value)

    @property
    def cseq_number(self) -> int:
        return self.cseq.number

    @property
    def cseq_method(self) -> str:
        return self.cseq.method

    @property
    def contacts(self) -> list[NameAddr]:
        """Contact values; empty for ``Contact: *`` (see :attr:`contact_is_star`)."""
        if self.contact_is_star:
            return []
        return [NameAddr.parse(v, "Contact") for v in self.headers.values("Contact")]

    @property
    def contact_is_star(self) -> bool:
        """``Contact: *`` (remove all bindings, §10.2.2)."""
        return [v.strip(WS) for v in self.headers.values("Contact")] == ["*"]

    @property
    def routes(self) -> list[NameAddr]:
        return [NameAddr.parse(v, "Route") for v in self.headers.values("Route")]

    @property
    def record_routes(self) -> list[NameAddr]:
        return [NameAddr.parse(v, "Record-Route") for v in self.headers.values("Record-Route")]

    @property
    def max_forwards(self) -> int | None:
        value = self.headers.get("Max-Forwards")
        return None if value is None else parse_uint(value, "Max-Forwards", 255)

    @property
    def expires(self) -> int | None:
        value = self.headers.get("Expires")
        return None if value is None else parse_uint(value, "Expires", 2**32 - 1)

    @property
    def content_type(self) -> str | None:
        """The media type in lower case without parameters (``application/sdp``)."""
        value = self.headers.get("Content-Type")
        return None if value is None else value.split(";")[0].strip(WS).lower()

    def auth(self, name: str = "Authorization") -> list[Auth]:
        """Every WWW-Authenticate / Authorization / Proxy-* field (one per line: never split
        at commas)."""
        return [Auth.parse(v, canonical_name(name)) for v in self.headers.get_all(name)]

    @property
    def reasons(self) -> list[Reason]:
        return [Reason.parse(v) for v in self.headers.values("Reason")]

    @property
    def refer_to(self) -> NameAddr | None:
        """Refer-To (RFC 3515 §2.1); an attended transfer carries ``?Replaces=`` in its URI
        (``refer_to.uri.header("Replaces")``, parse it with :meth:`Replaces.parse`)."""
        return None if "Refer-To" not in self.headers else self._name_addr("Refer-To")

    @property
    def replaces(self) -> Replaces | None:
        value = self.headers.get("Replaces")
        return None if value is None else Replaces.parse(value)

    # --- writing ---
    def start_line(self) -> str:
        raise NotImplementedError

    def serialize(self) -> bytes:
        """The message as bytes; Content-Length is set to the body's length (§20.14)."""
        headers = self.headers.copy()
        headers.set("Content-Length", str(len(self.body)))
        lines = [self.start_line()]
        lines += [f"{n}: {v}" for n, v in headers]
        head = "\r\n".join(lines) + "\r\n\r\n"
        return head.encode("utf-8", "surrogateescape") + self.body

    to_bytes = serialize


class Request(Message):
    """A SIP request: ``method`` (case-sensitive token, §7.1) and ``uri`` (the Request-URI)."""

    __slots__ = ("method", "uri")

    def __init__(
        self, method: str, uri: Uri | str, headers: Headers | None = None, body: bytes = b""
    ) -> None:
        super().__init__(headers, body)
        self.method = method
        self.uri = parse_uri(uri, "Request-URI") if isinstance(uri, str) else uri

    def start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"

    def response(
        self, status: int, reason: str | None = None, *, to_tag: str | None = None
    ) -> Response:
        """A response to this request (§8.2.6.2): Via, From, Call-ID and CSeq copied, To
        copied with ``to_tag`` added when it has no tag yet (pass one for any final or
        dialog-creating response but 100)."""
        headers = Headers()
        for name in ("Via", "From", "To", "Call-ID", "CSeq"):
            for value in self.headers.get_all(name):
                headers.add(name, value)
        if to_tag is not None and status != 100:
            to = self.to
            if to.tag is None:
                to.params.set("tag", to_tag)
                headers.set("To", str(to))
        if status == 100 and "Timestamp" in self.headers:
            headers.add("Timestamp", self.headers.get("Timestamp") or "")  # §8.2.6.1
        return Response(status, reason, headers)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"


class Response(Message):
    """A SIP response: ``status`` (100-699) and ``reason`` (the phrase of
    :data:`REASON_PHRASES` when not given)."""

    __slots__ = ("reason", "status")

    def __init__(
        self,
        status: int,
        reason: str | None = None,
        headers: Headers | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(headers, body)
        self.status = status
        self.reason = REASON_PHRASES.get(status, "") if reason is None else reason

    def start_line(self) -> str:
        reason = self.reason.replace("\r", " ").replace("\n", " ")
        return f"{self.version} {self.status} {reason}"

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


def application_check(
    request: Request,
    *,
    supported: frozenset[str] = frozenset(),
    content_types: frozenset[str] = frozenset({"application/sdp"}),
) -> tuple[int, str] | None:
    """The checks a UAS makes after parsing and before acting on a request (RFC 3261
    §8.2.1-§8.2.3), as ``(status, reason)`` to answer with, or None to go on.

    Well-formed requests that a UA must still refuse (RFC 4475 §3.3): a Request-URI of
    another scheme than sip/sips/tel (416, unkscm/novelsc), a Require option tag not in
    ``supported`` (420 with ``Unsupported``, bext01; Proxy-Require is for proxies), a body of a
    type not in ``content_types`` (415 with ``Accept``, invut), an INVITE whose Accept does not
    take ``application/sdp`` (406, sdp01). The caller adds the ``Unsupported``/``Accept``
    header to the response.
    """
    if request.uri.scheme not in ("sip", "sips", "tel"):
        return 416, f"URI scheme {request.uri.scheme}: is not supported"
    unknown = [t for t in request.headers.values("Require") if t.lower() not in supported]
    if unknown and request.method not in ("ACK", "CANCEL"):
        return 420, f"unsupported extension {', '.join(unknown)}"
    if request.body and request.content_type not in content_types:
        disposition = (request.headers.get("Content-Disposition") or "").lower()
        if "handling=optional" not in disposition.replace(" ", ""):
            return 415, f"body type {request.content_type} is not supported"
    accept = request.headers.values("Accept")
    if request.method == "INVITE" and accept:
        types = {a.split(";")[0].strip(WS).lower() for a in accept}
        if not types & {"application/sdp", "application/*", "*/*"}:
            return 406, "Accept does not include application/sdp"
    return None


# The parser lives in its own module (size); it is re-exported here, where readers look.
from callbridge.sip.parser import (  # noqa: E402
    DATAGRAM_LIMITS,
    PING,
    STREAM_LIMITS,
    ParseLimits,
    StreamFramer,
    error_response,
    parse,
)
