"""FakeMediaServer: the MediaServer interface in memory, for fast tests of the control plane.

Every test here runs in milliseconds: no sockets, no audio. They check that the fake decides
what the engine decides (codec, video, errors), keeps the state the interface describes, emits
the events in the engine's order, and stages races deterministically.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import get_args

import pytest

from callbridge.errors import ErrorCode, MediaError
from callbridge.media.interface import (
    AudioSpec,
    DtmfReceived,
    EndpointStateChanged,
    FloorChanged,
    MediaEvent,
    MediaServer,
    PlaybackStateChanged,
    RecordingSaved,
)
from callbridge.testing.fake_media import (
    FakeMediaServer,
    MediaMethod,
    MemberState,
    PlaybackRecord,
    SentDtmf,
)
from callbridge.testing.fake_sdp import VideoOffer, sdp
from callbridge.testing.staging import StagedCall


def device_offer(*codecs: str, te: bool = True, video: tuple[bool, bool] | None = None) -> str:
    """A device's offer: ``codecs`` in order; ``video`` (device sends, device receives)."""
    return sdp(1, codecs or ("opus",), te, VideoOffer.of(*video) if video else None)


BROWSER_G711 = (  # static payload types without rtpmap lines (RFC 3551)
    "v=0\r\no=- 7 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "m=audio 50000 RTP/AVP 9 8 0\r\nc=IN IP4 127.0.0.1\r\na=rtpmap:9 G722/8000\r\n"
)


@pytest.fixture
def fake() -> FakeMediaServer:
    return FakeMediaServer()


@pytest.fixture
def events(fake: FakeMediaServer) -> list[MediaEvent]:
    seen: list[MediaEvent] = []
    fake.subscribe(seen.append)
    return seen


async def two_bridged(fake: FakeMediaServer) -> None:
    await fake.answer("a", device_offer())
    await fake.answer("b", device_offer("PCMU"))
    await fake.bridge("a", "b")


# --------------------------------------------------------------------------------------------
# the interface


def test_the_fake_is_a_media_server_and_stages_every_async_method() -> None:
    media: MediaServer = FakeMediaServer()  # mypy checks the whole Protocol here
    assert media is not None
    async_methods = {
        name for name, member in vars(MediaServer).items() if inspect.iscoroutinefunction(member)
    }
    assert async_methods == set(get_args(MediaMethod))


# --------------------------------------------------------------------------------------------
# offer/answer


async def test_an_answer_takes_the_first_carried_codec_in_the_offers_order(
    fake: FakeMediaServer,
) -> None:
    answer = await fake.answer("a", device_offer("PCMA", "opus"))
    assert answer.startswith("v=0\r\n") and "m=audio" in answer and "PCMA/8000" in answer
    info = await fake.endpoint_info("a")
    assert info.codec == "PCMA" and not info.video
    ((line, mid, index),) = [(c.line, c.sdp_mid, c.sdp_m_line_index) for c in info.candidates]
    assert line.startswith("candidate:") and " 127.0.0.1 " in line and line.endswith(" typ host")
    assert (mid, index) == ("0", 0)
    await fake.answer("g", BROWSER_G711)
    assert (await fake.endpoint_info("g")).codec == "PCMA"
    assert fake.negotiated("g").telephone_event is False
    assert fake.state("a") == "connecting"


NO_AUDIO = "v=0\r\ns=-\r\nm=video 9 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n"
ONLY_G722 = "v=0\r\nm=audio 9 RTP/AVP 9\r\na=rtpmap:9 G722/8000\r\n"


@pytest.mark.parametrize(
    ("offer", "code", "says"),
    [
        ("hello", ErrorCode.INVALID_SDP, "not SDP"),
        (NO_AUDIO, ErrorCode.INVALID_SDP, "no audio m-line"),
        (ONLY_G722, ErrorCode.UNSUPPORTED_CODEC, "opus, PCMU, PCMA"),
    ],
)
async def test_offers_the_engine_refuses_are_refused_alike(
    fake: FakeMediaServer, offer: str, code: ErrorCode, says: str
) -> None:
    with pytest.raises(MediaError) as err:
        await fake.answer("a", offer)
    assert err.value.code is code and says in err.value.message
    assert fake.open_endpoints() == ()


