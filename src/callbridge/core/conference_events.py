"""What the conference core tells a device: typed facts about its conferences and call group.

The core says *what happened* with these frozen dataclasses (``device.deliver(event)``); each
device's adapter turns them into its wire format. For ``/ws`` that is
:mod:`callbridge.signalling.wire_conferences`, which produces the messages of
docs/protocol.md, "Conferences". Events that answer a device's command carry its ``req_id``.

The roster the host (or a call group's owner) is shown travels as a :class:`Roster`: typed
snapshots of the participants and the pending invitations, taken when the event happened.
The adapter decides their wire shape (``participants``/``invitations`` objects keyed by
participant id on ``/ws``).

Facts about the device's own leg that every call has (``sdp.answer``, ``call.answered``,
``call.held``) are the shared call events of :mod:`callbridge.core.events`; the two here that
extend them (:class:`MemberHeld`, :class:`MemberResumed`) add the conference they happened in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from callbridge.core.events import CallHeld, CallResumed, DeviceEvent
from callbridge.vocabulary import MediaType, SupervisorRole

__all__ = [
    "ConferenceConnected",
    "ConferenceDeviceEvent",
    "ConferenceInvitation",
    "ConferenceJoined",
    "ConferenceOver",
    "ConferenceReport",
    "ConferenceStarted",
    "GroupChanged",
    "GroupDissolved",
    "GroupView",
    "InvitationAccepted",
    "InvitationRejected",
    "InvitationSent",
    "InvitationView",
    "MemberHeld",
    "MemberResumed",
    "ParticipantDeparted",
    "ParticipantRemoved",
    "ParticipantUpdated",
    "ParticipantView",
    "PlaybackAccepted",
    "PlaybackProgress",
    "PlaybacksStopped",
    "RecordingChanged",
    "RecordingFileFailed",
    "RecordingFileSaved",
    "Roster",
    "RosterEvent",
    "TalkerChanged",
]


# Snapshots -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ParticipantView:
    """One participant as it was when the event happened."""

    key: str  # participant id: the invitee as the host named it, or the far party's caller id
    call_id: str  # its leg
    name: str
    muted: bool  # muted by the host / API or by itself
    held: bool  # held by the host / API: hears hold audio
    self_held: bool  # holds its own membership: hears nothing
    deaf: bool
    supervisor_role: SupervisorRole
    joined_at: datetime


@dataclass(frozen=True, slots=True)
class InvitationView:
    """One invitation whose devices still ring."""

    key: str  # the invitee as the host named it
    invitation_id: str
    name: str


@dataclass(frozen=True, slots=True)
class Roster:
    """Who is in a conference (everyone but its host / owner) and who is being invited."""

    participants: tuple[ParticipantView, ...]
    invitations: tuple[InvitationView, ...]


@dataclass(frozen=True, slots=True)
class GroupView:
    """A call group (seed 000) as its owner sees it."""

    call_ids: tuple[str, ...]  # the owner's calls in the group, oldest first
    media_call_id: str | None  # the owner's leg that carries its voice and the mix
    held: bool  # the owner holds the whole group


# Device events ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class ConferenceDeviceEvent(DeviceEvent):
    """Base of the facts about one conference (or call group) told to one device."""

    conference_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RosterEvent(ConferenceDeviceEvent):
    """Base of the facts told to a conference's host that restate its roster."""

    roster: Roster


@dataclass(frozen=True, slots=True, kw_only=True)
class ConferenceStarted(ConferenceDeviceEvent):
    """The host's conference exists; ``call_id`` is the host's leg in it."""

    call_id: str
    name: str
    media_type: MediaType


@dataclass(frozen=True, slots=True, kw_only=True)
class ConferenceConnected(RosterEvent):
    """The host's leg is in the conference's mix."""

    call_id: str
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConferenceInvitation(ConferenceDeviceEvent):
    """This device rings for an invitation; ``sdp`` is the server's offer for ``call_id``."""

    call_id: str
    invitation_id: str
    name: str  # the conference's name
    from_: str  # the host's caller id
    from_name: str
    to: str  # the invitee as the host named it
    media_type: MediaType
    sdp: str


