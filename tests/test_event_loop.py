"""``callbridge serve --event-loop``: the suite's servers run on uvloop (``auto`` picks it when
installed, and every other module's calls, conferences and SIP legs go through it); this
module starts one on asyncio's own loop and checks that a call carries audio both ways there
too, and that ``/healthz`` says which loop each server runs."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest

from callbridge import loops
from callbridge.client import Phone
from callbridge.testing.server import Server, create_user, running
from parties import ALICE, BOB, Party, PartyUser, connect, hears

_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def asyncio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(tmp_path_factory.mktemp("asyncio-loop"), args=["--event-loop", "asyncio"]) as s:
        yield s


@pytest.fixture
async def phones(asyncio_server: Server) -> AsyncIterator[list[Phone]]:
    made: list[Phone] = []
    yield made
    for phone in made:
        await phone.logout()


async def party(server: Server, phones: list[Phone], tone: float) -> Party:
    n = next(_numbers)
    async with server.store() as store:
        user = await create_user(
            store, f"loop{n}", str(4100 + n), number=f"+1415777{n:04d}", ttl=timedelta(hours=1)
        )
    phone = Phone(server.ws_url, user.token)
    await phone.login()
    phones.append(phone)
    number = f"+1415777{n:04d}"
    return Party(phone, tone, PartyUser(user.name, user.extension, number, None, user.token))


def test_auto_means_uvloop_here_and_the_suites_server_runs_on_it(server: Server) -> None:
    assert loops.chosen("auto") == "uvloop"  # uvloop comes with uvicorn[standard]
    assert server.health()["event_loop"] == "uvloop"


async def test_a_call_on_asyncios_own_loop_carries_audio_both_ways(
    asyncio_server: Server, phones: list[Phone]
) -> None:
    assert asyncio_server.health()["event_loop"] == "asyncio"
    alice, bob = (
        await party(asyncio_server, phones, ALICE),
        await party(asyncio_server, phones, BOB),
    )
    out, _ = await connect(alice, bob)
    await hears(alice, BOB, not_=(ALICE,))
    await hears(bob, ALICE, not_=(BOB,))
    await out.hangup()
