"""The MediaServer interface: how the control plane drives the media plane.

Every call takes and returns plain data (strings, bools, frozen dataclasses of those), so an
implementation can live in this process (:class:`callbridge.media.engine.InProcessMediaServer`),
in worker processes, or in an external media engine, without the control plane noticing.

An *endpoint* is one leg's media: a WebRTC peer connection ending at the server. Endpoints are
*bridged* in pairs; each endpoint has an *output*: what its device hears. By default that is
the audio of the endpoint it is bridged to; a *player* (hold music, silence) replaces it until
stopped.

An endpoint may also carry one video stream (VP8), relayed to the bridged endpoint without
decoding. Video is set up by the first offer/answer or added, changed and removed later by
renegotiation (:meth:`MediaServer.renegotiate` for a device's new offer,
:meth:`MediaServer.reoffer` + :meth:`MediaServer.accept_answer` for the server's).

A *mixer* is a conference's audio. Its members are endpoints; each member hears every other
member's audio and not its own, whatever codec each speaks. Per member, flags and a supervisor
role change who hears whom:

==========  ===========================================  =======================================
member      heard by                                     hears
==========  ===========================================  =======================================
none/barge  every other member                           the mix (minus itself)
monitor     nobody                                       the mix
whisper     only the members in ``whisper_to``           the mix
muted       nobody (:meth:`MediaServer.set_muted`)       (unchanged)
held        nobody                                       hold music (or its own playback)
deaf        (unchanged)                                  nothing
==========  ===========================================  =======================================

*Playbacks* (files, URLs, text to speech, tones) are mixed into what chosen members hear
(:meth:`MediaServer.mixer_play`) or replace what one endpoint hears
(:meth:`MediaServer.play_to`); :meth:`MediaServer.probe_audio` checks a sound without playing
it. :meth:`MediaServer.send_dtmf` sends DTMF to an endpoint's device: RFC 4733 events when it
negotiated telephone-event, else in-band tones. *Recordings* write a mixer's mix, or both
directions of a bridged 1:1 leg, to a WAV or MP3 file. Events report the floor (the active
talker), the life of each playback, and each saved recording.

*Plain RTP endpoints* are the media of SIP phones: RTP/AVP, or SRTP keyed by SDES (RTP/SAVP,
RFC 4568), negotiated by RFC 3264 offer/answer with no ICE (:meth:`MediaServer.answer_rtp`,
:meth:`MediaServer.offer_rtp`, :meth:`MediaServer.renegotiate_rtp`,
:meth:`MediaServer.reoffer_rtp`). Once negotiated they are endpoints like any other: bridged
(relayed when both legs speak one codec, else transcoded), mixed, played to, recorded, sent
DTMF. A device's hold (``sendonly``, ``inactive``, ``c=0.0.0.0``) is reported as
:class:`MediaDirectionChanged`, a dead leg as :class:`RtpTimeout`.

Identifiers (endpoint, mixer, playback and recording ids) are chosen by the control plane;
errors are :class:`callbridge.errors.MediaError` with a message that says what was wrong.

Every query and command is a coroutine, so the media plane can sit behind a process boundary:
what was negotiated is :meth:`MediaServer.endpoint_info`, and what happens later arrives as
events (:meth:`MediaServer.subscribe`). :class:`callbridge.testing.fake_media.FakeMediaServer`
implements this interface in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from callbridge.vocabulary import SupervisorRole

__all__ = [
    "AudioKind",
    "AudioSpec",
    "Candidate",
    "DtmfReceived",
    "EndpointInfo",
    "EndpointLost",
    "EndpointState",
    "EndpointStateChanged",
    "FloorChanged",
    "MediaDirection",
    "MediaDirectionChanged",
    "MediaEvent",
    "MediaServer",
    "PlaybackState",
    "PlaybackStateChanged",
    "PlaybackStatus",
    "PlayerName",
    "RecordingFormat",
    "RecordingSaved",
    "RtcpStats",
    "RtpTimeout",
    "SupervisorRole",
]

EndpointState = Literal["connecting", "connected", "failed", "closed"]
PlayerName = Literal["hold-music", "ringback", "silence"]
AudioKind = Literal["file", "url", "tts", "tone"]
PlaybackState = Literal["started", "ended"]
PlaybackStatus = Literal["playing", "completed", "stopped", "failed"]
RecordingFormat = Literal["wav", "mp3"]
MediaDirection = Literal["sendrecv", "sendonly", "recvonly", "inactive"]


@dataclass(frozen=True, slots=True)
class AudioSpec:
    """What to play.

    ``location`` by ``kind``: ``file`` a path on the media server (any format FFmpeg reads:
    WAV, MP3, …); ``url`` an ``http://`` or ``https://`` URL of such a file; ``tts`` the text to
    speak (espeak-ng, in ``voice`` ``female``/``male`` and ``language`` such as ``en-US``);
    ``tone`` one of ``join``, ``leave``, ``beep``. ``loops``: how many times to play it, 0 for
    until stopped.
    """

    kind: AudioKind
    location: str
    voice: str = "female"
    language: str = "en-US"
    loops: int = 1


@dataclass(frozen=True, slots=True)
class Candidate:
    """One of the server's ICE candidates for an endpoint (as trickled to its device)."""

    line: str  # "candidate:…" (RFC 8839 section 5.1 attribute value)
    sdp_mid: str | None
    sdp_m_line_index: int


