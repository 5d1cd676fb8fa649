"""The conference mixer and media operations, with real WebRTC peers on 127.0.0.1.

Each member sends its own tone (450, 1220, 1570, 1880 Hz), so what a member hears tells exactly
whose audio reached it; playbacks use tones of their own (2920, 3030, 960 Hz), hold music has
its notes (523, 659, 784 Hz), the beep 1 kHz. The tones are chosen so that no sum, difference or
2a-b product of two of them lands near another (G.711 and clipping make such products).
Everything is checked by analysing the audio that
arrives at the SDK peers (or the recorded file), plus the events the media server emitted.
"""

from __future__ import annotations

import asyncio
import http.server
import threading
import wave
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from callbridge.client import BufferSink, CallMedia, ToneSource
from callbridge.errors import MediaError
from callbridge.media.engine import InProcessMediaServer
from callbridge.media.interface import (
    AudioSpec,
    DtmfReceived,
    FloorChanged,
    MediaEvent,
    PlaybackStateChanged,
    RecordingSaved,
)
from callbridge.media.players import HOLD_MUSIC_NOTES, TONES
from callbridge.rtp.webrtc import restrict_ice_addresses
from callbridge.testing import rms_dbfs, tone_level_db
from media_peers import RATE, Peer, connect, hear, level, levels, sine
from parties import HEARD

# "Not heard": a member or playback that leaks measures like the others, ≈ -14 dBFS (or -23 for
# the quieter playback files). Opus at 32 kbit/s coding three or four tones at once leaves a
# noise floor that reaches -50 dBFS in a measurement bin now and then, so the 1:1 tests' -60 dB
# would fail on codec noise; -45 dB still leaves 20-30 dB of margin on both sides.
SILENT = -45.0

restrict_ice_addresses(["127.0.0.1"])

A, B, C, D = 450.0, 1220.0, 1570.0, 1880.0
WAV_TONE, MP3_TONE, URL_TONE = 2920.0, 3030.0, 960.0
BEEP = TONES["beep"][0][0]


@dataclass
class Room:
    server: InProcessMediaServer
    events: list[MediaEvent] = field(default_factory=list)
    peers: list[Peer] = field(default_factory=list)

    async def join(
        self, endpoint_id: str, tone: float | None, codec: str = "opus", mixer: str | None = "room"
    ) -> Peer:
        peer = await connect(self.server, endpoint_id, tone, codec)
        self.peers.append(peer)
        if mixer is not None:
            await self.server.mixer_add(mixer, endpoint_id)
        return peer

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture
async def room() -> AsyncIterator[Room]:
    """A media server with one mixer, ``room``; peers join with ``room.join``."""
    server = InProcessMediaServer(["127.0.0.1"])
    r = Room(server)
    server.subscribe(r.events.append)
    await server.create_mixer("room")
    yield r
    for peer in r.peers:
        await peer.media.close()
    await server.shutdown()
    assert server.endpoint_count == 0


def heard_all(pcm: Any, *freqs: float) -> bool:
    return all(level(pcm, f) > HEARD for f in freqs)


def write_wav(path: Path, freq: float, seconds: float, rate: int = 16000) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(sine(freq, seconds, rate).tobytes())


def write_mp3(path: Path, freq: float, seconds: float, rate: int = 22050) -> None:
    with av.open(str(path), "w", format="mp3") as out:
        stream = out.add_stream("libmp3lame", rate=rate, layout="mono")
        stream.bit_rate = 32000
        frame = av.AudioFrame.from_ndarray(
            sine(freq, seconds, rate).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)


@pytest.fixture
def http_files(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A static HTTP server on 127.0.0.1 serving ``tmp_path``: (base URL, directory)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, directory=str(tmp_path), **kw)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", tmp_path
    httpd.shutdown()
    httpd.server_close()


# --------------------------------------------------------------------------------------------
# who hears whom


@pytest.mark.parametrize(
    "codecs", [("opus", "PCMU", "opus"), ("opus", "PCMU", "PCMA", "opus")], ids=["3", "4"]
)
async def test_every_member_hears_all_the_others_and_not_itself_at_any_codec(
    room: Room, codecs: tuple[str, ...]
) -> None:
    tones = [A, B, C, D][: len(codecs)]
    pairs = enumerate(zip(tones, codecs, strict=True))
    peers = [await room.join(f"m{i}", t, c) for i, (t, c) in pairs]
    assert await room.server.mixer_members("room") == tuple(p.id for p in peers)
    assert [(await room.server.endpoint_info(p.id)).codec for p in peers] == list(codecs)
    heard = await hear(*peers, settle=0.3)
    for peer, pcm in zip(peers, heard, strict=True):
        got = levels(pcm, tones)
        for tone, db in zip(tones, got, strict=True):
            if tone == peer.tone:
                assert db < SILENT, (peer.id, codecs, got)
            else:
                assert db > HEARD, (peer.id, codecs, got)


