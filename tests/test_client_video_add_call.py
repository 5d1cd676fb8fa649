"""A second call placed with ``Phone.add_call(media_type="video")`` takes its own video source
and sink, as ``Phone.call`` does.

Real server, real aiortc peers on 127.0.0.1. Bob, on an audio call with alice, adds a video
call to carol: bob sends green, carol blue (the default test pattern is grey); the server
relays VP8 without decoding it, so each sink's dominant colour tells whose video arrived.
"""

from __future__ import annotations

from callbridge.client import FrameSink, TestPatternSource, ToneSource
from conftest import MakeParty
from parties import ALICE, BOB, CAROL, HEARD, connect, level
from test_video import BLUE, SIZE, close_to, frames

GREEN = (30, 200, 30)


async def test_a_video_second_call_sends_its_own_source_and_shows_the_far_video_in_its_sink(
    party: MakeParty,
) -> None:
    alice, bob, carol = await party(ALICE), await party(BOB), await party(CAROL)
    to_bob, from_alice = await connect(alice, bob)
    bob_sees, carol_sees = FrameSink(), FrameSink()

    second = await bob.phone.add_call(
        carol.user.extension,
        source=ToneSource(BOB),
        sink=bob.sink,
        media_type="video",
        video_source=TestPatternSource(GREEN),
        video_sink=bob_sees,
    )
    assert from_alice.held_by == "local" and bob.phone.foreground_call is second
    at_carol = await carol.ringing()
    assert at_carol.media_type == "video"
    await at_carol.answer(
        source=ToneSource(CAROL),
        sink=carol.sink,
        media_type="video",
        video_source=TestPatternSource(BLUE),
        video_sink=carol_sees,
    )
    await second.wait_for("answered", timeout=5)
    assert second.media_type == "video"

    # Carol sees bob's green pattern (not the default grey); bob's sink shows carol's blue.
    assert await frames(carol_sees, 15) >= 15 and await frames(bob_sees, 15) >= 15
    assert carol_sees.size == bob_sees.size == SIZE
    assert close_to(carol_sees.dominant_color(), GREEN), carol_sees.dominant_color()
    assert close_to(bob_sees.dominant_color(), BLUE), bob_sees.dominant_color()
    assert await level(carol.sink, BOB) > HEARD

    await second.hangup()
    await at_carol.wait_for("ended", timeout=5)
    await from_alice.wait_for("resumed", timeout=5)  # the first call comes back
    await to_bob.hangup()