@dataclass(frozen=True, slots=True)
class RtcpStats:
    """A plain RTP leg's RTCP figures (RFC 3550 section 6.4): the device's reports about the
    server's stream (``fraction_lost`` in its last interval, 0-1; cumulative ``packets_lost``;
    interarrival ``jitter_ms``; ``round_trip_ms`` from LSR/DLSR once it echoed one of our SRs),
    and the same for the device's stream as the server received it (``received_*``)."""

    reports_sent: int
    reports_received: int
    fraction_lost: float
    packets_lost: int
    jitter_ms: float
    round_trip_ms: float | None
    received_packets: int
    received_lost: int
    received_jitter_ms: float


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    """What was negotiated for an endpoint (:meth:`MediaServer.endpoint_info`)."""

    codec: str | None  # the audio codec name (``opus``, ``PCMU``, ``PCMA``), once known
    device_sends_video: bool  # as last negotiated
    device_receives_video: bool
    candidates: tuple[Candidate, ...]  # the server's ICE candidates
    transport: Literal["webrtc", "rtp", "srtp"] = "webrtc"  # plain RTP legs: rtp or srtp
    remote_direction: MediaDirection = "sendrecv"  # as the device's last SDP said (plain RTP)
    remote_hold: bool = False  # the device does not want our media (plain RTP: its hold)
    telephone_event: bool = False  # RFC 4733 events were negotiated with the device
    rtcp: RtcpStats | None = None  # plain RTP legs: what RTCP says (loss, jitter, round trip)

    @property
    def video(self) -> bool:
        """Video flows either way."""
        return self.device_sends_video or self.device_receives_video


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    endpoint_id: str
    digit: str


@dataclass(frozen=True, slots=True)
class EndpointStateChanged:
    endpoint_id: str
    state: EndpointState


@dataclass(frozen=True, slots=True)
class FloorChanged:
    """The mixer's active talker changed; ``None`` once nobody has talked for a while."""

    mixer_id: str
    endpoint_id: str | None


@dataclass(frozen=True, slots=True)
class PlaybackStateChanged:
    """A playback ``started`` (status ``playing``) or ``ended`` (``completed``: played to
    its end; ``stopped``: by a request, or its mixer or endpoint went away; ``failed``: it
    could not go on, ``detail`` says why)."""

    playback_id: str
    state: PlaybackState
    status: PlaybackStatus
    detail: str = ""


@dataclass(frozen=True, slots=True)
class RecordingSaved:
    """A recording's file is complete; ``duration_secs`` excludes paused time."""

    recording_id: str
    path: str
    duration_secs: float


