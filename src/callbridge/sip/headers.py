"""Header field names and the typed models of the header values the SIP stack reads.

Names (RFC 3261 §7.3, §20): :func:`canonical_name` expands a compact form (``v`` → ``Via``,
§7.3.3) and spells a known header the usual way; lookups compare names case-insensitively.
:data:`LIST_HEADERS` are the fields whose values may be split at commas (§7.3.1);
authentication headers and unknown ones never are.

Models, each with a ``parse(value)`` classmethod that raises :class:`SipParseError` naming
the header and a ``__str__`` that writes it back:

=================  =====================================================================
:class:`NameAddr`  From, To, Contact, Route, Record-Route, Refer-To, Reply-To (§20.10, …)
:class:`Via`       one Via value: transport, sent-by, branch, received, rport (RFC 3581)
:class:`CSeq`      sequence number (< 2**31, §8.1.1.5) and method
:class:`Auth`      WWW-Authenticate, Authorization, Proxy-Authenticate/-Authorization
:class:`Reason`    RFC 3326 ``SIP ;cause=200 ;text="Call completed elsewhere"``
:class:`Replaces`  RFC 3891 call-id with to-tag, from-tag, early-only
=================  =====================================================================

Plain values: :func:`parse_uint` (Expires, Max-Forwards, Content-Length, …).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from callbridge.sip.syntax import (
    WS,
    Params,
    Scanner,
    SipParseError,
    is_token,
    quote,
    split_commas,
    unquote,
)
from callbridge.sip.uri import Uri, parse_uri, split_hostport

__all__ = [
    "COMPACT_FORMS",
    "LIST_HEADERS",
    "Auth",
    "CSeq",
    "NameAddr",
    "Reason",
    "Replaces",
    "Via",
    "canonical_name",
    "check_date",
    "parse_uint",
]

# Compact forms (RFC 3261 §7.3.3, §20; RFC 6665 o/u, RFC 3515 r, RFC 3892 b, RFC 4028 x,
# RFC 8224 y, RFC 3841 a/j/d).
COMPACT_FORMS: dict[str, str] = {
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
    "o": "Event",
    "u": "Allow-Events",
    "r": "Refer-To",
    "b": "Referred-By",
    "x": "Session-Expires",
    "y": "Identity",
    "a": "Accept-Contact",
    "j": "Reject-Contact",
    "d": "Request-Disposition",
}

_KNOWN = [
    "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow", "Allow-Events",
    "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact",
    "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
    "Content-Type", "CSeq", "Date", "Error-Info", "Event", "Expires", "From", "In-Reply-To",
    "Max-Forwards", "Min-Expires", "MIME-Version", "Organization", "Path", "Priority",
    "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "RAck", "Reason",
    "Record-Route", "Refer-To", "Referred-By", "Replaces", "Reply-To", "Require",
    "Retry-After", "Route", "RSeq", "Server", "Service-Route", "Session-Expires", "Subject",
    "Subscription-State", "Supported", "Timestamp", "To", "Unsupported", "User-Agent", "Via",
    "Warning", "WWW-Authenticate", "Min-SE", "P-Asserted-Identity", "Identity",
]  # fmt: skip
_CANONICAL: dict[str, str] = {n.lower(): n for n in _KNOWN}
_CANONICAL.update(COMPACT_FORMS)

# Fields defined as comma-separated lists (§7.3.1). Not here: WWW-Authenticate and the other
# auth fields (their parameters are comma-separated), Date, Retry-After, Call-ID, and every
# unknown field, which are kept whole.
LIST_HEADERS = frozenset(
    h.lower()
    for h in (
        "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow", "Allow-Events",
        "Call-Info", "Contact", "Content-Encoding", "Content-Language", "Error-Info",
        "In-Reply-To", "Path", "Proxy-Require", "Reason", "Record-Route", "Require", "Route",
        "Service-Route", "Supported", "Unsupported", "Via", "Warning", "P-Asserted-Identity",
        "Accept-Contact", "Reject-Contact", "Request-Disposition",
    )
)  # fmt: skip


def canonical_name(name: str) -> str:
    """``v`` → ``Via``, ``cAlL-iD`` → ``Call-ID``; an unknown name is returned as written."""
    return _CANONICAL.get(name.lower(), name)


def parse_uint(value: str, what: str, maximum: int) -> int:
    """A header that is one decimal number 0..maximum (Expires ≤ 2**32-1 §20.19, Max-Forwards
    ≤ 255 §20.22, Content-Length, …)."""
    text = value.strip(WS)
    if not text.isascii() or not text.isdigit():
        raise SipParseError(f"{what}: {text[:40]!r} is not a non-negative integer")
    if len(text) > 20 or int(text) > maximum:
        raise SipParseError(f"{what}: {text[:40]} is over the maximum {maximum}")
    return int(text)


_DATE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} "
    r"[0-9]{2}:[0-9]{2}:[0-9]{2} GMT"
)


def check_date(value: str) -> None:
    """Date = rfc1123-date, always in GMT (§20.17; RFC 4475 §3.1.2.12 refuses ``EST``)."""
    if not _DATE.fullmatch(value.strip(WS)):
        raise SipParseError(f"Date: {value[:40]!r} is not an RFC 1123 date in GMT")


def _has_angle(value: str) -> bool:
    """A '<' outside quoted strings: the name-addr form."""
    in_quote = False
    escaped = False
    for ch in value:
        if escaped:
            escaped = False
        elif in_quote:
            escaped = ch == "\\"
            in_quote = ch != '"'
        elif ch == '"':
            in_quote = True
        elif ch == "<":
            return True
    return False


def _display_name(sc: Scanner) -> str | None:
    """display-name = *(token LWS) / quoted-string, up to the '<' (§25.1)."""
    sc.ws()
    if sc.peek() == '"':
        return unquote(sc.quoted())
    words: list[str] = []
    while True:
        sc.ws()
        if sc.peek() == "<" or not sc.peek():
            break
        words.append(sc.token("a display name (a token or a quoted string) before '<'"))
    return " ".join(words) if words else None


@dataclass(eq=False)
class NameAddr:
    """``[display-name] <uri> *(;param)`` or a bare addr-spec (From, To, Contact, Route,
    Record-Route, Refer-To, Reply-To).

    In the bare form the URI ends at the first ';' (the rest are header parameters, so
    ``sip:a@b;tag=1`` has tag 1) and may not hold ',', ';' or '?' (§20.10). No whitespace
    is allowed just inside ``<…>`` (RFC 4475 §3.1.2.14).
    """

    uri: Uri
    display_name: str | None = None
    params: Params = field(default_factory=Params)

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter (From/To, §19.3)."""
        return self.params.get("tag")

    @property
    def expires(self) -> int | None:
        """Contact ``expires`` (seconds; §20.10), None when absent; over 2**32-1 is an error."""
        value = self.params.get("expires")
        return None if value is None else parse_uint(value, "Contact expires", 2**32 - 1)

    @property
    def q(self) -> float | None:
        """Contact ``q`` (0..1, §20.10), None when absent."""
        value = self.params.get("q")
        if value is None:
            return None
        if not re.fullmatch(r"0(\.[0-9]{0,3})?|1(\.0{0,3})?", value):
            raise SipParseError(f"Contact: q={value!r} is not 0..1 with 3 decimals at most")
        return float(value)

    @classmethod
    def parse(cls, value: str, what: str = "From") -> NameAddr:
        sc = Scanner(value, what)
        sc.ws()
        if sc.peek() == '"' or _has_angle(value):
            display = _display_name(sc)
            sc.ws()
            end = sc.s.find(">", sc.i)
            if sc.peek() != "<" or end < 0:
                raise sc.error("expected '<URI>' after the display name")
            inner = sc.s[sc.i + 1 : end]
            if inner[:1] in (" ", "\t") or inner[-1:] in (" ", "\t"):
                raise sc.error("whitespace inside '<…>' around the URI")
            uri = parse_uri(inner, what)
            sc.i = end + 1
        else:
            display = None
            start = sc.i
            while sc.peek() and sc.peek() not in ";" + WS:
                sc.i += 1
            text = sc.s[start : sc.i]
            if any(c in text for c in ",?"):
                raise sc.error("a URI with ',', ';' or '?' must be enclosed in '<…>'")
            uri = parse_uri(text, what)
        params = sc.params()
        return cls(uri, display, params)

    def __str__(self) -> str:
        name = f"{quote(self.display_name)} " if self.display_name else ""
        return f"{name}<{self.uri}>{self.params}"


