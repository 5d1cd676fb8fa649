"""Audio <-> video (seed 002): upgrade, accept/reject, downgrade, video calls from the start.

Real server, real aiortc peers on 127.0.0.1. Each party sends a test pattern of its own colour
(alice red, bob blue); the server relays VP8 without decoding it, so a sink's decoded frames,
their size and their dominant colour tell exactly whose video arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from callbridge.client import BufferSink, CallMedia, FrameSink, TestPatternSource, ToneSource
from callbridge.errors import RemoteError
from callbridge.media import negotiation
from callbridge.media.endpoint import Endpoint
from callbridge.rtp.offer_answer import NegotiatedAudio, register_codecs
from conftest import Connect, MakeParty, MakeUser
from parties import ALICE, BOB, HEARD, connect, level, until

RED, BLUE = (220, 30, 30), (30, 30, 220)
SIZE = (320, 240)


def close_to(color: tuple[int, int, int] | None, want: tuple[int, int, int]) -> bool:
    return color is not None and all(abs(a - b) < 40 for a, b in zip(color, want, strict=True))


async def frames(sink: FrameSink, at_least: int, within: float = 10.0) -> int:
    """Wait until ``sink`` has ``at_least`` frames; return how many it has."""
    with contextlib.suppress(TimeoutError):  # the caller asserts on the count
        await until(lambda: sink.frames >= at_least, within)
    return sink.frames


async def no_new_frames(sink: FrameSink, seconds: float = 1.5) -> int:
    """How many frames arrive in ``seconds`` (after a moment for packets in flight)."""
    await asyncio.sleep(0.5)  # packets already sent may still arrive: not counted
    before = sink.frames
    await asyncio.sleep(seconds)  # the measurement
    return sink.frames - before


async def test_upgrade_accepted_then_downgrade(party: MakeParty) -> None:
    alice, bob = await party(ALICE), await party(BOB)
    out, inc = await connect(alice, bob)
    assert out.media_type == inc.media_type == "audio"
    a_sink, b_sink = FrameSink(), FrameSink()

    await out.upgrade(video_source=TestPatternSource(RED), video_sink=a_sink)
    asked = await inc.wait_for("media-modification", timeout=5)
    assert (asked.data["media_type"], asked.data["new_media_type"]) == ("audio", "video")
    assert inc.pending_modification == "video"
    await inc.accept_modification(video_source=TestPatternSource(BLUE), video_sink=b_sink)
    for call in (out, inc):
        changed = await call.wait_for("state-changed", timeout=5)
        assert (changed.data["old_state"], changed.data["new_state"]) == ("audio", "video")
        assert changed.data["accepted"] is True
        assert changed.data["video_send"] and changed.data["video_receive"]
        assert call.media_type == "video"

    # Video both ways, relayed by the server: decoded frames of the far party's colour.
    assert await frames(a_sink, 15) >= 15
    assert await frames(b_sink, 15) >= 15
    assert a_sink.size == b_sink.size == SIZE
    assert close_to(a_sink.dominant_color(), BLUE), a_sink.dominant_color()
    assert close_to(b_sink.dominant_color(), RED), b_sink.dominant_color()
    # The audio path is untouched.
    assert await level(alice.sink, BOB) > HEARD
    assert await level(bob.sink, ALICE) > HEARD

    await out.downgrade()
    asked = await inc.wait_for("media-modification", timeout=5)
    assert asked.data["new_media_type"] == "audio"
    await inc.accept_modification()
    for call in (out, inc):
        changed = await call.wait_for("state-changed", timeout=5)
        assert (changed.data["old_state"], changed.data["new_state"]) == ("video", "audio")
        assert not changed.data["video_send"] and not changed.data["video_receive"]
        assert call.media_type == "audio"
    assert await no_new_frames(a_sink) <= 1
    assert await no_new_frames(b_sink) <= 1
    assert await level(alice.sink, BOB) > HEARD
    assert await level(bob.sink, ALICE) > HEARD
    await out.hangup()
    assert (await inc.wait_for("ended", timeout=5)).data["reason"] == "hangup"


async def test_upgrade_rejected_only_the_requester_sends_video(party: MakeParty) -> None:
    """Seed 002: rejecting an upgrade means only the other peer starts sending her video;
    the peer that rejected keeps sending only his audio."""
    alice, bob = await party(ALICE), await party(BOB)
    out, inc = await connect(alice, bob)
    a_sink, b_sink = FrameSink(), FrameSink()
    in_progress: list[str] = []
    out.on("modification-in-progress", lambda: in_progress.append("alice"))
    inc.on("modification-in-progress", lambda: in_progress.append("bob"))

    await out.upgrade(video_source=TestPatternSource(RED), video_sink=a_sink)
    await inc.wait_for("media-modification", timeout=5)
    await inc.reject_modification(video_sink=b_sink)
    for call, sends, receives in ((out, True, False), (inc, False, True)):
        changed = await call.wait_for("state-changed", timeout=5)
        assert changed.data["accepted"] is False
        assert (changed.data["video_send"], changed.data["video_receive"]) == (sends, receives)
        assert call.media_type == "video"
    assert in_progress == ["alice", "bob"]

    assert await frames(b_sink, 15) >= 15  # alice's video reaches bob
    assert b_sink.size == SIZE
    assert close_to(b_sink.dominant_color(), RED), b_sink.dominant_color()
    assert a_sink.frames == 0  # bob sends no video
    assert inc.media is not None and out.media is not None
    assert inc.media.video_state == (False, True)
    assert out.media.video_state == (True, False)
    assert await level(alice.sink, BOB) > HEARD
    assert await level(bob.sink, ALICE) > HEARD

    # Either party can then end video; bob downgrades, alice's video stops.
    await inc.downgrade()
    await out.wait_for("media-modification", timeout=5)
    await out.reject_modification()  # a downgrade cannot be refused
    changed = await inc.wait_for("state-changed", timeout=5)
    assert changed.data["new_state"] == "audio"
    assert await no_new_frames(b_sink) <= 1
    await out.hangup()


async def test_modification_errors(party: MakeParty) -> None:
    alice, bob = await party(ALICE), await party(BOB)
    out, inc = await connect(alice, bob)
    with pytest.raises(RemoteError) as info:  # an audio call cannot be downgraded
        await alice.phone.request(
            {"type": "call.modify", "call_id": out.id, "media_type": "audio", "sdp": "v=0"}
        )
    assert info.value.code == "invalid_state"
    with pytest.raises(RemoteError) as info:  # nothing to accept
        await bob.phone.request({"type": "call.modify.accept", "call_id": inc.id, "sdp": "v=0"})
    assert info.value.code == "invalid_state"
    await out.upgrade(video_source=TestPatternSource(RED))
    with pytest.raises(RemoteError) as info:  # one modification at a time
        await bob.phone.request(
            {"type": "call.modify", "call_id": inc.id, "media_type": "video", "sdp": "v=0"}
        )
    assert info.value.code == "invalid_state"
    with pytest.raises(RemoteError) as info:  # the requester cannot answer its own request
        await alice.phone.request({"type": "call.modify.reject", "call_id": out.id, "sdp": "v"})
    assert info.value.code == "invalid_state"
    await inc.accept_modification()
    await out.wait_for("state-changed", timeout=5)
    await out.hangup()


async def test_a_video_call_from_the_start(
    party: MakeParty, raw: Connect, make_user: MakeUser
) -> None:
    """call.create with media_type "video" and an audio + video offer; the callee answers
    with video; each sees the other's colour."""
    bob = await party(BOB)
    user = await make_user()
    client = await raw()
    await client.login(user.token)
    a_sink, b_sink = FrameSink(), FrameSink()
    media = CallMedia(source=ToneSource(ALICE), sink=BufferSink())
    media.enable_video(TestPatternSource(RED), a_sink)
    offer = await media.create_offer()
    assert "m=audio" in offer and "m=video" in offer
    await client.send({"type": "call.create", "req_id": "v", "destination": bob.user.extension,
                       "sdp": offer, "media_type": "video"})  # fmt: skip
    trying = await client.expect("call.trying", req_id="v")
    assert trying["media_type"] == "video"
    call_id = trying["call_id"]
    await media.accept_answer((await client.expect("sdp.answer", call_id=call_id))["sdp"])
    inc = await bob.ringing()
    assert inc.media_type == "video"
    await inc.answer(
        source=ToneSource(BOB), sink=bob.sink,
        video_source=TestPatternSource(BLUE), video_sink=b_sink,
    )  # fmt: skip
    answered = await client.expect("call.answered", call_id=call_id)
    assert answered["media_type"] == "video"
    assert await frames(a_sink, 15) >= 15
    assert await frames(b_sink, 15) >= 15
    assert close_to(a_sink.dominant_color(), BLUE), a_sink.dominant_color()
    assert close_to(b_sink.dominant_color(), RED), b_sink.dominant_color()
    assert await level(bob.sink, ALICE) > HEARD
    await client.send({"type": "call.hangup", "call_id": call_id})
    await client.expect("call.ended", call_id=call_id)
    await media.close()


