"""The outbound-request policy: which addresses the server may send HTTP requests to.

Media fetches (``POST /v2/media`` with a ``media_url``, URL playbacks, hold audio) and webhook
deliveries go to URLs that users and applications choose. Without a policy a user could make
the server reach what only the server can reach (its loopback, the private network, a cloud
metadata service): server-side request forgery. So, unless the operator lists a target
(``--allow-fetch-from`` / ``--allow-webhooks-to``: host names, IP addresses or CIDR networks):

- only ``http`` and ``https`` URLs are fetched;
- every address a host name resolves to must be public: loopback, private (RFC 1918, RFC 4193
  unique local), link-local (RFC 3927, which holds cloud metadata services; fe80::/10),
  multicast, unspecified (0.0.0.0/8, ::), shared (RFC 6598 CGNAT), reserved and documentation
  ranges are refused, also when written as IPv6 (IPv4-mapped ``::ffff:a.b.c.d``, 6to4, NAT64,
  Teredo). One internal address among the answers refuses the whole name;
- the check runs inside the connection (:class:`GuardedBackend`, an httpcore network backend):
  the name is resolved, the addresses checked, and the socket connected to a checked address
  (TLS still verifies the host name). A DNS answer that changes between a check and a connect
  (DNS rebinding) cannot slip through, because there is no second resolution;
- redirects are followed by :func:`get_following_redirects` itself, at most
  :data:`MAX_REDIRECTS`, each target checked as the first was (a redirect to ``ftp://`` or to
  a loopback address is refused).

A refusal (:class:`OutboundRefused`) says what was refused, why, and which option permits it.
Every other failure (DNS, connection refused, reset, timeout, TLS, a non-2xx answer) is the
caller's to report in one wording that does not tell them apart, so that error texts do not
reveal what listens where; the details go to the log at DEBUG.

    CallbridgeError
    └── OutboundRefused (also an httpx.ConnectError, so HTTP clients treat it as one)
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import ssl
import typing
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cached_property

import httpcore
import httpx

from callbridge import __version__
from callbridge.errors import CallbridgeError

__all__ = [
    "MAX_REDIRECTS",
    "GuardedBackend",
    "GuardedTransport",
    "OutboundPolicy",
    "OutboundRefused",
    "configure",
    "default_ssl_context",
    "get_following_redirects",
    "guarded_client",
    "media_policy",
    "webhook_policy",
    "why_internal",
]

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5  # redirects followed for one fetch (browsers allow 20; a file needs few)
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")  # RFC 1122 3.2.1.3: "this host" (Linux: local)
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # RFC 6598: carrier-grade NAT
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 well-known prefix
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")  # RFC 3879: deprecated, still routed inside


class OutboundRefused(CallbridgeError, httpx.ConnectError):
    """The policy refused a URL or an address: ``str()`` says what, why and how to permit it.

    It is an :class:`httpx.ConnectError` too, so that an HTTP client (the webhook outbox)
    counts it as a failed connection and keeps its message.
    """

    def __init__(self, message: str) -> None:
        httpx.ConnectError.__init__(self, message)
        self.message = message


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (RFC 4291 mapped, RFC 3056 6to4, RFC 6052
    NAT64, RFC 4380 Teredo server), which is where such a packet really goes."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.teredo is not None:
        return ip.teredo[0]
    return None


def why_internal(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public address ("a loopback address", …), ``None`` if it is."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            reason = why_internal(inner)
            return f"{reason} (IPv4 {inner} in IPv6)" if reason is not None else None
    checks: tuple[tuple[bool, str], ...] = (
        (ip.is_unspecified or ip in _THIS_NETWORK, "an unspecified address"),
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_multicast, "a multicast address"),
        (ip in _SHARED, "a shared (carrier-grade NAT) address"),
        (isinstance(ip, ipaddress.IPv6Address) and ip in _SITE_LOCAL, "a site-local address"),
        (ip.is_reserved, "a reserved address"),
        (ip.is_private, "a private address"),
        (not ip.is_global, "not a public address"),
    )
    return next((reason for matched, reason in checks if matched), None)


@dataclass(frozen=True)
class OutboundPolicy:
    """Which URLs and addresses one kind of outbound request may reach.

    ``what`` names the requests in errors ("media URL", "webhook URL"); ``option`` is the
    setting that lists exceptions (``--allow-fetch-from``); ``allow`` its entries: host names
    (any address they resolve to is then accepted), IP addresses or CIDR networks.
    """

    what: str
    option: str
    allow: tuple[str, ...] = ()

    @classmethod
    def for_media(cls, allow: Iterable[str] = ()) -> OutboundPolicy:
        return cls("media URL", "--allow-fetch-from", tuple(allow))

    @classmethod
    def for_webhooks(cls, allow: Iterable[str] = ()) -> OutboundPolicy:
        return cls("webhook URL", "--allow-webhooks-to", tuple(allow))

    def __post_init__(self) -> None:
        _ = self._networks  # a bad entry fails here, when the server starts

    @cached_property
    def _networks(self) -> tuple[IPNetwork, ...]:
        networks: list[IPNetwork] = []
        for entry in self.allow:
            text = entry.strip().strip("[]")
            if not text:
                raise ValueError(f"{self.option}: an empty entry (give a host, IP or network)")
            if "/" in text or _is_ip(text):
                try:
                    networks.append(ipaddress.ip_network(text, strict=False))
                except ValueError as exc:
                    raise ValueError(f"{self.option} {entry!r}: {exc}") from None
        return tuple(networks)

    @cached_property
    def _hosts(self) -> frozenset[str]:
        return frozenset(
            _host_key(e) for e in self.allow if not _is_ip(e.strip().strip("[]")) and "/" not in e
        )

    def host_listed(self, host: str) -> bool:
        """The operator listed this host name (its addresses are not checked)."""
        return _host_key(host) in self._hosts

    def refusal(self, host: str, ip: IPAddress) -> str | None:
        """Why connecting to ``ip`` (the address of ``host``) is refused, or ``None``."""
        ip = _plain(ip)
        if self.host_listed(host) or any(ip in net for net in self._networks):
            return None
        reason = why_internal(ip)
        if reason is None:
            return None
        named = f"{_host_key(host)} is" if _is_ip(_host_key(host)) else f"{host} resolves to {ip},"
        return f"{self.what} refused: {named} {reason}; an operator can allow it with {self.option}"

    def check_url(self, url: httpx.URL | str, *, redirect: bool = False) -> httpx.URL:
        """``url`` as an :class:`httpx.URL` if its scheme and form may be fetched.

        :raises OutboundRefused: not http(s), no host, or credentials in it.
        """
        shown = str(url)[:200]
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL:
            raise OutboundRefused(f"{self.what} refused: {shown!r} is not a valid URL") from None
        via = "a redirect to " if redirect else ""
        if parsed.scheme not in ("http", "https"):
            raise OutboundRefused(
                f"{self.what} refused: {via}{shown} is not an http:// or https:// URL"
            )
        if not parsed.host:
            raise OutboundRefused(f"{self.what} refused: {via}{shown} names no host")
        if parsed.userinfo:
            raise OutboundRefused(
                f"{self.what} refused: {via}a URL with a user name or password in it"
            )
        return parsed

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """The addresses of ``host``, every one allowed.

        :raises OutboundRefused: one of them is internal and not listed.
        :raises OSError: the name does not resolve.
        """
        if _is_ip(host):
            addresses = [ipaddress.ip_address(host)]
        else:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
            addresses = list(dict.fromkeys(ipaddress.ip_address(i[4][0]) for i in infos))
        for ip in addresses:
            reason = self.refusal(host, ip)
            if reason is not None:
                raise OutboundRefused(reason)
        if not addresses:
            raise OSError(f"{host} has no address")
        return addresses


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _plain(ip: IPAddress) -> IPAddress:
    """``ip`` without an IPv6 zone (``fe80::1%eth0``): the zone does not change what it is."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        return ipaddress.IPv6Address(str(ip).split("%", 1)[0])
    return ip


