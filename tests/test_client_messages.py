"""The phone's debugging tap: ``phone.on_message`` shows every raw server message.

Against the real server: an observer sees each message of a call, in arrival order and before
the request it answers returns; an observer that raises is logged and stops nothing; one
removed with ``off_message`` sees nothing more.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pytest

from conftest import MakeParty
from parties import ALICE, BOB

PLACED = [
    ("call.trying", True),  # the reply to call.create
    ("sdp.answer", False),
    ("ice.candidate", False),
    ("ice.done", False),
    ("call.ringing", False),
]


async def test_alice_watches_the_messages_of_her_call_and_a_broken_observer_stops_nothing(
    party: MakeParty, caplog: pytest.LogCaptureFixture
) -> None:
    alice, bob = await party(ALICE), await party(BOB)
    seen: list[tuple[str, bool]] = []  # (type, whether it answers a request)

    def broken(msg: Mapping[str, Any]) -> None:
        raise RuntimeError("a bug in a debugging observer")

    def watch(msg: Mapping[str, Any]) -> None:
        seen.append((str(msg["type"]), "req_id" in msg))

    alice.phone.on_message(broken)
    assert alice.phone.on_message(watch) is watch
    with caplog.at_level(logging.ERROR, logger="callbridge.client.session"):
        out = await alice.call(bob.user.extension)
        assert seen == PLACED  # all of it seen by the time call() returned
        inc = await bob.answer()
        await out.wait_for("answered", timeout=5)
        await out.hold()
        alice.phone.off_message(watch)
        await inc.wait_for("held", timeout=5)
        await out.hangup()
        await inc.wait_for("ended", timeout=5)
    assert seen == [*PLACED, ("call.answered", False), ("call.held", True)]
    assert out.state == "ended" and out.end_reason == "hangup"
    failures = [r for r in caplog.records if "message observer" in r.getMessage()]
    assert len(failures) == len(seen) + 1  # every message, call.ended too
