"""SIP transactions and dialogs (RFC 3261 §12-§17, RFC 6026) between real stacks and raw
sockets on 127.0.0.1, with a small T1 so the timers run in a fraction of a second."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import socket
import time
from collections.abc import AsyncIterator

import pytest

from callbridge.sip import Headers, Request, Response, parse, wire
from callbridge.sip.dialog import Dialog
from callbridge.sip.stack import Incoming, SipStack, Target
from callbridge.sip.transaction import Timers

T1 = 0.02
TIMERS = Timers(t1=T1, t2=0.16, t4=0.2)
pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def stacks() -> AsyncIterator[tuple[SipStack, SipStack]]:
    a, b = SipStack("a.test", timers=TIMERS), SipStack("b.test", timers=TIMERS)
    await a.start("127.0.0.1", 0)
    await b.start("127.0.0.1", 0)
    yield a, b
    await a.stop()
    await b.stop()


def udp_target(stack: SipStack, transport: str = "UDP") -> Target:
    address = stack.transports.local_address(transport)
    assert address is not None
    return Target(transport, *address)


def new_request(method: str, to: Target, call_id: str | None = None) -> Request:
    uri = f"sip:bob@{to.host}:{to.port}"
    return Request(
        method,
        uri,
        Headers(
            [
                ("From", f"<sip:alice@a.test>;tag={wire.new_tag()}"),
                ("To", f"<{uri}>"),
                ("Call-ID", call_id or wire.new_tag()),
                ("CSeq", f"1 {method}"),
                ("Contact", "<sip:alice@127.0.0.1>"),
            ]
        ),
    )


class RawPeer:
    """A UDP socket the test drives by hand: what arrived, when."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    async def recv(self, within: float = 2.0) -> tuple[bytes, float]:
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(self.sock, 65536), within)
        return data, time.monotonic()

    def send(self, data: bytes, to: Target) -> None:
        self.sock.sendto(data, (to.host, to.port))

    def close(self) -> None:
        self.sock.close()


async def test_an_unanswered_udp_request_is_resent_on_the_timer_e_schedule(
    stacks: tuple[SipStack, SipStack],
) -> None:
    a, _ = stacks
    peer = RawPeer()
    try:
        started = time.monotonic()
        answer = asyncio.ensure_future(
            a.request(
                new_request("OPTIONS", Target("UDP", "127.0.0.1", peer.port)),
                Target("UDP", "127.0.0.1", peer.port),
            )
        )
        times: list[float] = []
        while len(times) < 6:
            _, at = await peer.recv()
            times.append(at - started)
        gaps = [round((t2 - t1) / T1) for t1, t2 in itertools.pairwise(times)]
        # §17.1.2.2: T1, 2T1, 4T1, then capped at T2 (= 8 T1 here)
        assert gaps[:4] == [1, 2, 4, 8] or gaps[:4] == [1, 2, 4, 7], (times, gaps)
        final = await asyncio.wait_for(answer, 5)
        assert final.status == 408  # Timer F: 64*T1
        assert time.monotonic() - started == pytest.approx(64 * T1, abs=0.3)
    finally:
        peer.close()


async def test_timer_b_never_fires_once_the_callee_rings(stacks: tuple[SipStack, SipStack]) -> None:
    a, b = stacks

    async def ring_long(incoming: Incoming) -> None:
        b.dialogs.early(incoming, incoming.response(180))
        await asyncio.sleep(100 * T1)  # far past Timer B (64*T1)
        b.dialogs.accept(incoming, incoming.response(200))

    b.on("INVITE", ring_long)
    provisional: list[int] = []
    final, dialog = await a.dialogs.invite(
        new_request("INVITE", udp_target(b)), udp_target(b),
        on_provisional=lambda r: provisional.append(r.status),
    )  # fmt: skip
    assert (provisional, final.status) == ([100, 180], 200) or final.status == 200
    assert 180 in provisional
    assert dialog is not None
    await asyncio.sleep(0.05)
    assert len(b.dialogs) == 1
    served = next(iter(b.dialogs.dialogs.values()))
    await asyncio.wait_for(served.acked.wait(), 2)
    assert (await dialog.bye()).status == 200
    assert len(a.dialogs) == len(b.dialogs) == 0


async def test_cancel_of_a_ringing_invite_gets_487(stacks: tuple[SipStack, SipStack]) -> None:
    a, b = stacks
    cancelled = asyncio.Event()

    async def ring(incoming: Incoming) -> None:
        b.dialogs.early(incoming, incoming.response(180))
        await incoming.cancelled.wait()
        cancelled.set()

    b.on("INVITE", ring)
    invite = new_request("INVITE", udp_target(b))
    rang = asyncio.Event()
    flow = await a.resolve(udp_target(b))
    task = asyncio.ensure_future(
        a.dialogs.invite(
            invite, flow, on_provisional=lambda r: rang.set() if r.status == 180 else None
        )
    )
    await asyncio.wait_for(rang.wait(), 2)
    a.cancel(invite, flow, 'SIP;cause=200;text="Call completed elsewhere"')
    final, dialog = await asyncio.wait_for(task, 3)
    assert final.status == 487 and dialog is None
    assert cancelled.is_set()