async def test_an_id_in_use_and_unknown_ids_are_refused(fake: FakeMediaServer) -> None:
    await fake.answer("a", device_offer())
    with pytest.raises(MediaError) as err:
        await fake.offer("a")
    assert err.value.code is ErrorCode.INVALID_STATE
    for call in (fake.endpoint_info("x"), fake.bridge("a", "x"), fake.set_muted("x", True)):
        with pytest.raises(MediaError) as err:
            await call
        assert err.value.code is ErrorCode.CALL_NOT_FOUND
    await fake.close("x")  # unknown ids are ignored by close, as the interface says


async def test_video_follows_the_offers_vp8_line_and_directions(fake: FakeMediaServer) -> None:
    await fake.answer("both", device_offer(video=(True, True)))
    await fake.answer("sends", device_offer(video=(True, False)))
    answer = await fake.answer("refused", device_offer(video=(True, True)), video=False)
    assert "m=video 0 " in answer
    infos = [await fake.endpoint_info(e) for e in ("both", "sends", "refused")]
    assert [(i.device_sends_video, i.device_receives_video) for i in infos] == [
        (True, True),
        (True, False),
        (False, False),
    ]
    # a device adds video later: the server receives it, and sends only when asked to
    await fake.answer("later", device_offer())
    await fake.renegotiate("later", device_offer(video=(True, True)), send_video=False)
    assert fake.negotiated("later").device_sends_video
    assert not fake.negotiated("later").device_receives_video


async def test_the_servers_offer_settles_with_the_answer(fake: FakeMediaServer) -> None:
    offer = await fake.offer("out", prefer_codec="PCMU", video=True)
    assert offer.index("PCMU/8000") < offer.index("opus/48000") and "VP8/90000" in offer
    assert (await fake.endpoint_info("out")).codec == "PCMU"
    await fake.accept_answer("out", device_offer("PCMA", video=(False, True)))
    info = await fake.endpoint_info("out")
    assert info.codec == "PCMA"
    assert (info.device_sends_video, info.device_receives_video) == (False, True)
    with pytest.raises(MediaError) as err:  # nothing pending any more
        await fake.accept_answer("out", device_offer())
    assert err.value.code is ErrorCode.INVALID_SDP
    await fake.reoffer("out", send_video=True, recv_video=True)
    await fake.accept_answer("out", device_offer("PCMA", video=(True, True)))
    info = await fake.endpoint_info("out")
    assert (info.device_sends_video, info.device_receives_video) == (True, True)


# --------------------------------------------------------------------------------------------
# who hears what


async def test_hears_follows_bridges_players_playbacks_and_mixers(
    fake: FakeMediaServer, events: list[MediaEvent]
) -> None:
    await two_bridged(fake)
    assert (fake.hears("a"), fake.hears("b")) == ("b", "a")
    await fake.play("a", "hold-music")
    await fake.set_muted("b", True)
    assert (fake.hears("a"), fake.muted("b"), fake.partner("a")) == ("hold-music", True, "b")
    await fake.stop_playing("a")
    await fake.play_to("a", "p1", AudioSpec("tone", "beep"))
    assert fake.hears("a") == "playback:p1"
    fake.end_playback("p1")
    assert fake.hears("a") == "b"

    await fake.create_mixer("room")
    await fake.mixer_add("room", "a")
    assert (fake.hears("a"), fake.hears("b"), fake.partner("b")) == ("mix:room", None, None)
    await fake.mixer_add("room", "b")
    await fake.mixer_update("b", held=True, role="whisper", whisper_to=("a",))
    assert fake.hears("b") == "hold-music"
    assert fake.member("b") == MemberState("room", False, True, "whisper", ("a",))
    await fake.mixer_update("b", held=False, deaf=True)
    assert fake.hears("b") is None
    assert await fake.mixer_members("room") == ("a", "b")
    await fake.bridge("a", "b")  # out of the mixer, into a bridge
    assert await fake.mixer_members("room") == () and fake.member("a") is None
    assert events == [
        PlaybackStateChanged("p1", "started", "playing"),
        PlaybackStateChanged("p1", "ended", "completed"),
    ]


async def test_member_flags_need_a_member_and_a_known_role(fake: FakeMediaServer) -> None:
    await fake.answer("a", device_offer())
    with pytest.raises(MediaError) as err:
        await fake.mixer_update("a", deaf=True)
    assert err.value.code is ErrorCode.INVALID_STATE
    await fake.create_mixer("room")
    await fake.mixer_add("room", "a")
    with pytest.raises(MediaError) as err:
        await fake.mixer_update("a", role="boss")  # type: ignore[arg-type]
    assert err.value.code is ErrorCode.INVALID_MESSAGE