async def test_a_video_call_answered_as_audio(
    party: MakeParty, raw: Connect, make_user: MakeUser
) -> None:
    bob = await party(BOB)
    user = await make_user()
    client = await raw()
    await client.login(user.token)
    a_sink = FrameSink()
    media = CallMedia(source=ToneSource(ALICE), sink=BufferSink())
    media.enable_video(TestPatternSource(RED), a_sink)
    await client.send({"type": "call.create", "req_id": "v", "destination": bob.user.extension,
                       "sdp": await media.create_offer(), "media_type": "video"})  # fmt: skip
    call_id = (await client.expect("call.trying", req_id="v"))["call_id"]
    await media.accept_answer((await client.expect("sdp.answer", call_id=call_id))["sdp"])
    inc = await bob.ringing()
    await inc.answer(source=ToneSource(BOB), sink=bob.sink, media_type="audio")
    answered = await client.expect("call.answered", call_id=call_id)
    assert answered["media_type"] == "audio" and inc.media_type == "audio"
    assert inc.media is not None
    assert inc.media.video_state == (False, False)
    assert await level(bob.sink, ALICE) > HEARD
    assert await no_new_frames(a_sink) == 0
    await client.send({"type": "call.hangup", "call_id": call_id})
    await client.expect("call.ended", call_id=call_id)
    await media.close()


