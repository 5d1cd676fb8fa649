"""An attended transfer whose target rejects busy at once resumes the original call, every time
(seed 001: "If the consultation call fails (busy, no-answer), the original call is
automatically resumed"): a loop against the real server.

Issue 9 measured 7 failures in 12 tries: the consultation's ``call.ringing`` and
``call.ended {busy}`` arrived back to back, the SDK returned the already ended consultation
from ``attended_transfer`` and never resumed the first call. The deterministic test of the
server's side is in test_core_races.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

from callbridge.errors import RemoteError
from parties import ALICE, BOB, connect

TRIES = 10


async def test_a_consultation_rejected_busy_at_once_resumes_the_call_every_time(
    party: Any, raw: Any, make_user: Any
) -> None:
    alice, bob = await party(ALICE), await party(BOB)
    carol_user = await make_user()
    carol = await raw()  # rejects each call the moment it arrives, with no SDK in between
    await carol.login(carol_user.token)

    async def reject_busy() -> None:
        while True:
            incoming = await carol.expect("call.incoming", within=60)
            await carol.send(
                {"type": "call.reject", "call_id": incoming["call_id"], "reason": "busy"}
            )

    rejecter = asyncio.create_task(reject_busy())
    to_bob, from_alice = await connect(alice, bob)
    try:
        for _ in range(TRIES):
            try:
                consult = await from_alice.attended_transfer(carol_user.extension)
            except RemoteError as exc:  # it ended before it was placed
                assert exc.code == "busy"
            else:
                assert (await consult.wait_for("ended", timeout=5)).data["reason"] == "busy"
            await from_alice.wait_for("resumed", timeout=3)
            assert from_alice.state == "active"
            assert (await to_bob.wait_for("resumed", timeout=3)).data["by"] == "remote"
    finally:
        rejecter.cancel()
    await to_bob.hangup()