@dataclass(eq=False)
class Via:
    """One Via value (§20.42): ``SIP/2.0/UDP host:port;branch=z9hG4bK…;received=…;rport``."""

    transport: str
    host: str
    port: int | None = None
    params: Params = field(default_factory=Params)
    protocol: str = "SIP/2.0"

    MAGIC_COOKIE = "z9hG4bK"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def rfc3261_branch(self) -> bool:
        """The branch starts with the magic cookie and has more after it (§17.2.3). A bare
        ``z9hG4bK`` (RFC 4475 badbranch.dat) or no branch means the transaction layer
        matches the RFC 2543 way (§17.2.3)."""
        b = self.branch
        return b is not None and b.startswith(self.MAGIC_COOKIE) and len(b) > 7

    @property
    def received(self) -> str | None:
        """``received`` (§18.2.1): an address, brackets stripped from IPv6 (RFC 5118 §4.5)."""
        value = self.params.get("received")
        return value.strip("[]") if value else value

    @property
    def rport(self) -> int | None:
        """``rport`` with a value (RFC 3581 §4: filled in by the server), else None."""
        value = self.params.get("rport")
        return int(value) if value else None

    @property
    def rport_requested(self) -> bool:
        """The client asked for symmetric response routing (``;rport`` present, RFC 3581)."""
        return self.params.get("rport") is not None

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @classmethod
    def parse_all(cls, value: str) -> list[Via]:
        """Every via-parm of one Via field value (``a, b``)."""
        return [cls.parse(v) for v in split_commas(value, "Via")]

    @classmethod
    def parse(cls, value: str) -> Via:
        sc = Scanner(value, "Via")
        sc.ws()
        name = sc.token("the protocol name (SIP)")
        sc.expect("/", "after the protocol name")
        version = sc.token("the protocol version")
        sc.expect("/", "after the protocol version")
        transport = sc.token("the transport")
        if not sc.ws():
            raise sc.error("no space between the transport and sent-by")
        start = sc.i
        if sc.peek() == "[":
            end = sc.s.find("]", sc.i)
            sc.i = len(sc.s) if end < 0 else end + 1
        else:
            while sc.peek() and sc.peek() not in ";:" + WS:
                sc.i += 1
        host = sc.s[start : sc.i]
        port: str | None = None
        if sc.take(":"):
            port = sc.run(frozenset("0123456789"))
        hostport = host if port is None else f"{host}:{port}"
        h, p = split_hostport(hostport, "Via sent-by")
        params = sc.params()
        via = cls(transport.upper(), h, p, params, f"{name.upper()}/{version}")
        via._check()
        return via

    def _check(self) -> None:
        for name, raw in self.params:
            if raw is None and name.lower() in ("branch", "received", "ttl", "maddr"):
                raise SipParseError(f"Via: {name} without a value")
        ttl = self.params.get("ttl")
        if ttl is not None:
            parse_uint(ttl, "Via ttl", 255)
        received = self.received
        if received:
            try:
                ipaddress.ip_address(received)
            except ValueError:
                raise SipParseError(f"Via: received={received!r} is not an address") from None
        rport = self.params.get("rport")
        if rport:
            parse_uint(rport, "Via rport", 65535)

    def __str__(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by}{self.params}"


