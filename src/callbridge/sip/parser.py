"""Bytes to :class:`~callbridge.sip.message.Request`/:class:`~callbridge.sip.message.Response`
(RFC 3261 §7, §18.3, §25) and the stream framer; read the rules in
:mod:`callbridge.sip.message`, which re-exports everything here.

Transports:

* UDP: ``parse(datagram)``. Content-Length may be absent (the body is the rest of the
  datagram); a larger one is a 400, extra octets are dropped (§18.3).
* TCP/TLS: a :class:`StreamFramer` per connection cuts messages by Content-Length, which
  is required there (§18.3, §20.14), then ``parse(raw, stream=True)``.
* WebSocket (RFC 7118 §5.1): one SIP message per WebSocket message, so ``parse(frame)``
  as for a datagram, with :data:`~callbridge.sip.message.STREAM_LIMITS`.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from callbridge.sip.headers import (
    CSeq,
    NameAddr,
    Via,
    canonical_name,
    check_date,
    parse_uint,
)
from callbridge.sip.message import Headers, Request, Response
from callbridge.sip.syntax import WS, SipParseError, is_token
from callbridge.sip.uri import parse_uri

__all__ = [
    "DATAGRAM_LIMITS",
    "PING",
    "STREAM_LIMITS",
    "ParseLimits",
    "StreamFramer",
    "error_response",
    "parse",
]


@dataclass(frozen=True)
class ParseLimits:
    """What one message may take (docs/security.md "Limits"). Each refusal names its limit."""

    max_message_bytes: int = 65535  # a UDP datagram cannot be larger; 513 Message Too Large
    max_body_bytes: int = 32 * 1024  # same as --max-sdp-bytes on /ws; 413
    max_headers: int = 256  # header fields (lines before unfolding); 400
    max_header_bytes: int = 8192  # one header field, unfolded; 400


DATAGRAM_LIMITS = ParseLimits()
STREAM_LIMITS = ParseLimits(max_message_bytes=64 * 1024)


PING = b"\r\n\r\n"
"""What :meth:`StreamFramer.feed` yields for a keep-alive ping (RFC 5626 §3.5.1): answer
it with one CRLF (the pong)."""

_SINGLE = ("From", "To", "Call-ID", "CSeq", "Max-Forwards", "Content-Length",
           "Content-Type", "Expires")  # fmt: skip
_REQUIRED = ("Via", "From", "To", "Call-ID", "CSeq")  # §8.1.1; Max-Forwards: RFC 2543 peers
_VERSION = re.compile(r"SIP/([0-9]+)\.([0-9]+)", re.IGNORECASE | re.ASCII)
# callid = word ["@" word]; word = 1*(alphanum / - . ! % * _ + ` ' ~ ( ) < > : \ DQUOTE / [ ] ? { })
_WORD = r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+"
_CALL_ID = re.compile(f"{_WORD}(@{_WORD})?")
_MEDIA_TYPE = re.compile(r"[^\s/;]+/[^\s/;]+[ \t]*(;.*)?", re.DOTALL)


def parse(
    data: bytes, *, stream: bool = False, limits: ParseLimits | None = None
) -> Request | Response:
    """Parse one SIP message. ``stream=True`` for a message cut by :class:`StreamFramer`
    (Content-Length required and exact). Raises :class:`SipParseError` and nothing else."""
    limits = limits or (STREAM_LIMITS if stream else DATAGRAM_LIMITS)
    if len(data) > limits.max_message_bytes:
        raise SipParseError(
            f"message is {len(data)} bytes; at most {limits.max_message_bytes} are accepted",
            513,
        )
    # Leading CRLFs before the start line are ignored (§7.5).
    start = 0
    while data.startswith(b"\r\n", start):
        start += 2
    end = data.find(b"\r\n\r\n", start)
    if end < 0:
        if stream or not data.endswith(b"\r\n"):
            raise SipParseError("no empty line ends the header section")
        # A datagram ends where its header section does: read it as having no body
        # (RFC 4475's baddn.dat comes so).
        data += b"\r\n"
        end = len(data) - 4
    start_line, fields = _split_head(data[start:end], limits)
    err: SipParseError | None = None
    try:
        msg = _build(start_line, fields)
        body = data[end + 4 :]
        msg.body = _body(msg.headers, body, stream, limits)
        _check(msg)
        return msg
    except SipParseError as exc:
        err = exc
    err.start_line = start_line
    err.headers = fields
    raise err


def _split_head(head: bytes, limits: ParseLimits) -> tuple[str, list[tuple[str, str]]]:
    """The start line and the unfolded ``(canonical name, value)`` fields (§7.3.1)."""
    text = head.decode("utf-8", "surrogateescape")
    lines = text.split("\r\n")
    for line in lines:
        if "\r" in line or "\n" in line:
            raise SipParseError("bare CR or LF inside the header section")
    start_line = lines[0]
    if len(lines) - 1 > limits.max_headers:
        raise SipParseError(
            f"{len(lines) - 1} header lines; at most {limits.max_headers} are accepted"
        )
    fields: list[list[str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            if not fields:
                raise SipParseError("a folded line before the first header field")
            fields[-1][1] += " " + line.strip(WS)  # LWS counts as one SP (§7.3.1)
        else:
            name, colon, value = line.partition(":")
            name = name.rstrip(WS)  # HCOLON = *( SP / HTAB ) ":" SWS
            if not colon:
                raise SipParseError(f"header line without ':' ({line[:40]!r})")
            if not is_token(name):
                raise SipParseError(f"header name {name[:40]!r} is not a token")
            fields.append([name, value.strip(WS)])
        if len(fields[-1][1]) > limits.max_header_bytes:
            raise SipParseError(
                f"{fields[-1][0]}: header field over {limits.max_header_bytes} bytes"
            )
    return start_line, [(canonical_name(n), v.strip(WS)) for n, v in fields]


def _build(start_line: str, fields: list[tuple[str, str]]) -> Request | Response:
    headers = Headers(fields)
    if start_line.upper().startswith("SIP/"):
        # Status-Line = SIP-Version SP Status-Code SP Reason-Phrase (§7.2)
        version, _, rest = start_line.partition(" ")
        _check_version(version)
        code, _, reason = rest.partition(" ")
        if len(code) != 3 or not code.isascii() or not code.isdigit() or code[0] not in "123456":
            raise SipParseError(f"status code {code[:20]!r} is not 100-699")
        if any(ord(c) < 0x20 and c != "\t" for c in reason):
            raise SipParseError("control character in the reason phrase")
        return Response(int(code), reason, headers)
    # Request-Line = Method SP Request-URI SP SIP-Version CRLF: single spaces (§7.1, §25.1)
    parts = start_line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise SipParseError(
            "Request-Line is not 'METHOD SP Request-URI SP SIP/2.0' with single spaces"
        )
    method, uri_text, version = parts
    if not is_token(method):
        raise SipParseError(f"method {method[:40]!r} is not a token")
    if uri_text.startswith("<"):
        raise SipParseError("Request-URI enclosed in '<>'")
    _check_version(version)
    uri = parse_uri(uri_text, "Request-URI")
    if uri.headers:
        # Headers belong in a URI to be dereferenced, never in a Request-URI (§19.1.5).
        raise SipParseError("Request-URI carries URI headers ('?')")
    return Request(method, uri, headers)


def _check_version(version: str) -> None:
    m = _VERSION.fullmatch(version)
    if not m:
        raise SipParseError(f"{version[:20]!r} is not a SIP-Version")
    if (int(m.group(1)), int(m.group(2))) != (2, 0):
        raise SipParseError(f"{version} is not supported; only SIP/2.0", 505)


def _body(headers: Headers, rest: bytes, stream: bool, limits: ParseLimits) -> bytes:
    values = headers.get_all("Content-Length")
    if len(values) > 1:
        raise SipParseError("Content-Length given more than once")
    if not values:
        if stream:
            raise SipParseError("Content-Length is required over a stream transport (§18.3)")
        length = len(rest)
    else:
        length = parse_uint(values[0], "Content-Length", 2**32 - 1)
    if length > limits.max_body_bytes:
        raise SipParseError(
            f"body is {length} bytes; at most {limits.max_body_bytes} are accepted", 413
        )
    if length > len(rest):
        raise SipParseError(f"Content-Length {length} exceeds the {len(rest)} body bytes received")
    if stream and length != len(rest):
        raise SipParseError(f"Content-Length {length} but {len(rest)} body bytes")
    return rest[:length]  # octets after the body of a datagram are dropped (§18.3)


def _check(msg: Request | Response) -> None:
    """The header checks every message passes before the transaction layer sees it."""
    h = msg.headers
    for name in _REQUIRED:
        if name not in h:
            raise SipParseError(f"{name}: missing")
    for name in _SINGLE:
        if len(h.get_all(name)) > 1:
            raise SipParseError(f"{name}: appears more than once")
        if name in ("From", "To", "CSeq") and len(h.values(name)) > 1:
            raise SipParseError(f"{name}: more than one value")
    for value in h.values("Via"):
        Via.parse(value)
    for name in ("From", "To"):
        NameAddr.parse(h.get(name) or "", name)
    if not _CALL_ID.fullmatch(msg.call_id):
        raise SipParseError(f"Call-ID: {msg.call_id[:60]!r} is not word[@word]")
    cseq = CSeq.parse(h.get("CSeq") or "")
    if isinstance(msg, Request) and cseq.method != msg.method:
        raise SipParseError(f"CSeq method {cseq.method} does not match the request's {msg.method}")
    msg.max_forwards  # noqa: B018  (raises on a bad value)
    msg.expires  # noqa: B018
    if not msg.contact_is_star:
        for contact in msg.contacts:
            contact.expires  # noqa: B018
            contact.q  # noqa: B018
    elif isinstance(msg, Request) and msg.method != "REGISTER":
        raise SipParseError("Contact: '*' is only for REGISTER")
    msg.routes  # noqa: B018
    msg.record_routes  # noqa: B018
    date = h.get("Date")
    if date is not None:
        check_date(date)
    ctype = h.get("Content-Type")
    if ctype is not None and not _MEDIA_TYPE.fullmatch(ctype):
        raise SipParseError(f"Content-Type: {ctype[:60]!r} is not type/subtype")
    if msg.body and ctype is None:
        raise SipParseError("a body without Content-Type (§20.15)")


def error_response(err: SipParseError) -> Response | None:
    """The response that answers a request :func:`parse` refused (§8.2.6, §21.4.1), or None
    when there is nothing to answer: a response, an ACK, or too little parsed (Via, From,
    To, Call-ID and CSeq are needed). The reason phrase is ``err.reason``."""
    if not err.start_line or not err.headers or err.start_line.upper().startswith("SIP/"):
        return None
    method = err.start_line.split(" ", 1)[0]
    if method == "ACK":
        return None  # ACK is never answered (§17.2.3)
    headers = Headers()
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        values = [v for n, v in err.headers if n == name]
        if not values:
            return None
        for value in values:
            headers.add(name, value)
    try:
        to = NameAddr.parse(headers.get("To") or "", "To")
        if to.tag is None:
            to.params.set("tag", secrets.token_hex(8))
            headers.set("To", str(to))
    except SipParseError:
        pass  # a To we cannot read is echoed as it came
    reason = "".join(c if c.isprintable() else " " for c in err.reason)[:200]
    return Response(err.status, reason, headers)


class StreamFramer:
    """Cuts SIP messages out of one TCP/TLS connection's bytes (RFC 3261 §18.3).

    ``feed(chunk)`` returns, in order: the bytes of each complete message (pass them to
    ``parse(raw, stream=True)``), :data:`PING` for each double-CRLF keep-alive (answer with
    ``b"\\r\\n"``, RFC 5626 §4.4.1), and, last, a :class:`SipParseError` when the stream cannot
    be framed any further: no or a bad Content-Length, a header section or message over the
    limit. Answer it with :func:`error_response` if you can, then close the connection;
    the framer stays failed. Single CRLFs between messages (pongs) are skipped (§7.5).
    """

    def __init__(self, limits: ParseLimits = STREAM_LIMITS) -> None:
        self.limits = limits
        self._buf = bytearray()
        self._failed: SipParseError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes | SipParseError]:
        if self._failed is not None:
            return [self._failed]
        self._buf += data
        out: list[bytes | SipParseError] = []
        while True:
            item = self._next()
            if item is None:
                return out
            out.append(item)
            if isinstance(item, SipParseError):
                self._failed = item
                self._buf.clear()
                return out

    def _next(self) -> bytes | SipParseError | None:
        buf = self._buf
        while buf.startswith(b"\r\n"):
            if buf.startswith(PING):
                del buf[:4]
                return PING
            if len(buf) < 4 and PING.startswith(bytes(buf)):
                return None  # maybe the first half of a ping
            del buf[:2]
        limit = self.limits.max_message_bytes
        end = buf.find(b"\r\n\r\n", 0, limit + 4)
        if end < 0:
            if len(buf) > limit:
                return SipParseError(f"header section over {limit} bytes", 513)
            return None
        head = bytes(buf[:end])
        try:
            start_line, fields = _split_head(head, self.limits)
        except SipParseError as exc:
            return exc
        lengths = [v for n, v in fields if n == "Content-Length"]
        try:
            if not lengths:
                raise SipParseError("Content-Length is required over a stream transport (§18.3)")
            if len(lengths) > 1:
                raise SipParseError("Content-Length given more than once")
            length = parse_uint(lengths[0], "Content-Length", 2**32 - 1)
            if length > self.limits.max_body_bytes:
                raise SipParseError(
                    f"body is {length} bytes; at most {self.limits.max_body_bytes} are accepted",
                    413,
                )
            if end + 4 + length > limit:
                raise SipParseError(f"message is {end + 4 + length} bytes; at most {limit}", 513)
        except SipParseError as exc:
            exc.start_line, exc.headers = start_line, fields
            return exc
        total = end + 4 + length
        if len(buf) < total:
            return None
        raw = bytes(buf[:total])
        del buf[:total]
        return raw
