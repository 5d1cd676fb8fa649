"""The conference mixer: every member hears everyone else and not itself, at any mix of codecs.

How one 20 ms tick works, and why (the server's ticker calls :meth:`Mixer.tick`):

1. **One format.** Each member's inbound RTP is decoded as it arrives (its codec -> 48 kHz mono)
   into a small FIFO (:class:`~callbridge.media.mix_input.MixInput`). The tick takes one
   frame per member, so a member whose packets arrive early, late or in bursts still
   contributes one frame per tick; a FIFO that grows (the device's clock runs fast, a burst
   after a stall) drops its oldest frames, so drift cannot add latency. Packets whose RFC 6464
   audio level says silence are not decoded at all (their row stays zeros, not even copied),
   and lost or late packets are concealed (Opus PLC/FEC, a faded repeat for G.711) instead of
   leaving 20 ms of digital silence in the mix: see :mod:`callbridge.media.mix_input`.
2. **One matrix.** The frames are the rows of one float32 matrix. Energies are one ``einsum``;
   the mix is one matrix-vector product with the 0/1 vector of who is heard by all. Each
   talker hears ``total - own`` (exact: the same numbers are added and taken away), whispers
   and targeted playbacks are added for their targets only. No per-sample Python.
3. **A noise gate decides who contributes.** A member counts as talking while its frame is
   above :data:`GATE_DBFS` (plus a hangover of :data:`HANGOVER_TICKS` so word endings are not
   cut). At most :data:`MAX_MIXED` talkers are mixed, the loudest (smoothed level, the ones
   already mixed counting double), as conference bridges that mix the N loudest do: a crowd
   of talkers is noise anyway, and every mixed talker costs an encode of its own. Members
   that are not mixed add nothing, so they all hear exactly the same mix. That mix
   is encoded **once per codec** and the same payload goes to all of them; only talkers,
   whisper targets and members with their own playback get an encode of their own. In a room
   of 100 with three talkers that is ≈ 5 encodes per tick instead of 100. Each endpoint still
   gets its own RTP timestamps (its :class:`~callbridge.rtp.webrtc.OutboundClock`, with the
   mixer as the source) and its own SRTP.
4. **Floor.** The loudest member heard by all, smoothed over ≈ 60 ms, above
   :data:`SPEECH_DBFS`, takes the floor once it has led for :data:`FLOOR_LEAD_TICKS` (300 ms)
   without a break, so short interjections do not make the floor flap; after
   :data:`FLOOR_SILENCE_TICKS` (1 s) of nobody talking the floor is empty.

What a member hears, first match wins: its own playback or player (``play_to``, ``play``),
hold music when held, nothing when deaf, else the mix. Who contributes: members that are not
muted, not held and not monitors; whisperers only to their ``whisper_to``.

Nothing here logs or allocates per tick beyond a few small vectors (numpy boolean masks of the
members) and the payloads it sends; buffers are reallocated only when membership changes.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from callbridge.media.interface import FloorChanged, MediaEvent, SupervisorRole
from callbridge.media.mix_input import FIFO_MAX, FIFO_PRIME, MixInput
from callbridge.media.playback import Playback
from callbridge.media.players import PayloadLoop, sound_payloads
from callbridge.media.recording import Recorder
from callbridge.rtp.codecs import MIX_FRAME, CodecSpec, FrameEncoder, Pcm

__all__ = [
    "FIFO_MAX",
    "FIFO_PRIME",
    "FLOOR_LEAD_TICKS",
    "FLOOR_SILENCE_TICKS",
    "GATE_DBFS",
    "HANGOVER_TICKS",
    "MAX_MIXED",
    "SPEECH_DBFS",
    "FrameFifo",
    "Leg",
    "Member",
    "Mixer",
]

GATE_DBFS = -55.0  # RMS level above which a member's frame counts as talking
SPEECH_DBFS = -45.0  # smoothed RMS level a member needs to take the floor
HANGOVER_TICKS = 15  # a talker keeps contributing 300 ms after its last loud frame
FLOOR_LEAD_TICKS = 15  # a new talker must lead for 300 ms to take the floor
FLOOR_SILENCE_TICKS = 50  # 1 s of nobody talking empties the floor
MAX_MIXED = 5  # talkers mixed at once at most: the loudest (see Mixer._select)
_STAY_BONUS = 2.0  # a mixed talker's level counts double (+3 dB) against newcomers
_LEVEL_SMOOTHING = 0.3  # weight of the newest frame in the floor's level average

Float32 = npt.NDArray[np.float32]


def _sum_of_squares(dbfs: float) -> float:
    """The sum of squared int16 samples over one frame of a signal at ``dbfs`` RMS."""
    return float((10 ** (dbfs / 20) * 32768) ** 2 * MIX_FRAME)


_GATE = _sum_of_squares(GATE_DBFS)
_SPEECH = _sum_of_squares(SPEECH_DBFS)


class FrameFifo:
    """A member's decoded frames between their arrival and the mixer's tick (a jitter buffer).

    After running dry it waits for :data:`FIFO_PRIME` frames before playing again, so a
    stream whose packets straddle the tick does not alternate frame/gap; it never holds more
    than :data:`FIFO_MAX` frames (the oldest go), so latency stays bounded.
    """

    def __init__(self) -> None:
        self._frames: deque[Pcm] = deque(maxlen=FIFO_MAX)
        self._primed = False

    def __len__(self) -> int:
        return len(self._frames)

    def extend(self, frames: list[Pcm]) -> None:
        self._frames.extend(frames)

    def take(self) -> Pcm | None:
        frames = self._frames
        if self._primed:
            if frames:
                return frames.popleft()
            self._primed = False
            return None
        if len(frames) >= FIFO_PRIME:
            self._primed = True
            return frames.popleft()
        return None

    def clear(self) -> None:
        self._frames.clear()
        self._primed = False


class Leg(Protocol):
    """What the mixer needs of a member's endpoint (the engine's endpoint implements it)."""

    id: str
    muted: bool

    @property
    def spec(self) -> CodecSpec | None:
        """The codec the endpoint sends in, once negotiated."""

    def plays_own_audio(self) -> bool:
        """A player or a ``play_to`` playback replaces what the endpoint hears."""

    async def tick(self) -> None:
        """Send the next packet of that player or playback."""

    def frame_encoder(self) -> FrameEncoder | None:
        """The endpoint's own encoder (48 kHz frames -> its codec), once negotiated."""

    async def send_audio(self, payload: bytes, source: object, source_ts: int) -> None:
        """Send one payload, its timestamp mapped from ``source``'s clock."""