@dataclass(frozen=True, slots=True, kw_only=True)
class InvitationSent(RosterEvent):
    """The invitee's devices ring."""

    invitation_id: str
    invitee: str


@dataclass(frozen=True, slots=True, kw_only=True)
class InvitationAccepted(RosterEvent):
    """The invitee joined on one of its devices."""

    invitation_id: str
    invitee: str


@dataclass(frozen=True, slots=True, kw_only=True)
class InvitationRejected(RosterEvent):
    """The invitation is over without the invitee joining: ``reason`` is the end reason of
    its devices' legs (``rejected``, ``no-answer``, ``failed``)."""

    invitation_id: str
    invitee: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConferenceJoined(ConferenceDeviceEvent):
    """This device's leg ``call_id`` joined the conference it was invited to."""

    call_id: str
    name: str
    from_: str  # the host's caller id
    media_type: MediaType


@dataclass(frozen=True, slots=True, kw_only=True)
class ConferenceOver(ConferenceDeviceEvent):
    """The conference is over for this device's leg ``call_id`` (its ``call.ended``
    follows): ``reason`` is ``removed``, ``left``, ``ended-by-host``, ``host-left``, …"""

    call_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantUpdated(RosterEvent):
    """A participant's flags changed (by the host, or its own hold)."""

    participant: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantRemoved(RosterEvent):
    """The host removed a participant or withdrew its invitation."""

    participant: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantDeparted(RosterEvent):
    """A participant left on its own."""

    participant: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConferenceReport(RosterEvent):
    """Everything about a conference, as ``device`` asked for it (``conference.get``)."""

    kind: Literal["conference", "group"]
    name: str
    host: str  # the host's / owner's caller id
    media_type: MediaType
    floor: str | None  # the participant id of the active talker
    call_ids: tuple[str, ...]  # the asking device's legs in it


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupChanged(RosterEvent):
    """The owner's call group was ``merged`` into, ``updated`` (a call left), ``held`` or
    ``resumed``; ``split_call_id`` names the call split out, if one was."""

    change: Literal["merged", "updated", "held", "resumed"]
    group: GroupView
    split_call_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupDissolved(RosterEvent):
    """The call group ended because one call (or none) was left: ``released_call_ids`` are
    the owner's calls that are 1:1 calls again; ``split_call_id`` as in GroupChanged."""

    released_call_ids: tuple[str, ...]
    split_call_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberHeld(CallHeld):
    """A conference member held its own membership (its ``call.held``, with the conference)."""

    conference_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberResumed(CallResumed):
    """A conference member took its own membership back into the conversation."""

    conference_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TalkerChanged(ConferenceDeviceEvent):
    """The active talker of the conference that this device's leg ``call_id`` is in changed
    (``participant``/``talker_call_id`` ``None``: nobody has talked for a while)."""

    call_id: str
    participant: str | None
    talker_call_id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaybackAccepted(ConferenceDeviceEvent):
    """The device's play (``kind="play"``) or speak is loaded and playing as ``playback_id``."""

    kind: Literal["play", "speak"]
    playback_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaybackProgress(ConferenceDeviceEvent):
    """A playback the device asked for ``started`` or ``ended``; ``status`` and ``detail`` as
    the media plane reported them."""

    kind: Literal["play", "speak"]
    state: Literal["started", "ended"]
    playback_id: str
    status: str
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaybacksStopped(ConferenceDeviceEvent):
    """The device's ``conference.stop`` stopped the playbacks it named."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingChanged(ConferenceDeviceEvent):
    """The device's record command took effect: ``status`` is ``recording``, ``paused`` or
    ``stopping`` (the file follows as :class:`RecordingFileSaved`)."""

    recording_id: str
    status: Literal["recording", "paused", "stopping"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingFileSaved(ConferenceDeviceEvent):
    """The recording the device started is complete at ``path``."""

    recording_id: str
    path: str
    duration_secs: float  # paused time left out


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingFileFailed(ConferenceDeviceEvent):
    """The recording the device started could not be written or finished (``detail`` says
    why): nothing was saved."""

    recording_id: str
    detail: str