async def test_the_sdk_places_a_video_call_and_both_see_each_other(party: MakeParty) -> None:
    alice, bob = await party(ALICE), await party(BOB)
    alice_sees, bob_sees = FrameSink(), FrameSink()
    out = await alice.phone.call(
        bob.user.extension,
        source=ToneSource(ALICE),
        sink=alice.sink,
        media_type="video",
        video_source=TestPatternSource(RED),
        video_sink=alice_sees,
    )
    inc = await bob.ringing()
    assert inc.media_type == "video"
    await inc.answer(
        source=ToneSource(BOB),
        sink=bob.sink,
        media_type="video",
        video_source=TestPatternSource(BLUE),
        video_sink=bob_sees,
    )
    await out.wait_for("answered", timeout=5)
    assert alice.phone.get_media_type() == "video"
    assert await frames(alice_sees, 15) >= 15 and await frames(bob_sees, 15) >= 15
    assert close_to(alice_sees.dominant_color(), BLUE)
    assert close_to(bob_sees.dominant_color(), RED)
    assert await level(alice.sink, BOB) > HEARD
    await out.hangup()


# A browser's offer numbers its RTP header extensions and payload types its own way (Chromium:
# ssrc-audio-level = 1, sdes:mid = 4, Opus = 111); aiortc's own offer says sdes:mid = 1,
# ssrc-audio-level = 2, Opus = 96. The device's numbers are made from aiortc's by these swaps.
_MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
_ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"


def _browser_numbers(sdp: str) -> str:
    sdp = sdp.replace(f"a=extmap:1 {_MID_URI}", f"a=extmap:4 {_MID_URI}")
    sdp = sdp.replace(f"a=extmap:2 {_LEVEL_URI}", f"a=extmap:1 {_LEVEL_URI}")
    sdp = re.sub(r"^(m=audio \S+ \S+ )96 ", r"\g<1>111 ", sdp, flags=re.MULTILINE)
    return re.sub(r"^a=(rtpmap|fmtp|rtcp-fb):96 ", r"a=\1:111 ", sdp, flags=re.MULTILINE)