async def test_a_client_that_never_acks_gets_the_2xx_resent_then_a_bye(
    stacks: tuple[SipStack, SipStack],
) -> None:
    _, b = stacks
    byes: list[float] = []

    async def answer(incoming: Incoming) -> None:
        b.dialogs.accept(incoming, incoming.response(200))

    b.on("INVITE", answer)
    peer = RawPeer()
    try:
        invite = new_request("INVITE", udp_target(b))
        invite.headers.add(
            "Via", f"SIP/2.0/UDP 127.0.0.1:{peer.port};branch={wire.new_branch()};rport"
        )
        invite.headers.set("Contact", f"<sip:alice@127.0.0.1:{peer.port}>")
        peer.send(invite.to_bytes(), udp_target(b))
        oks = 0
        started = time.monotonic()
        while True:
            data, at = await peer.recv(3)
            message = parse(data)
            if isinstance(message, Response) and message.status == 200:
                oks += 1
            elif isinstance(message, Request) and message.method == "BYE":
                byes.append(at - started)
                reply = message.response(200)
                peer.send(reply.to_bytes(), udp_target(b))
                break
        assert oks >= 5  # T1, 2T1, 4T1, T2, T2, ... until 64*T1 (§13.3.1.4)
        assert byes[0] == pytest.approx(64 * T1, abs=0.4)
        await asyncio.sleep(0.05)
        assert len(b.dialogs) == 0
    finally:
        peer.close()


async def test_a_retransmitted_invite_is_absorbed(stacks: tuple[SipStack, SipStack]) -> None:
    _, b = stacks
    seen: list[Incoming] = []
    release = asyncio.Event()

    async def slow(incoming: Incoming) -> None:
        seen.append(incoming)
        await release.wait()
        incoming.respond(486)

    b.on("INVITE", slow)
    peer = RawPeer()
    try:
        invite = new_request("INVITE", udp_target(b))
        invite.headers.add("Via", f"SIP/2.0/UDP 127.0.0.1:{peer.port};branch={wire.new_branch()}")
        for _ in range(3):
            peer.send(invite.to_bytes(), udp_target(b))
        statuses = [parse((await peer.recv())[0]) for _ in range(3)]
        assert [s.status for s in statuses if isinstance(s, Response)] == [100, 100, 100]
        release.set()
        final = parse((await peer.recv())[0])
        assert isinstance(final, Response) and final.status == 486
        assert len(seen) == 1
        # Timer G resends the 486 until the ACK (§17.2.1)
        again = parse((await peer.recv())[0])
        assert isinstance(again, Response) and again.status == 486
        peer.send(wire.ack_for_failure(invite, final).to_bytes(), udp_target(b))
    finally:
        peer.close()


async def test_both_sides_reinvite_at_once_one_gets_491_and_retries(
    stacks: tuple[SipStack, SipStack],
) -> None:
    a, b = stacks
    a_dialogs: list[Dialog] = []

    async def answer(incoming: Incoming) -> None:
        dialog = b.dialogs.accept(incoming, incoming.response(200))
        dialog.on_request = slow_reinvite(dialog)

    def slow_reinvite(dialog: Dialog):  # type: ignore[no-untyped-def]
        async def handle(incoming: Incoming) -> None:
            await asyncio.sleep(5 * T1)  # keeps b's re-INVITE window open
            dialog.send_2xx(incoming, incoming.response(200))

        return handle

    b.on("INVITE", answer)
    final, dialog = await a.dialogs.invite(new_request("INVITE", udp_target(b)), udp_target(b))
    assert final.status == 200 and dialog is not None
    a_dialogs.append(dialog)
    dialog.on_request = slow_reinvite(dialog)
    theirs = next(iter(b.dialogs.dialogs.values()))
    await asyncio.wait_for(theirs.acked.wait(), 2)
    ours_task = asyncio.ensure_future(dialog.request("INVITE"))
    theirs_task = asyncio.ensure_future(theirs.request("INVITE"))
    ours, their = await asyncio.wait_for(asyncio.gather(ours_task, theirs_task), 10)
    assert (ours.status, their.status) == (200, 200)  # both went through after a 491
    await dialog.bye()


