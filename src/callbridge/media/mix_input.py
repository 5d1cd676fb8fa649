"""A mixer member's inbound audio: decode only what is heard, conceal what is lost.

:class:`MixInput` sits between a member's RTP packets (:meth:`feed`, from the endpoint) and
the mixer's 20 ms tick (:meth:`take`). It is the member's jitter FIFO (as
:class:`~callbridge.media.mixer.FrameFifo`: primed with :data:`FIFO_PRIME` frames, at most
:data:`FIFO_MAX`) plus three things that make a large room cheap and a lossy leg smooth:

- **Silent packets are not decoded.** When the leg sends the RFC 6464 client-to-mixer audio
  level (``urn:ietf:params:rtp-hdrext:ssrc-audio-level``; every browser does, aiortc
  negotiates it) and the level is below :data:`SILENT_DBOV` (the mixer's gate,
  :data:`~callbridge.media.mixer.GATE_DBFS`), the packet becomes a :data:`SILENT` entry: no
  decode, no copy into the mix matrix. In a room of 200 with 3 talkers that is 197 decodes
  per tick saved (a libopus decode is ≈ 30 µs on this machine). Opus decoders carry state
  (CELT band energies, SILK filters), so a decoder that skipped packets is reset before its
  next decode: the member's next talkspurt starts as a new stream would.
- **G.711 silence is found before decoding.** Without a level (most SIP phones send none), a
  G.711 payload is expanded through a 256-entry table (the codec is stateless) and its energy
  checked against the same gate; only frames above it go through the decoder and the
  resampler to 48 kHz. Opus without a level has to be decoded to know.
- **Opus through libopus directly** (:class:`OpusDecoder`, ctypes, the library
  :mod:`callbridge.rtp.opus` already loads): no PyAV frame objects per packet, and it gives
  us packet-loss concealment and in-band FEC, which PyAV's decoder does not expose.
- **Loss concealment instead of silence.** A gap in the sequence numbers (up to
  :data:`MAX_GAP` packets) is filled when the next packet arrives: Opus PLC for the missing
  frames, the last one from that packet's in-band FEC (RFC 6716 section 2.1.7; libopus falls
  back to PLC when the packet carries none, so whether the leg negotiated ``useinbandfec``
  only changes the quality). A FIFO that runs dry while playing is concealed at the tick too,
  for at most :data:`MAX_CONCEALED` ticks; the packet that then arrives late for a concealed
  slot is dropped (its slot was played). G.711 and G.722 legs repeat their last frame with a
  fade (ITU-T G.711 Appendix I's attenuation, simplified: no pitch search), so a lost packet
  is never a 20 ms hole of digital silence in the mix.
"""

from __future__ import annotations

import ctypes
from collections import deque

import numpy as np

from callbridge.rtp.codecs import MIX_FRAME, AudioDecoder, CodecSpec, FrameDecoder, Pcm
from callbridge.rtp.opus import libopus

__all__ = [
    "FIFO_MAX",
    "FIFO_PRIME",
    "MAX_CONCEALED",
    "MAX_GAP",
    "SILENT",
    "SILENT_DBOV",
    "MixInput",
    "OpusDecoder",
]

FIFO_PRIME = 2  # frames the FIFO collects before it plays (after it ran dry)
FIFO_MAX = 4  # frames it holds at most: 80 ms; older frames are dropped
MAX_GAP = 3  # missing packets concealed at once; a larger jump is a new stream
MAX_CONCEALED = 3  # ticks concealed in a row when the FIFO runs dry, then silence
SILENT_DBOV = 55  # RFC 6464 level (-dBov) from which a packet is not decoded: the gate

# The fade of a repeated G.711 frame: Appendix I attenuates 20 % per 10 ms after the first
# 10 ms and is silent after 60 ms. Per concealed 20 ms frame: start and end gain.
_FADE = ((1.0, 0.8), (0.8, 0.4), (0.4, 0.0))
_RAMPS = [np.linspace(a, b, MIX_FRAME, dtype=np.float32) for a, b in _FADE]

# The gate as the sum of squares of one 20 ms frame at 8 kHz (160 samples) at SILENT_DBOV.
_G711_GATE = (10 ** (-SILENT_DBOV / 20) * 32768) ** 2 * 160
_g711_tables: dict[str, np.ndarray] = {}