async def test_silent_members_share_one_encode_per_codec(room: Room) -> None:
    talker = await room.join("talker", A)
    quiet = [await room.join(f"q{i}", None, c) for i, c in enumerate(["opus", "PCMU"] * 3)]
    await asyncio.sleep(0.3)
    mixer = room.server.mixer("room")
    ticks, own, shared = mixer.ticks, mixer.encodes, mixer.shared_encodes
    heard = await hear(talker, *quiet, settle=0)
    ticks = mixer.ticks - ticks
    # The talker gets its own mix (everyone minus itself); six silent members get two encodes
    # (one Opus, one PCMU) per tick between them.
    assert (mixer.encodes - own) == pytest.approx(ticks, abs=2)
    assert (mixer.shared_encodes - shared) == pytest.approx(2 * ticks, abs=3)
    assert all(level(pcm, A) > HEARD for pcm in heard[1:])
    assert level(heard[0], A) < SILENT


async def test_mute_hold_and_deaf_change_exactly_who_hears_whom(room: Room) -> None:
    a, b, c = await room.join("a", A), await room.join("b", B), await room.join("c", C, "PCMU")
    server = room.server
    await server.set_muted("a", True)  # a is heard by nobody, hears everyone
    ha, hb, hc = await hear(a, b, c)
    assert heard_all(ha, B, C)
    assert level(hb, A) < SILENT and level(hc, A) < SILENT
    assert level(hb, C) > HEARD and level(hc, B) > HEARD
    await server.set_muted("a", False)

    await server.mixer_update("b", held=True)  # b hears hold music and is heard by nobody
    ha, hb, hc = await hear(a, b, c, seconds=1.0)
    assert all(level(hb, f) > HEARD for f in HOLD_MUSIC_NOTES[:3]), levels(hb, [*HOLD_MUSIC_NOTES])
    assert level(hb, A) < SILENT and level(hb, C) < SILENT
    assert level(ha, B) < SILENT and level(hc, B) < SILENT
    assert level(ha, C) > HEARD and level(hc, A) > HEARD
    await server.mixer_update("b", held=False)

    await server.mixer_update("c", deaf=True)  # c hears nothing and is heard by all
    ha, hb, hc = await hear(a, b, c)
    assert rms_dbfs(hc) < SILENT
    assert level(ha, C) > HEARD and level(hb, C) > HEARD
    assert level(ha, B) > HEARD and level(hb, A) > HEARD
    assert level(hb, HOLD_MUSIC_NOTES[0]) < SILENT  # b's hold ended

    await server.mixer_update("c", deaf=False)
    ha, hb, hc = await hear(a, b, c)
    assert heard_all(hc, A, B) and level(hc, C) < SILENT


async def test_a_monitor_hears_all_and_is_heard_by_nobody(room: Room) -> None:
    a, b = await room.join("a", A), await room.join("b", B)
    sup = await room.join("sup", C, "PCMU")
    await room.server.mixer_update("sup", role="monitor")
    ha, hb, hs = await hear(a, b, sup)
    assert level(ha, C) < SILENT and level(hb, C) < SILENT
    assert heard_all(hs, A, B)
    assert level(ha, B) > HEARD and level(hb, A) > HEARD


async def test_a_whisper_is_heard_only_by_its_targets_and_a_barge_by_all(room: Room) -> None:
    a, b = await room.join("a", A), await room.join("b", B, "PCMU")
    sup = await room.join("sup", C)
    await room.server.mixer_update("sup", role="whisper", whisper_to=("a",))
    ha, hb, hs = await hear(a, b, sup)
    assert level(ha, C) > HEARD  # the agent hears the coach
    assert level(hb, C) < SILENT  # the customer does not
    assert heard_all(hs, A, B) and level(hs, C) < SILENT
    assert level(ha, B) > HEARD and level(hb, A) > HEARD

    await room.server.mixer_update("sup", role="barge")
    ha, hb, hs = await hear(a, b, sup)
    assert level(ha, C) > HEARD and level(hb, C) > HEARD
    assert level(hs, C) < SILENT


