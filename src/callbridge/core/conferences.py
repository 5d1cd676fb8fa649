"""Conferences: seed 002's hosted conferences with invitations, seed 000's call groups, and
the media operations seed 003 puts on REST (play, speak, stop, record, mute / hold / deafen a
participant, supervisor roles).

A conference is one *mixer* in the media plane and the legs that are its *members*: each
member hears the mix of everyone else (minus itself) and is heard by all, unless its flags say
otherwise (muted, held, deaf, a supervisor role). Two kinds share that machinery:

- ``conference`` (seed 002): a host starts it with its own leg (``conference.start``), invites
  users (``conference.invite``: their devices ring with ``conference.invitation``; ``call.answer``
  joins, ``call.reject`` declines), removes participants and ends it. The host's leg leaving
  (hangup, lost device) ends the conference: it is the host's.
- ``group`` (seed 000 call group): a device merges its answered 1:1 calls
  (``conference.merge``). Each call keeps its two legs and its ``call_id``; only the media
  changes, from a bridge to the mixer. The owner's device has one leg per call but one
  microphone and one loudspeaker: only its *primary* leg (the oldest call in the group) is a
  mixer member; its other legs hear nothing and are not heard. When a call leaves the group
  (split, or either party hangs up) the group shrinks; a group of one call dissolves and that
  call is an ordinary bridged call again.

Holding one's *own* membership (``conference.hold`` / ``call.hold`` on a conference leg, a
group hold) takes the member out of the conversation: it hears nothing and is not heard, the
others go on talking. A host (or the REST API) holding a *participant* is different: that
participant hears hold audio.

All methods run on the server's event loop and re-check state after every ``await``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from callbridge.core.calls import Call, Device, EndReason, Leg, LegState, MediaType, new_id
from callbridge.errors import ErrorCode, MediaError, ProtocolError
from callbridge.media.interface import (
    AudioSpec,
    FloorChanged,
    MediaEvent,
    PlaybackStateChanged,
    RecordingSaved,
    SupervisorRole,
)

if TYPE_CHECKING:
    from callbridge.core.controller import CallController

__all__ = [
    "BeepMode",
    "Conference",
    "ConferenceKind",
    "ConferenceManager",
    "Invitation",
    "Member",
    "RecordAction",
]

log = logging.getLogger(__name__)

BeepMode = Literal["always", "never", "on_enter", "on_exit"]
RecordAction = Literal["start", "pause", "resume", "stop"]
_NAME = re.compile(r"^[\w .:@+-]{1,128}$")


class ConferenceKind(StrEnum):
    CONFERENCE = "conference"  # seed 002: a host, invitations, participants
    GROUP = "group"  # seed 000: a device's merged calls


@dataclass(eq=False)
class Member:
    """One leg in a conference's mixer (or, for a group owner's secondary legs, next to it)."""

    leg: Leg
    key: str  # participant id: the invitee as the host named it, or the far party's caller id
    name: str
    joined_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    in_mixer: bool = True  # False for a group owner's secondary legs
    muted: bool = False  # muted by the host / API (the leg's own mute is ``leg.muted``)
    held: bool = False  # held by the host / API: hears hold audio, is not heard
    self_held: bool = False  # held its own membership: hears nothing, is not heard
    deaf: bool = False
    role: SupervisorRole = "none"
    whisper_to: tuple[str, ...] = ()  # leg ids that hear a whispering supervisor
    hold_playback: str | None = None  # the hold audio playing to a held participant

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.key,
            "call_id": self.leg.id,
            "name": self.name,
            "status": "held" if self.held or self.self_held else "joined",
            "muted": self.muted or self.leg.muted,
            "held": self.held,
            "deaf": self.deaf,
            "supervisor_role": self.role,
            "joined_at": self.joined_at.isoformat(),
        }


@dataclass(eq=False)
class Invitation:
    """``conference.invite``: the invitee's devices ring until one joins or all decline."""

    conference: Conference
    key: str
    name: str
    id: str = field(default_factory=new_id)
    legs: list[Leg] = field(default_factory=list)
    taken: bool = False  # a device joined (claimed before any await)

    def describe(self) -> dict[str, Any]:
        return {"id": self.key, "invitation_id": self.id, "name": self.name, "status": "pending"}


@dataclass(eq=False)
class Conference:
    kind: ConferenceKind
    owner: Device
    name: str
    media_type: MediaType = "audio"
    id: str = field(default_factory=new_id)
    host_leg: Leg | None = None  # seed 002: the host's leg; group: the owner's primary leg
    members: dict[str, Member] = field(default_factory=dict)  # leg id -> member
    invitations: dict[str, Invitation] = field(default_factory=dict)  # key -> invitation
    pairs: dict[str, Leg] = field(default_factory=dict)  # group: owner leg id -> far leg
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    beep: BeepMode = "never"
    ended: bool = False
    self_held: bool = False  # group: the owner holds the whole group
    floor: str | None = None  # leg id of the active talker
    recording_id: str | None = None
    recording_paused: bool = False
    ends_when_empty: bool = False  # REST conferences: over when the last member leaves

    @property
    def participants(self) -> list[Member]:
        """Everyone but the host (seed 002) / the owner (group)."""
        return [m for m in self.members.values() if m.leg.device is not self.owner]

    def describe(self) -> dict[str, Any]:
        """The seed's ``participants`` and ``invitations`` objects (keyed by participant id)."""
        return {
            "conference_id": self.id,
            "participants": {m.key: m.describe() for m in self.participants},
            "invitations": {k: i.describe() for k, i in self.invitations.items()},
        }


