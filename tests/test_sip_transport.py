"""SIP transports (RFC 3261 §18, RFC 3581, RFC 5626 §3.5.1) against real sockets on
127.0.0.1: stream framing, keep-alives, rport/received, the 1300-byte rule, 400s for bad
input, TLS with a self-signed certificate, and a real server with SIP turned on."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from callbridge.abuse import SourceGuard
from callbridge.sip import Headers, Request, Response, parse, wire
from callbridge.sip.stack import SipStack, Target
from callbridge.sip.transaction import Timers
from callbridge.testing.server import serve

pytestmark = pytest.mark.timeout(60)
TIMERS = Timers(t1=0.05, t2=0.4, t4=0.5)


@pytest.fixture
async def stack() -> AsyncIterator[SipStack]:
    s = SipStack("b.test", timers=TIMERS)
    await s.start("127.0.0.1", 0)
    yield s
    await s.stop()


def options(port: int, via: str, extra: str = "") -> bytes:
    return (
        f"OPTIONS sip:b.test SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n"
        f"From: <sip:alice@a.test>;tag=1\r\nTo: <sip:b.test>\r\nCall-ID: {wire.new_tag()}\r\n"
        f"CSeq: 1 OPTIONS\r\n{extra}Content-Length: 0\r\n\r\n"
    ).encode()


async def read_response(reader: asyncio.StreamReader) -> Response:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
    message = parse(head)
    assert isinstance(message, Response)
    length = int(message.headers.get("Content-Length") or 0)
    if length:
        await reader.readexactly(length)
    return message


async def test_tcp_messages_split_and_joined_are_framed_by_content_length(
    stack: SipStack,
) -> None:
    _, port = stack.transports.local_address("TCP") or ("", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    one = options(port, "SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bKone")
    two = options(port, "SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bKtwo")
    writer.write(one[:17])  # split mid start line
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.write(one[17:] + two)  # the rest joined to a whole second message
    await writer.drain()
    first, second = await read_response(reader), await read_response(reader)
    assert (first.status, first.branch) == (200, "z9hG4bKone")
    assert (second.status, second.branch) == (200, "z9hG4bKtwo")
    writer.close()


async def test_a_crlf_ping_gets_a_pong_and_the_connection_keeps_serving(
    stack: SipStack,
) -> None:
    _, port = stack.transports.local_address("TCP") or ("", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\r\n\r\n")
    await writer.drain()
    assert await asyncio.wait_for(reader.readexactly(2), 2) == b"\r\n"
    writer.write(options(port, "SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bKafter"))
    assert (await read_response(reader)).status == 200
    writer.close()


async def test_udp_answer_goes_to_the_source_port_with_rport_and_received(
    stack: SipStack,
) -> None:
    _, port = stack.transports.local_address("UDP") or ("", 0)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        # The Via claims another host and port (a phone behind NAT).
        sock.sendto(options(port, "SIP/2.0/UDP 192.0.2.7:5099;branch=z9hG4bKnat;rport"),
                    ("127.0.0.1", port))  # fmt: skip
        message = parse(await asyncio.wait_for(loop.sock_recv(sock, 65536), 3))
        assert isinstance(message, Response) and message.status == 200
        assert message.top_via.received == "127.0.0.1"
        assert message.top_via.rport == sock.getsockname()[1]
    finally:
        sock.close()


async def test_malformed_requests_get_400_naming_the_problem(stack: SipStack) -> None:
    _, port = stack.transports.local_address("UDP") or ("", 0)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        bad = options(port, "SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKbad;rport").replace(
            b"CSeq: 1 OPTIONS", b"CSeq: one OPTIONS"
        )
        sock.sendto(bad, ("127.0.0.1", port))
        answer = await asyncio.wait_for(loop.sock_recv(sock, 65536), 3)
        assert answer.startswith(b"SIP/2.0 400 CSeq: ")  # names the field; echoes it
        sock.sendto(b"SIP/2.0 200 OK\r\n\r\n", ("127.0.0.1", port))  # a bad response: dropped
        sock.sendto(
            options(port, "SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKok;rport"), ("127.0.0.1", port)
        )
        message = parse(await asyncio.wait_for(loop.sock_recv(sock, 65536), 3))
        assert isinstance(message, Response) and message.status == 200
    finally:
        sock.close()


async def test_a_request_over_1300_bytes_to_a_udp_destination_goes_over_tcp(
    stack: SipStack,
) -> None:
    client = SipStack("a.test", timers=TIMERS)
    await client.start("127.0.0.1", 0)
    try:
        _, port = stack.transports.local_address("UDP") or ("", 0)
        target = Target("UDP", "127.0.0.1", port)
        request = Request(
            "OPTIONS",
            f"sip:b.test:{port}",
            Headers([("From", "<sip:a@a.test>;tag=x"), ("To", "<sip:b.test>"),
             ("Call-ID", wire.new_tag()), ("CSeq", "1 OPTIONS"), ("Subject", "x" * 1400)]),
        )  # fmt: skip
        reply = await client.request(request, target)
        assert reply.status == 200
        assert request.top_via.transport == "TCP"
        assert any(t == "TCP" for t, _ in stack.transports.flows)
    finally:
        await client.stop()


def self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_sip_over_tls_with_a_self_signed_certificate(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server = SipStack("b.test", timers=TIMERS)
    await server.start("127.0.0.1", 0, tls_port=0, tls_cert=str(cert), tls_key=str(key))
    client = SipStack("a.test", timers=TIMERS)
    await client.start("127.0.0.1", 0)
    client.tls_client(ssl.create_default_context(cafile=str(cert)))
    try:
        _, port = server.transports.local_address("TLS") or ("", 0)
        request = Request(
            "OPTIONS",
            f"sips:b.test:{port}",
            Headers([("From", "<sips:a@a.test>;tag=x"), ("To", "<sips:b.test>"),
             ("Call-ID", wire.new_tag()), ("CSeq", "1 OPTIONS")]),
        )  # fmt: skip
        reply = await client.request(request, Target("TLS", "127.0.0.1", port))
        assert reply.status == 200 and request.top_via.transport == "TLS"
    finally:
        await client.stop()
        await server.stop()


async def test_a_server_with_sip_on_answers_options_and_one_without_does_not_listen(
    tmp_path: Path,
) -> None:
    async with serve(tmp_path / "on", sip_port=True) as server:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        try:
            via = f"SIP/2.0/UDP 127.0.0.1:{sock.getsockname()[1]};branch=z9hG4bKsrv;rport"
            sock.sendto(options(server.sip_port, via), ("127.0.0.1", server.sip_port))
            message = parse(sock.recv(65536))
            assert isinstance(message, Response) and message.status == 200
            assert "REGISTER" in message.headers.values("Allow")
        finally:
            sock.close()
    assert server.sip_port and "SIP listening" in server.log()


async def test_tcp_connections_per_source_are_capped() -> None:
    stack = SipStack("b.test", timers=TIMERS, guard=SourceGuard(2, 10))
    await stack.start("127.0.0.1", 0)
    _, port = stack.transports.local_address("TCP") or ("", 0)
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
    try:
        third_reader = conns[2][0]
        assert await asyncio.wait_for(third_reader.read(), 3) == b""  # closed at once
        reader, writer = conns[0]
        writer.write(options(port, "SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bKcap"))
        assert (await read_response(reader)).status == 200  # the first two still serve
        assert stack.transports.guard is not None
        assert stack.transports.guard.connections("127.0.0.1") == 2
        writer.close()
        for _ in range(100):  # a closed connection frees its place
            if stack.transports.guard.connections("127.0.0.1") == 1:
                break
            await asyncio.sleep(0.02)
        assert stack.transports.guard.connections("127.0.0.1") == 1
    finally:
        for _, w in conns:
            w.close()
        await stack.stop()
