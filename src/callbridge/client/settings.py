"""The peer-connection settings of a :class:`~callbridge.client.Phone`: ICE servers, ICE
transport policy and IPv6 (seed 002's ``getIceServers``/``setIceServers``/``resetIceServers``,
``…IceTransport``, ``…Ipv6``). They apply to calls created after a change.

What each setting does, exactly, with aiortc 1.16 / aioice 0.13 (the versions pinned):

``ice_servers`` (default: none)
    STUN and TURN servers, as ``{"urls": ..., "username": ..., "credential": ...}``.
    Validated when set (see :meth:`PeerConnectionSettings.validate_ice_servers`). aioice
    uses one STUN and one TURN server per call: the first of each in the list; later ones are
    accepted (a browser would use them) but not contacted.

``ice_transport`` (default ``"all"``)
    ``"all"``: host, server-reflexive (STUN) and relayed (TURN) candidates.

    ``"relay"``: only the relayed candidate from the TURN server. aioice then gathers no host
    and no server-reflexive candidate, hides the relay's related address and ignores remote
    mDNS candidates (RFC 9429 §3.5.3), so every packet of the call goes through TURN. A call
    needs a TURN server in ``ice_servers``: without one there is nothing to gather, so
    :meth:`Phone.call` and :meth:`Call.answer` refuse with :class:`InvalidArgumentError`
    instead of placing a call whose audio cannot connect. Not caught: a TURN server that
    refuses or does not answer. The call is then placed and answered with no candidate and
    carries no audio; neither side's ICE ever fails (aiortc stays ``new``), so nothing ends
    it: check ``call.media.stats()`` or hang up.

    ``"none"``: the seed's third value (``iceTransports: "none"`` of early W3C drafts): no
    candidates at all, no packet sent to any address or ICE server. No call can carry audio
    that way, so calls are refused the same way; the value exists so seed code that sets it
    gets a clear error at the call instead of a silent failure.

``ipv6`` (default ``True``)
    Whether ICE gathers IPv6 host candidates. ``True`` is aioice's (and browsers') behaviour;
    on a loopback server only the server's address family is used anyway
    (``Phone.media_addresses``). ``False`` gathers IPv4 host candidates only; a call whose
    ``media_addresses`` are all IPv6 (a ``ws://[::1]`` server) is then refused.

    (The seed's ``getIpv6`` documents no default. ``False`` would silently break phones of
    IPv6 servers, so the default keeps what the SDK did before this setting existed.)

aiortc reads its ``RTCConfiguration`` when :class:`~callbridge.client.media.CallMedia`
creates the call's transceiver, and that configuration has no IPv6 switch and no ``"none"``,
so :meth:`PeerConnectionSettings.apply` sets the policy on the ICE connection of the call's
transport before it gathers (aiortc's and aioice's private attributes; both are pinned).
"""

from __future__ import annotations

import copy
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Literal, cast, get_args

from callbridge.client.audio import AudioSink, AudioSource
from callbridge.client.errors import InvalidArgumentError
from callbridge.client.media import CallMedia
from callbridge.rtp.webrtc import restrict_ice_addresses, set_ice_policy

__all__ = [
    "DEFAULT_ICE_TRANSPORT",
    "DEFAULT_IPV6",
    "IceTransport",
    "InvalidArgumentError",
    "PeerConnectionSettings",
    "PeerSettingsMethods",
]

IceTransport = Literal["all", "relay", "none"]
"""The ICE transport policies of seed 002's ``setIceTransport``."""

DEFAULT_ICE_TRANSPORT: Final[IceTransport] = "all"
DEFAULT_IPV6: Final = True

_ICE_TRANSPORTS: tuple[str, ...] = get_args(IceTransport)
_SERVER_KEYS = ("urls", "username", "credential")
# RFC 7064 §3.1 (stun), RFC 7065 §3.1 (turn): scheme ":" host [":" port] ["?transport=" ...].
_ICE_URL = re.compile(
    r"(?P<scheme>[A-Za-z]+):(?P<host>\[[^\]]*\]|[^:?\[\]]*)(?::(?P<port>[^?]*))?"
    r"(?:\?(?P<query>.*))?",
    re.DOTALL,
)
_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
_TURN_TRANSPORTS = {"turn": ("udp", "tcp"), "turns": ("tcp",)}  # what aiortc can use
_URL_FORMS = "stun:host[:port], turn:host[:port][?transport=udp|tcp] or turns:host[:port]"