# --------------------------------------------------------------------------------------------
# playbacks, recordings, DTMF


async def test_a_mixer_going_away_stops_its_playbacks_and_saves_its_recordings(
    events: list[MediaEvent],
) -> None:
    now = [100.0]
    fake = FakeMediaServer(clock=lambda: now[0])
    fake.subscribe(events.append)
    await fake.answer("a", device_offer())
    await fake.create_mixer("room")
    await fake.mixer_add("room", "a")
    await fake.mixer_play("room", "all", AudioSpec("file", "/music.wav", loops=0))
    await fake.play_to("a", "mine", AudioSpec("tts", "hello"))
    await fake.record_start("r1", "room", "/tmp/r1.wav")
    now[0] += 2.0
    await fake.record_pause("r1")
    now[0] += 5.0  # paused time is left out
    await fake.record_resume("r1")
    now[0] += 1.5
    await fake.destroy_mixer("room")
    await fake.close("a")
    assert events == [
        PlaybackStateChanged("all", "started", "playing"),
        PlaybackStateChanged("mine", "started", "playing"),
        PlaybackStateChanged("all", "ended", "stopped", "the mixer was removed"),
        RecordingSaved("r1", "/tmp/r1.wav", 3.5),
        PlaybackStateChanged("mine", "ended", "stopped", "the endpoint closed"),
    ]
    assert fake.playback("all") == PlaybackRecord(
        "all",
        AudioSpec("file", "/music.wav", loops=0),
        owner="mix:room",
        status="stopped",
        detail="the mixer was removed",
    )
    assert fake.recording("r1").saved and fake.endpoint_count == 0


async def test_stop_all_with_targets_spares_a_playback_to_everyone(
    fake: FakeMediaServer,
) -> None:
    for e in ("a", "b"):
        await fake.answer(e, device_offer())
    await fake.create_mixer("room")
    await fake.mixer_add("room", "a")
    await fake.mixer_add("room", "b")
    await fake.mixer_play("room", "everyone", AudioSpec("tone", "join"))
    await fake.mixer_play("room", "to-a", AudioSpec("tone", "beep"), targets=("a",))
    await fake.play_to("b", "to-b", AudioSpec("tone", "beep"))
    await fake.stop_all("room", targets=("a",))
    assert [(p.playback_id, p.status) for p in fake.playbacks()] == [
        ("everyone", "playing"),
        ("to-a", "stopped"),
        ("to-b", "playing"),
    ]
    await fake.stop_all("room")
    assert {p.status for p in fake.playbacks()} == {"stopped"}


async def test_audio_the_engine_cannot_load_is_refused_and_starts_nothing(
    fake: FakeMediaServer, events: list[MediaEvent]
) -> None:
    await fake.answer("a", device_offer())
    fake.bad_audio.add("/missing.wav")
    fake.audio_seconds["/long.mp3"] = 42.0
    for audio in (
        AudioSpec("file", "/missing.wav"),
        AudioSpec("tone", "fanfare"),
        AudioSpec("url", "ftp://x/y.wav"),
        AudioSpec("file", "/x.wav", loops=-1),
    ):
        with pytest.raises(MediaError) as err:
            await fake.play_to("a", "p", audio)
        assert err.value.code is ErrorCode.INVALID_AUDIO
    assert events == [] and fake.hears("a") is None
    assert await fake.probe_audio(AudioSpec("file", "/long.mp3")) == 42.0
    assert await fake.probe_audio(AudioSpec("tone", "beep")) == pytest.approx(0.25)


async def test_dtmf_sent_is_kept_with_how_the_engine_would_send_it(
    fake: FakeMediaServer,
) -> None:
    await fake.answer("te", device_offer("opus", te=True))
    await fake.answer("inband", device_offer("PCMU", te=False))
    await fake.send_dtmf("te", "12#w9", 100)
    await fake.send_dtmf("inband", "A")
    assert fake.dtmf_sent == [
        SentDtmf("te", "12#w9", 100, True),
        SentDtmf("inband", "A", 250, False),
    ]
    with pytest.raises(MediaError) as err:
        await fake.send_dtmf("te", "12x")
    assert err.value.code is ErrorCode.INVALID_DIGITS


# --------------------------------------------------------------------------------------------
# injected events


