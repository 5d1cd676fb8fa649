"""What happens to application calls and conferences: typed facts on the bus.

:class:`~callbridge.core.appcalls.AppCalls` publishes one of these (frozen dataclasses) for
each thing that happens to a call or conference, in the order it happens, on the controller's
:class:`~callbridge.core.events.EventBus`. They carry facts, not a wire format: the webhook
adapter (:mod:`callbridge.webhooks.telnyx`) turns each into Telnyx's ``event_type`` and
payload, and decides where it goes (the application's ``webhook_event_url``, or the call's
``webhook_url``). A call or conference that no application owns (an adopted device leg, a
``/ws`` conference) still has its facts published; the adapter sends those nowhere.

Facts about the call or conference are snapshots taken when the event happened
(:class:`CallFacts`, :class:`ConferenceFacts`, :class:`ParticipantFacts`): a later
``client_state_update`` does not change an event already published.

Device events of application calls (what a ``/ws`` device is told) are the shared call events
of :mod:`callbridge.core.events` plus :class:`CallBridged`, encoded for ``/ws`` in
:mod:`callbridge.signalling.wire_apps`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from callbridge.core.events import DeviceEvent, Event
from callbridge.media.interface import RecordingFormat
from callbridge.vocabulary import EndReason

__all__ = [
    "AppCallAnswered",
    "AppCallBridged",
    "AppCallDequeued",
    "AppCallEnqueued",
    "AppCallEvent",
    "AppCallForwarded",
    "AppCallHangup",
    "AppCallInitiated",
    "AppConferenceCreated",
    "AppConferenceEnded",
    "AppConferenceEvent",
    "AppConferenceFloorChanged",
    "AppConferencePlayback",
    "AppConferenceRecordingError",
    "AppConferenceRecordingSaved",
    "AppDtmfReceived",
    "AppEvent",
    "AppGatherEnded",
    "AppParticipantJoined",
    "AppParticipantLeft",
    "AppPlaybackEnded",
    "AppPlaybackStarted",
    "AppRecordingSaved",
    "CallBridged",
    "CallFacts",
    "ConferenceEndReason",
    "ConferenceFacts",
    "DequeueReason",
    "GatherStatus",
    "ParticipantFacts",
    "PlaybackKind",
    "PlaybackOutcome",
]

PlaybackKind = Literal["playback", "speak"]  # a file / URL, or text to speech
# How a playback to a call ended: the media plane's status, or the call ended first.
PlaybackOutcome = Literal["completed", "stopped", "failed", "call_hangup"]
GatherStatus = Literal["valid", "invalid", "timeout", "cancelled", "call_hangup"]
DequeueReason = Literal["bridged", "leave", "timeout", "hangup"]
ConferenceEndReason = Literal["all_left", "ended_via_api", "host_left", "time_exceeded"]


# Device events -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class CallBridged(DeviceEvent):
    """An application bridged the device's leg to another call: ``peer`` is its far party now.

    ``queue`` and ``wait_secs`` are set when the other call was taken from a queue (how long
    the queued caller waited)."""

    call_id: str
    peer: str  # the other call's caller id (number, else extension)
    peer_name: str
    queue: str | None = None
    wait_secs: int | None = None


# Snapshots -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CallFacts:
    """What every event of an application call says about the call, as it was then."""

    call_control_id: str
    call_session_id: str
    application: Any  # the store's Application, or None (a call no application owns)
    webhook_url: str | None  # the call's own webhook URL, if the application gave one
    client_state: str | None
    from_: str
    to: str
    direction: Literal["incoming", "outgoing"]
    started_at: datetime


@dataclass(frozen=True, slots=True)
class ConferenceFacts:
    """What every event of a conference says about it, as it was then."""

    conference_id: str
    application: Any  # the application that created it, or None (a /ws conference)
    webhook_url: str | None
    client_state: str | None


@dataclass(frozen=True, slots=True)
class ParticipantFacts:
    """A conference participant, named as the application knows it: its call's
    ``call_control_id`` when it is an application call (``app_call``), else its leg id."""

    call_control_id: str
    call_session_id: str
    client_state: str | None
    app_call: bool


# Bus events ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class AppEvent(Event):
    """Base of every application event: who it is for and how it is ordered."""

    @property
    def application(self) -> Any:
        """The store's Application it belongs to (None: nobody's)."""
        raise NotImplementedError

    @property
    def webhook_url(self) -> str | None:
        """A per-call override of the application's webhook URL."""
        raise NotImplementedError

    @property
    def ordering_key(self) -> str:
        """Events with the same key are delivered in the order they were published."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True, kw_only=True)
class AppCallEvent(AppEvent):
    call: CallFacts

    @property
    def application(self) -> Any:
        return self.call.application

    @property
    def webhook_url(self) -> str | None:
        return self.call.webhook_url

    @property
    def ordering_key(self) -> str:
        return self.call.call_session_id


@dataclass(frozen=True, slots=True, kw_only=True)
class AppCallInitiated(AppCallEvent):
    """A call exists for the application: parked for it (incoming, ``caller_name`` is the
    caller's display name) or being dialled (outgoing)."""

    parked: bool
    caller_name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AppCallAnswered(AppCallEvent):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class AppCallHangup(AppCallEvent):
    """The call ended with ``reason``; ``by_application``: the application ended it;
    ``offline``: nobody could be rung (the user has no reachable device); ``sip_cause``: the
    SIP status that ended its trunk leg (issue 12), if it went through a trunk; ``quality``:
    its media leg's last RTCP figures in Telnyx's ``call_quality_stats`` shape, if sampled."""

    reason: EndReason
    by_application: bool
    offline: bool = False
    sip_cause: int | None = None
    quality: dict[str, dict[str, str]] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AppCallBridged(AppCallEvent):
    peer_call_control_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AppDtmfReceived(AppCallEvent):
    digit: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AppGatherEnded(AppCallEvent):
    digits: str
    status: GatherStatus
    gather_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AppPlaybackStarted(AppCallEvent):
    kind: PlaybackKind
    media_url: str | None = None
    media_name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AppPlaybackEnded(AppCallEvent):
    kind: PlaybackKind
    outcome: PlaybackOutcome
    detail: str = ""
    media_url: str | None = None
    media_name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AppRecordingSaved(AppCallEvent):
    recording_id: str
    format: RecordingFormat
    started_at: datetime
    ended_at: datetime
    duration_millis: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AppCallEnqueued(AppCallEvent):
    queue: str
    position: int  # 1: the longest-waiting call
    average_wait_secs: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AppCallDequeued(AppCallEvent):
    queue: str
    position: int  # where it was when it left
    reason: DequeueReason
    wait_secs: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AppCallForwarded(AppCallEvent):
    """The call to a user went on to a new step of that user's forwarding rules (issue 16):
    ``step`` (1-based; 0: the destination an outcome action names), what it rings
    (``targets``: ``devices``, ``user:NAME``, ``number:+E164``), for ``seconds``, and why:
    ``reason``, how the step before ended (``busy``, ``no_answer``, ``offline``, ``dnd``)."""

    user: str  # whose rules
    step: int
    targets: tuple[str, ...]
    seconds: float
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AppConferenceEvent(AppEvent):
    conference: ConferenceFacts

    @property
    def application(self) -> Any:
        return self.conference.application

    @property
    def webhook_url(self) -> str | None:
        return self.conference.webhook_url

    @property
    def ordering_key(self) -> str:
        return self.conference.conference_id


@dataclass(frozen=True, slots=True, kw_only=True)
class AppConferenceCreated(AppConferenceEvent):
    creator: ParticipantFacts  # the call it was created from


@dataclass(frozen=True, slots=True, kw_only=True)
class AppConferenceEnded(AppConferenceEvent):
    reason: ConferenceEndReason


@dataclass(frozen=True, slots=True, kw_only=True)
class AppConferenceFloorChanged(AppConferenceEvent):
    talker: ParticipantFacts | None  # None: nobody talks


@dataclass(frozen=True, slots=True, kw_only=True)
class AppParticipantJoined(AppConferenceEvent):
    participant: ParticipantFacts


@dataclass(frozen=True, slots=True, kw_only=True)
class AppParticipantLeft(AppConferenceEvent):
    participant: ParticipantFacts


@dataclass(frozen=True, slots=True, kw_only=True)
class AppConferencePlayback(AppConferenceEvent):
    """A play or speak to the conference started or ended; ``targets``: the participants who
    hear it (empty: everyone). ``stopped``: it ended before it was over."""

    kind: PlaybackKind
    started: bool
    stopped: bool
    targets: tuple[ParticipantFacts, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class AppConferenceRecordingSaved(AppConferenceEvent):
    creator_call_control_id: str | None  # the call the conference was created from
    recording_id: str
    format: RecordingFormat
    started_at: datetime
    ended_at: datetime
    duration_millis: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AppConferenceRecordingError(AppConferenceEvent):
    """The conference's recording failed: ``detail`` says what went wrong (nothing saved)."""

    creator_call_control_id: str | None
    recording_id: str
    detail: str
