"""SIP, SIPS and tel URIs (RFC 3261 §19.1, §25.1; RFC 3966): parsing, escaping, comparison.

    >>> u = parse_uri("sip:alice%40home@[2001:db8::1]:5070;transport=tcp?Subject=hi")
    >>> u.user, u.host, u.port, u.params.get("transport"), u.header("subject")
    ('alice@home', '[2001:db8::1]', 5070, 'tcp', 'hi')

* ``user``, ``password``, parameter and header values are stored unescaped (``%40`` is
  ``@``, §19.1.2); :meth:`Uri.__str__` escapes them again, so ``str(u)`` is canonical rather
  than byte-identical to the input.
* ``host`` is lower-case; an IPv6 address keeps its brackets (an IPv6 *reference*, RFC 5118
  §4.1–4.4). ``port`` is None when absent: ``sip:a@h`` and ``sip:a@h:5060`` differ (§19.1.4).
* ``==`` is the comparison of §19.1.4 (tel: RFC 3966 §4); ``hash`` agrees with it.
* Other schemes (``http:``, ``urn:``, ``isbn:``) parse into a Uri with only ``scheme`` and
  ``opaque`` set: they may appear in header fields (RFC 4475 §3.3.4) though not route.
"""

from __future__ import annotations

import ipaddress
import string

from callbridge.sip.syntax import Params, SipParseError

__all__ = ["Uri", "escape", "parse_uri", "unescape"]

_ALNUM = frozenset(string.ascii_letters + string.digits)
_UNRESERVED = _ALNUM | frozenset("-_.!~*'()")
_USER_CHARS = _UNRESERVED | frozenset("&=+$,;?/")  # user-unreserved (§25.1)
_PASSWORD_CHARS = _UNRESERVED | frozenset("&=+$,")
_PARAM_CHARS = _UNRESERVED | frozenset("[]/:&+$")  # param-unreserved
_HEADER_CHARS = _UNRESERVED | frozenset("[]/?:+$")  # hnv-unreserved
_HOST_CHARS = _ALNUM | frozenset("-.")
_SCHEME_CHARS = _ALNUM | frozenset("+-.")
_HEX = frozenset(string.hexdigits)
# URI parameters that must match when either URI has them (§19.1.4).
_STRICT_PARAMS = ("user", "ttl", "method", "maddr", "transport")


def unescape(text: str, allowed: frozenset[str], what: str) -> str:
    """Decode ``%HH`` escapes (§19.1.2). Characters outside ``allowed`` must come escaped;
    a ``%`` not followed by two hex digits is an error. Decoded bytes are UTF-8
    (surrogateescape keeps any others, ``%00`` gives ``\\x00`` as RFC 4475 §3.1.1.4 wants)."""
    if "%" not in text:
        bad = next((c for c in text if c not in allowed), None)
        if bad is not None:
            raise SipParseError(f"{what}: character {bad!r} must be escaped")
        return text
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "%":
            hh = text[i + 1 : i + 3]
            if len(hh) != 2 or not all(c in _HEX for c in hh):
                raise SipParseError(f"{what}: '%' not followed by two hex digits")
            out.append(int(hh, 16))
            i += 3
            continue
        if ch not in allowed:
            raise SipParseError(f"{what}: character {ch!r} must be escaped")
        out += ch.encode()
        i += 1
    return out.decode("utf-8", "surrogateescape")


def escape(text: str, allowed: frozenset[str]) -> str:
    """``%HH``-escape every octet of ``text`` outside ``allowed`` (§19.1.2)."""
    if all(c in allowed for c in text):
        return text
    out: list[str] = []
    for ch in text:
        if ch in allowed:
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8", "surrogateescape"))
    return "".join(out)


def _parse_host(text: str, what: str) -> str:
    if text.startswith("["):
        if not text.endswith("]"):
            raise SipParseError(f"{what}: IPv6 reference without its closing ']'")
        # RFC 5118 §4.10: RFC 3261's ABNF let "2001:db8:::192.0.2.1" through; being robust,
        # read the extra colon as "::" and write the correct form back.
        addr = text[1:-1].lower().replace(":::", "::")
        try:
            ipaddress.IPv6Address(addr)
        except ValueError:
            raise SipParseError(f"{what}: {text!r} is not an IPv6 reference") from None
        return f"[{addr}]"
    if not text:
        raise SipParseError(f"{what}: no host")
    if ":" in text:
        # RFC 5118 §4.2: an IPv6 address in a SIP URI must be in brackets.
        raise SipParseError(f"{what}: IPv6 address {text!r} without '[ ]'")
    if any(c not in _HOST_CHARS for c in text) or text.startswith(("-", ".")):
        raise SipParseError(f"{what}: {text!r} is not a host name or address")
    return text.lower()


