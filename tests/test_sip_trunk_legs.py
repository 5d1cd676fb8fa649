"""A trunk leg is a SIP leg like a phone's (issue 12): DTMF, hold both ways and a blind
transfer on calls through a SIPp carrier (the ``trunk_server`` of conftest.py, shared with
tests/test_sip_trunks.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from callbridge.client import BufferSink, Phone, ToneSource
from callbridge.testing import tone_level_db
from callbridge.testing.server import Server
from sip_peers import LOOPBACK, missing_tools
from trunk_helpers import (
    TONE,
    InboundSipp,
    add_route,
    add_trunk,
    caller,
    sipp_carrier,
    unique,
)

sipp_only = pytest.mark.skipif(bool(missing_tools()), reason="needs sipp")
OTHER = 700.0  # the transfer target's tone


@sipp_only
async def test_carrier_dtmf_and_hold_reach_the_ws_user_who_then_transfers_the_call(
    trunk_server: Server, tmp_path: Path, phones: list[Phone]
) -> None:
    """carrier_inbound_features.xml for a DID of user A: A answers; the carrier's RFC 4733
    "1" is A's ``dtmf`` event; its re-INVITEs sendonly / sendrecv are A's ``held`` and
    ``resumed`` (by the remote side); A blind-transfers the call to user B, whose phone rings,
    answers and hears its own tone echoed by the carrier; the carrier's BYE ends B's call."""
    a_name, a_phone = await caller(trunk_server, phones)
    b_name, b_phone = await caller(trunk_server, phones)
    number = f"+1555888{unique():04d}"
    async with trunk_server.store() as store:
        await store.add_number(number)
        await store.route_number(number, None, "user", a_name)
        await store.add_trunk(
            name=f"features{unique()}", host="192.0.2.1", options_interval=0,
            inbound_acl=["127.0.0.2/32"],
        )  # fmt: skip
    seen: list[tuple[str, Any]] = []
    a_calls: list[Any] = []
    b_sink = BufferSink()
    b_answered = asyncio.Event()
    resumed = asyncio.Event()
    tasks: list[asyncio.Task[Any]] = []

    def a_incoming(call: Any) -> None:
        a_calls.append(call)
        for kind in ("dtmf", "held", "resumed"):
            call.on(kind, lambda *args, kind=kind: seen.append((kind, args)))
        call.on("resumed", lambda *args: resumed.set())
        tasks.append(asyncio.create_task(call.answer(source=ToneSource(TONE))))

    async def b_answer(call: Any) -> None:
        await call.answer(source=ToneSource(OTHER), sink=b_sink)
        b_answered.set()

    a_phone.on("incoming", a_incoming)
    b_phone.on("incoming", lambda call: tasks.append(asyncio.create_task(b_answer(call))))
    carrier = InboundSipp(
        tmp_path / "features",
        "carrier_inbound_features.xml",
        remote=f"{LOOPBACK}:{trunk_server.sip_port}",
        service=number,
        rtp_echo=True,
        extra=["-i", "127.0.0.2"],
        deadline=25,
    )
    async with carrier:
        await asyncio.wait_for(resumed.wait(), 10)
        await a_calls[0].transfer(b_name)
        await asyncio.wait_for(b_answered.wait(), 5)
        await asyncio.sleep(1.5)  # the measurement: B's tone through the carrier's echo
        heard = b_sink.samples(1.0)
        result = await carrier.wait(15)
    assert result.ok and result.successful == 1, result.explain()
    kinds = [kind for kind, _ in seen]
    assert ("dtmf", ("1",)) in [(k, a[-1:]) for k, a in seen], seen
    assert kinds.index("held") < kinds.index("resumed"), seen
    assert tone_level_db(heard, 48000, OTHER) > -35.0, "B did not hear the carrier's echo"


@sipp_only
async def test_the_ws_caller_holds_and_resumes_a_trunk_call(
    trunk_server: Server, tmp_path: Path, phones: list[Phone]
) -> None:
    """A /ws caller's call through carrier_hold.xml (it answers a hold and a resume): hold
    sends the carrier a re-INVITE with a=sendonly, resume one with a=sendrecv, and the echo
    is heard again after the resume."""
    carrier = sipp_carrier(tmp_path, "carrier_hold.xml")
    trunk = await add_trunk(trunk_server, carrier.port)
    prefix = f"+1555{unique():04d}"
    await add_route(trunk_server, prefix, trunk)
    _, phone = await caller(trunk_server, phones)
    sink = BufferSink()
    async with carrier:
        call = await phone.call(prefix + "01", source=ToneSource(TONE), sink=sink)
        await call.wait_for("answered", timeout=10)
        await call.hold()
        await asyncio.sleep(0.5)
        await call.resume()
        await asyncio.sleep(1.5)  # the measurement: the echo after the resume
        heard = sink.samples(1.0)
        await call.hangup()
        result = await carrier.wait(10)
    assert result.ok and result.successful == 1, result.explain()
    reinvites = result.messages.split("INVITE sip:")[2:]  # after the first INVITE
    assert any("a=sendonly" in m for m in reinvites), "no hold re-INVITE reached the carrier"
    assert tone_level_db(heard, 48000, TONE) > -35.0, "no echo after the resume"
