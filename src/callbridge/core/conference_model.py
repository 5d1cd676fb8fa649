"""The conference model: a conference, its members, its invitations, its playbacks and its
recording, each stateful one with its state machine (:mod:`callbridge.statemachine`).

A conference is one *mixer* in the media plane and the legs that are its *members*. Two kinds
share the model (:class:`ConferenceKind`): seed 002's hosted conference (a host, invitations,
participants) and seed 000's call group (a device's merged 1:1 calls). The operations live in
:mod:`callbridge.core.hosted`, :mod:`callbridge.core.callgroup`,
:mod:`callbridge.core.conference_media` and :mod:`callbridge.core.conferences`; this module
holds state and answers questions about it, and does no I/O.

Snapshots for events (:class:`~callbridge.core.conference_events.Roster`) are taken here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar, Literal

from callbridge.core.calls import Leg, new_id
from callbridge.core.conference_events import InvitationView, ParticipantView, Roster
from callbridge.core.devices import Device
from callbridge.statemachine import StateMachine
from callbridge.vocabulary import BeepMode, MediaType, SupervisorRole

if TYPE_CHECKING:
    from collections.abc import Mapping

    from callbridge.core.ringgroup import RingGroup

__all__ = [
    "Conference",
    "ConferenceKind",
    "ConferenceState",
    "Invitation",
    "InvitationState",
    "Member",
    "Playback",
    "PlaybackState",
    "Recording",
    "RecordingState",
]


def _now() -> datetime:
    return datetime.now(UTC)


class ConferenceKind(StrEnum):
    CONFERENCE = "conference"  # seed 002: a host, invitations, participants
    GROUP = "group"  # seed 000: a device's merged calls


class ConferenceState(StrEnum):
    """Life of a conference (or call group).

    ::

        starting ──► active ──► ending ──► ended
            │                     ▲
            └─────────────────────┘   (it ends before its first members are in)
    """

    STARTING = "starting"  # the mixer exists; its first members are joining
    ACTIVE = "active"  # members talk
    ENDING = "ending"  # its members' calls end, its mixer goes; nothing new may join
    ENDED = "ended"  # everything is gone (terminal)


class InvitationState(StrEnum):
    """Life of an invitation (seed 002 ``addParticipant``).

    ::

        ringing ──► accepted ──► joined
           │           ├──► failed    (the answer's media could not be set up)
           │           └──► canceled  (the conference ended while the invitee joined)
           ├──► declined   (every device of the invitee declined)
           ├──► expired    (nobody answered within the ring timeout)
           ├──► canceled   (the host withdrew it, or the conference ended)
           └──► failed     (no device could be rung)
    """

    RINGING = "ringing"  # the invitee's devices ring
    ACCEPTED = "accepted"  # a device answered (claimed before any await); joining
    JOINED = "joined"  # the device's leg is a member (terminal)
    DECLINED = "declined"  # terminal
    EXPIRED = "expired"  # terminal
    CANCELED = "canceled"  # terminal
    FAILED = "failed"  # terminal


class PlaybackState(StrEnum):
    """Life of a playback to a conference's room (``conference.play`` / ``speak``).

    ::

        starting ──► playing ──► ended
            └────────────────────┘   (it failed to load, or was stopped before it started)
    """

    STARTING = "starting"  # the media plane is loading it
    PLAYING = "playing"  # the media plane said it started
    ENDED = "ended"  # completed, stopped or failed (terminal)


class RecordingState(StrEnum):
    """Life of a conference's recording (``conference.record``).

    ::

        starting ──► recording ◄──► paused
           │  │          │             │
           │  │          ├──► stopping ◄┤
           │  │          │       │      │
           │  └──────────┴──► saved ◄───┘   (stopped, or the mixer went away)
           └──► failed
    """

    STARTING = "starting"  # the media plane is opening the file
    RECORDING = "recording"  # the mix is being written
    PAUSED = "paused"  # nothing is written; the file stays open
    STOPPING = "stopping"  # stopped; the file is being completed
    SAVED = "saved"  # the file is complete (terminal)
    FAILED = "failed"  # the media plane could not start it (terminal)


@dataclass(eq=False)
class Member:
    """One leg in a conference's mixer (or, for a group owner's secondary legs, next to it)."""

    leg: Leg
    key: str  # participant id: the invitee as the host named it, or the far party's caller id
    name: str
    joined_at: datetime = field(default_factory=_now)
    in_mixer: bool = True  # False for a group owner's secondary legs
    muted: bool = False  # muted by the host / API (the leg's own mute is ``leg.muted``)
    held: bool = False  # held by the host / API: hears hold audio, is not heard
    self_held: bool = False  # held its own membership: hears nothing, is not heard
    deaf: bool = False
    role: SupervisorRole = "none"
    whisper_to: tuple[str, ...] = ()  # leg ids that hear a whispering supervisor
    hold_playback: str | None = None  # the hold audio playing to a held participant

    def view(self) -> ParticipantView:
        return ParticipantView(
            key=self.key,
            call_id=self.leg.id,
            name=self.name,
            muted=self.muted or self.leg.muted,
            held=self.held,
            self_held=self.self_held,
            deaf=self.deaf,
            supervisor_role=self.role,
            joined_at=self.joined_at,
        )


@dataclass(eq=False)
class Invitation(StateMachine[InvitationState]):
    """``conference.invite``: the invitee's devices ring until one joins or all decline."""

    TRANSITIONS: ClassVar[Mapping[InvitationState, frozenset[InvitationState]]] = {
        InvitationState.RINGING: frozenset(
            {
                InvitationState.ACCEPTED,
                InvitationState.DECLINED,
                InvitationState.EXPIRED,
                InvitationState.CANCELED,
                InvitationState.FAILED,
            }
        ),
        InvitationState.ACCEPTED: frozenset(
            {InvitationState.JOINED, InvitationState.FAILED, InvitationState.CANCELED}
        ),
        InvitationState.JOINED: frozenset(),
        InvitationState.DECLINED: frozenset(),
        InvitationState.EXPIRED: frozenset(),
        InvitationState.CANCELED: frozenset(),
        InvitationState.FAILED: frozenset(),
    }

    conference: Conference = field(repr=False)
    key: str  # the invitee as the host named it
    name: str
    id: str = field(default_factory=new_id)
    ring: RingGroup | None = field(default=None, repr=False)  # the invitee's devices
    state: InvitationState = InvitationState.RINGING

    @property
    def kind(self) -> str:
        return "invitation"

    @property
    def ringing(self) -> bool:
        return self.state is InvitationState.RINGING

    def view(self) -> InvitationView:
        return InvitationView(key=self.key, invitation_id=self.id, name=self.name)


