"""ICE settings for aiortc peer connections: which addresses, which servers, which policy.

aioice picks the host addresses itself (every interface but loopback) and aiortc has no
switch for IPv6 or a ``"none"`` transport policy, so :func:`restrict_ice_addresses` replaces
aioice's address list (process-wide) and :func:`set_ice_policy` configures a connection's
aioice objects directly. The server's media plane and the SDK both use these.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any

import aioice
import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer

__all__ = ["restrict_ice_addresses", "rtc_configuration", "set_ice_policy"]

_ice_addresses: list[str] | None = None
_original_get_host_addresses = aioice.ice.get_host_addresses


def _restricted_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    assert _ice_addresses is not None
    return [
        a
        for a in _ice_addresses
        if (use_ipv4 and ipaddress.ip_address(a).version == 4)
        or (use_ipv6 and ipaddress.ip_address(a).version == 6)
    ]


def restrict_ice_addresses(addresses: Sequence[str] | None) -> None:
    """Gather ICE host candidates only on ``addresses`` (``None`` restores aioice's default).

    aioice has no option for this and leaves loopback out of its own list, so its
    ``get_host_addresses`` is replaced process-wide. Loopback addresses are allowed here.
    """
    global _ice_addresses
    if addresses is None:
        _ice_addresses = None
        aioice.ice.get_host_addresses = _original_get_host_addresses
        return
    for a in addresses:
        ipaddress.ip_address(a)  # ValueError for a name or a typo
    _ice_addresses = list(addresses)
    aioice.ice.get_host_addresses = _restricted_host_addresses


def rtc_configuration(ice_servers: Iterable[dict[str, Any]] = ()) -> RTCConfiguration:
    """An RTCConfiguration with exactly the given ICE servers (none by default: no STUN)."""
    servers = [
        RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
        for s in ice_servers
    ]
    return RTCConfiguration(iceServers=servers)


def set_ice_policy(pc: Any, *, relay_only: bool, no_servers: bool, ipv6: bool) -> None:
    """Restrict what a peer connection's ICE gathers, before its offer or answer is made.

    aiortc's RTCConfiguration has no IPv6 switch and no ``"none"`` transport policy, so the
    existing transports' aioice connections are configured directly: ``relay_only`` gathers
    only TURN candidates (aioice RELAY policy), ``no_servers`` also forgets the STUN/TURN
    servers (nothing is gathered at all), ``ipv6`` False leaves out IPv6 host candidates.
    """
    for transceiver in pc.getTransceivers():
        connection = transceiver.sender.transport.transport.iceGatherer._connection
        if relay_only:
            connection._transport_policy = aioice.TransportPolicy.RELAY
        if no_servers:
            connection.stun_server = connection.turn_server = None
        connection._use_ipv6 = ipv6