def _sections(sdp: str) -> dict[str, dict[str, Any]]:
    """Per m-line kind: its mid, extension ids by URI and payload types by codec."""
    out: dict[str, dict[str, Any]] = {}
    for section in sdp.split("\nm=")[1:]:
        kind = section.split(" ", 1)[0]
        mid = re.search(r"^a=mid:(\S+)", section, re.MULTILINE)
        exts = re.findall(r"^a=extmap:(\d+)(?:/\w+)? (\S+)", section, re.MULTILINE)
        pts = re.findall(r"^a=rtpmap:(\d+) ([^\r\n]+)", section, re.MULTILINE)
        out[kind] = {
            "mid": mid.group(1) if mid else None,
            "ext": {uri: int(n) for n, uri in exts},
            "pt": {codec.lower(): int(n) for n, codec in pts},
        }
    return out


class _Host:
    """The least an Endpoint needs of its media server (no engine, no ticker)."""

    def __init__(self) -> None:
        self.ice_servers: list[dict[str, Any]] = []
        self.players: set[Endpoint] = set()
        self.tapped: dict[str, int] = {}

    def current(self, endpoint_id: str) -> Endpoint | None:
        return None

    def emit(self, event: object) -> None:
        pass


async def test_server_reoffers_keep_the_devices_extension_ids_and_payload_types() -> None:
    """RFC 8285 section 6: the server's re-offers (a far party's upgrade, then downgrade)
    keep the numbers the device's first offer chose; the video m-line added on the way uses
    the session's id for sdes:mid and ids / payload types nothing else uses (RFC 8843 9.2)."""
    register_codecs()
    device = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    ep = Endpoint(_Host(), "ep-reoffer")
    try:
        device.addTransceiver("audio", direction="sendrecv")
        offer = await device.createOffer()
        assert f"a=extmap:1 {_MID_URI}" in offer.sdp and "a=rtpmap:96 opus/48000/2" in offer.sdp
        browser_offer = _browser_numbers(offer.sdp)
        await device.setLocalDescription(RTCSessionDescription(browser_offer, "offer"))
        answer_sdp = await negotiation.answer(ep, browser_offer, video=False)
        assert _sections(answer_sdp)["audio"]["ext"] == {_LEVEL_URI: 1, _MID_URI: 4}
        await device.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))

        async def round_trip(video: bool) -> dict[str, dict[str, Any]]:
            reoffer = await negotiation.reoffer(ep, send_video=video, recv_video=video)
            await device.setRemoteDescription(RTCSessionDescription(reoffer, "offer"))
            await device.setLocalDescription(await device.createAnswer())
            await negotiation.accept_answer(ep, device.localDescription.sdp)
            return _sections(reoffer)

        videos = []
        for video in (True, False, True):  # upgrade, downgrade, upgrade again
            sections = await round_trip(video)
            audio = sections["audio"]
            assert audio["mid"] == "0", sections
            assert audio["ext"] == {_MID_URI: 4, _LEVEL_URI: 1}, sections
            assert audio["pt"]["opus/48000/2"] == 111, sections
            assert audio["pt"]["telephone-event/48000"] == 110, sections
            video_m = sections["video"]
            assert video_m["mid"] not in (None, "0"), sections
            assert video_m["ext"][_MID_URI] == 4, sections  # one id per URI in the bundle
            assert video_m["ext"][_ABS_SEND_TIME_URI] not in (1, 4), sections
            assert video_m["pt"]["vp8/90000"] not in audio["pt"].values(), sections
            videos.append(video_m)
        assert videos[0] == videos[1] == videos[2], videos  # the same numbers every time
        # The device's audio numbers are what the server sends with.
        assert NegotiatedAudio.from_codecs(ep.transceiver._codecs).payload_type == 111
    finally:
        await ep.close()
        await device.close()