@dataclass(eq=False)
class Playback(StateMachine[PlaybackState]):
    """A play or speak to a conference's room; ``requester`` is told how it goes (``None``:
    the REST API, which learns it from the bus)."""

    TRANSITIONS: ClassVar[Mapping[PlaybackState, frozenset[PlaybackState]]] = {
        PlaybackState.STARTING: frozenset({PlaybackState.PLAYING, PlaybackState.ENDED}),
        PlaybackState.PLAYING: frozenset({PlaybackState.ENDED}),
        PlaybackState.ENDED: frozenset(),
    }

    conference: Conference = field(repr=False)
    what: Literal["play", "speak"]
    requester: Device | None
    targets: tuple[str, ...] = ()  # leg ids that hear it (empty: everyone)
    id: str = field(default_factory=new_id)
    state: PlaybackState = PlaybackState.STARTING

    @property
    def kind(self) -> str:
        return "playback"


@dataclass(eq=False)
class Recording(StateMachine[RecordingState]):
    """The recording of a conference's mix; ``requester`` is told when its file is saved."""

    TRANSITIONS: ClassVar[Mapping[RecordingState, frozenset[RecordingState]]] = {
        RecordingState.STARTING: frozenset(
            {RecordingState.RECORDING, RecordingState.FAILED, RecordingState.SAVED}
        ),
        RecordingState.RECORDING: frozenset(
            {RecordingState.PAUSED, RecordingState.STOPPING, RecordingState.SAVED}
        ),
        RecordingState.PAUSED: frozenset(
            {RecordingState.RECORDING, RecordingState.STOPPING, RecordingState.SAVED}
        ),
        RecordingState.STOPPING: frozenset({RecordingState.SAVED}),
        RecordingState.SAVED: frozenset(),
        RecordingState.FAILED: frozenset(),
    }

    conference: Conference = field(repr=False)
    requester: Device | None
    id: str = field(default_factory=new_id)
    state: RecordingState = RecordingState.STARTING

    @property
    def kind(self) -> str:
        return "recording"

    @property
    def running(self) -> bool:
        """Started and not stopped: pause, resume and stop apply to it."""
        return self.state in (RecordingState.RECORDING, RecordingState.PAUSED)


