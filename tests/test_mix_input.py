"""The mixer's fast path and loss concealment, deterministically: no network, no clock.

A :class:`~callbridge.media.mixer.Mixer` of fake legs is fed RTP payloads exactly as the
endpoint feeds it (``member.fifo.feed``: payload, sequence number, codec, RFC 6464 level),
one packet per member per tick, and what each leg is sent is decoded and analysed. The real
paths (WebRTC peers through the engine) are tests/test_mixer.py's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from callbridge.media.mix_input import SILENT, MixInput, OpusDecoder
from callbridge.media.mixer import HANGOVER_TICKS, MAX_MIXED, Mixer
from callbridge.media.players import encode_loop
from callbridge.rtp.codecs import CODECS, MIX_FRAME, MIX_RATE, CodecSpec, FrameEncoder, Pcm
from callbridge.testing import rms_dbfs, tone_level_db

OPUS = CODECS["opus"]
PCMU = CODECS["pcmu"]
LOUD = (True, 10)  # RFC 6464: voice, -10 dBov
QUIET = (False, 127)  # digital silence


@dataclass(eq=False)
class FakeLeg:
    """What the mixer needs of an endpoint; keeps what it is sent."""

    id: str
    codec: CodecSpec = OPUS
    muted: bool = False
    sent: list[bytes] = field(default_factory=list)
    _encoder: FrameEncoder | None = None

    @property
    def spec(self) -> CodecSpec:
        return self.codec

    def plays_own_audio(self) -> bool:
        return False

    async def tick(self) -> None:
        pass

    def frame_encoder(self) -> FrameEncoder:
        if self._encoder is None:
            self._encoder = FrameEncoder(self.codec)
        return self._encoder

    async def send_audio(self, payload: bytes, source: object, source_ts: int) -> None:
        self.sent.append(payload)

    def heard(self, last: int = 25) -> Pcm:
        """The last ``last`` payloads it was sent, decoded (Opus) to 48 kHz."""
        decoder = OpusDecoder()
        frames = [f for p in self.sent for f in decoder.decode(p)]
        return np.concatenate(frames[-last:])


def tone_loop(freq: float, spec: CodecSpec = OPUS, amplitude: float = 0.3) -> tuple[bytes, ...]:
    """1 s of a tone (whole cycles), encoded as a device would send it."""
    t = np.arange(spec.sample_rate) / spec.sample_rate
    return encode_loop((amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16), spec)


SILENCE = encode_loop(np.zeros(MIX_RATE, dtype=np.int16), OPUS)


class Room:
    """A mixer, its legs, what each sends (a payload loop or silence), and a recorder."""

    def __init__(self) -> None:
        self.mixer = Mixer("room", lambda event: None)
        self.legs: dict[str, FakeLeg] = {}
        self.loops: dict[str, tuple[bytes, ...]] = {}
        self.levels: dict[str, tuple[bool, int] | None] = {}
        self.mix: list[Pcm] = []
        self.mixer.recorders.append(self)  # type: ignore[arg-type]
        self.k = 0

    def write(self, frame: Pcm) -> None:
        self.mix.append(frame.copy())

    def join(self, name: str, freq: float | None, amplitude: float = 0.3) -> FakeLeg:
        leg = self.legs[name] = FakeLeg(name)
        self.mixer.add(leg)
        self.talk(name, freq, amplitude)
        return leg

    def talk(self, name: str, freq: float | None, amplitude: float = 0.3) -> None:
        self.loops[name] = tone_loop(freq, amplitude=amplitude) if freq else SILENCE
        self.levels[name] = LOUD if freq else QUIET

    async def run(self, ticks: int, drop: frozenset[tuple[str, int]] = frozenset()) -> None:
        for _ in range(ticks):
            for name, loop in self.loops.items():
                member = self.mixer.member(name)
                if (name, self.k) not in drop and member is not None:
                    member.fifo.feed(loop[self.k % len(loop)], self.k, OPUS, self.levels[name])
            await self.mixer.tick()
            self.k += 1


async def test_silent_members_are_not_decoded_and_hear_the_talkers_not_themselves() -> None:
    room = Room()
    a, b = room.join("a", 440.0), room.join("b", 700.0)
    quiet = [room.join(f"q{i}", None) for i in range(20)]
    await room.run(40)
    for leg in quiet:
        member = room.mixer.member(leg.id)
        assert member is not None
        assert member.fifo.decoded == 0 and member.fifo.skipped == 40
        pcm = leg.heard()
        assert tone_level_db(pcm, MIX_RATE, 440) > -20 and tone_level_db(pcm, MIX_RATE, 700) > -20
    assert tone_level_db(a.heard(), MIX_RATE, 440) < -50 < tone_level_db(a.heard(), MIX_RATE, 700)
    assert tone_level_db(b.heard(), MIX_RATE, 700) < -50 < tone_level_db(b.heard(), MIX_RATE, 440)
    # The twenty share one encode; the two talkers get one each.
    assert quiet[0].sent[-1] == quiet[19].sent[-1] != a.sent[-1]


async def test_a_talker_that_falls_silent_leaves_the_mix_after_its_hangover_and_returns() -> None:
    # The tick computes energies of the rows given audio this tick only (the rest are zeros):
    # a talker turned silent must still count down its hangover and leave the own-mix set.
    room = Room()
    a = room.join("a", 440.0)
    room.join("b", 700.0)
    quiet = room.join("q", None)
    await room.run(30)
    assert a.sent[-1] != quiet.sent[-1]  # a talker gets its own mix (not itself)
    room.talk("a", None)  # a falls silent (RFC 6464 silence: not decoded)
    await room.run(HANGOVER_TICKS + 10)
    member = room.mixer.member("a")
    assert member is not None and member.shared  # back on the shared mix
    assert a.sent[-1] == quiet.sent[-1]
    pcm = np.concatenate(room.mix[-5:])
    assert tone_level_db(pcm, MIX_RATE, 440) < -60 and tone_level_db(pcm, MIX_RATE, 700) > -20
    room.talk("a", 440.0)
    await room.run(10)
    assert a.sent[-1] != quiet.sent[-1]
    assert tone_level_db(np.concatenate(room.mix[-5:]), MIX_RATE, 440) > -20


async def test_the_loudest_talkers_are_mixed_and_a_louder_newcomer_gets_in() -> None:
    room = Room()
    freqs = [300.0 + 110 * k for k in range(MAX_MIXED + 2)]
    amplitudes = [0.02 + 0.02 * k for k in range(MAX_MIXED + 2)]  # the first two the quietest
    for k, (f, amp) in enumerate(zip(freqs, amplitudes, strict=True)):
        room.join(f"t{k}", f, amp)
    listener = room.join("listener", None)
    await room.run(40)
    pcm = np.concatenate(room.mix[-25:])  # the mix itself, before any encode
    got = [tone_level_db(pcm, MIX_RATE, f) for f in freqs]
    assert all(db < -60 for db in got[:2]), got  # the two quietest are not mixed (leakage)
    assert all(db > -35 for db in got[2:]), got
    assert tone_level_db(listener.heard(), MIX_RATE, freqs[-1]) > -35  # and it is sent
    # A new talker, louder than everyone, is mixed within a few ticks (the quietest goes).
    room.join("new", 1250.0, 0.3)  # (the sum stays below full scale: no clipping products)
    await room.run(30)
    pcm = np.concatenate(room.mix[-25:])
    assert tone_level_db(pcm, MIX_RATE, 1250.0) > -20
    assert tone_level_db(pcm, MIX_RATE, freqs[2]) < -60
    assert all(tone_level_db(pcm, MIX_RATE, f) > -35 for f in freqs[3:])
    # Talkers left out hear what the listeners hear: the shared encode (no own mix).
    assert room.legs["t0"].sent[-1] == room.legs["t2"].sent[-1] == listener.sent[-1]


def holes(frames: list[Pcm], block: int = MIX_FRAME // 4) -> list[float]:
    """RMS level (dBFS) of every 5 ms block of ``frames``."""
    pcm = np.concatenate(frames)
    return [rms_dbfs(pcm[i : i + block]) for i in range(0, pcm.size - block + 1, block)]


@pytest.mark.parametrize("codec", [OPUS, PCMU], ids=["opus", "pcmu"])
async def test_a_lost_packet_is_concealed_not_a_hole_of_silence(codec: CodecSpec) -> None:
    loop = tone_loop(440.0, codec)
    mix = MixInput()
    out: list[Pcm] = []
    for k in range(30):
        if k != 15:  # packet 15 is lost: 16 arrives with a gap
            mix.feed(loop[k % len(loop)], k, codec, None)
        frame = mix.take()
        if isinstance(frame, np.ndarray):
            out.append(frame)
        else:
            assert not out  # once primed, every tick plays a frame
    assert mix.concealed == 1
    steady = rms_dbfs(np.concatenate(out[5:12]))
    around = holes(out[10:22])
    assert min(around) > steady - 6, (steady, around)  # no 5 ms block falls to silence


async def test_a_late_packet_is_concealed_at_the_tick_and_then_dropped() -> None:
    loop = tone_loop(440.0)
    mix = MixInput()
    out: list[Pcm] = []
    for k in range(30):
        if k == 16:  # 14 and 15 come late, together with 16, in order
            mix.feed(loop[14], 14, OPUS, None)
            mix.feed(loop[15], 15, OPUS, None)
        if k not in (14, 15):
            mix.feed(loop[k % len(loop)], k, OPUS, None)
        frame = mix.take()
        if k:  # a frame every tick once primed (at tick 1)
            assert isinstance(frame, np.ndarray), k
            out.append(frame)
    # The FIFO ran dry at tick 15 (concealed); packet 15 then came too late and was dropped,
    # so the FIFO's depth (its latency) is what it was before.
    assert mix.concealed == 1
    assert len(mix) == 1
    steady = rms_dbfs(np.concatenate(out[5:12]))
    assert min(holes(out[10:22])) > steady - 6


async def test_rfc6464_silence_is_not_decoded_and_speech_after_it_is() -> None:
    loop = tone_loop(440.0)
    mix = MixInput()
    for k in range(10):
        mix.feed(SILENCE[k], k, OPUS, QUIET)
    assert mix.decoded == 0 and mix.take() is SILENT
    for k in range(10, 20):
        mix.feed(loop[k], k, OPUS, LOUD)
    frames = [mix.take() for _ in range(12)]
    played = np.concatenate([f for f in frames if isinstance(f, np.ndarray)])
    assert mix.decoded == 10 and tone_level_db(played, MIX_RATE, 440) > -15


async def test_g711_silence_without_a_level_is_not_decoded_and_speech_is() -> None:
    silence = encode_loop(np.zeros(8000, dtype=np.int16), PCMU)
    tone = tone_loop(440.0, PCMU, amplitude=0.01)  # -43 dBFS: quiet, above the gate
    mix = MixInput()
    for k in range(10):
        mix.feed(silence[k], k, PCMU, None)
    assert mix.decoded == 0 and mix.skipped == 10
    for k in range(10, 20):
        mix.feed(tone[k], k, PCMU, None)
    assert mix.decoded == 10
    frames = [mix.take() for _ in range(12)]
    played = np.concatenate([f for f in frames if isinstance(f, np.ndarray)])
    assert tone_level_db(played, MIX_RATE, 440) > -50