@dataclass(frozen=True, slots=True)
class MediaDirectionChanged:
    """A plain RTP device's offer or answer changed its direction. ``held``: it wants none of
    our media (``sendonly``, ``inactive``, or ``c=0.0.0.0``, RFC 3264 section 8.4), which the
    control plane treats as hold by that device; ``held`` false again is its resume."""

    endpoint_id: str
    direction: MediaDirection  # the device's own, as its SDP says
    held: bool


@dataclass(frozen=True, slots=True)
class RtpTimeout:
    """A plain RTP device that should be sending (not on hold, not ``inactive``) sent neither
    RTP nor RTCP for ``seconds``: the leg is dead and its call ends ``failed``. The endpoint's
    state turns ``failed`` right after."""

    endpoint_id: str
    seconds: float


@dataclass(frozen=True, slots=True)
class EndpointLost:
    """The endpoint is gone without being closed: the media worker process that owned it
    died (``cause`` says which and how). Nothing can bring it back; its call ends
    ``failed``."""

    endpoint_id: str
    cause: str


MediaEvent = (
    DtmfReceived
    | EndpointLost
    | EndpointStateChanged
    | FloorChanged
    | MediaDirectionChanged
    | PlaybackStateChanged
    | RecordingSaved
    | RtpTimeout
)