def _host_key(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that connects only to addresses the policy allows.

    It resolves the host itself, checks every address, and connects to a checked address (the
    first that answers), so the address connected to is the address checked. TLS is started
    by httpcore on the returned stream with the URL's host name (SNI and certificate check).
    """

    def __init__(self, policy: OutboundPolicy) -> None:
        self.policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await self.policy.resolve(host, port)
        except OSError as exc:
            raise httpcore.ConnectError(f"{host} does not resolve: {exc}") from exc
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from exc
        failure: Exception | None = None
        for ip in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(ip), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise OutboundRefused(f"{self.policy.what} refused: a Unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, connecting through a :class:`GuardedBackend`.

    httpx does not take a network backend, so the connection pool it builds is replaced by the
    same pool with the guarded backend (no proxy: ``trust_env`` is off for these clients).
    """

    def __init__(
        self,
        policy: OutboundPolicy,
        ssl_context: ssl.SSLContext | None = None,
        *,
        max_connections: int = 4,
        keepalive: int = 0,
    ) -> None:
        """``keepalive``: idle connections kept for reuse (0: each fetch is its own); a kept
        connection was checked by the policy when it was opened, and stays to that origin."""
        context = ssl_context or default_ssl_context()
        super().__init__(verify=context, trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=context,
            max_connections=max_connections,
            max_keepalive_connections=keepalive,
            network_backend=GuardedBackend(policy),
        )


_ssl_context: ssl.SSLContext | None = None


def default_ssl_context() -> ssl.SSLContext:
    """httpx's default verifying context, made once (loading the CA bundle takes a while)."""
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = httpx.create_ssl_context()
    return _ssl_context


def guarded_client(
    policy: OutboundPolicy,
    *,
    max_connections: int = 4,
    keepalive: int = 0,
    **options: typing.Any,
) -> httpx.AsyncClient:
    """An :class:`httpx.AsyncClient` bound by ``policy``: no proxy from the environment, no
    redirect followed by httpx (:func:`get_following_redirects` follows them, checked)."""
    options.setdefault("headers", {"user-agent": f"callbridge/{__version__}"})
    transport = GuardedTransport(policy, max_connections=max_connections, keepalive=keepalive)
    return httpx.AsyncClient(
        transport=transport, trust_env=False, follow_redirects=False, **options
    )


@asynccontextmanager
async def get_following_redirects(
    client: httpx.AsyncClient, policy: OutboundPolicy, url: str | httpx.URL
) -> AsyncIterator[httpx.Response]:
    """``GET url`` streamed, following at most :data:`MAX_REDIRECTS` redirects, each target
    checked by ``policy`` (its scheme here, its addresses when the transport connects).

    The response may have any status; its body is the caller's to read.

    :raises OutboundRefused: a URL or address the policy refuses, or too many redirects.
    :raises httpx.HTTPError: the request failed.
    """
    target = policy.check_url(url)
    for hop in range(MAX_REDIRECTS + 1):
        response = await client.send(client.build_request("GET", target), stream=True)
        location = response.headers.get("location") if response.is_redirect else None
        if location is None:
            try:
                yield response
            finally:
                await response.aclose()
            return
        await response.aclose()
        if hop == MAX_REDIRECTS:
            break
        try:
            joined = target.join(location)
        except httpx.InvalidURL:
            raise OutboundRefused(
                f"{policy.what} refused: a redirect to {location[:200]!r}, not a valid URL"
            ) from None
        target = policy.check_url(joined, redirect=True)
        log.debug("following a redirect to %s", target)
    raise OutboundRefused(f"{policy.what} refused: more than {MAX_REDIRECTS} redirects")


# ------------------------------------------------------------------ the process's policies
_media = OutboundPolicy.for_media()
_webhooks = OutboundPolicy.for_webhooks()


def configure(allow_fetch_from: Iterable[str] = (), allow_webhooks_to: Iterable[str] = ()) -> None:
    """Set the process's policies from the operator's allow-lists (``ServerConfig``'s
    ``allow_fetch_from`` and ``allow_webhooks_to``); the defaults allow no internal address.

    :raises ValueError: an entry that is neither a host name, an IP address nor a network.
    """
    global _media, _webhooks
    _media = OutboundPolicy.for_media(allow_fetch_from)
    _webhooks = OutboundPolicy.for_webhooks(allow_webhooks_to)


def media_policy() -> OutboundPolicy:
    """The policy of media fetches (``--allow-fetch-from``)."""
    return _media


def webhook_policy() -> OutboundPolicy:
    """The policy of webhook deliveries (``--allow-webhooks-to``)."""
    return _webhooks