def _g711_table(spec: CodecSpec) -> np.ndarray:
    """Every G.711 byte's linear value (float32), from the codec's own decoder, once."""
    table = _g711_tables.get(spec.name)
    if table is None:
        pcm = AudioDecoder(spec).decode(bytes(range(256)))
        table = _g711_tables[spec.name] = pcm.astype(np.float32)
    return table


_OPUS_RESET_STATE = 4028
_MAX_OPUS_SAMPLES = 5760  # 120 ms at 48 kHz: the longest Opus packet
# Every decoder decodes into this one buffer and returns copies: per-member buffers would
# add 11 KiB each to what a tick touches (measured: from ≈ 400 members on, the per-member
# cost of a tick doubled when the per-member state stopped fitting in the cache).
_OUT = np.zeros(_MAX_OPUS_SAMPLES, dtype=np.int16)


class _Silent:
    """The FIFO entry of a frame known to be silent (not decoded)."""

    def __repr__(self) -> str:
        return "SILENT"


SILENT = _Silent()
Entry = Pcm | _Silent


class OpusDecoder:
    """libopus decoding at 48 kHz mono, with PLC and FEC (see the module docstring)."""

    def __init__(self) -> None:
        lib = libopus()
        self._lib = lib
        lib.opus_decoder_get_size.restype = ctypes.c_int
        lib.opus_decoder_get_size.argtypes = [ctypes.c_int]
        lib.opus_decoder_init.restype = ctypes.c_int
        lib.opus_decoder_init.argtypes = [ctypes.c_void_p, ctypes.c_int32, ctypes.c_int]
        lib.opus_decode.restype = ctypes.c_int
        lib.opus_decode.argtypes = [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_int32,
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_int,
        ]
        self._state = ctypes.create_string_buffer(lib.opus_decoder_get_size(1))
        status = lib.opus_decoder_init(self._state, 48000, 1)
        if status != 0:
            raise RuntimeError(f"opus_decoder_init failed ({status})")

    def decode(self, payload: bytes | None, fec: bool = False) -> list[Pcm]:
        """One payload -> its 20 ms frames (copies). ``None``: one frame of PLC; ``fec``:
        the frame *before* ``payload``, from its in-band FEC (PLC when it has none)."""
        n_max = MIX_FRAME if payload is None or fec else _MAX_OPUS_SAMPLES
        n = self._lib.opus_decode(
            self._state,
            payload,
            len(payload) if payload is not None else 0,
            _OUT.ctypes.data,
            n_max,
            int(fec),
        )
        if n <= 0:
            return []  # a corrupt packet: nothing (the FIFO conceals it like a lost one)
        out = _OUT
        return [out[i : i + MIX_FRAME].copy() for i in range(0, n - MIX_FRAME + 1, MIX_FRAME)]

    def reset(self) -> None:
        self._lib.opus_decoder_ctl(self._state, _OPUS_RESET_STATE)


