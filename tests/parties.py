"""Softphone parties for end-to-end tests: each sends its own tone and records what it hears.

Each party sends its own tone (alice 440 Hz, bob 1000 Hz, carol 1400 Hz) so what a party hears
tells exactly whose audio reached it. The ``party`` fixture (conftest.py) makes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from callbridge.client import BufferSink, Call, Phone, ToneSource
from callbridge.testing import tone_level_db
from callbridge.testing.server import ServerUser

ALICE, BOB, CAROL = 440.0, 1000.0, 1400.0
HEARD = -35.0  # dBFS: a tone at this level or more is clearly there (sources send ~-13 dBFS)
SILENT = -60.0  # below this, nothing of that tone arrived
# In a conference mix a tone that does not reach a party measures below this. Looser than
# SILENT: Opus coding (32 kbit/s) of a mix of tones leaves intermodulation products at other
# frequencies (e.g. 1400 - 440 = 960 Hz next to bob's 1000 Hz) measured up to about -49 dBFS,
# while a tone that does arrive measures about -15 dBFS: 30 dB apart either way.
ABSENT = -45.0
POLL = 0.02  # seconds between two looks of `until`

T = TypeVar("T")


async def until(probe: Callable[[], T | None], within: float = 5.0) -> T:
    """Poll ``probe`` until it returns something true, and return that: for state that has no
    event to wait on (a far side's call state, a counter). Prefer an event where there is one.

    :raises TimeoutError: nothing true within ``within`` seconds.
    """
    async with asyncio.timeout(within):
        while not (found := probe()):  # noqa: ASYNC110 (polling is the point here)
            await asyncio.sleep(POLL)
    return found


async def until_async(probe: Callable[[], Awaitable[T | None]], within: float = 5.0) -> T:
    """:func:`until` for a probe that must await (a database read)."""
    async with asyncio.timeout(within):
        while not (found := await probe()):  # noqa: ASYNC110 (polling is the point here)
            await asyncio.sleep(POLL)
    return found


async def level(sink: BufferSink, freq: float, seconds: float = 0.8) -> float:
    """Clear, listen for a moment, and measure ``freq`` in what arrived."""
    sink.clear()
    await asyncio.sleep(seconds + 0.2)  # the measurement: let ``seconds`` of audio arrive
    pcm = sink.samples(seconds)
    if len(pcm) < 48000 * seconds / 2:
        return -120.0  # (almost) nothing arrived: silence
    return tone_level_db(pcm, 48000, freq)


async def hears(p: Party, *tones: float, not_: tuple[float, ...] = ()) -> None:
    """One listen: each of ``tones`` is clearly there, each of ``not_`` is absent."""
    p.sink.clear()
    await asyncio.sleep(1.0)  # the measurement: let 0.8 s of audio arrive (and 0.2 s spare)
    pcm = p.sink.samples(0.8)
    assert len(pcm) > 48000 * 0.4, f"{p.user.name} received almost no audio"
    for tone in tones:
        assert tone_level_db(pcm, 48000, tone) > HEARD, f"{p.user.name} does not hear {tone} Hz"
    for tone in not_:
        assert tone_level_db(pcm, 48000, tone) < ABSENT, f"{p.user.name} hears {tone} Hz"


@dataclass(frozen=True, slots=True)
class PartyUser(ServerUser):
    """A user made by the ``make_user`` fixture: it always has a number."""

    number: str


class Party:
    def __init__(self, phone: Phone, tone: float, user: PartyUser) -> None:
        self.phone = phone
        self.user = user
        self.tone = tone
        self.sink = BufferSink()
        self.incoming: asyncio.Queue[Call] = asyncio.Queue()
        phone.on("incoming", self.incoming.put_nowait)

    async def call(self, destination: str, **kw: Any) -> Call:
        return await self.phone.call(
            destination, source=ToneSource(self.tone), sink=self.sink, **kw
        )

    async def ringing(self) -> Call:
        return await asyncio.wait_for(self.incoming.get(), 5)

    async def answer(self) -> Call:
        call = await self.ringing()
        await call.answer(source=ToneSource(self.tone), sink=self.sink)
        return call


async def connect(caller: Party, callee: Party) -> tuple[Call, Call]:
    out = await caller.call(callee.user.extension)
    inc = await callee.answer()
    await out.wait_for("answered", timeout=5)
    return out, inc