async def test_injected_events_reach_subscribers_at_once(
    fake: FakeMediaServer, events: list[MediaEvent]
) -> None:
    await two_bridged(fake)
    await fake.create_mixer("room")
    await fake.mixer_add("room", "b")
    fake.connect("a")
    fake.emit_dtmf("a", "5")
    fake.change_floor("room", "b")
    fake.change_floor("room", None)
    fake.fail("a")
    assert events == [
        EndpointStateChanged("a", "connected"),
        DtmfReceived("a", "5"),
        FloorChanged("room", "b"),
        FloorChanged("room", None),
        EndpointStateChanged("a", "failed"),
    ]
    assert fake.state("a") == "failed"
    with pytest.raises(ValueError):
        fake.emit_dtmf("a", "x")
    with pytest.raises(ValueError):
        fake.change_floor("room", "a")  # not a member


async def test_queued_events_wait_for_settle() -> None:
    fake = FakeMediaServer(queue_events=True)
    seen: list[MediaEvent] = []
    fake.subscribe(seen.append)
    await fake.answer("a", device_offer())
    fake.emit_dtmf("a", "1")
    fake.emit_dtmf("a", "2")
    assert seen == [] and len(fake.events) == 2
    await fake.settle()
    assert seen == [DtmfReceived("a", "1"), DtmfReceived("a", "2")]


# --------------------------------------------------------------------------------------------
# staged races


async def test_a_hangup_while_the_answer_is_held_makes_the_answer_fail(
    fake: FakeMediaServer,
) -> None:
    await fake.offer("callee")
    gate = fake.hold("accept_answer", "callee")
    answering = asyncio.ensure_future(fake.accept_answer("callee", device_offer()))
    await gate.reached()
    await fake.close("callee")  # the caller hung up meanwhile
    gate.release()
    with pytest.raises(MediaError) as err:
        await answering
    assert err.value.code is ErrorCode.CALL_NOT_FOUND
    assert fake.closed_endpoints() == ("callee",)
    assert fake.calls == [
        StagedCall("offer", ("callee",)),
        StagedCall("accept_answer", ("callee", device_offer())),
        StagedCall("close", ("callee",)),
    ]


async def test_held_after_the_call_has_had_its_effect(fake: FakeMediaServer) -> None:
    await fake.answer("a", device_offer())
    await fake.answer("b", device_offer())
    gate = fake.hold("bridge", "b", when="after")  # matches either endpoint of the bridge
    bridging = asyncio.ensure_future(fake.bridge("a", "b"))
    await gate.reached()
    assert fake.hears("a") == "b" and not bridging.done()  # done, not yet returned
    gate.release()
    await bridging


async def test_a_gate_without_an_id_holds_the_next_call_and_can_fail_it(
    fake: FakeMediaServer,
) -> None:
    gate = fake.hold("offer")
    offering = asyncio.ensure_future(fake.offer("x"))
    await gate.reached()
    gate.fail(MediaError(ErrorCode.UNSUPPORTED_CODEC, "staged"))
    with pytest.raises(MediaError) as err:
        await offering
    assert err.value.code is ErrorCode.UNSUPPORTED_CODEC
    assert fake.open_endpoints() == ()
    await fake.offer("x")  # the rule was used up


async def test_raise_on_fails_the_chosen_calls_only(fake: FakeMediaServer) -> None:
    await fake.answer("a", device_offer())
    await fake.answer("b", device_offer())
    fake.raise_on("set_muted", "b", times=2)
    await fake.set_muted("a", True)
    for _ in range(2):
        with pytest.raises(MediaError) as err:
            await fake.set_muted("b", True)
        assert err.value.code is ErrorCode.INTERNAL
    await fake.set_muted("b", True)
    assert fake.muted("a") and fake.muted("b")
    assert fake.calls_to("set_muted") == [("a", True), ("b", True), ("b", True), ("b", True)]


async def test_shutdown_leaves_nothing(fake: FakeMediaServer, events: list[MediaEvent]) -> None:
    await two_bridged(fake)
    await fake.create_mixer("room")
    await fake.play_to("a", "p", AudioSpec("tone", "beep"))
    await fake.record_start("r", "b", "/tmp/b.wav", "mp3")
    await fake.shutdown()
    assert fake.endpoint_count == 0 and fake.open_endpoints() == () and fake.mixers() == ()
    assert events == [
        PlaybackStateChanged("p", "started", "playing"),
        PlaybackStateChanged("p", "ended", "stopped", "the media server shut down"),
        RecordingSaved("r", "/tmp/b.wav", 0.0),
    ]
