"""RFC 3263 server location for trunks given as a domain (``sip.carrier.example``).

A trunk names its transport, so §4.1's transport choice is already made; what is left:

1. an IP literal is used as it is (§4.2);
2. a port other than the transport's default (5060, 5061 for TLS) is explicit: A/AAAA of
   the host only, no NAPTR or SRV (§4.2);
3. otherwise NAPTR of the domain (RFC 3403): the records whose service is the trunk's
   transport (``SIP+D2U`` UDP, ``SIP+D2T`` TCP, ``SIPS+D2T`` TLS) with flag ``s``, lowest
   order then preference, name the SRV to ask; without one, the SRV name is
   ``_sip._udp.DOMAIN`` / ``_sip._tcp.DOMAIN`` / ``_sips._tcp.DOMAIN`` (§4.1);
4. SRV (RFC 2782): targets by priority, and within a priority in an order drawn by weight;
   each target's A and AAAA records (IPv4 first) with the SRV's port;
5. no SRV: A/AAAA of the domain with the trunk's port.

:func:`locate` gives every address in that order; the caller tries them in turn (§4.3: the
next on a transport failure, a timeout or a 503). Lookups go to the resolver given (the
system's configuration by default); a failed lookup is "no records" and resolution goes on
to the next step, and a name with no address at all raises ``OSError`` like the system
resolver. Nothing is cached here beyond the resolver's own cache.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.resolver

__all__ = ["SERVICES", "Located", "locate", "order_srv"]

SERVICES = {"udp": "SIP+D2U", "tcp": "SIP+D2T", "tls": "SIPS+D2T"}
_SRV_PREFIX = {"udp": "_sip._udp.", "tcp": "_sip._tcp.", "tls": "_sips._tcp."}
_DEFAULT_PORT = {"udp": 5060, "tcp": 5060, "tls": 5061}
_LOOKUP_ERRORS = (dns.exception.DNSException, OSError)


@dataclass(frozen=True, slots=True)
class Located:
    """One place to send a trunk's requests: an address, its port, and how it was found."""

    address: str
    port: int
    how: str  # "literal", "a", "srv", "naptr"


def order_srv(records: Sequence[Any], rng: random.Random | None = None) -> list[tuple[str, int]]:
    """(target, port) of SRV ``records`` in RFC 2782 order: lowest priority first; within a
    priority, a weighted random draw (weight 0 records first among equals, drawn rarely).
    A single target of ``.`` means "no service here" (an empty list)."""
    rng = rng or random.Random()
    if len(records) == 1 and str(records[0].target) == ".":
        return []
    ordered: list[tuple[str, int]] = []
    for priority in sorted({r.priority for r in records}):
        group = sorted((r for r in records if r.priority == priority), key=lambda r: r.weight)
        while group:
            total = sum(r.weight for r in group)
            pick = rng.uniform(0, total) if total else 0
            running, index = 0, 0
            for index, record in enumerate(group):  # noqa: B007 (the index is the pick)
                running += record.weight
                if running >= pick:
                    break
            chosen = group.pop(index)
            ordered.append((str(chosen.target).rstrip("."), int(chosen.port)))
    return ordered


async def _query(resolver: Any, name: str, kind: str) -> list[Any]:
    try:
        answer = await resolver.resolve(name, kind, raise_on_no_answer=False)
    except _LOOKUP_ERRORS:
        return []
    return list(answer) if answer.rrset is not None else []


async def _addresses(resolver: Any, name: str) -> list[str]:
    found = [r.address for r in await _query(resolver, name, "A")]
    return found + [r.address for r in await _query(resolver, name, "AAAA")]


async def locate(
    host: str,
    port: int,
    transport: str,
    resolver: Any | None = None,
    rng: random.Random | None = None,
) -> list[Located]:
    """Where a trunk at ``host``:``port`` over ``transport`` (udp, tcp, tls) is, in the order
    to try (see the module docstring). :raises OSError: the name has no address at all."""
    bare = host.strip("[]")
    try:
        ipaddress.ip_address(bare)
        return [Located(bare, port, "literal")]
    except ValueError:
        pass
    resolver = resolver or dns.asyncresolver.Resolver()
    transport = transport.lower()
    found: list[Located] = []
    if port == _DEFAULT_PORT.get(transport, 5060):
        srv_name, how = _SRV_PREFIX.get(transport, "_sip._udp.") + bare, "srv"
        wanted = SERVICES.get(transport, "SIP+D2U")
        naptrs = [
            r
            for r in await _query(resolver, bare, "NAPTR")
            if r.flags.decode().lower() == "s" and r.service.decode().upper() == wanted
        ]
        if naptrs:
            best = min(naptrs, key=lambda r: (r.order, r.preference))
            srv_name, how = str(best.replacement).rstrip("."), "naptr"
        for target, srv_port in order_srv(await _query(resolver, srv_name, "SRV"), rng):
            found += [Located(a, srv_port, how) for a in await _addresses(resolver, target)]
        if found:
            return found
    found = [Located(a, port, "a") for a in await _addresses(resolver, bare)]
    if not found:
        raise OSError(f"{bare}: no NAPTR, SRV, A or AAAA record gives an address")
    return found