async def test_a_removed_member_hears_nothing_and_is_not_heard(room: Room) -> None:
    a, b, c = await room.join("a", A), await room.join("b", B), await room.join("c", C)
    await room.server.mixer_remove("c")
    await room.server.mixer_remove("nobody")  # unknown: ignored
    assert await room.server.mixer_members("room") == ("a", "b")
    ha, hb, hc = await hear(a, b, c)
    assert rms_dbfs(hc) < SILENT
    assert level(ha, C) < SILENT and level(hb, A) > HEARD


async def test_bridging_a_member_takes_it_out_of_the_mixer(room: Room) -> None:
    a, b = await room.join("a", A), await room.join("b", B)
    x = await room.join("x", C, mixer=None)
    await room.server.bridge("a", "x")
    assert await room.server.mixer_members("room") == ("b",)
    ha, hb, hx = await hear(a, b, x)
    assert level(ha, C) > HEARD and level(ha, B) < SILENT
    assert level(hx, A) > HEARD and rms_dbfs(hb) < SILENT  # b is alone in the room


async def test_a_member_whose_device_reconnects_stays_in_the_room_with_its_flags(
    room: Room,
) -> None:
    a, b = await room.join("a", A), await room.join("b", B, "PCMU")
    await room.server.mixer_update("a", role="monitor")
    sink = BufferSink()  # the device makes a new peer connection (call.restart_media)
    again = Peer("a", CallMedia(ToneSource(A), sink), sink, A)
    room.peers.append(again)
    answer = await room.server.reconnect("a", await again.media.create_offer())
    await again.media.accept_answer(answer)
    await a.media.close()
    async with asyncio.timeout(5):
        await again.media.wait_connected()
    assert await room.server.mixer_members("room") == ("a", "b")
    ha, hb = await hear(again, b, settle=0.3)
    assert level(ha, B) > HEARD  # the new connection hears the room
    assert level(hb, A) < SILENT  # still a monitor
    await room.server.mixer_update("a", role="none")
    (hb,) = await hear(b)
    assert level(hb, A) > HEARD


async def test_dtmf_from_a_member_is_reported(room: Room) -> None:
    a = await room.join("a", A)
    await room.join("b", B)
    await a.media.send_dtmf("42#")
    await asyncio.sleep(0.1)
    assert [e.digit for e in room.of(DtmfReceived) if e.endpoint_id == "a"] == ["4", "2", "#"]


# --------------------------------------------------------------------------------------------
# floor


async def test_the_floor_goes_to_the_member_who_starts_talking(room: Room) -> None:
    a, b = await room.join("a", None), await room.join("b", None, "PCMU")
    await room.join("c", None)
    await asyncio.sleep(0.3)
    assert room.of(FloorChanged) == []
    b.talk(B)
    await asyncio.sleep(0.8)
    assert room.of(FloorChanged) == [FloorChanged("room", "b")]
    a.talk(A)  # a short interjection does not take the floor
    await asyncio.sleep(0.12)
    a.talk(None)
    await asyncio.sleep(0.5)
    assert room.of(FloorChanged) == [FloorChanged("room", "b")]
    b.talk(None)
    a.talk(A)
    await asyncio.sleep(0.8)
    assert room.of(FloorChanged)[-1] == FloorChanged("room", "a")
    a.talk(None)
    await asyncio.sleep(1.5)
    assert room.of(FloorChanged) == [
        FloorChanged("room", "b"),
        FloorChanged("room", "a"),
        FloorChanged("room", None),
    ]


# --------------------------------------------------------------------------------------------
# playback


def playback_events(room: Room, playback_id: str) -> list[tuple[str, str]]:
    return [
        (e.state, e.status) for e in room.of(PlaybackStateChanged) if e.playback_id == playback_id
    ]