SendNow = Callable[[bytes, object, int, float], None]


@dataclass(eq=False)
class Member:
    """One endpoint in a mixer, with its flags (see :meth:`MediaServer.mixer_update`)."""

    leg: Leg
    deaf: bool = False
    held: bool = False
    role: SupervisorRole = "none"
    whisper_to: frozenset[str] = frozenset()
    fifo: MixInput = field(default_factory=MixInput)
    hold: PayloadLoop | None = None  # hold music while held
    hold_spec: CodecSpec | None = None
    shared: bool = False  # it was sent the shared mix last tick
    hang: int = 0  # ticks of hangover left (see HANGOVER_TICKS)
    level: float = 0.0  # smoothed sum of squares, for the floor
    # The leg's synchronous send (Endpoint.send_audio_now), looked up once: the send loop
    # then makes no coroutine per member per tick. None: the leg has only send_audio.
    send_now: SendNow | None = field(init=False, default=None, repr=False)
    # The leg's spec and plays_own_audio(), for the per-tick loop: kept by the leg's
    # watch_media notifications (a re-INVITE's codec, a player, a play_to). A leg without
    # watch_media is asked every tick (watched False).
    watched: bool = field(init=False, default=False, repr=False)
    spec: CodecSpec | None = field(init=False, default=None, repr=False)
    own_audio: bool = field(init=False, default=False, repr=False)

    def __post_init__(self) -> None:
        self._bind(self.leg)

    def _bind(self, leg: Leg) -> None:
        self.send_now = getattr(leg, "send_audio_now", None)
        watch = getattr(leg, "watch_media", None)
        self.watched = watch is not None
        if watch is not None:
            watch(self.leg_changed)
        self.leg_changed()

    def leg_changed(self) -> None:
        """The leg's codec or own audio may have changed (its watch_media callback)."""
        leg = self.leg
        self.spec = leg.spec
        self.own_audio = leg.plays_own_audio()

    def unbind(self) -> None:
        """The member left its mixer: its leg stops telling it of changes."""
        unwatch = getattr(self.leg, "unwatch_media", None)
        if unwatch is not None:
            unwatch(self.leg_changed)

    def set_leg(self, leg: Leg) -> None:
        """The member's device reconnected on a new endpoint: it goes on with its flags."""
        self.unbind()
        self.leg = leg
        self._bind(leg)

    @property
    def id(self) -> str:
        return self.leg.id

    @property
    def contributes(self) -> bool:
        """Its audio reaches somebody (so its packets are worth decoding)."""
        return not (self.leg.muted or self.held or self.role == "monitor")

    @property
    def heard_by_all(self) -> bool:
        return self.contributes and self.role in ("none", "barge")


