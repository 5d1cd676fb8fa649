"""Find-me/follow-me (issue 16) against the real server: a user's forwarding rules decide how
long their devices ring and where an unanswered call goes.

A module-scoped ``callbridge serve`` with SIP (for the SIPp carrier of the outside-number
steps); each test makes its own users. Callers and callees are aiortc ``Phone``s; where a call
is answered, the caller hears the callee's tone (analysed). Steps are 1-2 s so the suite
stays short.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from callbridge.client import BufferSink, Phone, ToneSource
from callbridge.forwarding import parse_forwarding
from callbridge.testing import tone_level_db
from callbridge.testing.server import Server, create_user, running

TONE = 1200.0
_n = itertools.count(1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(tmp_path_factory.mktemp("followme"), sip_port=True, ring_timeout=6.0) as srv:
        yield srv


@pytest.fixture
async def phones() -> AsyncIterator[list[Phone]]:
    made: list[Phone] = []
    yield made
    for phone in made:
        await phone.logout()


async def _users(server: Server, count: int) -> list[str]:
    names = []
    async with server.store() as store:
        for _ in range(count):
            n = next(_n)
            user = await create_user(store, f"fm{n}", str(7000 + n), ttl=timedelta(hours=1))
            names.append(user.name)
    return names


async def _phone(server: Server, name: str, phones: list[Phone]) -> Phone:
    phone = Phone(server.ws_url, await server.token(name))
    await phone.login()
    phones.append(phone)
    return phone


async def _rules(server: Server, name: str, raw: dict[str, Any]) -> None:
    async with server.store() as store:
        await store.set_forwarding(name, parse_forwarding(raw))


def _answer_with_tone(phone: Phone, answered: list[Any]) -> None:
    async def answer(call: Any) -> None:
        answered.append(call)
        await call.answer(source=ToneSource(TONE), sink=BufferSink())

    phone.on("incoming", answer)


async def _steps_of(server: Server, callee: str, limit: float = 10.0) -> Any:
    async with asyncio.timeout(limit):
        while True:
            async with server.store() as store:
                cdrs = await store.list_cdrs(200)
            for cdr in cdrs:
                if cdr.destination == callee and cdr.ended_at is not None:
                    return cdr
            await asyncio.sleep(0.1)


async def test_a_second_step_rings_another_user_who_answers_and_is_heard(
    server: Server, phones: list[Phone]
) -> None:
    """alice: her devices for 1 s, then bob for 5 s. alice's phone rings and is ignored; bob's
    rings after the first step, answers with a tone, and the caller hears it; the caller got
    ``call.ringing`` once per step."""
    alice, bob, carol = await _users(server, 3)
    await _rules(server, alice, {"steps": [
        {"targets": ["devices"], "seconds": 1}, {"targets": [f"user:{bob}"], "seconds": 5}]})  # fmt: skip
    alice_phone = await _phone(server, alice, phones)
    rung_alice: list[Any] = []
    alice_phone.on("incoming", rung_alice.append)
    answered: list[Any] = []
    _answer_with_tone(await _phone(server, bob, phones), answered)
    caller = await _phone(server, carol, phones)
    sink = BufferSink()
    call = await caller.call(alice, source=ToneSource(440.0), sink=sink)
    ringing: list[Any] = []
    call.on("ringing", lambda: ringing.append(1))
    await call.wait_for("answered", timeout=10)
    await asyncio.sleep(1.0)  # the measurement: bob's tone
    heard = sink.samples(0.8)
    await call.hangup()
    assert len(rung_alice) == 1 and rung_alice[0].end_reason == "no-answer"
    assert len(answered) == 1
    assert len(ringing) >= 1  # the second step's call.ringing (the first may precede on())
    assert tone_level_db(heard, 48000, TONE) > -35.0, "the caller did not hear bob"