async def test_wav_mp3_and_url_playbacks_are_heard_by_their_targets_only(
    room: Room, http_files: tuple[str, Path]
) -> None:
    base, folder = http_files
    write_wav(folder / "tone.wav", WAV_TONE, 0.5)
    write_mp3(folder / "tone.mp3", MP3_TONE, 0.5)
    write_wav(folder / "url.wav", URL_TONE, 0.5, rate=8000)
    a, b, c = await room.join("a", A), await room.join("b", B, "PCMU"), await room.join("c", C)
    server = room.server
    await server.mixer_play("room", "p1", AudioSpec("file", str(folder / "tone.wav"), loops=0))
    await server.mixer_play(
        "room", "p2", AudioSpec("file", str(folder / "tone.mp3"), loops=0), targets=("a",)
    )
    await server.mixer_play(
        "room", "p3", AudioSpec("url", f"{base}/url.wav", loops=0), targets=("b", "c")
    )
    ha, hb, hc = await hear(a, b, c)
    assert heard_all(ha, WAV_TONE, MP3_TONE)
    assert level(ha, URL_TONE) < SILENT
    assert level(hb, WAV_TONE) > HEARD and level(hb, URL_TONE) > HEARD
    assert level(hb, MP3_TONE) < SILENT
    assert level(hc, URL_TONE) > HEARD and level(hc, MP3_TONE) < SILENT
    assert level(ha, B) > HEARD and level(hc, A) > HEARD  # the members still hear each other

    await server.stop_all("room", targets=("a",))  # p2 (aimed at a) stops; p1 (all) goes on
    await server.stop_playback("p3")
    await server.stop_playback("p3")  # ended already: ignored
    ha, hb = await hear(a, b)
    assert level(ha, MP3_TONE) < SILENT and level(hb, URL_TONE) < SILENT
    assert level(ha, WAV_TONE) > HEARD
    await server.stop_all("room")
    for pid in ("p1", "p2", "p3"):
        assert playback_events(room, pid) == [("started", "playing"), ("ended", "stopped")]


async def test_a_playback_plays_its_loops_and_completes(room: Room, tmp_path: Path) -> None:
    await room.join("a", A)
    write_wav(tmp_path / "short.wav", WAV_TONE, 0.1)
    await room.server.mixer_play(
        "room", "p", AudioSpec("file", str(tmp_path / "short.wav"), loops=3)
    )
    await asyncio.sleep(0.6)
    assert playback_events(room, "p") == [("started", "playing"), ("ended", "completed")]
    await room.server.mixer_play("room", "beep", AudioSpec("tone", "beep"))
    await asyncio.sleep(0.5)
    assert playback_events(room, "beep") == [("started", "playing"), ("ended", "completed")]


@pytest.mark.parametrize("voice", ["female", "male"])
async def test_text_to_speech_is_heard_as_speech(room: Room, voice: str) -> None:
    a = await room.join("a", None)
    await room.join("b", None, "PCMU")
    text = "Welcome to the conference. You are the first participant."
    await room.server.mixer_play("room", "tts", AudioSpec("tts", text, voice=voice))
    (pcm,) = await hear(a, seconds=1.5, settle=0.2)
    assert rms_dbfs(pcm) > -40  # something loud arrived
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(pcm.size, 1 / RATE)
    speech_band = spectrum[(freqs > 100) & (freqs < 4000)].sum() / spectrum.sum()
    assert speech_band > 0.8  # voice energy, not noise or clicks
    peak = float(freqs[np.argmax(spectrum)])
    assert tone_level_db(pcm, RATE, peak) < rms_dbfs(pcm) - 6  # not one steady tone


async def test_the_two_voices_differ_in_pitch(room: Room) -> None:
    a = await room.join("a", None)
    pitches = {}
    for voice in ("female", "male"):
        await room.server.mixer_play("room", voice, AudioSpec("tts", "aaaah", voice=voice))
        (pcm,) = await hear(a, seconds=0.5, settle=0.1)
        pitches[voice] = _fundamental(pcm)
        await room.server.stop_playback(voice)
    assert pitches["female"] > 1.3 * pitches["male"], pitches