@dataclass(frozen=True)
class CSeq:
    """CSeq (§20.16): ``number`` below 2**31 (§8.1.1.5) and the request's ``method``."""

    number: int
    method: str

    @classmethod
    def parse(cls, value: str) -> CSeq:
        parts = value.split()
        if len(parts) != 2:
            raise SipParseError(f"CSeq: {value[:60]!r} is not 'number METHOD'")
        number = parse_uint(parts[0], "CSeq: sequence number", 2**31 - 1)
        if not is_token(parts[1]):
            raise SipParseError(f"CSeq: method {parts[1][:40]!r} is not a token")
        return cls(number, parts[1])

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


@dataclass(eq=False)
class Auth:
    """A challenge or credentials (§20.27, §20.44; RFC 7616): ``Digest realm="x", nonce=…``.

    ``params`` maps lower-case names to unquoted values; ``quoted`` lists the names that
    were quoted (RFC 7616 fixes which ones must be, e.g. ``algorithm`` and ``qop`` in
    Authorization are not). Such a field is never split at commas.
    """

    scheme: str
    params: dict[str, str] = field(default_factory=dict)
    quoted: set[str] = field(default_factory=set)

    def get(self, name: str) -> str | None:
        return self.params.get(name.lower())

    @classmethod
    def parse(cls, value: str, what: str = "Authorization") -> Auth:
        sc = Scanner(value, what)
        sc.ws()
        scheme = sc.token("an authentication scheme")
        auth = cls(scheme)
        if sc.at_end():
            return auth
        while True:
            sc.ws()
            name = sc.token("an auth-param name")
            sc.expect("=", f"after {name}")
            if sc.peek() == '"':
                raw = sc.quoted()
                auth.quoted.add(name.lower())
                val = unquote(raw)
            else:
                val = sc.token(f"the value of {name}")
            if name.lower() in auth.params:
                raise sc.error(f"{name} given twice")
            auth.params[name.lower()] = val
            if sc.at_end():
                return auth
            sc.expect(",", "between auth-params")

    def __str__(self) -> str:
        items = [
            f"{n}={quote(v) if n in self.quoted or not is_token(v) else v}"
            for n, v in self.params.items()
        ]
        return f"{self.scheme} {', '.join(items)}" if items else self.scheme


