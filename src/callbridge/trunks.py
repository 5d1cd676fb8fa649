"""SIP trunks, numbers and outbound routes (issue 12): the model the SIP side dials through.

**The contract** (what ``callbridge.sip`` builds on; stable):

- :class:`Trunk` — a carrier or PBX: ``host``/``port``/``transport`` (``udp``, ``tcp``,
  ``tls``), an optional ``outbound_proxy`` (``host[:port]``: requests go there, the Request-URI
  still names ``host``), digest credentials for the carrier's 401/407 challenges (``username``,
  ``auth_username`` — the digest user, ``username`` when None — and the cleartext
  ``password``, which a digest response needs: it is never shown in listings, logs or REST
  answers, see ``docs/security.md``), ``register`` + ``register_expires`` (RFC 3261 §10.2),
  the inbound side (``inbound_acl``: CIDRs an inbound INVITE may come from; and/or
  ``inbound_username``/``inbound_password``: digest credentials the carrier answers our
  challenge with), ``codecs`` (names in preference order, e.g. ``("PCMU", "PCMA")``),
  ``options_interval`` (seconds between OPTIONS health checks, 0: none), ``max_calls`` and
  ``calls_per_minute`` (None: no limit of the trunk's own; a new trunk gets 10 and 60),
  ``send_pai`` and ``privacy`` (RFC 3325: send ``P-Asserted-Identity``; ``Privacy: id``
  when ``privacy == "id"``).
  The server writes ``registration_state`` (:data:`REGISTRATION_STATES`) and ``health``
  (:data:`HEALTH_STATES`) through :meth:`TrunkDirectory.set_registration_state` and
  :meth:`TrunkDirectory.set_health`; ``callbridge trunks list`` and
  ``GET /v2/sip_registration_status`` read them.
- :class:`NumberRoute` — an E.164 number an account owns and where an inbound call to it goes:
  ``target_kind`` ``user`` (rings all the user's devices; ``target_id`` the user name),
  ``application`` (application id: webhooks and REST as a route), ``conference`` (name),
  ``queue`` (name), or None (owned for caller ID only: an inbound call to it is refused 404).
  ``allow_outbound``: a call arriving on this number may be sent on through a trunk (the
  "inbound route that explicitly allows it" of the toll-fraud rule).
- :class:`OutboundRoute` — ``prefix`` (``+`` then 0 to 15 digits; ``+`` alone matches every
  E.164 number) to an ordered tuple of trunk ids, per account.
- :class:`TrunkDirectory` (over the store) — async:

  - ``trunks(account_id=None) -> list[Trunk]``; ``trunk(id) -> Trunk | None``;
  - ``routes_for(destination, account_id) -> list[Trunk]``: the trunks of the account's
    outbound route with the longest prefix matching the E.164 ``destination``, in the route's
    order (failover order); ``[]`` when no route matches. Trunks are returned whatever their
    ``health``: the caller skips ``health == "down"`` ones or tries them last;
  - ``number(e164) -> NumberRoute | None`` (any spelling of the number);
  - ``trunk_for_source(ip) -> Trunk | None``: the trunk whose ``inbound_acl`` holds ``ip``
    (IPv4 or IPv6, an IPv4-mapped IPv6 address counts as its IPv4); the most specific CIDR
    wins, then the oldest trunk;
  - ``set_registration_state(trunk_id, state, detail="")``, ``set_health(trunk_id, health,
    detail="")``.

Before dialling, the SIP side asks :mod:`callbridge.core.tollfraud` (``TollFraudGuard.check``)
and accounts ``started``/``ended``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from callbridge.store.store import Store

__all__ = [
    "DEFAULT_CODECS",
    "DEFAULT_TRUNK_CALLS_PER_MINUTE",
    "DEFAULT_TRUNK_MAX_CALLS",
    "HEALTH_STATES",
    "NUMBER_TARGETS",
    "PRIVACY_VALUES",
    "REGISTRATION_STATES",
    "TRANSPORTS",
    "DialPolicy",
    "NumberRoute",
    "OutboundRoute",
    "Trunk",
    "TrunkDirectory",
    "longest_prefix",
    "parse_acl",
    "source_match",
    "validate_codecs",
    "validate_host",
    "validate_prefix",
    "validate_trunk_name",
]

Transport = Literal["udp", "tcp", "tls"]
TRANSPORTS: tuple[str, ...] = ("udp", "tcp", "tls")
NUMBER_TARGETS: tuple[str, ...] = ("user", "application", "conference", "queue")
PRIVACY_VALUES: tuple[str, ...] = ("none", "id")  # RFC 3325 §9.3 / RFC 3323 §4.2
# "off": the trunk does not register; the registration client writes the others.
REGISTRATION_STATES: tuple[str, ...] = ("off", "registering", "registered", "failed")
HEALTH_STATES: tuple[str, ...] = ("unknown", "up", "down")
DEFAULT_CODECS: tuple[str, ...] = ("PCMU", "PCMA")
KNOWN_CODECS: tuple[str, ...] = ("PCMU", "PCMA", "G722", "opus", "telephone-event")
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}  # RFC 3261 §19.1.2
# What a new trunk gets unless told otherwise (toll-fraud safety on by default; None: no limit).
DEFAULT_TRUNK_MAX_CALLS = 10
DEFAULT_TRUNK_CALLS_PER_MINUTE = 60

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", re.ASCII)
# A DNS name (RFC 1123 labels) or an IPv4 literal; IPv6 literals are checked by ipaddress.
_HOSTNAME = re.compile(
    r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?",
    re.ASCII,
)
_PREFIX = re.compile(r"\+[0-9]{0,15}", re.ASCII)


@dataclass(frozen=True, slots=True)
class Trunk:
    """A carrier or PBX calls go out through and come in from (see the module docstring)."""

    id: str
    account_id: str
    name: str
    host: str
    port: int
    transport: Transport = "udp"
    outbound_proxy: str | None = None
    username: str | None = None
    auth_username: str | None = None
    password: str | None = field(default=None, repr=False)  # never shown: see docs/security.md
    register: bool = False
    register_expires: int = 3600
    inbound_acl: tuple[str, ...] = ()
    inbound_username: str | None = None
    inbound_password: str | None = field(default=None, repr=False)
    codecs: tuple[str, ...] = DEFAULT_CODECS
    options_interval: int = 30
    max_calls: int | None = None
    calls_per_minute: int | None = None
    send_pai: bool = False
    privacy: str = "none"
    registration_state: str = "off"
    registration_detail: str = ""
    registration_updated_at: datetime | None = None
    health: str = "unknown"
    health_detail: str = ""
    health_updated_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def digest_username(self) -> str | None:
        """The user name a digest response to the carrier carries (RFC 3261 §22.2)."""
        return self.auth_username or self.username

    @property
    def has_password(self) -> bool:
        return bool(self.password)

    def allows_source(self, address: str) -> bool:
        """Whether an inbound request from ``address`` passes the trunk's IP ACL."""
        return source_match(self.inbound_acl, address) is not None