def _fundamental(pcm: Any) -> float:
    """Voice pitch by autocorrelation (60-400 Hz) of the loudest 200 ms."""
    x = pcm.astype(np.float64)
    n = RATE // 5
    starts = range(0, max(1, x.size - n), n // 2)
    seg = max((x[s : s + n] for s in starts), key=lambda s: float(np.sum(s * s)))
    ac = np.correlate(seg, seg, "full")[n - 1 :]
    lo, hi = RATE // 400, RATE // 60
    return RATE / (lo + int(np.argmax(ac[lo:hi])))


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        (AudioSpec("tts", "hello", voice="robot"), "unknown voice 'robot'"),
        (AudioSpec("tts", "hello", language="xx-YY"), "no text-to-speech voice for language"),
        (AudioSpec("tts", "   "), "no text to speak"),
        (AudioSpec("file", "/nonexistent/hold.wav"), "audio file not found"),
        (AudioSpec("file", __file__), "is not audio"),
        (AudioSpec("url", "ftp://127.0.0.1/x.wav"), "is not an http:// or https:// URL"),
        (AudioSpec("url", "http://127.0.0.1:9/x.wav"), "could not be read"),
        (AudioSpec("tone", "siren"), "unknown tone 'siren'"),
        (AudioSpec("tone", "beep", loops=-1), "loops must be"),
    ],
)
async def test_unusable_audio_is_refused_with_a_clear_error(
    room: Room, audio: AudioSpec, message: str
) -> None:
    await room.join("a", A)
    with pytest.raises(MediaError, match=message):
        await room.server.mixer_play("room", "bad", audio)
    with pytest.raises(MediaError, match=message):
        await room.server.play_to("a", "bad", audio)
    assert room.of(PlaybackStateChanged) == []
    await room.server.mixer_play("room", "bad", AudioSpec("tone", "join"))  # the id is free


async def test_a_missing_url_and_bad_targets_are_refused(
    room: Room, http_files: tuple[str, Path]
) -> None:
    base, _ = http_files
    await room.join("a", A)
    await room.join("x", B, mixer=None)
    with pytest.raises(MediaError, match="could not fetch"):  # no status: see test_outbound
        await room.server.mixer_play("room", "p", AudioSpec("url", f"{base}/missing.mp3"))
    with pytest.raises(MediaError, match="not in mixer room"):
        await room.server.mixer_play("room", "p", AudioSpec("tone", "beep"), targets=("x",))
    with pytest.raises(MediaError, match="no mixer"):
        await room.server.mixer_play("nope", "p", AudioSpec("tone", "beep"))
    await room.server.mixer_play("room", "p", AudioSpec("tone", "beep", loops=0))
    with pytest.raises(MediaError, match="exists already"):
        await room.server.mixer_play("room", "p", AudioSpec("tone", "beep"))


async def test_play_to_a_bridged_leg_replaces_what_it_hears_until_it_ends(
    room: Room, tmp_path: Path
) -> None:
    a, b = await room.join("a", A, mixer=None), await room.join("b", B, "PCMU", mixer=None)
    server = room.server
    await server.bridge("a", "b")
    ha, hb = await hear(a, b)
    assert level(ha, B) > HEARD and level(hb, A) > HEARD
    write_wav(tmp_path / "announce.wav", WAV_TONE, 1.0)
    await server.play_to("b", "ann", AudioSpec("file", str(tmp_path / "announce.wav")))
    ha, hb = await hear(a, b)
    assert level(hb, WAV_TONE) > HEARD and level(hb, A) < SILENT
    assert level(ha, B) > HEARD and level(ha, WAV_TONE) < SILENT  # a still hears b
    await asyncio.sleep(0.6)
    assert playback_events(room, "ann") == [("started", "playing"), ("ended", "completed")]
    ha, hb = await hear(a, b)
    assert level(hb, A) > HEARD and level(hb, WAV_TONE) < SILENT  # back to the bridge


async def test_play_to_a_held_member_replaces_its_hold_music(room: Room) -> None:
    a, b = await room.join("a", A), await room.join("b", B)
    server = room.server
    await server.mixer_update("b", held=True)
    await server.play_to("b", "hold", AudioSpec("tone", "beep", loops=0))
    ha, hb = await hear(a, b)
    assert level(hb, BEEP) > HEARD
    assert level(hb, A) < SILENT and level(hb, HOLD_MUSIC_NOTES[0]) < SILENT
    assert level(ha, BEEP) < SILENT and level(ha, B) < SILENT
    await server.stop_all("room", targets=("b",))
    (hb,) = await hear(b, seconds=1.0)
    assert level(hb, HOLD_MUSIC_NOTES[0]) > HEARD and level(hb, BEEP) < SILENT


# --------------------------------------------------------------------------------------------
# recording


