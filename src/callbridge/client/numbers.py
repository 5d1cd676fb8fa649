"""Phone numbers and caller URIs: seed 002's ``cleanPhoneNumber``, ``formatNumber`` and
``getCallerInfo``, as pure functions (also on :class:`~callbridge.client.Phone`).

::

    clean_phone_number("1800CALFEDE")        # "18002253333"
    format_number("9234567890")              # "1 (923) 456-7890"
    get_caller_info("sip:bob@10.0.0.1:5060;transport=tcp")
    # CallerInfo(protocol="sip", caller_id="bob", domain="10.0.0.1", port=5060,
    #            parameters={"transport": "tcp"}, display_name="")

Bad arguments raise :class:`~callbridge.client.settings.InvalidArgumentError` (a
:class:`ValueError`); a string that is simply not a phone number makes
:func:`clean_phone_number` return ``None`` (the seed's ``false``).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from callbridge.client.errors import InvalidArgumentError

__all__ = ["CallerInfo", "clean_phone_number", "format_number", "get_caller_info"]

# ITU E.161 keypad letters.
_KEYPAD = str.maketrans(
    {
        **dict.fromkeys("ABC", "2"),
        **dict.fromkeys("DEF", "3"),
        **dict.fromkeys("GHI", "4"),
        **dict.fromkeys("JKL", "5"),
        **dict.fromkeys("MNO", "6"),
        **dict.fromkeys("PQRS", "7"),
        **dict.fromkeys("TUV", "8"),
        **dict.fromkeys("WXYZ", "9"),
    }
)
_SEPARATORS = re.compile(r"[\s\-.()]")
_KEYS = re.compile(r"[0-9A-Za-z*#]+")  # what a keypad can dial (after separators are removed)
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
_NANP = re.compile(r"(?:\+?1)?([0-9]{3})([0-9]{3})([0-9]{4})")


def _require_str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{what} must be a str, not {type(value).__name__}")
    return value


def clean_phone_number(number: str) -> str | None:
    """The digits a keypad would dial for ``number`` (seed 002's ``cleanPhoneNumber``).

    - Letters become their keypad digits (ABC=2, DEF=3, GHI=4, JKL=5, MNO=6, PQRS=7, TUV=8,
      WXYZ=9, either case): ``"1800CALFEDE"`` → ``"18002253333"``.
    - Separators go: spaces, ``-``, ``.``, ``(``, ``)``: ``"1 (123) 123-1234"`` →
      ``"11231231234"``.
    - A leading ``+`` stays, and must be followed by digits only: ``"+1 415 555 1234"`` →
      ``"+14155551234"``.
    - ``*`` and ``#`` stay (service codes such as ``"*69"``, ``"#89"``); ``"911"`` and
      ``"411"`` pass through like any other digits.
    - Email-formatted input is ignored, as the seed says: anything with one ``@`` and no
      spaces (``john@domain.com``, and so ``sip:john@domain.com`` too) is returned unchanged
      apart from surrounding whitespace.

    Returns ``None`` (the seed's ``false``) when ``number`` cannot be a phone number: empty,
    only separators, any other character (``!``, ``,``, ``/``, ``:``, non-ASCII letters, …;
    so ``tel:`` URIs too), ``+`` anywhere but first or followed by ``*``/``#``, or a
    malformed ``@``.

    :raises InvalidArgumentError: ``number`` is not a str.
    """
    text = _require_str(number, "number").strip()
    if _EMAIL.fullmatch(text):
        return text
    plus = text.startswith("+")
    keys = _SEPARATORS.sub("", text[1:] if plus else text)
    if not _KEYS.fullmatch(keys):
        return None
    digits = keys.upper().translate(_KEYPAD)
    if plus:
        return f"+{digits}" if digits.isdigit() else None
    return digits


def format_number(number: str) -> str:
    """``number`` formatted for display (seed 002's ``formatNumber``).

    North American numbers (NANP) get the seed's format: 10 digits, 11 digits starting with
    1, or ``+1`` and 10 digits → ``"1 (923) 456-7890"``. Letters and separators are cleaned
    first (:func:`clean_phone_number`), so ``"1-800-CALFEDE"`` → ``"1 (800) 225-3333"``.
    Area and exchange codes are not checked (the seed's own example is ``1 (123) 123-1234``).

    Anything else is returned cleaned but not reformatted: other lengths (``"911"``,
    ``"5551234"``), international numbers (``"+44 20 7946 0958"`` → ``"+442079460958"``),
    service codes (``"*69"``), and email-formatted input (unchanged).

    :raises InvalidArgumentError: ``number`` is not a str or not a phone number (see
        :func:`clean_phone_number`).
    """
    cleaned = clean_phone_number(number)
    if cleaned is None:
        raise InvalidArgumentError(
            f"not a phone number: {number!r}; use digits, keypad letters, separators "
            "(space - . ( )), a leading + and * or #"
        )
    nanp = _NANP.fullmatch(cleaned)
    if nanp is None:
        return cleaned
    area, exchange, line = nanp.groups()
    return f"1 ({area}) {exchange}-{line}"


@dataclass(frozen=True, slots=True)
class CallerInfo:
    """A caller URI taken apart (seed 002's ``getCallerInfo`` result); see
    :func:`get_caller_info`."""

    protocol: str
    """``"sip"``, ``"sips"``, ``"tel"``, or ``""`` for a bare number or ``user@host``."""
    caller_id: str
    """The user part (``"bob"``, ``"+1111"``) or the tel number; ``""`` for ``sip:host``."""
    domain: str
    """The host (a name, an IPv4 address or a bracketed IPv6 address); ``""`` for tel and
    bare numbers."""
    port: int | None
    """The port if the URI has one."""
    parameters: dict[str, str] = field(default_factory=dict, hash=False)
    """URI parameters (after ``;``), names lower-cased, ``""`` for a flag such as ``;lr``."""
    display_name: str = ""
    """The name of a ``"Bob" <sip:bob@host>`` form, else ``""``."""


_SCHEMES = ("sip", "sips", "tel")
_EXPECTED = (
    "expected sip:user@host[:port][;params], sips:…, tel:+number[;params], "
    '"Name" <sip:…>, or a bare number or user@host'
)
# RFC 3261 §25.1 name-addr: [display-name] "<" addr-spec ">", then header parameters.
_NAME_ADDR = re.compile(
    r'(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<token>[^"<>]*?))\s*<(?P<uri>[^<>]*)>\s*(?P<rest>.*)',
    re.DOTALL,
)
_SCHEME = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*):(?P<rest>.*)", re.DOTALL)
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-_]*[A-Za-z0-9])?(?:\.[A-Za-z0-9\-_]+)*\.?")
_HOSTPORT = re.compile(r"(?P<host>\[[^\]]*\]|[^:\[\]]*)(?::(?P<port>[^:]*))?")
_TEL_SEPARATORS = re.compile(r"[\-.()]")  # RFC 3966 §5.1.1 visual separators
_FORBIDDEN = re.compile(r'[\s<>"]')


def get_caller_info(uri: str) -> CallerInfo:
    """Take a caller URI apart (seed 002's ``getCallerInfo``), e.g. a call's ``from_``.

    - ``"sip:bob@domain.com"`` → protocol ``"sip"``, caller_id ``"bob"``, domain
      ``"domain.com"``, port ``None``; ``sips:`` likewise.
    - ``"sip:bob@10.0.0.1:5060;transport=tcp"`` → port ``5060``, parameters
      ``{"transport": "tcp"}``. A password in the user part (``bob:secret@``) is dropped;
      ``?headers`` are ignored; ``%xx`` escapes in the user part are decoded.
    - ``"tel:+1-415-555-1234;phone-context=x"`` → protocol ``"tel"``, caller_id
      ``"+14155551234"`` (visual separators removed), domain ``""``.
    - ``'"Bob" <sip:bob@x>'`` (or ``Bob <sip:bob@x>``) → display_name ``"Bob"``; header
      parameters after ``>`` (``;tag=…``) are not URI parameters and are ignored.
    - No scheme: ``"+14155551234"`` → protocol ``""``, caller_id the number;
      ``"bob@host"`` → protocol ``""``, caller_id ``"bob"``, domain ``"host"``.

    :raises InvalidArgumentError: ``uri`` is not a str, is empty, has another scheme
        (``http:``, …), no host after ``@``, a port outside 1-65535, or spaces or ``<>"``
        outside a display name.
    """
    text = _require_str(uri, "uri").strip()
    if not text:
        raise InvalidArgumentError(f"the caller URI is empty; {_EXPECTED}")
    display_name = ""
    name_addr = _NAME_ADDR.fullmatch(text)
    if name_addr is not None:
        rest = name_addr["rest"]
        if rest and not rest.startswith(";"):
            raise _bad(uri, f"unexpected {rest!r} after '>'")
        quoted = name_addr["quoted"]
        if quoted is not None:
            display_name = re.sub(r"\\(.)", r"\1", quoted)
        else:
            display_name = " ".join(name_addr["token"].split())
        text = name_addr["uri"].strip()
        if not text:
            raise _bad(uri, "nothing between '<' and '>'")
    if _FORBIDDEN.search(text):
        raise _bad(uri, 'spaces and <>" are only allowed in a display name')
    scheme = _SCHEME.fullmatch(text)
    if scheme is not None:
        protocol = scheme["scheme"].lower()
        if protocol not in _SCHEMES:
            raise _bad(uri, f"unsupported scheme {scheme['scheme']!r}")
        rest = scheme["rest"]
        if protocol == "tel":
            number, params = _split_params(rest)
            return _tel_info(uri, number, params, display_name)
        return _sip_info(uri, protocol, rest, display_name)
    if "@" in text:
        return _sip_info(uri, "", text, display_name)
    number, params = _split_params(text)
    return _tel_info(uri, number, params, display_name, protocol="")


def _bad(uri: object, why: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"not a caller URI: {uri!r}: {why}; {_EXPECTED}")


def _split_params(text: str) -> tuple[str, dict[str, str]]:
    head, *segments = text.split(";")
    params: dict[str, str] = {}
    for segment in segments:
        if segment:
            name, _, value = segment.partition("=")
            params[unquote(name).lower()] = unquote(value)
    return head, params


def _tel_info(
    uri: str, number: str, params: dict[str, str], display_name: str, protocol: str = "tel"
) -> CallerInfo:
    caller_id = _TEL_SEPARATORS.sub("", unquote(number)) if protocol else unquote(number)
    if not caller_id:
        raise _bad(uri, "no number")
    return CallerInfo(protocol, caller_id, "", None, params, display_name)


def _sip_info(uri: str, protocol: str, rest: str, display_name: str) -> CallerInfo:
    # RFC 3261 §19.1.1: [user[:password]@]host[:port][;uri-parameters][?headers]. A user
    # cannot hold a bare "@", so the first one ends the user part.
    userinfo, at, hostpart = rest.partition("@")
    if not at:
        userinfo, hostpart = "", rest
    user = unquote(userinfo.partition(":")[0])
    if at and not user:
        raise _bad(uri, "an empty user before '@'")
    hostport, params = _split_params(hostpart.partition("?")[0])
    match = _HOSTPORT.fullmatch(hostport)
    if match is None:
        raise _bad(uri, f"{hostport!r} is not host[:port]")
    host = match["host"]
    if not host:
        raise _bad(uri, "no host")
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise _bad(uri, f"{host} is not an IPv6 address") from None
    elif not _HOSTNAME.fullmatch(host):
        raise _bad(uri, f"{host!r} is not a host name or IP address")
    port: int | None = None
    if match["port"] is not None:
        if not match["port"].isdigit() or not 1 <= int(match["port"]) <= 65535:
            raise _bad(uri, f"port {match['port']!r} is not a number from 1 to 65535")
        port = int(match["port"])
    return CallerInfo(protocol, user, host, port, params, display_name)