def _parse_port(text: str, what: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 5 or int(text) > 65535:
        raise SipParseError(f"{what}: port {text!r} is not 0-65535")
    return int(text)


def split_hostport(text: str, what: str) -> tuple[str, int | None]:
    """``host [":" port]`` with IPv6 references; host as :func:`_parse_host` returns it."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError(f"{what}: IPv6 reference without its closing ']'")
        host, rest = text[: end + 1], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise SipParseError(f"{what}: unexpected {rest!r} after the IPv6 reference")
        return _parse_host(host, what), _parse_port(rest[1:], what) if rest else None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return _parse_host(host, what), _parse_port(port, what)
    return _parse_host(text, what), None


class Uri:
    """A SIP/SIPS/tel URI (or an opaque URI of another scheme). Build one with
    :func:`parse_uri` or directly: ``Uri("sip", user="bob", host="example.com")``."""

    __slots__ = ("headers", "host", "opaque", "params", "password", "port", "scheme", "user")

    def __init__(
        self,
        scheme: str = "sip",
        *,
        user: str | None = None,
        password: str | None = None,
        host: str = "",
        port: int | None = None,
        params: Params | None = None,
        headers: list[tuple[str, str]] | None = None,
        opaque: str | None = None,
    ) -> None:
        self.scheme = scheme.lower()
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.params = params if params is not None else Params()
        self.headers = headers if headers is not None else []  # (name, value), unescaped
        self.opaque = opaque  # the text after "scheme:" for schemes other than sip/sips/tel

    @property
    def is_sip(self) -> bool:
        """sip: or sips: (a URI this stack can route to)."""
        return self.scheme in ("sip", "sips")

    @property
    def hostport(self) -> str:
        """``host`` or ``host:port``, as in a Via sent-by or a Host of a flow."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def header(self, name: str) -> str | None:
        """The first URI header (``?Replaces=…``) called ``name`` (any case), unescaped."""
        key = name.lower()
        return next((v for n, v in self.headers if n.lower() == key), None)

    def copy(self) -> Uri:
        return Uri(
            self.scheme,
            user=self.user,
            password=self.password,
            host=self.host,
            port=self.port,
            params=self.params.copy(),
            headers=list(self.headers),
            opaque=self.opaque,
        )

    def __str__(self) -> str:
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        out = [self.scheme, ":"]
        if self.scheme == "tel":
            out.append(escape(self.user or "", _PARAM_CHARS))
        else:
            if self.user is not None:
                out.append(escape(self.user, _USER_CHARS))
                if self.password is not None:
                    out += [":", escape(self.password, _PASSWORD_CHARS)]
                out.append("@")
            out.append(self.hostport)
        for name, value in self.params:
            out += [";", escape(name, _PARAM_CHARS)]
            if value is not None:
                out += ["=", escape(value, _PARAM_CHARS)]
        if self.headers:
            out.append("?")
            out.append(
                "&".join(
                    f"{escape(n, _HEADER_CHARS)}={escape(v, _HEADER_CHARS)}"
                    for n, v in self.headers
                )
            )
        return "".join(out)

    def __repr__(self) -> str:
        return f"Uri({str(self)!r})"

    def _key(self) -> tuple[object, ...]:
        if self.opaque is not None:
            return (self.scheme, self.opaque)
        if self.scheme == "tel":
            return (self.scheme, _tel_digits(self.user or ""))
        return (self.scheme, self.user, self.password, _host_key(self.host), self.port)

    def __eq__(self, other: object) -> bool:
        """URI equality of RFC 3261 §19.1.4 (tel: RFC 3966 §4)."""
        if not isinstance(other, Uri):
            return NotImplemented
        if self._key() != other._key():
            return False
        if self.opaque is not None:
            return True
        if self.scheme == "tel":
            mine = {n.lower(): (v or "").lower() for n, v in self.params}
            theirs = {n.lower(): (v or "").lower() for n, v in other.params}
            return mine == theirs
        for name in _STRICT_PARAMS:
            if (self.params.get(name) is None) != (other.params.get(name) is None):
                return False
        for name in self.params.names():
            a, b = self.params.get(name), other.params.get(name)
            if a is not None and b is not None and a.lower() != b.lower():
                return False
        mine_h = sorted((n.lower(), v) for n, v in self.headers)
        return mine_h == sorted((n.lower(), v) for n, v in other.headers)

    def __hash__(self) -> int:
        return hash(self._key())


def _host_key(host: str) -> str:
    # IPv6 references compare as addresses ([::ffff:192.0.2.1] is [::ffff:c000:201]).
    if host.startswith("["):
        try:
            return f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            pass
    return host.lower()


def _tel_digits(number: str) -> str:
    # Visual separators do not count when tel: URIs compare (RFC 3966 §4, §5.1.1).
    return "".join(c for c in number if c not in "-.()").lower()


def parse_uri(text: str, what: str = "URI") -> Uri:
    """Parse a URI as it appears in a Request-URI or inside ``<…>``.

    Raises :class:`SipParseError` (400) naming ``what`` and the problem: embedded
    whitespace, a bad escape, a bad host or port, an IPv6 address without brackets.
    """
    scheme, colon, rest = text.partition(":")
    if (
        not colon
        or not scheme
        or not scheme[0].isalpha()
        or any(c not in _SCHEME_CHARS for c in scheme)
    ):
        raise SipParseError(f"{what}: {text[:80]!r} is not a URI (no scheme)")
    if any(c in ' \t\r\n<>"' for c in text):
        raise SipParseError(f"{what}: whitespace, '<', '>' or '\"' inside a URI")
    scheme = scheme.lower()
    if scheme not in ("sip", "sips", "tel"):
        if not rest:
            raise SipParseError(f"{what}: {scheme}: URI with nothing after the scheme")
        return Uri(scheme, opaque=rest)
    # The user part may hold '?' and ';' (user-unreserved) but never an unescaped '@', and
    # neither may what follows the host: so the last '@' ends the userinfo.
    at = rest.rfind("@") if scheme != "tel" else -1
    userinfo, rest = (rest[:at], rest[at + 1 :]) if at >= 0 else (None, rest)
    rest, qmark, hdrs = rest.partition("?")
    headers: list[tuple[str, str]] = []
    if qmark:
        if scheme == "tel":
            raise SipParseError(f"{what}: a tel: URI has no headers")
        for item in hdrs.split("&"):
            name, eq, value = item.partition("=")
            if not name or not eq:
                raise SipParseError(f"{what}: URI header {item!r} is not name=value")
            headers.append(
                (unescape(name, _HEADER_CHARS, what), unescape(value, _HEADER_CHARS, what))
            )
    if scheme == "tel":
        number, semi, params_text = rest.partition(";")
        if not number or (semi and not params_text):
            raise SipParseError(f"{what}: tel: URI without a number, or with an empty parameter")
        number = unescape(number, _PARAM_CHARS, what)
        return Uri(scheme, user=number, params=_uri_params(params_text, what))
    user: str | None = None
    password: str | None = None
    if userinfo is not None:
        u, pcolon, p = userinfo.partition(":")
        if not u:
            raise SipParseError(f"{what}: empty user part before '@'")
        user = unescape(u, _USER_CHARS, what)
        if pcolon:
            password = unescape(p, _PASSWORD_CHARS, what)
    hostport, semi, params_text = rest.partition(";")
    if semi and not params_text:
        raise SipParseError(f"{what}: empty URI parameter")
    host, port = split_hostport(hostport, what)
    return Uri(
        scheme,
        user=user,
        password=password,
        host=host,
        port=port,
        params=_uri_params(params_text, what),
        headers=headers,
    )


def _uri_params(text: str, what: str) -> Params:
    if not text:
        return Params()
    items: list[tuple[str, str | None]] = []
    for item in text.split(";"):
        name, eq, value = item.partition("=")
        if not name:
            raise SipParseError(f"{what}: empty URI parameter")
        items.append(
            (
                unescape(name, _PARAM_CHARS, what),
                unescape(value, _PARAM_CHARS, what) if eq else None,
            )
        )
    return Params(items)