class MixInput:
    """One member's decoded audio for the mixer (see the module docstring)."""

    def __init__(self) -> None:
        self._frames: deque[Entry] = deque(maxlen=FIFO_MAX)
        self._primed = False
        self._spec: CodecSpec | None = None
        self._is_opus = False
        self._opus: OpusDecoder | None = None  # created at its first decode
        self._other: FrameDecoder | None = None  # G.711 / G.722: decode and resample
        self._table: np.ndarray | None = None  # G.711: byte -> linear, for the energy check
        self._next: int | None = None  # the sequence number expected next
        self._skipped = False  # packets were not decoded: reset the decoder before the next
        self._last: Pcm | _Silent = SILENT  # the last frame played (for G.711 concealment)
        self._concealed = 0  # ticks concealed in a row
        self._owed = 0  # concealed slots whose packet may still arrive (late: dropped)
        self.decoded = 0  # packets decoded (diagnostics)
        self.skipped = 0  # packets not decoded (silent by their RFC 6464 level)
        self.concealed = 0  # frames concealed (gaps and underruns)

    def __len__(self) -> int:
        return len(self._frames)

    # arrival --------------------------------------------------------------------------------
    def feed(
        self, payload: bytes, seq: int, spec: CodecSpec, level: tuple[bool, int] | None
    ) -> None:
        """One RTP packet of this member: ``level`` is its RFC 6464 (vad, -dBov), if sent."""
        if spec is not self._spec:
            self._set_codec(spec)
        expected = self._next
        # In order and nothing owed (nearly every packet): no gap arithmetic.
        if expected is not None and (seq != expected or self._owed):
            gap = (seq - expected) & 0xFFFF
            if gap >= 0x8000:
                return  # older than expected: a duplicate, or late for a concealed slot
            if self._owed:  # the slots from `expected` on that ticks have concealed already
                played = min(self._owed, gap + 1)
                self._owed -= played
                if played > gap:  # this packet's own slot was played: too late
                    self._next = (seq + 1) & 0xFFFF
                    return
                gap -= played
            if 0 < gap <= MAX_GAP:
                self._conceal_gap(gap, payload, level)
        self._next = (seq + 1) & 0xFFFF
        if (level is not None and level[1] >= SILENT_DBOV) or (
            self._table is not None and self._g711_silent(payload)
        ):
            self._frames.append(SILENT)
            self._skipped = True
            self.skipped += 1
            return
        self._frames.extend(self._decode(payload))

    def _g711_silent(self, payload: bytes) -> bool:
        """A 20 ms G.711 payload whose energy is below the gate (see the module docstring)."""
        table = self._table
        if table is None or len(payload) != 160:
            return False
        x = table[np.frombuffer(payload, dtype=np.uint8)]
        return float(np.dot(x, x)) < _G711_GATE

    def extend(self, frames: list[Pcm]) -> None:
        """Frames decoded elsewhere (tests, playbacks)."""
        self._frames.extend(frames)

    def _set_codec(self, spec: CodecSpec) -> None:
        self._spec = spec
        self._is_opus = spec.name == "opus"
        self._opus = None
        self._other = FrameDecoder(spec) if not self._is_opus else None
        self._table = _g711_table(spec) if spec.name in ("PCMU", "PCMA") else None
        self._next = None
        self._skipped = False

    def _opus_decoder(self) -> OpusDecoder:
        """The Opus decoder, created at its first use (a member that never talks needs none)
        and reset if packets went undecoded since its last decode."""
        opus = self._opus
        if opus is None:
            opus = self._opus = OpusDecoder()
        elif self._skipped:
            opus.reset()
        self._skipped = False
        return opus

    def _decode(self, payload: bytes) -> list[Pcm]:
        self.decoded += 1
        if self._is_opus:
            return self._opus_decoder().decode(payload)
        assert self._other is not None
        self._skipped = False
        return self._other.decode(payload)

    def _conceal_gap(self, gap: int, payload: bytes, level: tuple[bool, int] | None) -> None:
        """``gap`` packets are missing before ``payload``: conceal them into the FIFO."""
        self.concealed += gap
        if level is not None and level[1] >= SILENT_DBOV and self._last is SILENT:
            self._frames.extend([SILENT] * gap)  # silence on both sides: nothing to conceal
            return
        if self._is_opus:
            opus = self._opus_decoder()
            for _ in range(gap - 1):
                self._frames.extend(opus.decode(None))
            self._frames.extend(opus.decode(payload, fec=True))
            return
        last = self._frames[-1] if self._frames else self._last
        for k in range(min(gap, len(_RAMPS))):
            self._frames.append(_faded(last, k))

    # the tick -------------------------------------------------------------------------------
    def take(self) -> Pcm | _Silent | None:
        """The next frame for the mix: a PCM frame, :data:`SILENT` (known silent, not
        decoded), or ``None`` (nothing: not primed, or concealment is over)."""
        frames = self._frames
        if not self._primed:
            if len(frames) < FIFO_PRIME:
                return None
            self._primed = True
        if frames:
            self._concealed = 0
            self._owed = 0
            frame = self._last = frames.popleft()
            return frame
        if self._concealed >= MAX_CONCEALED or self._last is SILENT:
            self._primed = False
            self._owed = 0
            return SILENT if self._last is SILENT else None
        self._concealed += 1
        self._owed += 1
        self.concealed += 1
        return self._conceal_tick()

    def _conceal_tick(self) -> Entry | None:
        if self._is_opus:
            frames = self._opus_decoder().decode(None)
            return frames[0] if frames else None
        last = self._last
        assert not isinstance(last, _Silent)
        return _faded(last, self._concealed - 1)

    def clear(self) -> None:
        self._frames.clear()
        self._primed = False
        self._next = None
        self._owed = self._concealed = 0
        self._last = SILENT
        if self._is_opus:
            self._skipped = True  # its next decode starts from a reset state


def _faded(frame: Entry, k: int) -> Entry:
    """``frame`` repeated as the ``k``-th concealed frame (G.711 Appendix I style fade)."""
    if isinstance(frame, _Silent) or k >= len(_RAMPS):
        return SILENT
    return (frame * _RAMPS[k]).astype(np.int16)