class MediaServer(Protocol):
    """What the control plane may ask of the media plane (errors: ``MediaError``)."""

    def subscribe(self, handler: Callable[[MediaEvent], None]) -> None:
        """Deliver media events (DTMF, connection state) to ``handler`` in the control loop."""

    async def answer(self, endpoint_id: str, offer_sdp: str, video: bool = True) -> str:
        """Create an endpoint from a device's offer; return the server's answer SDP.

        A video m-line with VP8 is answered ``sendrecv`` when ``video``, else ``inactive``.
        """

    async def offer(
        self, endpoint_id: str, prefer_codec: str | None = None, video: bool = False
    ) -> str:
        """Create an endpoint and return the server's offer SDP (``prefer_codec`` first;
        audio and, when ``video``, a VP8 video m-line)."""

    async def reconnect(self, endpoint_id: str, offer_sdp: str) -> str:
        """Replace the endpoint's peer connection from the device's new offer (its bridge,
        mute and player carry over); return the server's answer."""

    async def accept_answer(self, endpoint_id: str, answer_sdp: str) -> None:
        """Complete an endpoint's pending offer (:meth:`offer` or :meth:`reoffer`)."""

    async def renegotiate(self, endpoint_id: str, offer_sdp: str, send_video: bool) -> str:
        """Apply a device's new offer on a live endpoint and return the server's answer.

        The server receives whatever video the device offers to send, and sends video only
        when ``send_video`` (and the device offers to receive it).
        """

    async def reoffer(self, endpoint_id: str, send_video: bool, recv_video: bool) -> str:
        """A new offer of the server to a live endpoint's device, with the video direction
        set from the server's side (a video m-line is added if needed); complete it with
        :meth:`accept_answer`."""

    # plain RTP (SIP phones) -------------------------------------------------------------------
    async def answer_rtp(
        self,
        endpoint_id: str,
        offer_sdp: str,
        prefer_codec: str | None = None,
        rtp_timeout: float | None = None,
    ) -> str:
        """Create a plain RTP endpoint from a device's RTP/AVP or RTP/SAVP offer (SDES keys);
        return the server's answer (one codec: ``prefer_codec`` when offered, e.g. the bridged
        leg's to relay without transcoding, else the device's first of PCMU, PCMA, G722,
        opus; telephone-event when offered at its clock rate). ``rtp_timeout``: seconds of
        silence from a device that should be sending before :class:`RtpTimeout` (``None``: the
        server's default; 0: never).

        An empty ``offer_sdp`` is a delayed offer (an INVITE without SDP, RFC 3261 section
        13.2.1): the server's *offer* is returned instead (every carried codec, as
        :meth:`offer_rtp`), and the device's answer completes it with :meth:`accept_answer`.

        :raises MediaError: ``invalid_sdp`` (not SDP, no usable audio m-line, RTP/SAVP
            without a usable ``a=crypto``) or ``unsupported_codec``.
        """

    async def offer_rtp(
        self,
        endpoint_id: str,
        prefer_codec: str | None = None,
        srtp: bool = False,
        rtp_timeout: float | None = None,
    ) -> str:
        """Create a plain RTP endpoint and return the server's offer (RTP/SAVP with two
        ``a=crypto`` lines when ``srtp``); complete it with :meth:`accept_answer`."""

    async def renegotiate_rtp(self, endpoint_id: str, offer_sdp: str) -> str:
        """Apply a plain RTP device's new offer (a re-INVITE: hold, resume, a new address or
        key) and return the server's answer; the codec stays when it is still offered, and
        payload-type numbers never change."""

    async def reoffer_rtp(self, endpoint_id: str, direction: MediaDirection = "sendrecv") -> str:
        """A new offer of the server to a plain RTP device (``sendonly`` to hold it, ...),
        with the same codecs, payload types and keys; complete it with :meth:`accept_answer`.
        """

    async def add_candidate(
        self, endpoint_id: str, candidate: str | None, sdp_mid: str | None, mline: int | None
    ) -> None:
        """Add a trickled remote ICE candidate; ``None`` means end-of-candidates."""

    async def endpoint_info(self, endpoint_id: str) -> EndpointInfo:
        """What was negotiated for the endpoint: codec, video directions, the server's ICE
        candidates. An unknown id raises :class:`~callbridge.errors.MediaError`."""

    async def bridge(self, a_id: str, b_id: str) -> None:
        """Connect two endpoints: each hears the other. Replaces any earlier bridge of either
        and takes them out of their mixer."""

    async def unbridge(self, endpoint_id: str) -> None:
        """Disconnect an endpoint from its bridge partner (both then hear nothing)."""

    async def set_muted(self, endpoint_id: str, muted: bool) -> None:
        """Stop (or restart) forwarding the endpoint's inbound audio to anyone."""

    async def play(self, endpoint_id: str, player: PlayerName) -> None:
        """Replace what the endpoint hears with a player until :meth:`stop_playing`."""

    async def stop_playing(self, endpoint_id: str) -> None:
        """Return the endpoint's output to its bridge partner."""

    async def close(self, endpoint_id: str) -> None:
        """Tear the endpoint down. Unknown ids are ignored.

        A mixer member leaves its mixer, its :meth:`play_to` playback ends (``stopped``) and a
        recording of its 1:1 leg is saved."""

    # mixers ---------------------------------------------------------------------------------
    async def create_mixer(self, mixer_id: str) -> None:
        """Create an empty mixer (a conference's audio)."""

    async def destroy_mixer(self, mixer_id: str) -> None:
        """Remove the mixer: its members hear nothing afterwards, its playbacks end
        (``stopped``) and its recordings are saved (:class:`RecordingSaved`). Unknown ids are
        ignored."""

    async def mixer_add(self, mixer_id: str, endpoint_id: str) -> None:
        """Make an endpoint a member: it is unbridged and its player stopped first, then hears
        the mix minus itself and is heard by all (role ``none``, not deaf, not held). A member
        of another mixer moves."""

    async def mixer_remove(self, endpoint_id: str) -> None:
        """Take an endpoint out of its mixer (it then hears nothing, as if unbridged).
        An endpoint in no mixer is ignored."""

    async def mixer_update(
        self,
        endpoint_id: str,
        *,
        deaf: bool | None = None,
        held: bool | None = None,
        role: SupervisorRole | None = None,
        whisper_to: tuple[str, ...] | None = None,
    ) -> None:
        """Change a member's flags; ``None`` leaves one as it is.

        ``held``: contributes nothing and hears hold music (a :meth:`play_to` playback
        replaces the music while it plays). ``deaf``: hears nothing. ``role``: ``monitor``
        hears all and is heard by nobody; ``whisper`` hears all and is heard only by the
        members in ``whisper_to``; ``barge`` and ``none`` hear all and are heard by all.
        :meth:`set_muted` also silences a member's contribution.
        """

    async def mixer_members(self, mixer_id: str) -> tuple[str, ...]:
        """The mixer's member endpoint ids, in the order they joined."""

    # playback -------------------------------------------------------------------------------
    async def mixer_play(
        self, mixer_id: str, playback_id: str, audio: AudioSpec, targets: tuple[str, ...] = ()
    ) -> None:
        """Mix ``audio`` into what ``targets`` hear (every member when empty).

        Returns once the audio is loaded and playing, after :class:`PlaybackStateChanged`
        ``started``; ``ended`` follows when it completes or is stopped. A file, URL, voice or
        language that cannot be used raises :class:`~callbridge.errors.MediaError` and starts
        nothing.
        """

    async def play_to(self, endpoint_id: str, playback_id: str, audio: AudioSpec) -> None:
        """Replace what one endpoint hears (a 1:1 leg or a mixer member) with ``audio`` until
        it ends or is stopped; then it hears its bridge partner, mix or hold music again.
        Events and errors as :meth:`mixer_play`. A newer playback replaces an older one
        (which ends ``stopped``)."""

    async def stop_playback(self, playback_id: str) -> None:
        """Stop a playback (it ends ``stopped``). Unknown or ended ids are ignored."""

    async def probe_audio(self, audio: AudioSpec) -> float:
        """Check that ``audio`` can be played and return how long one pass lasts, in seconds.

        The audio is loaded as :meth:`mixer_play` would load it and then dropped (nothing is
        kept, nothing plays, no event). A file, URL, voice or language that cannot be used
        raises :class:`~callbridge.errors.MediaError` (``invalid_audio``).
        """

    async def stop_all(self, mixer_id: str, targets: tuple[str, ...] = ()) -> None:
        """Stop the mixer's playbacks and its members' :meth:`play_to` playbacks; with
        ``targets``, only the playbacks aimed at any of those members (a playback to every
        member goes on)."""

    # DTMF -----------------------------------------------------------------------------------
    async def send_dtmf(self, endpoint_id: str, digits: str, duration_ms: int = 250) -> None:
        """Send DTMF to the endpoint's device; return once every digit was sent.

        ``digits``: ``0-9``, ``A-D``, ``*``, ``#``; ``w`` pauses 0.5 s, ``W`` 1 s. Each digit
        lasts ``duration_ms`` (40 to 1000), with 80 ms between digits. An endpoint that
        negotiated telephone-event gets RFC 4733 events on its RTP stream (its audio pauses
        while an event is sent); any other hears the ITU-T Q.23 tone pairs in place of its
        audio (as a :meth:`play_to` playback would replace it, which it stops, but without
        playback events). Calls for one endpoint queue. Waits up to 10 s for the endpoint's
        media to connect.

        :raises MediaError: ``invalid_digits`` for other characters, an empty string or a
            duration out of range; ``call_not_found`` for an unknown endpoint;
            ``invalid_state`` when its media does not connect, or it closes (or a playback
            replaces the tones) before all digits were sent.
        """

    # recording ------------------------------------------------------------------------------
    async def record_start(
        self, recording_id: str, source_id: str, path: str, fmt: RecordingFormat = "wav"
    ) -> None:
        """Record to ``path`` (mono 16-bit 48 kHz WAV, or MP3).

        ``source_id`` is a mixer id (the mix every plain member hears: every contribution but
        whispers, plus the playbacks to all members) or the id of an endpoint that is not a
        mixer member (what it sends mixed with what its bridge partner sends). A path that
        cannot be written raises :class:`~callbridge.errors.MediaError`.
        """

    async def record_pause(self, recording_id: str) -> None:
        """Stop writing until :meth:`record_resume` (the paused time is left out)."""

    async def record_resume(self, recording_id: str) -> None:
        """Write again after :meth:`record_pause`."""

    async def record_stop(self, recording_id: str) -> None:
        """Finish the file and emit :class:`RecordingSaved`."""

    async def shutdown(self) -> None:
        """Stop every playback, save every recording, remove every mixer, close every
        endpoint."""