def _fail(what: str, why: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"{what}: {why}")


def _check_url(url: object, where: str) -> str:
    """One ICE server URL, checked; returned with its scheme lower-cased (aiortc only
    recognizes lower case)."""
    what = f"{where}: {url!r}"
    if not isinstance(url, str):
        raise _fail(what, f"a URL is a str such as {_URL_FORMS}")
    match = _ICE_URL.fullmatch(url.strip())
    scheme = match["scheme"].lower() if match else ""
    if match is None or scheme not in ("stun", "stuns", "turn", "turns"):
        raise _fail(what, f"expected {_URL_FORMS}")
    if scheme == "stuns":
        raise _fail(what, "stuns: (STUN over TLS) is not supported by aioice; use stun:")
    host = match["host"]
    if host.startswith("["):
        raise _fail(what, "aiortc cannot use an IPv6 address here; use a host name")
    if not host:
        raise _fail(what, f"no host; expected {_URL_FORMS}")
    if not _HOSTNAME.fullmatch(host):
        raise _fail(what, f"{host!r} is not a host name or IPv4 address")
    port = match["port"]
    if port is not None and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise _fail(what, f"the port must be a number from 1 to 65535, not {port!r}")
    query = match["query"]
    if query is not None:
        allowed = _TURN_TRANSPORTS.get(scheme, ())
        name, _, value = query.partition("=")
        if not allowed:
            raise _fail(what, f"{scheme}: takes no ?{name} (only turn: URLs take ?transport=)")
        if name != "transport" or value.lower() not in allowed:
            raise _fail(what, f"{scheme}: takes ?transport={'|'.join(allowed)} only")
        query = f"transport={value.lower()}"
    return f"{scheme}:{host}" + (f":{port}" if port else "") + (f"?{query}" if query else "")


def _check_server(server: object, index: int) -> dict[str, Any]:
    where = f"ice_servers[{index}]"
    if not isinstance(server, Mapping):
        raise _fail(
            where,
            f"expected a dict with 'urls' (and 'username', 'credential' for TURN), not "
            f"{type(server).__name__}",
        )
    # The seed writes {'url': ...}, the older W3C name: accepted, stored as 'urls'.
    entries = dict(server)
    if "url" in entries:
        if "urls" in entries:
            raise _fail(where, "give 'urls' or the seed's 'url', not both")
        entries["urls"] = entries.pop("url")
    unknown = sorted(str(k) for k in entries if k not in _SERVER_KEYS)
    if unknown:
        raise _fail(where, f"unknown key(s) {', '.join(unknown)}; valid: {', '.join(_SERVER_KEYS)}")
    if "urls" not in entries:
        raise _fail(where, "'urls' is missing")
    urls = entries["urls"]
    if isinstance(urls, str):
        url = _check_url(urls, f"{where}.urls")
        checked: str | list[str] = url
        schemes = [url.partition(":")[0]]
    elif isinstance(urls, Sequence) and urls:
        listed = [_check_url(u, f"{where}.urls[{i}]") for i, u in enumerate(urls)]
        checked = listed
        schemes = [u.partition(":")[0] for u in listed]
    else:
        raise _fail(where, "'urls' must be a URL or a non-empty list of URLs")
    result: dict[str, Any] = {"urls": checked}
    for key in ("username", "credential"):
        value = entries.get(key)
        if value is not None and not isinstance(value, str):
            raise _fail(where, f"{key!r} must be a str, not {type(value).__name__}")
        if value is not None:
            result[key] = value
    if any(s in _TURN_TRANSPORTS for s in schemes) and not (
        result.get("username") and result.get("credential")
    ):
        raise _fail(where, "a TURN server needs a non-empty 'username' and 'credential'")
    return result