@dataclass(frozen=True, slots=True)
class _Playback:
    conference: Conference
    kind: Literal["play", "speak"]
    requester: Device | None


class ConferenceManager:
    """Every live conference of this server; driven by the call controller and ``/ws``."""

    def __init__(self, calls: CallController, recordings_dir: Path | None = None) -> None:
        self.calls = calls
        self.media = calls.media
        self.recordings_dir = recordings_dir
        self.conferences: dict[str, Conference] = {}
        self._playbacks: dict[str, _Playback] = {}
        self._recordings: dict[str, tuple[Conference, Device | None]] = {}

    # events ---------------------------------------------------------------------------------
    def _publish(self, event: str, conf: Conference, **payload: Any) -> None:
        """A domain event (webhooks, logs): facts, published once."""
        self.calls.publish(event, conference_id=conf.id, name=conf.name, **payload)

    def _tell_owner(
        self, conf: Conference, kind: str, req_id: str | None = None, **extra: Any
    ) -> None:
        conf.owner.send({"type": kind, "req_id": req_id, **conf.describe(), **extra})

    # lookups --------------------------------------------------------------------------------
    def get(self, device: Device, conference_id: str) -> Conference:
        """A conference ``device`` owns or has a member leg in."""
        conf = self.conferences.get(conference_id)
        if conf is None or conf.ended:
            raise ProtocolError(ErrorCode.CONFERENCE_NOT_FOUND, f"no conference {conference_id}")
        if conf.owner is not device and not any(
            m.leg.device is device for m in conf.members.values()
        ):
            raise ProtocolError(
                ErrorCode.CONFERENCE_NOT_FOUND,
                f"conference {conference_id} has no leg of this session",
            )
        return conf

    def hosted(self, device: Device, conference_id: str, action: str) -> Conference:
        conf = self.get(device, conference_id)
        if conf.owner is not device:
            raise ProtocolError(
                ErrorCode.NOT_CONFERENCE_HOST,
                f"{action}: only the host of conference {conference_id} may do this",
            )
        return conf

    def _member(self, conf: Conference, call_id: str) -> Member:
        member = conf.members.get(call_id)
        if member is None:
            by_key = [m for m in conf.members.values() if m.key == call_id]
            if not by_key:
                raise ProtocolError(
                    ErrorCode.CALL_NOT_FOUND,
                    f"conference {conf.id} has no participant or call {call_id!r}",
                )
            member = by_key[0]
        return member

    def own_member(self, leg: Leg) -> tuple[Conference, Member]:
        conf = leg.conference
        if not isinstance(conf, Conference) or leg.id not in conf.members:
            raise ProtocolError(ErrorCode.INVALID_STATE, f"call {leg.id} is in no conference")
        return conf, conf.members[leg.id]

    # seed 002: hosted conferences -------------------------------------------------------------
    async def start(
        self,
        device: Device,
        sdp: str,
        media_type: MediaType,
        name: str | None,
        beep: BeepMode,
        req_id: str | None,
    ) -> Conference:
        """Start a conference with the host's leg as its first member (seed 002
        ``startConference``). Video conferences carry audio only (docs/protocol.md)."""
        if name is not None and not _NAME.match(name):
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE,
                "conference.start: field 'name' may have letters, digits, spaces and "
                "._:@+- (at most 128)",
            )
        leg = Leg(device=device, direction="outgoing")
        answer = await self.media.answer(leg.id, sdp, video=False)
        conf = Conference(
            ConferenceKind.CONFERENCE, device, name or "", media_type=media_type, beep=beep
        )
        conf.name = conf.name or f"conference-{conf.id[:8]}"
        try:
            await self.media.create_mixer(conf.id)
        except BaseException:
            await self.media.close(leg.id)
            raise
        self.conferences[conf.id] = conf
        self.calls.legs[leg.id] = leg
        leg.call = _conference_call(leg, conf)
        leg.set_state(LegState.TRYING)
        conf.host_leg = leg
        device.send(
            {
                "type": "conference.started",
                "req_id": req_id,
                "conference_id": conf.id,
                "call_id": leg.id,
                "name": conf.name,
                "media_type": conf.media_type,
            }
        )
        device.send({"type": "sdp.answer", "call_id": leg.id, "sdp": answer})
        self.calls.send_candidates(leg)
        self._publish("conference.created", conf, call_control_id=leg.id)
        await self._add_member(conf, Member(leg, device.caller_id, device.display_name))
        leg.set_state(LegState.ACTIVE)
        device.send({"type": "call.answered", "call_id": leg.id, "media_type": "audio"})
        self._tell_owner(conf, "conference.connected", call_id=leg.id, name=conf.name)
        return conf

    async def _add_member(self, conf: Conference, member: Member) -> None:
        leg = member.leg
        conf.members[leg.id] = member
        leg.conference = conf
        if member.in_mixer:
            await self.media.mixer_add(conf.id, leg.id)
            await self._apply(member)
        if conf.beep in ("always", "on_enter") and member.leg is not conf.host_leg:
            await self._beep(conf, "join")
        self._publish("conference.participant.joined", conf, call_control_id=leg.id)

    async def refresh(self, leg: Leg) -> None:
        """The leg's own flags changed (its mute): push its member's state to the mixer."""
        conf = leg.conference
        member = conf.members.get(leg.id) if isinstance(conf, Conference) else None
        if member is not None and member.in_mixer:
            await self._apply(member)

    async def _apply(self, member: Member) -> None:
        """Push a member's flags to the mixer."""
        leg = member.leg
        await self.media.set_muted(leg.id, leg.muted or member.muted or member.self_held)
        await self.media.mixer_update(
            leg.id,
            deaf=member.deaf or member.self_held,
            held=member.held,
            role=member.role,
            whisper_to=member.whisper_to,
        )

    async def _beep(self, conf: Conference, tone: str) -> None:
        try:
            await self.media.mixer_play(conf.id, new_id(), AudioSpec("tone", tone))
        except MediaError:
            log.exception("conference %s: beep failed", conf.id)

    async def invite(self, device: Device, conference_id: str, to: str, req_id: str | None) -> None:
        """Ring the invitee's devices (seed 002 ``addParticipant``)."""
        conf = self.hosted(device, conference_id, "conference.invite")
        if conf.kind is not ConferenceKind.CONFERENCE:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"conference {conf.id} is a call group: merge calls into it instead",
            )
        user = await self.calls.directory.find_user(to)
        if conf.ended:
            return
        if user is None:
            raise ProtocolError(
                ErrorCode.DESTINATION_NOT_FOUND, f"no user has the extension, number or name {to!r}"
            )
        if to in conf.invitations or any(m.key == to for m in conf.members.values()):
            raise ProtocolError(
                ErrorCode.INVALID_STATE, f"{to!r} is already invited to or in conference {conf.id}"
            )
        devices = [
            d
            for d in self.calls.devices.get(user.name, {}).values()
            if d is not device and d.reachable
        ]
        if not devices:
            raise ProtocolError(
                ErrorCode.DESTINATION_NOT_FOUND, f"{to!r} ({user.name}) has no device logged in"
            )
        invitation = Invitation(conf, to, user.display_name or user.name)
        conf.invitations[to] = invitation
        host = conf.host_leg
        prefer = self.media.codec(host.id) if host is not None else None
        for dev in devices:
            leg = Leg(device=dev, direction="incoming", invitation=invitation)
            try:
                offer = await self.media.offer(leg.id, prefer)
            except MediaError:
                log.exception("conference %s: no media for %s", conf.id, dev.id)
                continue
            if conf.ended or invitation.taken or conf.invitations.get(to) is not invitation:
                await self.media.close(leg.id)
                continue
            self.calls.legs[leg.id] = leg
            leg.set_state(LegState.RINGING)
            invitation.legs.append(leg)
            dev.send(
                {
                    "type": "conference.invitation",
                    "call_id": leg.id,
                    "conference_id": conf.id,
                    "invitation_id": invitation.id,
                    "name": conf.name,
                    "from": device.caller_id,
                    "from_name": device.display_name,
                    "to": to,
                    "media_type": conf.media_type,
                    "sdp": offer,
                }
            )
            self.calls.send_candidates(leg)
        if not invitation.legs:
            conf.invitations.pop(to, None)
            raise ProtocolError(ErrorCode.INTERNAL, f"could not ring {to!r}; see the server log")
        self._tell_owner(
            conf, "conference.invitation-sent", req_id, invitation_id=invitation.id, invitee=to
        )
        self.calls.later(
            invitation, self.calls.ring_timeout, lambda: self._invitation_timeout(invitation)
        )

    async def _invitation_timeout(self, invitation: Invitation) -> None:
        if not invitation.taken:
            await self._end_invitation(invitation, EndReason.NO_ANSWER)

    async def _end_invitation(self, invitation: Invitation, reason: EndReason) -> None:
        """Every device of a pending invitation stops ringing; the host hears why."""
        conf = invitation.conference
        if conf.invitations.get(invitation.key) is not invitation:
            return
        del conf.invitations[invitation.key]
        self.calls.cancel_later(invitation)
        for leg in invitation.legs:
            await self.calls.end_leg(leg, reason)
        if not conf.ended:
            self._tell_owner(
                conf,
                "conference.invitation-rejected",
                invitation_id=invitation.id,
                invitee=invitation.key,
                reason=reason.value,
            )

    async def join(self, leg: Leg, sdp: str, req_id: str | None) -> None:
        """An invited device answered (``call.answer`` on its ``conference.invitation``)."""
        invitation = leg.invitation
        assert invitation is not None
        conf = invitation.conference
        if invitation.taken or conf.ended or not leg.live:
            raise ProtocolError(ErrorCode.INVALID_STATE, f"invitation {leg.id} is no longer open")
        invitation.taken = True  # claimed before any await
        self.calls.cancel_later(invitation)
        conf.invitations.pop(invitation.key, None)
        for other in invitation.legs:
            if other is not leg:
                await self.calls.end_leg(other, EndReason.ANSWERED_ELSEWHERE)
        try:
            await self.media.accept_answer(leg.id, sdp)
        except MediaError as exc:
            leg.device.send(exc.to_wire(req_id, leg.id))
            await self.calls.end_leg(leg, EndReason.FAILED)
            self._tell_owner(
                conf,
                "conference.invitation-rejected",
                invitation_id=invitation.id,
                invitee=invitation.key,
                reason=EndReason.FAILED.value,
            )
            return
        if _over(leg, conf):
            return
        leg.invitation = None
        device = leg.device
        leg.call = _conference_call(leg, conf)
        leg.set_state(LegState.ACTIVE)
        await self._add_member(conf, Member(leg, invitation.key, invitation.name))
        if _over(leg, conf):
            return
        device.send({"type": "call.answered", "req_id": req_id, "call_id": leg.id})
        device.send(
            {
                "type": "conference.joined",
                "call_id": leg.id,
                "conference_id": conf.id,
                "name": conf.name,
                "from": conf.owner.caller_id,
                "media_type": conf.media_type,
            }
        )
        self._tell_owner(
            conf,
            "conference.invitation-accepted",
            invitation_id=invitation.id,
            invitee=invitation.key,
        )

    async def decline(self, leg: Leg, req_id: str | None) -> None:
        """An invited device rejected; when all have, the host gets invitation-rejected."""
        invitation = leg.invitation
        assert invitation is not None
        await self.calls.end_leg(leg, EndReason.REJECTED, req_id)
        invitation.legs = [x for x in invitation.legs if x is not leg]
        if not invitation.legs and not invitation.taken:
            await self._end_invitation(invitation, EndReason.REJECTED)

    async def remove(
        self, device: Device, conference_id: str, participant: str, req_id: str | None
    ) -> None:
        """The host removes a participant, or withdraws a pending invitation."""
        conf = self.hosted(device, conference_id, "conference.remove")
        invitation = conf.invitations.get(participant)
        if invitation is not None:
            del conf.invitations[participant]
            self.calls.cancel_later(invitation)
            for leg in invitation.legs:
                await self.calls.end_leg(leg, EndReason.CANCELED)
        else:
            member = self._member(conf, participant)
            if member.leg.device is device:
                raise ProtocolError(
                    ErrorCode.INVALID_STATE,
                    "the host cannot remove itself: end the conference (conference.end)",
                )
            if conf.kind is ConferenceKind.GROUP:
                raise ProtocolError(
                    ErrorCode.INVALID_STATE,
                    f"conference {conf.id} is a call group: split the call out "
                    "(conference.split) or hang it up",
                )
            member.leg.device.send(
                {
                    "type": "conference.ended",
                    "call_id": member.leg.id,
                    "conference_id": conf.id,
                    "reason": "removed",
                }
            )
            await self._end_member_call(member.leg, EndReason.REMOVED)
        self._tell_owner(conf, "conference.participant-removed", req_id, participant=participant)

    async def end(self, device: Device, conference_id: str, req_id: str | None) -> None:
        """``conference.end``: the host ends it for everyone; a participant leaves."""
        conf = self.get(device, conference_id)
        if conf.owner is device:
            await self.finish(conf, "ended-by-host", req_id)
            return
        for member in [m for m in conf.members.values() if m.leg.device is device]:
            await self.leave(member.leg, EndReason.HANGUP, req_id)

    async def leave(self, leg: Leg, reason: EndReason, req_id: str | None = None) -> None:
        """A participant's leg leaves (hangup, ``conference.end``, lost device). The host's
        leg leaving ends the conference."""
        conf = leg.conference
        if not isinstance(conf, Conference) or conf.ended:
            await self._end_member_call(leg, reason, req_id)
            return
        if leg is conf.host_leg and conf.kind is ConferenceKind.CONFERENCE:
            await self.finish(conf, "host-left", req_id)
            return
        member = conf.members.get(leg.id)
        leg.device.send(
            {
                "type": "conference.ended",
                "call_id": leg.id,
                "conference_id": conf.id,
                "reason": "left",
            }
        )
        await self._end_member_call(leg, reason, req_id)
        if member is not None and not conf.ended:
            self._tell_owner(conf, "conference.participant-left", participant=member.key)

    async def _end_member_call(
        self, leg: Leg, reason: EndReason, req_id: str | None = None
    ) -> None:
        if leg.call is not None:
            await self.calls.end_call(leg.call, reason, reason, req_id)
        else:
            await self.calls.end_leg(leg, reason, req_id)

    async def finish(self, conf: Conference, reason: str, req_id: str | None = None) -> None:
        """End the conference: every member's call ends, pending invitations are withdrawn."""
        if conf.ended:
            return
        conf.ended = True
        for invitation in list(conf.invitations.values()):
            self.calls.cancel_later(invitation)
            for leg in invitation.legs:
                await self.calls.end_leg(leg, EndReason.CANCELED)
        conf.invitations.clear()
        told: set[int] = set()
        for member in list(conf.members.values()):
            leg = member.leg
            # Each device hears it once; a group's far parties knew of no conference.
            tell = conf.kind is ConferenceKind.CONFERENCE or leg.device is conf.owner
            if tell and id(leg.device) not in told:
                told.add(id(leg.device))
                leg.device.send(
                    {
                        "type": "conference.ended",
                        "req_id": req_id if leg.device is conf.owner else None,
                        "call_id": leg.id,
                        "conference_id": conf.id,
                        "reason": reason,
                    }
                )
            await self._end_member_call(leg, EndReason.HANGUP)
        await self._teardown(conf)

    async def _teardown(self, conf: Conference) -> None:
        conf.ended = True
        self.conferences.pop(conf.id, None)
        for pid, playback in list(self._playbacks.items()):
            if playback.conference is conf:
                del self._playbacks[pid]
        await self.media.destroy_mixer(conf.id)  # saves a running recording
        self._publish("conference.ended", conf, reason="ended")

    # REST (seed 003): conferences of existing legs ------------------------------------------
    async def create_for_leg(
        self, owner: Device, leg: Leg, name: str, beep: BeepMode = "never"
    ) -> Conference:
        """A conference whose first member is an answered, unbridged leg; ``owner`` (an
        application) drives it. It ends when its last member leaves."""
        self._joinable(leg)
        conf = Conference(ConferenceKind.CONFERENCE, owner, name, beep=beep, ends_when_empty=True)
        await self.media.create_mixer(conf.id)
        self.conferences[conf.id] = conf
        self._publish("conference.created", conf, call_control_id=leg.id)
        await self.join_leg(conf, leg)
        return conf

    def _joinable(self, leg: Leg) -> None:
        if not leg.live or not leg.answered:
            raise ProtocolError(
                ErrorCode.INVALID_STATE, f"call {leg.id} is {leg.state}; it must be answered"
            )
        if leg.conference is not None:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"call {leg.id} is in conference {leg.conference.id} already",
            )
        if leg.peer is not None:
            raise ProtocolError(
                ErrorCode.INVALID_STATE, f"call {leg.id} is bridged to another call; unbridge it"
            )

    async def join_leg(
        self,
        conf: Conference,
        leg: Leg,
        *,
        muted: bool = False,
        held: bool = False,
        hold_audio: AudioSpec | None = None,
        role: SupervisorRole = "none",
        whisper_to: tuple[str, ...] = (),
    ) -> Member:
        """An answered, unbridged leg joins (REST ``join``); its participant id is its
        ``call_control_id``."""
        if conf.ended:
            raise ProtocolError(ErrorCode.CONFERENCE_NOT_FOUND, f"conference {conf.id} ended")
        self._joinable(leg)
        member = Member(leg, leg.id, leg.device.display_name, muted=muted, role=role)
        member.whisper_to = whisper_to
        await self.media.stop_playing(leg.id)
        await self._add_member(conf, member)
        if held:
            await self.update_participant(None, conf, leg.id, held=True, hold_audio=hold_audio)
        return member

    async def leave_leg(self, conf: Conference, leg: Leg) -> None:
        """A leg leaves (REST ``leave``) and stays up, parked: it hears nothing."""
        member = conf.members.get(leg.id)
        if member is None:
            raise ProtocolError(
                ErrorCode.CALL_NOT_FOUND, f"call {leg.id} is not in conference {conf.id}"
            )
        if member.hold_playback is not None:
            await self.media.stop_playback(member.hold_playback)
        del conf.members[leg.id]
        leg.conference = None
        await self._leave_mixer(leg)
        self._publish("conference.participant.left", conf, call_control_id=leg.id)
        await self._maybe_empty(conf)

    async def _maybe_empty(self, conf: Conference) -> None:
        if conf.ends_when_empty and not conf.members and not conf.ended:
            await self.finish(conf, "last-left")

    def state(self, device: Device, conference_id: str, req_id: str | None) -> None:
        conf = self.get(device, conference_id)
        device.send(
            {
                "type": "conference.state",
                "req_id": req_id,
                **conf.describe(),
                "kind": conf.kind.value,
                "name": conf.name,
                "host": conf.owner.caller_id,
                "media_type": conf.media_type,
                "floor": self._floor_key(conf),
                "call_ids": [m.leg.id for m in conf.members.values() if m.leg.device is device],
            }
        )

    def _floor_key(self, conf: Conference) -> str | None:
        member = conf.members.get(conf.floor) if conf.floor else None
        return member.key if member is not None else None

    # seed 000: call groups ------------------------------------------------------------------
    async def merge(
        self,
        device: Device,
        call_ids: list[str],
        conference_id: str | None,
        req_id: str | None,
    ) -> None:
        """Merge answered 1:1 calls of ``device`` into its call group (created if needed)."""
        legs = [self.calls.answered_leg(device, cid) for cid in dict.fromkeys(call_ids)]
        for leg in legs:
            if leg.conference is not None or leg.peer is None:
                raise ProtocolError(
                    ErrorCode.INVALID_STATE, f"call {leg.id} is in a conference already"
                )
            if leg.call is not None and leg.call.modification is not None:
                raise ProtocolError(
                    ErrorCode.INVALID_STATE, f"call {leg.id}: a media modification is under way"
                )
        if conference_id is not None:
            conf = self.hosted(device, conference_id, "conference.merge")
            if conf.kind is not ConferenceKind.GROUP:
                raise ProtocolError(
                    ErrorCode.INVALID_STATE,
                    f"conference {conf.id} is hosted: invite participants instead",
                )
        else:
            if len(legs) < 2:
                raise ProtocolError(
                    ErrorCode.INVALID_MESSAGE,
                    "conference.merge: a new call group needs at least two calls (call_ids)",
                )
            conf = Conference(ConferenceKind.GROUP, device, "")
            conf.name = f"group-{conf.id[:8]}"
            await self.media.create_mixer(conf.id)
            self.conferences[conf.id] = conf
            self._publish("conference.created", conf, call_control_id=legs[0].id)
        for leg in legs:
            await self._merge_call(conf, leg)
        if conf.ended:
            return
        self._tell_owner(conf, "conference.merged", req_id, **self._group_view(conf))

    async def _merge_call(self, conf: Conference, leg: Leg) -> None:
        far, call = leg.peer, leg.call
        if far is None or call is None or not leg.live or conf.ended:
            return
        if call.held_by is not None:  # merging resumes a held call (as GSM multiparty does)
            holder = call.held_by
            call.held_by = None
            for x in (leg, far):
                await self.media.stop_playing(x.id)
                x.set_state(LegState.ACTIVE)
                by = "local" if x is holder else "remote"
                x.device.send({"type": "call.resumed", "call_id": x.id, "by": by})
        conf.pairs[leg.id] = far
        primary = conf.host_leg is None or not conf.host_leg.live
        if primary:
            conf.host_leg = leg
        await self.media.unbridge(leg.id)
        await self._add_member(
            conf,
            Member(leg, leg.device.caller_id, leg.device.display_name, in_mixer=primary),
        )
        await self._add_member(conf, Member(far, far.device.caller_id, far.device.display_name))
        if conf.self_held:
            await self._hold_owner_leg(conf, leg, True)

    def _group_view(self, conf: Conference) -> dict[str, Any]:
        return {
            "call_ids": list(conf.pairs),
            "media_call_id": conf.host_leg.id if conf.host_leg is not None else None,
            "state": "held" if conf.self_held else "connected",
        }

    async def split(
        self, device: Device, conference_id: str, call_id: str, req_id: str | None
    ) -> None:
        """Take one call out of the group: it is an ordinary 1:1 call again."""
        conf = self.hosted(device, conference_id, "conference.split")
        if conf.kind is not ConferenceKind.GROUP or call_id not in conf.pairs:
            raise ProtocolError(
                ErrorCode.CALL_NOT_FOUND, f"call {call_id} is not in call group {conf.id}"
            )
        leg = self.calls.legs[call_id]
        far = conf.pairs[call_id]
        await self._unpair(conf, leg, far)
        if leg.live and far.live:
            await self._rebridge(leg, far)
        await self._after_pair_left(conf, req_id, split=call_id)

    async def _unpair(self, conf: Conference, leg: Leg, far: Leg) -> None:
        """Take one call's two legs out of the group's mixer (the primary passes on)."""
        conf.pairs.pop(leg.id, None)
        for x in (leg, far):
            member = conf.members.pop(x.id, None)
            x.conference = None
            if member is not None and member.in_mixer:
                await self._leave_mixer(x)
        if conf.host_leg is leg:
            conf.host_leg = None
            successor = next(
                (self.calls.legs.get(i) for i in conf.pairs if i in self.calls.legs), None
            )
            if successor is not None and not conf.ended:
                conf.host_leg = successor
                member = conf.members[successor.id]
                member.in_mixer = True
                await self.media.mixer_add(conf.id, successor.id)
                await self._apply(member)
        self._publish("conference.participant.left", conf, call_control_id=far.id)

    async def _leave_mixer(self, leg: Leg) -> None:
        """Out of the mixer, with the leg's own mute only (its endpoint may be closing)."""
        try:
            await self.media.mixer_remove(leg.id)
            await self.media.set_muted(leg.id, leg.muted)
        except MediaError:
            pass  # the endpoint is gone already: nothing to undo

    async def _rebridge(self, leg: Leg, far: Leg) -> None:
        await self.media.bridge(leg.id, far.id)
        await self.media.set_muted(leg.id, leg.muted)
        await self.media.set_muted(far.id, far.muted)
        for x in (leg, far):
            if x.state is LegState.HELD:
                x.set_state(LegState.ACTIVE)
                x.device.send({"type": "call.resumed", "call_id": x.id, "by": "local"})

    async def _after_pair_left(
        self, conf: Conference, req_id: str | None = None, split: str | None = None
    ) -> None:
        """A call left the group: tell the owner; a group of one call dissolves."""
        if conf.ended:
            return
        extra: dict[str, Any] = {"split_call_id": split} if split else {}
        if len(conf.pairs) <= 1:
            for owner_id, far in list(conf.pairs.items()):
                leg = self.calls.legs.get(owner_id)
                if leg is not None:
                    await self._unpair(conf, leg, far)
                    if leg.live and far.live:
                        await self._rebridge(leg, far)
            remaining = list(conf.pairs)
            conf.pairs.clear()
            self._tell_owner(
                conf,
                "conference.ended",
                req_id,
                reason="dissolved",
                call_ids=[],
                released_call_ids=remaining,
                **extra,
            )
            await self._teardown(conf)
            return
        self._tell_owner(conf, "conference.updated", req_id, **self._group_view(conf), **extra)

    async def group_leg_ending(self, leg: Leg) -> None:
        """One leg of a grouped call is ending (either party hung up, a device was lost)."""
        conf = leg.conference
        if not isinstance(conf, Conference) or conf.kind is not ConferenceKind.GROUP:
            return
        if leg.id in conf.pairs:
            owner_leg, far = leg, conf.pairs[leg.id]
        else:
            owner_id = next((o for o, f in conf.pairs.items() if f is leg), None)
            if owner_id is None:
                return
            owner_leg, far = self.calls.legs.get(owner_id) or leg, leg
        await self._unpair(conf, owner_leg, far)
        await self._after_pair_left(conf)

    # holding and muting one's own membership ------------------------------------------------
    async def hold(
        self, device: Device, conference_id: str, held: bool, req_id: str | None
    ) -> None:
        """``conference.hold`` / ``conference.resume``: take the device's own membership out
        of (or back into) the conversation; for a call group that is the whole group."""
        conf = self.get(device, conference_id)
        if conf.kind is ConferenceKind.GROUP:
            if conf.self_held == held:
                raise ProtocolError(
                    ErrorCode.INVALID_STATE,
                    f"call group {conf.id} is {'held' if held else 'not held'} already",
                )
            conf.self_held = held
            for owner_id in list(conf.pairs):
                leg = self.calls.legs.get(owner_id)
                if leg is not None:
                    await self._hold_owner_leg(conf, leg, held)
            kind = "conference.held" if held else "conference.resumed"
            self._tell_owner(conf, kind, req_id, **self._group_view(conf))
            return
        for member in [m for m in conf.members.values() if m.leg.device is device]:
            await self.hold_member(member.leg, held, req_id)

    async def _hold_owner_leg(self, conf: Conference, leg: Leg, held: bool) -> None:
        member = conf.members.get(leg.id)
        if member is None or not leg.live:
            return
        member.self_held = held
        if member.in_mixer:
            await self._apply(member)
        leg.set_state(LegState.HELD if held else LegState.ACTIVE)
        kind = "call.held" if held else "call.resumed"
        leg.device.send({"type": kind, "call_id": leg.id, "by": "local"})

    async def hold_member(self, leg: Leg, held: bool, req_id: str | None) -> None:
        """``call.hold`` / ``call.resume`` on one's own conference leg."""
        conf, member = self.own_member(leg)
        if conf.kind is ConferenceKind.GROUP:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"call {leg.id} is in call group {conf.id}: hold or resume the group "
                "(conference.hold / conference.resume)",
            )
        if member.self_held == held:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"call {leg.id} is {'on hold' if held else 'not on hold'} already",
            )
        member.self_held = held
        await self._apply(member)
        leg.set_state(LegState.HELD if held else LegState.ACTIVE)
        kind = "call.held" if held else "call.resumed"
        leg.device.send(
            {
                "type": kind,
                "req_id": req_id,
                "call_id": leg.id,
                "by": "local",
                "conference_id": conf.id,
            }
        )
        if leg.device is not conf.owner:
            self._tell_owner(conf, "conference.participant-updated", participant=member.key)

    # host (and REST) operations on participants ---------------------------------------------
    async def update_participant(
        self,
        device: Device | None,
        conf: Conference,
        participant: str,
        *,
        muted: bool | None = None,
        held: bool | None = None,
        hold_audio: AudioSpec | None = None,
        deaf: bool | None = None,
        role: SupervisorRole | None = None,
        whisper_to: list[str] | None = None,
        req_id: str | None = None,
    ) -> Member:
        """Mute, hold (with hold audio), deafen a participant or change its supervisor role.
        ``device`` is the host asking (``None``: the REST API)."""
        member = self._member(conf, participant)
        targets: tuple[str, ...] | None = None
        if whisper_to is not None:
            targets = tuple(self._member(conf, t).leg.id for t in whisper_to)
        if role == "whisper" and not (targets or member.whisper_to):
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE,
                "supervisor_role 'whisper' needs the participants who hear it (whisper_to)",
            )
        if muted is not None:
            member.muted = muted
        if deaf is not None:
            member.deaf = deaf
        if role is not None:
            member.role = role
        if targets is not None:
            member.whisper_to = targets
        if held is not None and held != member.held:
            member.held = held
            if member.hold_playback is not None:
                await self.media.stop_playback(member.hold_playback)
                member.hold_playback = None
            if held and hold_audio is not None:
                member.hold_playback = new_id()
                await self.media.play_to(member.leg.id, member.hold_playback, hold_audio)
        await self._apply(member)
        if device is not None:
            self._tell_owner(conf, "conference.participant-updated", req_id, participant=member.key)
        return member

    async def play(
        self,
        device: Device | None,
        conf: Conference,
        audio: AudioSpec,
        targets: list[str] | None,
        req_id: str | None = None,
    ) -> str:
        """Play a file / URL or speak text to all or some participants; returns the playback
        id (its ``conference.playback-*`` / ``conference.speak-*`` events carry it)."""
        legs = tuple(self._member(conf, t).leg.id for t in targets or ())
        playback_id = new_id()
        kind: Literal["play", "speak"] = "speak" if audio.kind == "tts" else "play"
        self._playbacks[playback_id] = _Playback(conf, kind, device)
        try:
            await self.media.mixer_play(conf.id, playback_id, audio, legs)
        except BaseException:
            self._playbacks.pop(playback_id, None)
            raise
        if device is not None:
            device.send(
                {
                    "type": f"conference.{kind}",
                    "req_id": req_id,
                    "conference_id": conf.id,
                    "playback_id": playback_id,
                }
            )
        return playback_id

    async def stop(
        self,
        device: Device | None,
        conf: Conference,
        targets: list[str] | None,
        req_id: str | None = None,
    ) -> None:
        legs = tuple(self._member(conf, t).leg.id for t in targets or ())
        await self.media.stop_all(conf.id, legs)
        if device is not None:
            device.send({"type": "conference.stopped", "req_id": req_id, "conference_id": conf.id})

    async def record(
        self,
        device: Device | None,
        conf: Conference,
        action: RecordAction,
        fmt: Literal["wav", "mp3"] = "wav",
        req_id: str | None = None,
    ) -> str:
        """Start, pause, resume or stop recording the conference's mix; returns the
        recording id (``conference.recording-saved`` carries it when it is saved)."""
        rid = conf.recording_id
        if action == "start":
            if rid is not None:
                raise ProtocolError(
                    ErrorCode.INVALID_STATE, f"conference {conf.id} is being recorded already"
                )
            if self.recordings_dir is None:
                raise ProtocolError(ErrorCode.INTERNAL, "this server has no recordings directory")
            rid = new_id()
            self.recordings_dir.mkdir(parents=True, exist_ok=True)
            path = self.recordings_dir / f"{rid}.{fmt}"
            await self.media.record_start(rid, conf.id, str(path), fmt)
            conf.recording_id, conf.recording_paused = rid, False
            self._recordings[rid] = (conf, device)
        else:
            if rid is None:
                raise ProtocolError(
                    ErrorCode.INVALID_STATE, f"conference {conf.id} is not being recorded"
                )
            if action == "pause":
                await self.media.record_pause(rid)
                conf.recording_paused = True
            elif action == "resume":
                await self.media.record_resume(rid)
                conf.recording_paused = False
            else:
                conf.recording_id = None
                await self.media.record_stop(rid)
        if device is not None:
            device.send(
                {
                    "type": "conference.recording",
                    "req_id": req_id,
                    "conference_id": conf.id,
                    "recording_id": rid,
                    "status": {
                        "start": "recording",
                        "pause": "paused",
                        "resume": "recording",
                        "stop": "stopping",
                    }[action],
                }
            )
        return rid

    # hooks from the call controller ---------------------------------------------------------
    async def leg_ending(self, leg: Leg) -> None:
        """A leg in (or invited to) a conference is ending, for whatever reason."""
        invitation = leg.invitation
        if invitation is not None:
            invitation.legs = [x for x in invitation.legs if x is not leg]
            return
        conf = leg.conference
        if not isinstance(conf, Conference):
            return
        if conf.kind is ConferenceKind.GROUP:
            await self.group_leg_ending(leg)
            return
        member = conf.members.pop(leg.id, None)
        leg.conference = None
        if member is not None and member.in_mixer:
            await self._leave_mixer(leg)
        if member is not None:
            self._publish("conference.participant.left", conf, call_control_id=leg.id)
            if conf.beep in ("always", "on_exit") and not conf.ended:
                await self._beep(conf, "leave")
        if leg is conf.host_leg and not conf.ended:
            await self.finish(conf, "host-left")
        else:
            await self._maybe_empty(conf)

    def on_media_event(self, event: MediaEvent) -> None:
        if isinstance(event, FloorChanged):
            self._floor_changed(event)
        elif isinstance(event, PlaybackStateChanged):
            self._playback_changed(event)
        elif isinstance(event, RecordingSaved):
            self._recording_saved(event)

    def _floor_changed(self, event: FloorChanged) -> None:
        conf = self.conferences.get(event.mixer_id)
        if conf is None or conf.ended:
            return
        conf.floor = event.endpoint_id
        talker = conf.members.get(event.endpoint_id) if event.endpoint_id else None
        key = talker.key if talker is not None else None
        told: set[int] = set()
        for member in conf.members.values():
            device = member.leg.device
            if id(device) in told or not member.in_mixer:
                continue
            told.add(id(device))
            device.send(
                {
                    "type": "conference.floor-changed",
                    "call_id": member.leg.id,
                    "conference_id": conf.id,
                    "participant": key,
                    "talker_call_id": event.endpoint_id,
                }
            )
        self._publish("conference.floor.changed", conf, call_control_id=event.endpoint_id)

    def _playback_changed(self, event: PlaybackStateChanged) -> None:
        playback = self._playbacks.get(event.playback_id)
        if playback is None:
            return
        if event.state == "ended":
            del self._playbacks[event.playback_id]
        conf = playback.conference
        message = {
            "type": f"conference.{playback.kind}-{event.state}",
            "conference_id": conf.id,
            "playback_id": event.playback_id,
            "status": event.status,
        }
        if event.detail:
            message["detail"] = event.detail
        if playback.requester is not None and not conf.ended:
            playback.requester.send(message)
        verb = "speak" if playback.kind == "speak" else "playback"
        self._publish(
            f"conference.{verb}.{event.state}",
            conf,
            playback_id=event.playback_id,
            status=event.status,
        )

    def _recording_saved(self, event: RecordingSaved) -> None:
        entry = self._recordings.pop(event.recording_id, None)
        if entry is None:
            return
        conf, requester = entry
        if conf.recording_id == event.recording_id:
            conf.recording_id = None
        if requester is not None:
            requester.send(
                {
                    "type": "conference.recording-saved",
                    "conference_id": conf.id,
                    "recording_id": event.recording_id,
                    "duration_secs": round(event.duration_secs, 3),
                    "path": event.path,
                }
            )
        self._publish(
            "conference.recording.saved",
            conf,
            recording_id=event.recording_id,
            path=event.path,
            duration_secs=event.duration_secs,
        )

    async def shutdown(self) -> None:
        for conf in list(self.conferences.values()):
            await self.finish(conf, "shutdown")


def _conference_call(leg: Leg, conf: Conference) -> Call:
    """The call (CDR) of a leg in a hosted conference: from its device to the conference."""
    return Call(
        id=leg.id,
        origin=leg,
        destination=f"conference:{conf.name}",
        caller_id=leg.device.caller_id,
        caller_name=leg.device.display_name,
        callee_name=conf.name,
        answered_at=datetime.now(UTC),
    )


def _over(leg: Leg, conf: Conference) -> bool:
    """A function, so that mypy re-checks after an ``await`` what an earlier check narrowed."""
    return not leg.live or conf.ended


def audio_spec(
    *,
    audio_url: str | None = None,
    file: str | None = None,
    text: str | None = None,
    voice: str = "female",
    language: str = "en-US",
    loops: int = 1,
) -> AudioSpec:
    """The one thing to play, from a request's fields (exactly one of them)."""
    given = [x for x in (audio_url, file, text) if x is not None]
    if len(given) != 1:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE, "give exactly one of audio_url, file or text to play"
        )
    if text is not None:
        return AudioSpec("tts", text, voice=voice, language=language, loops=loops)
    if audio_url is not None:
        return AudioSpec("url", audio_url, loops=loops)
    assert file is not None
    return AudioSpec("file", file, loops=loops)
