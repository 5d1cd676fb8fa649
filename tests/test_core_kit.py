"""The kit of the core's tests (tests/core_world.py) kept honest, and the rule that the core
speaks in typed facts: nothing under ``callbridge/core`` builds a wire message or calls a
device's ``send``."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import callbridge.core
from core_world import ANY, World, open_world, ringing


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with open_world() as w:
        yield w


async def test_a_placed_call_tells_the_caller_trying_answer_candidates_ringing(
    world: World,
) -> None:
    alice, bob = world.phone("alice"), world.phone("bob")
    out = await world.call(alice, "bob", "c1")
    assert alice.wire == [
        {"type": "call.trying", "req_id": "c1", "call_id": out, "media_type": "audio"},
        {"type": "sdp.answer", "call_id": out, "sdp": ANY},
        *ringing(out),
        {"type": "call.ringing", "call_id": out, "ringback": True},
    ]
    inc = bob.last("call.incoming")["call_id"]
    assert bob.wire == [
        {
            "type": "call.incoming",
            "call_id": inc,
            "from": "200",
            "from_name": "Alice",
            "to": "bob",
            "sdp": ANY,
            "media_type": "audio",
        },
        *ringing(inc),
    ]


def test_nothing_under_core_builds_a_wire_message_or_sends_one() -> None:
    wire = re.compile(r"""\.send\(|["']type["']\s*:""")
    found = [
        f"{path.name}:{n}: {line.strip()}"
        for path in sorted(Path(callbridge.core.__file__).parent.glob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if wire.search(line)
    ]
    assert found == []