async def test_options_gets_200_with_allow_and_unknown_methods_501(
    stacks: tuple[SipStack, SipStack],
) -> None:
    a, b = stacks
    reply = await a.request(new_request("OPTIONS", udp_target(b)), udp_target(b))
    assert reply.status == 200
    assert (
        "INVITE" in (reply.headers.get("Allow") or "")
        and reply.headers.get("Accept") == "application/sdp"
    )
    reply = await a.request(new_request("FROB", udp_target(b)), udp_target(b))
    assert reply.status == 501
    reply = await a.request(new_request("MESSAGE", udp_target(b)), udp_target(b))
    assert reply.status == 405


async def test_a_draining_stack_refuses_new_invites_with_503_retry_after(
    stacks: tuple[SipStack, SipStack],
) -> None:
    """A drain, or a database backlog (a full spool), refuses with its own reason phrase."""
    a, b = stacks
    for why in ("server draining", "database backlog"):
        b.draining = lambda why=why: (why, 42)
        final, _ = await a.dialogs.invite(new_request("INVITE", udp_target(b)), udp_target(b))
        assert final.status == 503 and final.headers.get("Retry-After") == "42"
        assert final.reason == f"Service Unavailable ({why})"


# Real peers nobody here wrote: SIPp (sip-tester) and sipsak. -----------------------------------
@pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (sip-tester) is not installed")
@pytest.mark.parametrize("transport", ["u1", "t1"])
async def test_sipp_uac_calls_are_answered_acked_and_hung_up(transport: str) -> None:
    """SIPp's built-in ``uac`` scenario: INVITE, 100/180 optional, 200, ACK, BYE, 200 —
    three calls, over UDP and over TCP; SIPp exits 0 only when every call succeeded."""
    stack = SipStack("b.test")  # RFC 3261 timers: SIPp runs in real time
    await stack.start("127.0.0.1", 0)
    invites: list[str] = []

    async def answer(incoming: Incoming) -> None:
        invites.append(incoming.request.call_id)
        stack.dialogs.accept(incoming, incoming.response(200))

    stack.on("INVITE", answer)
    _, port = stack.transports.local_address("UDP") or ("", 0)
    try:
        sipp = await asyncio.create_subprocess_exec(
            "sipp", "-sn", "uac", f"127.0.0.1:{port}", "-s", "bob", "-t", transport,
            "-m", "3", "-r", "10", "-d", "100", "-i", "127.0.0.1", "-p", "0",
            "-timeout", "20s", "-timeout_error",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(sipp.communicate(), 30)
        assert sipp.returncode == 0, err.decode(errors="replace")[-2000:]
        assert len(set(invites)) == 3
        assert len(stack.dialogs) == 0  # every BYE ended its dialog
    finally:
        await stack.stop()


@pytest.mark.skipif(shutil.which("sipsak") is None, reason="sipsak is not installed")
async def test_sipsak_options_gets_200() -> None:
    stack = SipStack("b.test")
    await stack.start("127.0.0.1", 0)
    _, port = stack.transports.local_address("UDP") or ("", 0)
    try:
        sipsak = await asyncio.create_subprocess_exec(
            "sipsak", "-s", f"sip:bob@127.0.0.1:{port}", "-H", "127.0.0.1", "-vv",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(sipsak.communicate(), 20)
        text = out.decode(errors="replace")
        assert sipsak.returncode == 0, text  # sipsak: 0 = a 2xx came
        assert "SIP/2.0 200 OK" in text and "Allow: INVITE" in text
    finally:
        await stack.stop()


async def test_a_forked_second_2xx_is_acked_then_ended_with_bye(
    stacks: tuple[SipStack, SipStack],
) -> None:
    """§13.2.2.4: two 2xx with different To tags (a fork): each is ACKed; the first is the
    call, the extra one gets BYE."""
    a, _ = stacks
    peer = RawPeer()
    a_target = udp_target(a)
    try:
        to = Target("UDP", "127.0.0.1", peer.port)
        call = asyncio.ensure_future(a.dialogs.invite(new_request("INVITE", to), to))
        invite = parse((await peer.recv())[0])
        assert isinstance(invite, Request) and invite.method == "INVITE"
        for tag in ("first", "second"):
            ok = invite.response(200, to_tag=tag)
            ok.headers.set("Contact", f"<sip:{tag}@127.0.0.1:{peer.port}>")
            peer.send(ok.serialize(), a_target)
        final, dialog = await asyncio.wait_for(call, 3)
        assert final.status == 200 and dialog is not None and dialog.remote_tag == "first"
        got: list[tuple[str, str]] = []
        while not any(m == "BYE" for m, _ in got):
            message = parse((await peer.recv())[0])
            assert isinstance(message, Request)
            got.append((message.method, message.to_tag or ""))
            if message.method == "BYE":
                peer.send(message.response(200).serialize(), a_target)
        assert ("ACK", "first") in got and ("ACK", "second") in got
        assert [t for m, t in got if m == "BYE"] == ["second"]
        assert got.index(("ACK", "second")) < got.index(("BYE", "second"))
        assert dialog.state.value == "confirmed"
    finally:
        peer.close()