class PeerConnectionSettings:
    """ICE servers, ICE transport policy and IPv6 for new calls (see the module docstring).

    Every setter validates and raises :class:`InvalidArgumentError` saying what was wrong
    and what is valid; the previous value is kept then. The getters return copies.
    """

    def __init__(
        self,
        ice_servers: Iterable[Mapping[str, Any]] = (),
        ice_transport: IceTransport = DEFAULT_ICE_TRANSPORT,
        ipv6: bool = DEFAULT_IPV6,
    ) -> None:
        self._ice_servers = self.validate_ice_servers(ice_servers)
        self._ice_transport = self.validate_ice_transport(ice_transport)
        self._ipv6 = self.validate_ipv6(ipv6)

    def __repr__(self) -> str:
        urls = [s["urls"] for s in self._ice_servers]
        return (
            f"PeerConnectionSettings(ice_servers={urls!r}, "
            f"ice_transport={self._ice_transport!r}, ipv6={self._ipv6!r})"
        )

    # ------------------------------------------------------------------------------------------
    # validation

    @staticmethod
    def validate_ice_servers(servers: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """``servers`` checked and normalized: each a dict with ``urls`` (one URL or a
        non-empty list) and, for TURN, non-empty ``username`` and ``credential``.

        URLs: ``stun:host[:port]``, ``turn:host[:port][?transport=udp|tcp]``,
        ``turns:host[:port][?transport=tcp]``; the scheme in any case (the seed writes
        ``STUN:``), stored lower-case; host a name or IPv4 address; port 1-65535. The seed's
        key ``url`` is accepted and stored as ``urls``. Refused, because aiortc/aioice would
        silently skip them: ``stuns:``, IPv6 literals, other TURN transports.
        """
        if isinstance(servers, str | bytes | Mapping) or not isinstance(servers, Iterable):
            raise _fail(
                f"ice_servers: {servers!r}",
                "expected a list of servers such as [{'urls': 'stun:stun.example.org'}]",
            )
        return [_check_server(server, i) for i, server in enumerate(servers)]

    @staticmethod
    def validate_ice_transport(policy: object) -> IceTransport:
        """``policy`` if it is ``"all"``, ``"relay"`` or ``"none"``."""
        if isinstance(policy, str) and policy in _ICE_TRANSPORTS:
            return cast(IceTransport, policy)
        raise _fail(f"ice_transport: {policy!r}", f"expected one of {', '.join(_ICE_TRANSPORTS)}")

    @staticmethod
    def validate_ipv6(enabled: object) -> bool:
        """``enabled`` if it is a bool (``1``/``"true"`` are refused, not guessed at)."""
        if not isinstance(enabled, bool):
            raise _fail(f"ipv6: {enabled!r}", "expected True or False")
        return enabled

    # ------------------------------------------------------------------------------------------
    # the settings

    @property
    def ice_servers(self) -> list[dict[str, Any]]:
        """The ICE servers, normalized (key ``urls``, lower-case schemes); a copy."""
        return copy.deepcopy(self._ice_servers)

    @ice_servers.setter
    def ice_servers(self, servers: Iterable[Mapping[str, Any]]) -> None:
        self._ice_servers = self.validate_ice_servers(servers)

    @property
    def ice_transport(self) -> IceTransport:
        """``"all"``, ``"relay"`` or ``"none"``."""
        return self._ice_transport

    @ice_transport.setter
    def ice_transport(self, policy: IceTransport) -> None:
        self._ice_transport = self.validate_ice_transport(policy)

    @property
    def ipv6(self) -> bool:
        """Whether IPv6 host candidates are gathered."""
        return self._ipv6

    @ipv6.setter
    def ipv6(self, enabled: bool) -> None:
        self._ipv6 = self.validate_ipv6(enabled)

    @property
    def has_turn_server(self) -> bool:
        """True if some server has a ``turn:`` or ``turns:`` URL."""
        return any(
            url.startswith(("turn:", "turns:"))
            for server in self._ice_servers
            for url in ([server["urls"]] if isinstance(server["urls"], str) else server["urls"])
        )

    # ------------------------------------------------------------------------------------------
    # applying them to a call

    def check_call(self, media_addresses: Sequence[str] | None = None) -> None:
        """Raise :class:`InvalidArgumentError` if a call made now could not connect its
        audio: ``"none"``, ``"relay"`` without a TURN server, or IPv6 off while every
        address ICE may use (``media_addresses``) is IPv6."""
        if self._ice_transport == "none":
            raise InvalidArgumentError(
                "ice_transport is 'none': no ICE candidates are gathered, so no call can "
                "carry audio; set_ice_transport('all') or ('relay')"
            )
        if self._ice_transport == "relay" and not self.has_turn_server:
            raise InvalidArgumentError(
                "ice_transport is 'relay' but no TURN server is set: the call would have no "
                "ICE candidate; set_ice_servers([{'urls': 'turn:…', 'username': …, "
                "'credential': …}]) or set_ice_transport('all')"
            )
        if (
            not self._ipv6
            and media_addresses
            and all(ipaddress.ip_address(a).version == 6 for a in media_addresses)
        ):
            raise InvalidArgumentError(
                f"ipv6 is off but ICE may only use IPv6 addresses {list(media_addresses)}: "
                "set_ipv6(True), or give the phone IPv4 media_addresses"
            )

    def apply(self, media: CallMedia) -> None:
        """Set the ICE policy and IPv6 on ``media`` (made with :attr:`ice_servers`) before it
        gathers candidates, i.e. before its offer or answer is created.

        aiortc's ``RTCConfiguration`` has no IPv6 switch and no ``"none"``, so this goes
        through :func:`callbridge.rtp.webrtc.set_ice_policy`. It configures the transports
        that exist now: the call's one audio transport (further m-lines are bundled onto it).
        """
        set_ice_policy(
            media.pc,
            relay_only=self._ice_transport != "all",
            no_servers=self._ice_transport == "none",
            ipv6=self._ipv6,
        )


class PeerSettingsMethods:
    """Seed 002's peer-connection settings as methods of the phone (a mixin of
    :class:`~callbridge.client.Phone`): they apply to calls created after a change.

    The phone sets :attr:`_peer_settings` and :attr:`media_addresses`; :meth:`_new_media`
    makes each call's media with them.
    """

    _peer_settings: PeerConnectionSettings
    media_addresses: list[str] | None

    def _new_media(
        self,
        source: AudioSource | None,
        sink: AudioSink | None,
        codecs: Sequence[str] | None,
    ) -> CallMedia:
        """A call's media with these settings (refused if it could not connect)."""
        self._peer_settings.check_call(self.media_addresses)
        if self.media_addresses is not None:
            restrict_ice_addresses(self.media_addresses)
        media = CallMedia(source, sink, self._peer_settings.ice_servers, codecs)
        self._peer_settings.apply(media)
        return media

    @property
    def ice_servers(self) -> list[dict[str, Any]]:
        """The ICE servers of new calls (a copy); assigning validates, like
        :meth:`set_ice_servers`."""
        return self._peer_settings.ice_servers

    @ice_servers.setter
    def ice_servers(self, servers: Iterable[Mapping[str, Any]]) -> None:
        self._peer_settings.ice_servers = servers

    def get_ice_servers(self) -> list[dict[str, Any]]:
        """The STUN/TURN servers new calls use: key ``urls``, schemes lower-case."""
        return self._peer_settings.ice_servers

    def set_ice_servers(self, servers: Iterable[Mapping[str, Any]]) -> None:
        """Use ``servers`` for new calls, e.g. ``[{"urls": "stun:stun.example.org"},
        {"urls": "turn:turn.example.org?transport=tcp", "username": "u", "credential": "p"}]``.

        :raises InvalidArgumentError: a server or URL is malformed, or a TURN server has no
            username or credential (see
            :meth:`~callbridge.client.settings.PeerConnectionSettings.validate_ice_servers`).
        """
        self._peer_settings.ice_servers = servers

    def reset_ice_servers(self) -> None:
        """Back to the default: no ICE servers (not the constructor's ``ice_servers``)."""
        self._peer_settings.ice_servers = ()

    def get_ice_transport(self) -> IceTransport:
        """``"all"``, ``"relay"`` or ``"none"``; see :mod:`callbridge.client.settings`."""
        return self._peer_settings.ice_transport

    def set_ice_transport(self, policy: IceTransport) -> None:
        """Set the ICE transport policy of new calls.

        ``"relay"`` sends all media through the TURN server (new calls need one);
        ``"none"`` gathers nothing, so new calls are refused. Details in
        :mod:`callbridge.client.settings`.

        :raises InvalidArgumentError: ``policy`` is not ``"all"``, ``"relay"`` or ``"none"``.
        """
        self._peer_settings.ice_transport = policy

    def reset_ice_transport(self) -> None:
        """Back to the default, ``"all"``."""
        self._peer_settings.ice_transport = DEFAULT_ICE_TRANSPORT

    def get_ipv6(self) -> bool:
        """Whether new calls gather IPv6 host candidates."""
        return self._peer_settings.ipv6

    def set_ipv6(self, enabled: bool) -> None:
        """Allow (``True``) or forbid (``False``) IPv6 host candidates in new calls.

        :raises InvalidArgumentError: ``enabled`` is not a bool.
        """
        self._peer_settings.ipv6 = enabled

    def reset_ipv6(self) -> None:
        """Back to the default, ``True`` (see :mod:`callbridge.client.settings` for why)."""
        self._peer_settings.ipv6 = DEFAULT_IPV6