# slots: the ``kind`` field shadows the kit's read-only ``kind`` property, which is only a log
# label (and the conference's kind serves as one: "group 1234: active -> ending").
@dataclass(eq=False, slots=True)
class Conference(StateMachine[ConferenceState]):
    """A mixer and its members: a hosted conference (seed 002), a REST conference (seed 003)
    or a call group (seed 000)."""

    TRANSITIONS: ClassVar[Mapping[ConferenceState, frozenset[ConferenceState]]] = {
        ConferenceState.STARTING: frozenset({ConferenceState.ACTIVE, ConferenceState.ENDING}),
        ConferenceState.ACTIVE: frozenset({ConferenceState.ENDING}),
        ConferenceState.ENDING: frozenset({ConferenceState.ENDED}),
        ConferenceState.ENDED: frozenset(),
    }

    kind: ConferenceKind = field()  # a field() so that the kit's property is no default
    owner: Device
    name: str
    media_type: MediaType = "audio"
    id: str = field(default_factory=new_id)
    state: ConferenceState = ConferenceState.STARTING
    host_leg: Leg | None = None  # seed 002: the host's leg; group: the owner's primary leg
    members: dict[str, Member] = field(default_factory=dict)  # leg id -> member
    invitations: dict[str, Invitation] = field(default_factory=dict)  # key -> ringing one
    pairs: dict[str, Leg] = field(default_factory=dict)  # group: owner leg id -> far leg
    created_at: datetime = field(default_factory=_now)
    beep: BeepMode = "never"
    self_held: bool = False  # group: the owner holds the whole group
    floor: str | None = None  # leg id of the active talker
    recording: Recording | None = None  # the one started and not yet stopped
    ends_when_empty: bool = False  # REST conferences: over when the last member leaves

    @property
    def ended(self) -> bool:
        """Ending or ended: nothing may join, nothing is told any more."""
        return self.state in (ConferenceState.ENDING, ConferenceState.ENDED)

    @property
    def recording_id(self) -> str | None:
        """The id of the recording started and not yet stopped."""
        return self.recording.id if self.recording is not None else None

    @property
    def participants(self) -> list[Member]:
        """Everyone but the host (seed 002) / the owner (group)."""
        return [m for m in self.members.values() if m.leg.device is not self.owner]

    def roster(self) -> Roster:
        """The seed's ``participants`` and ``invitations``, as they are now."""
        return Roster(
            participants=tuple(m.view() for m in self.participants),
            invitations=tuple(i.view() for i in self.invitations.values()),
        )

    def member(self, participant: str) -> Member | None:
        """A member by its leg id or its participant id."""
        found = self.members.get(participant)
        if found is None:
            found = next((m for m in self.members.values() if m.key == participant), None)
        return found

    def floor_key(self) -> str | None:
        """The participant id of the active talker."""
        talker = self.members.get(self.floor) if self.floor else None
        return talker.key if talker is not None else None
