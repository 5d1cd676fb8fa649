"""An in-memory MediaServer for fast, deterministic tests of the control plane.

:class:`FakeMediaServer` implements :class:`~callbridge.media.interface.MediaServer` without any
media: no sockets, no codecs, no clock. It answers offers with small SDP, keeps the state the
interface describes (endpoints, bridges, players, mutes, mixers and their members' flags,
playbacks, recordings, DTMF sent) and lets a test read it, inject the events a real media plane
would send, and stage races::

    fake = FakeMediaServer()
    controller = CallController(fake, ...)            # the core under test
    gate = fake.hold("accept_answer", "leg-2")         # leg-2's answer stalls in the media plane
    task = asyncio.create_task(bob.answer(...))        # ... the core is now awaiting it
    await gate.reached()
    await alice.hangup(...)                            # the race: a hangup during the answer
    gate.release()
    await task
    await fake.settle()
    assert fake.open_endpoints() == ()                 # nothing leaked
    assert fake.hears("leg-1") is None

Errors are the engine's (:class:`~callbridge.errors.MediaError` with the same codes): unknown
ids, an offer that is not SDP (no ``v=0``), no audio m-line or no codec callbridge carries,
an existing id, bad DTMF digits, a member flag on a non-member. :meth:`FakeMediaServer.raise_on`
makes a chosen call fail instead.

The endpoints and their offer/answer (which codec, video and telephone-event the fake settles,
as the engine would) are the base class, :class:`~callbridge.testing.fake_endpoints.FakeEndpoints`;
the playbacks and recordings are kept by :class:`~callbridge.testing.fake_sounds.FakeSounds`.

Events are delivered to subscribers synchronously as they happen, like the engine does, or
with ``queue_events=True`` only when the test calls :meth:`FakeMediaServer.settle`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from callbridge.errors import ErrorCode, MediaError
from callbridge.media.checks import NOT_FOUND, check_role, not_in_mixer
from callbridge.media.dtmf import check_digits
from callbridge.media.interface import (
    AudioSpec,
    DtmfReceived,
    EndpointState,
    EndpointStateChanged,
    FloorChanged,
    MediaEvent,
    MediaServer,
    PlaybackStatus,
    PlayerName,
    RecordingFormat,
    SupervisorRole,
)
from callbridge.rtp.rfc4733 import DIGITS
from callbridge.testing.fake_endpoints import FakeEndpoint, MemberState
from callbridge.testing.fake_plain import FakePlainEndpoints
from callbridge.testing.fake_sdp import Negotiated
from callbridge.testing.fake_sounds import FakeSounds, PlaybackRecord, RecordingRecord
from callbridge.testing.staging import Gate, StagedCall, When, staged

__all__ = [
    "FakeMediaServer",
    "Gate",
    "MediaMethod",
    "MemberState",
    "Negotiated",
    "PlaybackRecord",
    "RecordingRecord",
    "SentDtmf",
    "StagedCall",
]

MediaMethod = Literal[
    "answer", "offer", "reconnect", "accept_answer", "renegotiate", "reoffer", "add_candidate",
    "endpoint_info", "bridge", "unbridge", "set_muted", "play", "stop_playing", "close",
    "create_mixer", "destroy_mixer", "mixer_add", "mixer_remove", "mixer_update",
    "mixer_members", "mixer_play", "play_to", "stop_playback", "stop_all", "probe_audio",
    "send_dtmf", "record_start", "record_pause", "record_resume", "record_stop", "shutdown",
    "answer_rtp", "offer_rtp", "renegotiate_rtp", "reoffer_rtp",
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class SentDtmf:
    """One :meth:`send_dtmf`: ``rfc4733`` when the endpoint negotiated telephone-event (the
    engine would send named events), else in-band tones."""

    endpoint_id: str
    digits: str
    duration_ms: int
    rfc4733: bool


class FakeMediaServer(FakePlainEndpoints):
    """The MediaServer interface in memory (see the module docstring)."""

    def __init__(
        self, *, queue_events: bool = False, clock: Callable[[], float] | None = None
    ) -> None:
        """``queue_events``: hold events until :meth:`settle`. ``clock``: seconds, for the
        recordings' ``duration_secs`` (without one they last 0 s)."""
        super().__init__()
        self.queue_events = queue_events
        self._handlers: list[Callable[[MediaEvent], None]] = []
        self._queued: list[MediaEvent] = []
        self._mixers: dict[str, list[str]] = {}
        self.sounds = FakeSounds(self._emit, clock)
        self._closed: list[str] = []
        self.events: list[MediaEvent] = []
        """Every event the fake emitted (delivered or queued), in order."""
        self.dtmf_sent: list[SentDtmf] = []
        self.bad_audio = self.sounds.bad_audio
        """Locations (file paths, URLs, texts) that fail to load, as a missing file would."""
        self.audio_seconds = self.sounds.audio_seconds
        """What :meth:`probe_audio` says a location lasts (default 1 s; tones their length)."""

    # staging ----------------------------------------------------------------------------------
    def hold(self, method: MediaMethod, about: str | None = None, *, when: When = "before") -> Gate:
        """Hold the next call of ``method`` about ``about`` (any id argument of the call, e.g.
        either endpoint of a bridge; any call when ``None``) until the test releases the gate.

        ``before``: it waits before it has any effect (its checks run after the release, on
        the state of that moment); ``after``: the media plane has done it, but the caller has
        not heard back yet. :meth:`Gate.fail` makes it raise instead.
        """
        return self.stager.hold(method, about, when)

    def raise_on(
        self,
        method: MediaMethod,
        about: str | None = None,
        error: MediaError | None = None,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` calls of ``method`` (about ``about``, if given) raise
        ``error`` before they have any effect (default: an ``internal_error``)."""
        self.stager.raise_on(method, about, error, times)

    @property
    def calls(self) -> list[StagedCall]:
        """Every call the control plane made, in order."""
        return self.stager.calls

    def calls_to(self, method: MediaMethod) -> list[tuple[object, ...]]:
        """The positional arguments of each call of ``method``, in order."""
        return [c.args for c in self.calls if c.method == method]

    # events ---------------------------------------------------------------------------------
    def subscribe(self, handler: Callable[[MediaEvent], None]) -> None:
        self._handlers.append(handler)

    def _emit(self, event: MediaEvent) -> None:
        self.events.append(event)
        if self.queue_events:
            self._queued.append(event)
        else:
            self._deliver(event)

    def _deliver(self, event: MediaEvent) -> None:
        for handler in list(self._handlers):
            handler(event)  # a failing handler fails the test: no log to hide it in

    async def settle(self, rounds: int = 20) -> None:
        """Deliver the queued events, then let other tasks run until ``rounds`` turns of the
        event loop in a row have produced no new event (held calls stay held)."""
        idle = 0
        while idle < rounds:
            if self._queued:
                queued, self._queued = self._queued, []
                for event in queued:
                    self._deliver(event)
                idle = 0
            else:
                idle += 1
            await asyncio.sleep(0)

    def emit_dtmf(self, endpoint_id: str, digit: str) -> None:
        """The device of ``endpoint_id`` sent a DTMF digit."""
        self._ep(endpoint_id)
        if digit not in DIGITS:
            raise ValueError(f"{digit!r} is not a DTMF digit ({DIGITS})")
        self._emit(DtmfReceived(endpoint_id, digit))

    def connect(self, endpoint_id: str) -> None:
        """The endpoint's media connected (ICE and DTLS up)."""
        self._set_state(endpoint_id, "connected")

    def fail(self, endpoint_id: str) -> None:
        """The endpoint's media failed (its device lost the network)."""
        self._set_state(endpoint_id, "failed")

    def _set_state(self, endpoint_id: str, state: EndpointState) -> None:
        self._ep(endpoint_id).state = state
        self._emit(EndpointStateChanged(endpoint_id, state))

    def end_playback(
        self, playback_id: str, status: PlaybackStatus = "completed", detail: str = ""
    ) -> None:
        """A playing playback ended by itself (played to its end, or ``failed``)."""
        if self.sounds.playing(playback_id) is None:
            raise ValueError(f"playback {playback_id} is not playing")
        self._end(playback_id, status, detail)

    def change_floor(self, mixer_id: str, endpoint_id: str | None) -> None:
        """The mixer's active talker changed (``None``: nobody talks)."""
        members = self._mixer(mixer_id)
        if endpoint_id is not None and endpoint_id not in members:
            raise ValueError(f"{endpoint_id} is not a member of mixer {mixer_id}")
        self._emit(FloorChanged(mixer_id, endpoint_id))

    # what a test can read -------------------------------------------------------------------
    @property
    def endpoint_count(self) -> int:
        """Media objects alive (endpoints, mixers, playbacks, recordings), as the engine's."""
        return len(self._endpoints) + len(self._mixers) + self.sounds.live

    def open_endpoints(self) -> tuple[str, ...]:
        return tuple(self._endpoints)

    def closed_endpoints(self) -> tuple[str, ...]:
        """Endpoints closed so far, in order (an id closed twice once per life)."""
        return tuple(self._closed)

    def state(self, endpoint_id: str) -> EndpointState:
        """``closed`` for an endpoint closed (or never made)."""
        ep = self._endpoints.get(endpoint_id)
        return ep.state if ep is not None else "closed"

    def partner(self, endpoint_id: str) -> str | None:
        """The endpoint it is bridged to."""
        ep = self._endpoints.get(endpoint_id)
        return ep.peer if ep is not None else None

    def hears(self, endpoint_id: str) -> str | None:
        """What the endpoint's device hears, first match wins (as the interface's table):
        ``playback:<id>`` (play_to), a player name, ``hold-music`` (a held member),
        ``None`` (a deaf member), ``mix:<mixer id>``, its bridge partner's id, else ``None``."""
        ep = self._endpoints.get(endpoint_id)
        if ep is None:
            return None
        if ep.playback is not None:
            return f"playback:{ep.playback}"
        if ep.player is not None:
            return ep.player
        if ep.member is not None:
            if ep.member.held:
                return "hold-music"
            return None if ep.member.deaf else f"mix:{ep.member.mixer_id}"
        return ep.peer

    def muted(self, endpoint_id: str) -> bool:
        return self._ep(endpoint_id).muted

    def member(self, endpoint_id: str) -> MemberState | None:
        """Its mixer and flags, when it is a member."""
        ep = self._endpoints.get(endpoint_id)
        return ep.member if ep is not None else None

    def members(self, mixer_id: str) -> tuple[str, ...]:
        return tuple(self._mixer(mixer_id))

    def mixers(self) -> tuple[str, ...]:
        return tuple(self._mixers)

    def playback(self, playback_id: str) -> PlaybackRecord:
        return self.sounds.playbacks[playback_id]

    def playbacks(self) -> tuple[PlaybackRecord, ...]:
        """Every playback started, in order, ended ones included."""
        return tuple(self.sounds.playbacks.values())

    def recording(self, recording_id: str) -> RecordingRecord:
        return self.sounds.recordings[recording_id]

    # bridging and control -------------------------------------------------------------------
    @staged
    async def bridge(self, a_id: str, b_id: str) -> None:
        a, b = self._ep(a_id), self._ep(b_id)
        for ep in (a, b):
            self._leave_mixer(ep)
            self._unpair(ep)
        a.peer, b.peer = b_id, a_id

    def _unpair(self, ep: FakeEndpoint) -> None:
        peer = self._endpoints.get(ep.peer) if ep.peer is not None else None
        if peer is not None and peer.peer == ep.id:
            peer.peer = None
        ep.peer = None

    @staged
    async def unbridge(self, endpoint_id: str) -> None:
        self._unpair(self._ep(endpoint_id))

    @staged
    async def set_muted(self, endpoint_id: str, muted: bool) -> None:
        self._ep(endpoint_id).muted = muted

    @staged
    async def play(self, endpoint_id: str, player: PlayerName) -> None:
        self._ep(endpoint_id).player = player

    @staged
    async def stop_playing(self, endpoint_id: str) -> None:
        self._ep(endpoint_id).player = None

    @staged
    async def close(self, endpoint_id: str) -> None:
        self._close(endpoint_id)

    def _close(self, endpoint_id: str) -> None:
        self.plain.pop(endpoint_id, None)
        ep = self._endpoints.pop(endpoint_id, None)
        if ep is None:
            return
        self._leave_mixer(ep)
        self._unpair(ep)
        if ep.playback is not None:
            self._end(ep.playback, "stopped", "the endpoint closed")
        self.sounds.save_all(endpoint_id)
        ep.state = "closed"
        self._closed.append(endpoint_id)

    # mixers ---------------------------------------------------------------------------------
    def _mixer(self, mixer_id: str) -> list[str]:
        members = self._mixers.get(mixer_id)
        if members is None:
            raise MediaError(NOT_FOUND, f"no mixer {mixer_id} (create it with create_mixer)")
        return members

    @staged
    async def create_mixer(self, mixer_id: str) -> None:
        if mixer_id in self._mixers:
            raise MediaError(ErrorCode.INVALID_STATE, f"mixer {mixer_id} exists already")
        self._mixers[mixer_id] = []

    @staged
    async def destroy_mixer(self, mixer_id: str) -> None:
        self._destroy(mixer_id)

    def _destroy(self, mixer_id: str) -> None:
        members = self._mixers.pop(mixer_id, None)
        if members is None:
            return
        for endpoint_id in members:
            self._endpoints[endpoint_id].member = None
        self._end_all(f"mix:{mixer_id}", "the mixer was removed")
        self.sounds.save_all(mixer_id)

    @staged
    async def mixer_add(self, mixer_id: str, endpoint_id: str) -> None:
        members, ep = self._mixer(mixer_id), self._ep(endpoint_id)
        self._leave_mixer(ep)
        self._unpair(ep)
        ep.player = None
        ep.member = MemberState(mixer_id)
        members.append(endpoint_id)

    @staged
    async def mixer_remove(self, endpoint_id: str) -> None:
        ep = self._endpoints.get(endpoint_id)
        if ep is not None:
            self._leave_mixer(ep)

    def _leave_mixer(self, ep: FakeEndpoint) -> None:
        if ep.member is not None:
            self._mixers[ep.member.mixer_id].remove(ep.id)
            ep.member = None

    @staged
    async def mixer_update(
        self,
        endpoint_id: str,
        *,
        deaf: bool | None = None,
        held: bool | None = None,
        role: SupervisorRole | None = None,
        whisper_to: tuple[str, ...] | None = None,
    ) -> None:
        ep = self._ep(endpoint_id)
        m = ep.member
        if m is None:
            raise not_in_mixer(endpoint_id)
        check_role(role)
        ep.member = MemberState(
            m.mixer_id,
            m.deaf if deaf is None else deaf,
            m.held if held is None else held,
            m.role if role is None else role,
            m.whisper_to if whisper_to is None else tuple(whisper_to),
        )

    @staged
    async def mixer_members(self, mixer_id: str) -> tuple[str, ...]:
        return tuple(self._mixer(mixer_id))

    # playback -------------------------------------------------------------------------------
    def _end(self, playback_id: str, status: PlaybackStatus, detail: str = "") -> None:
        owner = self.sounds.playbacks[playback_id].owner
        ep = self._endpoints.get(owner)
        if ep is not None and ep.playback == playback_id:
            ep.playback = None  # before the event: a handler sees what the device hears now
        self.sounds.end(playback_id, status, detail)

    def _end_all(self, owner: str, detail: str, targets: set[str] | None = None) -> None:
        for pb in self.sounds.playing_of(owner):
            if not targets or targets & set(pb.targets):
                self._end(pb.playback_id, "stopped", detail)

    @staged
    async def mixer_play(
        self, mixer_id: str, playback_id: str, audio: AudioSpec, targets: tuple[str, ...] = ()
    ) -> None:
        members = self._mixer(mixer_id)
        for target in targets:
            if target not in members:
                raise MediaError(
                    ErrorCode.INVALID_STATE, f"endpoint {target} is not in mixer {mixer_id}"
                )
        self.sounds.start(PlaybackRecord(playback_id, audio, f"mix:{mixer_id}", tuple(targets)))

    @staged
    async def play_to(self, endpoint_id: str, playback_id: str, audio: AudioSpec) -> None:
        ep = self._ep(endpoint_id)
        self.sounds.check_new(playback_id, audio)
        if ep.playback is not None:
            self._end(ep.playback, "stopped", f"replaced by playback {playback_id}")
        self.sounds.start(PlaybackRecord(playback_id, audio, endpoint_id))
        ep.playback = playback_id

    @staged
    async def stop_playback(self, playback_id: str) -> None:
        if self.sounds.playing(playback_id) is not None:
            self._end(playback_id, "stopped")

    @staged
    async def stop_all(self, mixer_id: str, targets: tuple[str, ...] = ()) -> None:
        members = self._mixer(mixer_id)
        self._end_all(f"mix:{mixer_id}", "", set(targets))
        for member in members:
            if not targets or member in targets:
                self._end_all(member, "")

    @staged
    async def probe_audio(self, audio: AudioSpec) -> float:
        return self.sounds.check(audio)

    # DTMF -----------------------------------------------------------------------------------
    @staged
    async def send_dtmf(self, endpoint_id: str, digits: str, duration_ms: int = 250) -> None:
        check_digits(digits, duration_ms)
        ep = self._ep(endpoint_id)
        self.dtmf_sent.append(
            SentDtmf(endpoint_id, digits, duration_ms, ep.negotiated.telephone_event)
        )

    # recording ------------------------------------------------------------------------------
    @staged
    async def record_start(
        self, recording_id: str, source_id: str, path: str, fmt: RecordingFormat = "wav"
    ) -> None:
        if source_id not in self._mixers:
            ep = self._endpoints.get(source_id)
            if ep is None:
                raise MediaError(NOT_FOUND, f"no mixer or media endpoint {source_id} to record")
            if ep.member is not None:
                raise MediaError(
                    ErrorCode.INVALID_STATE,
                    f"endpoint {source_id} is in mixer {ep.member.mixer_id}: record the mixer "
                    "instead",
                )
        self.sounds.record(recording_id, source_id, path, fmt)

    @staged
    async def record_pause(self, recording_id: str) -> None:
        self.sounds.pause(recording_id, True)

    @staged
    async def record_resume(self, recording_id: str) -> None:
        self.sounds.pause(recording_id, False)

    @staged
    async def record_stop(self, recording_id: str) -> None:
        self.sounds.running(recording_id)
        self.sounds.save(recording_id)

    @staged
    async def shutdown(self) -> None:
        for mixer_id in list(self._mixers):
            self._destroy(mixer_id)
        for pb in list(self.sounds.playbacks.values()):
            if pb.status == "playing":
                self._end(pb.playback_id, "stopped", "the media server shut down")
        self.sounds.save_all()
        for endpoint_id in list(self._endpoints):
            self._close(endpoint_id)


def _conforms(fake: FakeMediaServer) -> MediaServer:
    return fake  # mypy checks here that the fake implements the whole interface
