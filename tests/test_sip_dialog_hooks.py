"""The dialog's ``on_ack`` hook (RFC 3261 §13.2.1, §13.3.1.4) between two real stacks on
127.0.0.1: the UAS hears the first ACK of each 2xx, with its body (a delayed offer's answer
comes in it), and not the ACKs a UAC resends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from callbridge.sip import Request
from callbridge.sip.dialog import Dialog
from callbridge.sip.stack import Incoming, SipStack
from callbridge.sip.transaction import Timers
from test_sip_transaction import new_request, udp_target

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def stacks() -> AsyncIterator[tuple[SipStack, SipStack]]:
    timers = Timers(t1=0.02, t2=0.16, t4=0.2)
    a, b = SipStack("a.test", timers=timers), SipStack("b.test", timers=timers)
    await a.start("127.0.0.1", 0)
    await b.start("127.0.0.1", 0)
    yield a, b
    await a.stop()
    await b.stop()


async def test_on_ack_hears_the_first_ack_of_each_2xx_and_not_a_resent_one(
    stacks: tuple[SipStack, SipStack],
) -> None:
    a, b = stacks
    acks: list[Request] = []
    arrived: list[str] = []  # the CSeq of every ACK the UAS dialog got, resent ones too
    heard = asyncio.Queue[Request]()

    def on_ack(request: Request) -> None:
        acks.append(request)
        heard.put_nowait(request)

    def reanswer(dialog: Dialog):  # type: ignore[no-untyped-def]
        async def handle(incoming: Incoming) -> None:
            dialog.send_2xx(incoming, incoming.response(200))

        return handle

    async def answer(incoming: Incoming) -> None:
        dialog = b.dialogs.accept(incoming, incoming.response(200))
        dialog.on_ack = on_ack
        receive = dialog.receive_ack

        def counting(request: Request) -> None:
            arrived.append(request.headers.get("CSeq") or "")
            receive(request)

        dialog.receive_ack = counting  # type: ignore[method-assign]
        dialog.on_request = reanswer(dialog)

    b.on("INVITE", answer)
    final, ours = await a.dialogs.invite(new_request("INVITE", udp_target(b)), udp_target(b))
    assert final.status == 200 and ours is not None
    first = await asyncio.wait_for(heard.get(), 2)
    assert (first.method, first.headers.get("CSeq")) == ("ACK", "1 ACK")
    # The UAC resends its ACK (as on a retransmitted 2xx, §13.2.2.4); the re-INVITE after it
    # goes over the same socket, so by its ACK the resent one has been handled too.
    ours.resend_ack(1)
    assert (await ours.request("INVITE")).status == 200
    second = await asyncio.wait_for(heard.get(), 2)
    assert (second.method, second.headers.get("CSeq")) == ("ACK", "2 ACK")
    assert len(acks) == 2  # the resent ACK of the first 2xx was not handed on
    # The re-INVITE's 200 got its own ACK only: not the first INVITE's again (a strict peer
    # aborts on that; callbridge once sent it when the re-INVITE's 200 came).
    assert arrived == ["1 ACK", "1 ACK", "2 ACK"], arrived
    await ours.bye()