@dataclass(eq=False)
class Reason:
    """Reason (RFC 3326): ``protocol`` (``SIP``, ``Q.850``), ``cause``, ``text``."""

    protocol: str
    cause: int | None = None
    text: str | None = None
    params: Params = field(default_factory=Params)

    @classmethod
    def parse(cls, value: str) -> Reason:
        sc = Scanner(value, "Reason")
        sc.ws()
        protocol = sc.token("a protocol (SIP, Q.850)")
        params = sc.params()
        cause_text = params.get("cause")
        cause = None if cause_text is None else parse_uint(cause_text, "Reason cause", 65535)
        return cls(protocol, cause, params.get("text"), params)

    @classmethod
    def sip(cls, cause: int, text: str) -> Reason:
        """``Reason: SIP ;cause=200 ;text="Call completed elsewhere"`` (RFC 3326 §2)."""
        params = Params([("cause", str(cause)), ("text", quote(text))])
        return cls("SIP", cause, text, params)

    def __str__(self) -> str:
        return f"{self.protocol}{self.params}"


@dataclass(eq=False)
class Replaces:
    """Replaces (RFC 3891 §6.1): the dialog ``call_id``/``to_tag``/``from_tag`` to replace."""

    call_id: str
    to_tag: str
    from_tag: str
    early_only: bool = False
    params: Params = field(default_factory=Params)

    @classmethod
    def parse(cls, value: str) -> Replaces:
        sc = Scanner(value, "Replaces")
        sc.ws()
        start = sc.i
        while sc.peek() and sc.peek() not in ";" + WS:
            sc.i += 1
        call_id = sc.s[start : sc.i]
        if not call_id:
            raise sc.error("no Call-ID")
        params = sc.params()
        to_tag, from_tag = params.get("to-tag"), params.get("from-tag")
        if to_tag is None or from_tag is None:
            raise sc.error("to-tag and from-tag are both required (RFC 3891 §6.1)")
        return cls(call_id, to_tag, from_tag, "early-only" in params, params)

    def __str__(self) -> str:
        return f"{self.call_id}{self.params}"