@dataclass(frozen=True, slots=True)
class NumberRoute:
    """An E.164 number an account owns, and where inbound calls to it go."""

    e164: str
    account_id: str
    target_kind: str | None = None  # one of NUMBER_TARGETS, or None: caller ID only
    target_id: str | None = None
    allow_outbound: bool = False  # calls arriving here may be sent on through a trunk
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DialPolicy:
    """An account's toll-fraud settings (:mod:`callbridge.core.tollfraud`); an account with
    none stored has these defaults."""

    account_id: str
    allow_prefixes: tuple[str, ...] | None = None  # None: every destination not denied
    deny_prefixes: tuple[str, ...] = ("+1900", "+1976")  # NANP premium-rate ranges
    user_max_calls: int = 2  # a user's (or an inbound number's) concurrent trunk calls
    user_calls_per_minute: int = 10


@dataclass(frozen=True, slots=True)
class OutboundRoute:
    """E.164 destinations starting with ``prefix`` go out through ``trunk_ids``, in order."""

    id: str
    account_id: str
    prefix: str
    trunk_ids: tuple[str, ...]
    name: str = ""
    created_at: datetime | None = None


# validation -----------------------------------------------------------------------------------
def validate_trunk_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"invalid trunk name {name!r}: use 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def validate_host(host: str, what: str = "host") -> str:
    """A DNS name or an IP literal (IPv6 with or without brackets); returned as given, with
    IPv6 literals unbracketed."""
    text = host.strip() if isinstance(host, str) else ""
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        pass
    if not _HOSTNAME.fullmatch(text):
        raise ValueError(
            f"invalid {what} {host!r}: use a DNS name (sip.example.net) or an IP address"
        )
    return text.rstrip(".").lower()