class Mixer:
    """One conference's audio (see the module docstring)."""

    def __init__(self, mixer_id: str, emit: Callable[[MediaEvent], None]) -> None:
        self.id = mixer_id
        self._emit = emit
        self._members: list[Member] = []
        self._index: dict[str, int] = {}
        self.playbacks: list[Playback] = []
        self.recorders: list[Recorder] = []
        self.floor: str | None = None
        self.ticks = 0
        self.encodes = 0  # own mixes encoded (diagnostics: the shared path is the cheap one)
        self.shared_encodes = 0  # shared mixes encoded (at most one per codec per tick)
        self._pending: str | None = None  # the member leading for the floor
        self._lead = 0  # ticks it has led
        self._quiet = 0  # ticks nobody talked
        self._shared: dict[CodecSpec, FrameEncoder] = {}
        self._dirty = True
        self._rows: list[Member] = []  # the members as the rows of the arrays were built
        self._takes: list[Callable[[], object]] = []  # each row's MixInput.take
        self._alloc(0)

    # membership -----------------------------------------------------------------------------
    @property
    def members(self) -> tuple[Member, ...]:
        return tuple(self._members)

    def member(self, endpoint_id: str) -> Member | None:
        i = self._index.get(endpoint_id)
        return self._members[i] if i is not None else None

    def add(self, leg: Leg) -> Member:
        self._save_state()
        member = Member(leg)
        self._members.append(member)
        self._index[leg.id] = len(self._members) - 1
        self._dirty = True
        return member

    def remove(self, endpoint_id: str) -> Member | None:
        i = self._index.get(endpoint_id)
        if i is None:
            return None
        self._save_state()
        member = self._members.pop(i)
        member.unbind()
        self._index = {m.id: k for k, m in enumerate(self._members)}
        self._dirty = True
        if self.floor == endpoint_id:
            self._set_floor(None)
        if self._pending == endpoint_id:
            self._pending = None
        return member

    def changed(self) -> None:
        """A member's flags (or its leg's mute) changed: recompute who hears whom."""
        self._dirty = True

    def _save_state(self) -> None:
        """Copy the per-member vectors back to the members before the rows move."""
        for i, m in enumerate(self._rows):
            m.hang = int(self._hang[i])
            m.level = float(self._level[i])

    def _alloc(self, n: int) -> None:
        self._matrix: Float32 = np.zeros((n, MIX_FRAME), dtype=np.float32)
        self._energy: Float32 = np.zeros(n, dtype=np.float32)
        self._live = [False] * n  # rows holding audio (the rest are zeros)
        self._mixed = np.zeros(n, dtype=bool)  # talkers mixed last tick
        self._hang = np.zeros(n, dtype=np.int32)
        self._level = np.zeros(n, dtype=np.float64)
        self._total: Float32 = np.zeros(MIX_FRAME, dtype=np.float32)
        self._scratch: Float32 = np.zeros(MIX_FRAME, dtype=np.float32)
        self._clip: Float32 = np.zeros(MIX_FRAME, dtype=np.float32)
        self._mix = np.zeros(MIX_FRAME, dtype=np.int16)
        self._own = np.zeros(MIX_FRAME, dtype=np.int16)

    def _rebuild(self) -> None:
        members = self._members
        n = len(members)
        if self._matrix.shape[0] != n:
            self._alloc(n)
        self._rows = list(members)
        # Bound once per membership change: the tick calls them for every member.
        self._takes = [m.fifo.take for m in members]
        self._mixed[:] = False
        self._hang[:] = [m.hang for m in members]
        self._level[:] = [m.level for m in members]
        self._by_all = np.array([m.heard_by_all for m in members], dtype=bool)
        self._whisperers = [
            (i, [self._index[t] for t in m.whisper_to if t in self._index and t != m.id])
            for i, m in enumerate(members)
            if m.role == "whisper" and m.contributes
        ]
        for m in members:
            if not m.contributes:
                m.fifo.clear()  # nothing stale when it contributes again
        self._dirty = False

    # the tick -------------------------------------------------------------------------------
    async def tick(self) -> None:
        """Mix and send one 20 ms frame to every member; feed the recorders."""
        self.ticks += 1
        if self._dirty:
            self._rebuild()
        members = self._members
        matrix = self._matrix
        live = self._live
        takes = self._takes
        rows: list[int] = []  # the rows given a frame this tick: the only ones not zero
        ndarray = np.ndarray
        for i in range(len(takes)):
            frame = takes[i]()
            if frame.__class__ is ndarray:
                matrix[i] = frame
                live[i] = True
                rows.append(i)
            elif live[i]:  # silent, not decoded, or nothing came: a zero row (once)
                matrix[i].fill(0.0)
                live[i] = False
        # Energies of the rows holding audio only (the talkers, a few): over every row it was
        # a pass over the whole n x 960 matrix per tick to learn that most rows are zeros.
        energy = self._energy
        energy.fill(0.0)
        if rows:
            audible = matrix[rows]
            energy[rows] = np.einsum("ij,ij->i", audible, audible)
        hang = self._hang
        np.subtract(hang, 1, out=hang)
        np.maximum(hang, 0, out=hang)
        hang[energy > _GATE] = HANGOVER_TICKS
        talking = hang > 0
        heard = self._select(talking & self._by_all)
        # The sum of at most MAX_MIXED rows, added one by one: a matrix-vector product over all
        # rows touched every member's row, and from ≈ 480 rows OpenBLAS ran it multithreaded,
        # 4x slower per tick on this 2-core machine.
        total = self._total
        total.fill(0.0)
        for i in np.flatnonzero(heard).tolist():
            total += matrix[i]
        extra = self._add_playbacks(total)
        for w, targets in self._whisperers:
            if talking[w]:
                for t in targets:
                    extra = _add_to(extra, t, matrix[w])
        self._update_floor(energy)
        np.copyto(self._clip, total)  # total stays unclipped: talkers get total - own
        mix = _to_pcm(self._clip, self._mix)
        for recorder in self.recorders:
            recorder.write(mix)
        await self._send(members, heard, extra, total, mix)

    def _select(self, heard: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
        """At most :data:`MAX_MIXED` talkers are mixed: the loudest by smoothed level, those
        mixed last tick counting double, so a talker is not swapped out by one loud frame of
        another (as conference bridges that mix the N loudest do)."""
        if np.count_nonzero(heard) > MAX_MIXED:
            score = np.where(heard, self._level, -1.0)
            score[self._mixed] *= _STAY_BONUS
            keep = np.argpartition(score, -MAX_MIXED)[-MAX_MIXED:]
            heard = np.zeros_like(heard)
            heard[keep] = True
        self._mixed = heard
        return heard

    def _add_playbacks(self, total: Float32) -> dict[int, Float32] | None:
        """Mix this tick of every playback in: to all into ``total``, targeted into extras."""
        extra: dict[int, Float32] | None = None
        for pb in list(self.playbacks):
            frame = pb.next_frame()
            if frame is None:
                self.playbacks.remove(pb)
                pb.end("completed")
            elif not pb.targets:
                total += frame
            else:
                for t in pb.targets:
                    i = self._index.get(t)
                    if i is not None:
                        extra = _add_to(extra, i, frame)
        return extra

    async def _send(
        self,
        members: list[Member],
        heard: npt.NDArray[np.bool_],
        extra: dict[int, Float32] | None,
        total: Float32,
        mix: Pcm,
    ) -> None:
        shared: dict[CodecSpec, bytes | None] = {}
        # The loop runs once per member per tick, so it avoids what costs there: numpy scalar
        # indexing (a set of the few own-mix rows instead), hashing the codec (a frozen
        # dataclass hashes its fields on every lookup; rooms mostly have one codec, checked by
        # identity) and recomputing the timestamp per member.
        last_spec: CodecSpec | None = None
        last_payload: bytes | None = None
        last_ts = 0
        ticks = self.ticks
        now = time.monotonic()  # one clock read per tick for every member's OutboundClock
        self._take_over_shared_state(members, heard, extra)
        own_rows = set(np.flatnonzero(heard).tolist())
        if extra is not None:
            own_rows.update(extra)
        for i, m in enumerate(members):
            leg = m.leg
            if m.watched:
                own_audio, spec = m.own_audio, m.spec
            else:
                own_audio, spec = leg.plays_own_audio(), leg.spec
            if own_audio:
                m.shared = False
                await leg.tick()
                continue
            if spec is None or m.held or m.deaf:
                m.shared = False
                if spec is not None and m.held:
                    await self._send_hold(m, spec)
                continue  # not negotiated yet, or hears nothing of the mix
            payload: bytes | None
            if i in own_rows:
                m.shared = False
                encoder = leg.frame_encoder()
                if encoder is None:
                    continue
                scratch = self._scratch
                if heard[i]:
                    np.subtract(total, self._matrix[i], out=scratch)
                else:
                    scratch[:] = total
                own = extra.get(i) if extra is not None else None
                if own is not None:
                    scratch += own
                payload = encoder.encode(_to_pcm(scratch, self._own))
                self.encodes += 1
                ts = ticks * spec.timestamp_step
            else:
                m.shared = True
                if spec is not last_spec:
                    if spec in shared:
                        payload = shared[spec]
                    else:
                        encoder = self._shared.get(spec)
                        if encoder is None:
                            encoder = self._shared[spec] = FrameEncoder(spec)
                        payload = shared[spec] = encoder.encode(mix)
                        self.shared_encodes += 1
                    last_spec, last_payload = spec, payload
                    last_ts = ticks * spec.timestamp_step
                payload, ts = last_payload, last_ts
            if payload is not None:
                send_now = m.send_now
                if send_now is not None:
                    send_now(payload, self, ts, now)
                else:
                    await leg.send_audio(payload, self, ts)

    def _take_over_shared_state(
        self,
        members: list[Member],
        heard: npt.NDArray[np.bool_],
        extra: dict[int, Float32] | None,
    ) -> None:
        """Members moving from the shared mix to their own encode continue from the shared
        encoder's state (before it encodes this tick), so their decoders notice nothing (see
        :mod:`callbridge.rtp.opus`)."""
        own = np.flatnonzero(heard).tolist()
        if extra is not None:
            own += extra.keys()
        for i in own:
            m = members[i]
            if not m.shared or m.held or m.deaf or m.leg.plays_own_audio():
                continue
            spec = m.leg.spec
            source = self._shared.get(spec) if spec is not None else None
            encoder = m.leg.frame_encoder()
            if source is not None and encoder is not None:
                encoder.copy_state_from(source)

    async def _send_hold(self, m: Member, spec: CodecSpec) -> None:
        hold = m.hold
        if hold is None or m.hold_spec is not spec:
            hold = m.hold = PayloadLoop(
                "hold-music", sound_payloads("hold-music", spec), spec.timestamp_step
            )
            m.hold_spec = spec
        payload = hold.next_payload()
        if payload is not None:
            await m.leg.send_audio(payload, hold, hold.timestamp)

    # floor ----------------------------------------------------------------------------------
    def _update_floor(self, energy: Float32) -> None:
        level = self._level
        level *= 1 - _LEVEL_SMOOTHING
        level += _LEVEL_SMOOTHING * energy
        loudest: str | None = None
        if self._members:
            candidates = np.where(self._by_all, level, 0.0)
            i = int(np.argmax(candidates))
            if candidates[i] > _SPEECH:
                loudest = self._members[i].id
        if loudest is None:
            self._pending = None
            self._quiet += 1
            if self.floor is not None and self._quiet >= FLOOR_SILENCE_TICKS:
                self._set_floor(None)
            return
        self._quiet = 0
        if loudest == self.floor:
            self._pending = None
            return
        if loudest != self._pending:
            self._pending, self._lead = loudest, 0
        self._lead += 1
        if self._lead >= FLOOR_LEAD_TICKS:
            self._pending = None
            self._set_floor(loudest)

    def _set_floor(self, endpoint_id: str | None) -> None:
        if endpoint_id != self.floor:
            self.floor = endpoint_id
            self._emit(FloorChanged(self.id, endpoint_id))


def _add_to(extra: dict[int, Float32] | None, i: int, frame: Pcm | Float32) -> dict[int, Float32]:
    """Add ``frame`` to member ``i``'s extra audio (whispers, targeted playbacks)."""
    if extra is None:
        extra = {}
    acc = extra.get(i)
    if acc is None:
        extra[i] = np.asarray(frame, dtype=np.float32).copy()
    else:
        acc += frame
    return extra


def _to_pcm(x: Float32, out: Pcm) -> Pcm:
    """Clip a float mix to int16 into ``out`` (reused buffer); ``x`` is clipped in place."""
    np.clip(x, -32768.0, 32767.0, out=x)
    np.copyto(out, x, casting="unsafe")
    return out