def read_wav(path: str) -> tuple[Any, float]:
    with wave.open(path, "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, RATE)
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return pcm, pcm.size / RATE


async def test_a_recording_of_the_mix_holds_the_members_and_not_the_paused_stretch(
    room: Room, tmp_path: Path
) -> None:
    await room.join("a", A)
    await room.join("b", B, "PCMU")
    await room.join("sup", C)
    server = room.server
    await server.mixer_update("sup", role="whisper", whisper_to=("a",))
    await asyncio.sleep(0.2)
    path = str(tmp_path / "mix.wav")
    await server.record_start("r1", "room", path)
    await asyncio.sleep(0.6)
    await server.record_pause("r1")
    await server.mixer_play("room", "p", AudioSpec("tone", "beep", loops=0))  # while paused
    await asyncio.sleep(0.6)
    await server.stop_playback("p")
    await server.record_resume("r1")
    await asyncio.sleep(0.4)
    await server.record_stop("r1")
    (saved,) = room.of(RecordingSaved)
    assert saved.recording_id == "r1" and saved.path == path
    assert saved.duration_secs == pytest.approx(1.0, abs=0.1)
    pcm, seconds = read_wav(path)
    assert seconds == pytest.approx(saved.duration_secs, abs=0.001)
    body = pcm[RATE // 5 :]  # past the members' first frames
    assert heard_all(body, A, B)
    assert level(body, C) < SILENT  # a whisper is not part of the mix
    assert level(body, BEEP) < SILENT  # the beep played only while the recording was paused
    with pytest.raises(MediaError, match="no recording r1"):
        await server.record_stop("r1")


async def test_an_mp3_recording_is_saved_when_its_mixer_is_removed(
    room: Room, tmp_path: Path
) -> None:
    await room.join("a", A)
    await room.join("b", B)
    path = str(tmp_path / "mix.mp3")
    await room.server.mixer_play("room", "music", AudioSpec("tone", "join", loops=0))
    await room.server.record_start("r", "room", path, "mp3")
    await asyncio.sleep(0.6)
    await room.server.destroy_mixer("room")
    (saved,) = room.of(RecordingSaved)
    assert saved.duration_secs == pytest.approx(0.6, abs=0.1)
    assert playback_events(room, "music") == [("started", "playing"), ("ended", "stopped")]
    with av.open(path) as container:
        pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    assert level((pcm * 32767).astype(np.int16) if pcm.dtype.kind == "f" else pcm, A) > HEARD
    assert room.server.endpoint_count == 2  # the two endpoints; no mixer, playback, recording


async def test_a_recording_of_a_bridged_leg_has_both_directions(room: Room, tmp_path: Path) -> None:
    await room.join("a", A, mixer=None)
    await room.join("b", B, "PCMU", mixer=None)
    await room.server.bridge("a", "b")
    path = str(tmp_path / "call.wav")
    await room.server.record_start("leg", "a", path)
    await asyncio.sleep(0.7)
    await room.server.record_stop("leg")
    assert room.server.tapped == {}  # decoding for the recording stopped with it
    pcm, seconds = read_wav(path)
    assert seconds == pytest.approx(0.7, abs=0.1)
    assert heard_all(pcm[RATE // 5 :], A, B)


async def test_recording_errors_are_clear(room: Room, tmp_path: Path) -> None:
    await room.join("a", A)
    server = room.server
    with pytest.raises(MediaError, match="cannot write the recording"):
        await server.record_start("r", "room", str(tmp_path / "no" / "dir.wav"))
    with pytest.raises(MediaError, match="no mixer or media endpoint"):
        await server.record_start("r", "ghost", str(tmp_path / "x.wav"))
    with pytest.raises(MediaError, match="record the mixer instead"):
        await server.record_start("r", "a", str(tmp_path / "x.wav"))
    with pytest.raises(MediaError, match="no recording"):
        await server.record_pause("r")
    assert server.endpoint_count == 2  # one endpoint, one mixer


# --------------------------------------------------------------------------------------------
# lifecycle


async def test_closing_and_removing_leave_nothing_behind(room: Room) -> None:
    await room.join("a", A)
    await room.join("b", B)
    server = room.server
    await server.play_to("a", "pa", AudioSpec("tone", "beep", loops=0))
    await server.mixer_play("room", "pr", AudioSpec("tone", "beep", loops=0))
    await server.close("a")
    assert await server.mixer_members("room") == ("b",)
    assert playback_events(room, "pa") == [("started", "playing"), ("ended", "stopped")]
    await server.destroy_mixer("room")
    await server.destroy_mixer("room")  # unknown: ignored
    await server.close("b")
    assert playback_events(room, "pr") == [("started", "playing"), ("ended", "stopped")]
    assert server.endpoint_count == 0