def validate_prefix(prefix: str) -> str:
    """An outbound route prefix: '+' and 0 to 15 digits (spaces and dashes dropped)."""
    text = re.sub(r"[ \-.()]", "", prefix) if isinstance(prefix, str) else ""
    if text and not text.startswith("+"):
        text = "+" + text
    if not _PREFIX.fullmatch(text):
        raise ValueError(
            f"invalid prefix {prefix!r}: use '+' and up to 15 digits, e.g. +1 or +4420; "
            "'+' alone matches every E.164 number"
        )
    return text


def validate_codecs(codecs: Iterable[str]) -> tuple[str, ...]:
    known = {name.lower(): name for name in KNOWN_CODECS}
    result: list[str] = []
    for codec in codecs:
        name = known.get(str(codec).strip().lower())
        if name is None:
            raise ValueError(f"unknown codec {codec!r}: use some of {', '.join(KNOWN_CODECS)}")
        if name not in result:
            result.append(name)
    if not result:
        raise ValueError(f"no codecs: name at least one of {', '.join(KNOWN_CODECS)}")
    return tuple(result)


def parse_acl(entries: Iterable[str]) -> tuple[str, ...]:
    """CIDRs (or bare addresses) in canonical form: "192.0.2.7" is "192.0.2.7/32",
    "2001:db8::/32" stays; host bits set are a mistake worth refusing ("10.0.0.1/8")."""
    result: list[str] = []
    for entry in entries:
        text = str(entry).strip()
        if not text:
            continue
        try:
            network = ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            raise ValueError(
                f"invalid inbound ACL entry {entry!r}: use an address or CIDR such as "
                f"203.0.113.0/24 or 2001:db8::/32 ({exc})"
            ) from None
        if str(network) not in result:
            result.append(str(network))
    return tuple(result)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    bare = text.strip()
    if bare.startswith("[") and bare.endswith("]"):
        bare = bare[1:-1]
    bare = bare.split("%", 1)[0]  # a scope id ("fe80::1%eth0") is not part of the address
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket reports IPv4 peers so
    return address


def source_match(acl: Sequence[str], address: str) -> int | None:
    """The prefix length of the most specific entry of ``acl`` that holds ``address``, or
    None if none does (or ``address`` is not an IP address)."""
    ip = _address(address)
    if ip is None:
        return None
    best: int | None = None
    for entry in acl:
        network = ipaddress.ip_network(entry, strict=False)
        inside = network.version == ip.version and ip in network
        if inside and (best is None or network.prefixlen > best):
            best = network.prefixlen
    return best


def longest_prefix(routes: Iterable[OutboundRoute], destination: str) -> OutboundRoute | None:
    """The route whose prefix is the longest one ``destination`` (E.164) starts with."""
    best: OutboundRoute | None = None
    for route in routes:
        if destination.startswith(route.prefix) and (
            best is None or len(route.prefix) > len(best.prefix)
        ):
            best = route
    return best


class TrunkDirectory:
    """What the SIP side asks about trunks, numbers and routes (see the module docstring).

    Every call reads the store (one short transaction): trunks change rarely and the CLI
    writes them from another process, so nothing is cached that could go stale.
    """

    def __init__(self, store: Store) -> None:
        self._store = store

    async def trunks(self, account_id: str | None = None) -> list[Trunk]:
        return await self._store.list_trunks(account_id)

    async def trunk(self, trunk_id: str) -> Trunk | None:
        return await self._store.find_trunk(trunk_id)

    async def routes_for(self, destination: str, account_id: str) -> list[Trunk]:
        route = longest_prefix(await self._store.list_outbound_routes(account_id), destination)
        if route is None:
            return []
        found = {t.id: t for t in await self._store.list_trunks(account_id)}
        return [found[tid] for tid in route.trunk_ids if tid in found]

    async def number(self, e164: str) -> NumberRoute | None:
        return await self._store.number_route(e164)

    async def trunk_for_source(self, ip: str) -> Trunk | None:
        best: tuple[int, Trunk] | None = None
        for trunk in await self._store.list_trunks(None):  # oldest first (ids are time-ordered)
            length = source_match(trunk.inbound_acl, ip)
            if length is not None and (best is None or length > best[0]):
                best = (length, trunk)
        return None if best is None else best[1]

    async def set_registration_state(self, trunk_id: str, state: str, detail: str = "") -> None:
        await self._store.set_trunk_registration(trunk_id, state, detail)

    async def set_health(self, trunk_id: str, health: str, detail: str = "") -> None:
        await self._store.set_trunk_health(trunk_id, health, detail)
