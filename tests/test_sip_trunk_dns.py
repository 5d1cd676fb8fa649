"""RFC 3263 location of trunks given as a domain (callbridge.sip.trunk_dns), with dnspython's
resolver asking a tiny DNS server on 127.0.0.1 (answers built with dnspython from a dict):
no query leaves the machine. What the server subprocess resolves is not tested here (it uses
the system's resolver configuration)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import dns.asyncresolver
import dns.message
import dns.rdatatype
import dns.rrset
import pytest

from callbridge.sip.trunk_dns import Located, locate, order_srv

ZONE = {
    ("carrier.test.", "NAPTR"): [
        '20 10 "s" "SIP+D2T" "" _sip._tcp.carrier.test.',
        '10 10 "s" "SIP+D2U" "" _sip._udp.carrier.test.',
    ],
    ("_sip._udp.carrier.test.", "SRV"): [
        "20 0 5080 b.carrier.test.",
        "10 0 5070 a.carrier.test.",
    ],
    ("_sips._tcp.carrier.test.", "SRV"): ["10 0 5061 a.carrier.test."],
    ("a.carrier.test.", "A"): ["127.0.0.5"],
    ("b.carrier.test.", "A"): ["127.0.0.6"],
    ("b.carrier.test.", "AAAA"): ["::1"],
    ("plain.test.", "A"): ["127.0.0.7"],
    ("carrier.test.", "A"): ["127.0.0.8"],
}


@dataclass
class TinyDns(asyncio.DatagramProtocol):
    """Answers from ``ZONE`` (NOERROR and no answer for anything else); logs the questions."""

    asked: list[tuple[str, str]] = field(default_factory=list)
    transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        query = dns.message.from_wire(data)
        reply = dns.message.make_response(query)
        question = query.question[0]
        kind = dns.rdatatype.to_text(question.rdtype)
        name = question.name.to_text().lower()
        self.asked.append((name, kind))
        texts = ZONE.get((name, kind))
        if texts:
            reply.answer.append(dns.rrset.from_text_list(question.name, 60, "IN", kind, texts))
        self.transport.sendto(reply.to_wire(), addr)


@pytest.fixture
async def dns_server() -> AsyncIterator[tuple[TinyDns, Any]]:
    loop = asyncio.get_running_loop()
    transport, server = await loop.create_datagram_endpoint(TinyDns, local_addr=("127.0.0.1", 0))
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = transport.get_extra_info("sockname")[1]
    resolver.lifetime = 2.0
    yield server, resolver
    transport.close()


async def test_naptr_then_srv_by_priority_then_each_targets_addresses(
    dns_server: tuple[TinyDns, Any],
) -> None:
    server, resolver = dns_server
    found = await locate("carrier.test", 5060, "udp", resolver)
    assert found == [
        Located("127.0.0.5", 5070, "naptr"),
        Located("127.0.0.6", 5080, "naptr"),
        Located("::1", 5080, "naptr"),
    ]
    assert server.asked[:2] == [("carrier.test.", "NAPTR"), ("_sip._udp.carrier.test.", "SRV")]


async def test_no_naptr_for_the_transport_uses_its_srv_name_and_then_a_records(
    dns_server: tuple[TinyDns, Any],
) -> None:
    server, resolver = dns_server
    # TLS: no SIPS+D2T NAPTR, so the SRV name is _sips._tcp.DOMAIN (RFC 3263 §4.1).
    assert await locate("carrier.test", 5061, "tls", resolver) == [
        Located("127.0.0.5", 5061, "srv")
    ]
    # Neither NAPTR nor SRV: A/AAAA with the trunk's port.
    assert await locate("plain.test", 5060, "tcp", resolver) == [Located("127.0.0.7", 5060, "a")]
    # An explicit port: A/AAAA only (§4.2), no NAPTR or SRV asked.
    server.asked.clear()
    assert await locate("carrier.test", 5090, "udp", resolver) == [Located("127.0.0.8", 5090, "a")]
    assert {kind for _, kind in server.asked} == {"A", "AAAA"}


async def test_literals_need_no_lookup_and_unknown_names_say_why(
    dns_server: tuple[TinyDns, Any],
) -> None:
    server, resolver = dns_server
    assert await locate("[::1]", 5060, "udp", resolver) == [Located("::1", 5060, "literal")]
    assert not server.asked
    with pytest.raises(OSError, match="no NAPTR, SRV, A or AAAA record"):
        await locate("nowhere.test", 5060, "udp", resolver)


def test_srv_order_is_by_priority_then_drawn_by_weight() -> None:
    @dataclass
    class Srv:
        priority: int
        weight: int
        port: int
        target: str

    records = [Srv(20, 0, 1, "c."), Srv(10, 90, 2, "a."), Srv(10, 10, 3, "b.")]
    draws = [order_srv(records, random.Random(seed)) for seed in range(200)]
    assert all(d[-1] == ("c", 1) for d in draws)  # priority 20 always last
    first_a = sum(d[0] == ("a", 2) for d in draws)
    assert 150 < first_a < 200, first_a  # weight 90 of 100: first about 9 times in 10
    assert order_srv([Srv(0, 0, 0, ".")]) == []  # "no service here" (RFC 2782)
