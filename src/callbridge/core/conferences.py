"""Conferences: seed 002's hosted conferences with invitations, seed 000's call groups, and
the media operations seed 003 puts on REST (play, speak, stop, record, mute / hold / deafen a
participant, supervisor roles).

A conference is one *mixer* in the media plane and the legs that are its *members*: each
member hears the mix of everyone else (minus itself) and is heard by all, unless its flags say
otherwise (muted, held, deaf, a supervisor role). Two kinds share that machinery:

- ``conference`` (seed 002): a host starts it with its own leg (``conference.start``), invites
  users (``conference.invite``: their devices ring with ``conference.invitation``; ``call.answer``
  joins, ``call.reject`` declines), removes participants and ends it. The host's leg leaving
  (hangup, lost device) ends the conference: it is the host's. REST conferences (seed 003) are
  of this kind too, with an application as owner and no host leg.
- ``group`` (seed 000 call group): a device merges its answered 1:1 calls
  (``conference.merge``). Each call keeps its two legs and its ``call_id``; only the media
  changes, from a bridge to the mixer.

The code is split by concept:

==============================  ===========================================================
module                          what
==============================  ===========================================================
``conference_model``            Conference, Member, Invitation, Playback, Recording (state)
``conference_events``           the facts told to devices (typed; ``/ws`` encodes them)
``conferences`` (this one)      :class:`ConferenceManager`: the registry, lookups, members
                                and the mixer, ending a conference, REST conferences of
                                existing legs, the hooks the call controller calls
``hosted``                      seed 002 (``manager.hosting``): start, invite (one ring
                                group per invitation), join, remove, leave, holding one's
                                own membership
``callgroup``                   seed 000 (``manager.groups``): merge, split, hold the group,
                                a grouped call ending
``conference_media``            (``manager.media_ops``) play, speak, stop, record,
                                participant flags, media events
==============================  ===========================================================

The controller, ``/ws`` (:mod:`callbridge.signalling`) and the application layer behind
``/v2`` reach a conference through the manager: what concerns every kind on the manager itself
(lookups, ``end``, ``hold``, ``state``, joining and leaving legs), the rest on the service of
its concept (``manager.hosting.invite(...)``, ``manager.groups.merge(...)``,
``manager.media_ops.play(...)``). The core tells devices what happened with typed events
(``device.deliver``) and publishes the facts for everyone on the bus
(:mod:`callbridge.core.events`); it never builds a wire message.

All methods run on the server's event loop and re-check state after every ``await``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from callbridge.core.callgroup import CallGroups
from callbridge.core.calls import Leg, new_id
from callbridge.core.conference_events import ConferenceOver, ConferenceReport, RosterEvent
from callbridge.core.conference_media import ConferenceMedia, RecordAction
from callbridge.core.conference_model import (
    Conference,
    ConferenceKind,
    ConferenceState,
    Invitation,
    Member,
)
from callbridge.core.devices import Device
from callbridge.core.events import (
    ConferenceCreated,
    ConferenceEnded,
    ParticipantJoined,
    ParticipantLeft,
)
from callbridge.core.hosted import HostedConferences
from callbridge.errors import ErrorCode, MediaError, ProtocolError
from callbridge.media.interface import AudioSpec, MediaEvent
from callbridge.vocabulary import BeepMode, EndReason, SupervisorRole

if TYPE_CHECKING:
    from callbridge.core.controller import CallController

__all__ = [
    "BeepMode",
    "Conference",
    "ConferenceKind",
    "ConferenceManager",
    "ConferenceState",
    "Invitation",
    "Member",
    "RecordAction",
    "audio_spec",
]

log = logging.getLogger(__name__)


class ConferenceManager:
    """Every live conference of this server; driven by the call controller, ``/ws`` and REST."""

    def __init__(self, calls: CallController, recordings_dir: Path | None = None) -> None:
        self.calls = calls
        self.media = calls.media
        self.bus = calls.bus  # the facts about conferences, for everyone
        self.recordings_dir = recordings_dir
        self.conferences: dict[str, Conference] = {}
        self.hosting = HostedConferences(self)
        self.groups = CallGroups(self)
        self.media_ops = ConferenceMedia(self)

    def tell_owner(self, conf: Conference, event: RosterEvent) -> None:
        """Tell the host (group: the owner) ``event``, which restates the roster."""
        conf.owner.deliver(event)

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
        """A conference ``device`` hosts (or owns: a call group); ``action`` names the request."""
        conf = self.get(device, conference_id)
        if conf.owner is not device:
            raise ProtocolError(
                ErrorCode.NOT_CONFERENCE_HOST,
                f"{action}: only the host of conference {conference_id} may do this",
            )
        return conf

    def member_of(self, conf: Conference, participant: str) -> Member:
        """A member by leg id or participant id, as a peer named it."""
        member = conf.member(participant)
        if member is None:
            raise ProtocolError(
                ErrorCode.CALL_NOT_FOUND,
                f"conference {conf.id} has no participant or call {participant!r}",
            )
        return member

    def own_member(self, leg: Leg) -> tuple[Conference, Member]:
        conf = leg.conference
        if not isinstance(conf, Conference) or leg.id not in conf.members:
            raise ProtocolError(ErrorCode.INVALID_STATE, f"call {leg.id} is in no conference")
        return conf, conf.members[leg.id]

    def state(self, device: Device, conference_id: str, req_id: str | None) -> None:
        """``conference.get``: everything about the conference, told to ``device``."""
        conf = self.get(device, conference_id)
        device.deliver(
            ConferenceReport(
                req_id=req_id,
                conference_id=conf.id,
                roster=conf.roster(),
                kind="group" if conf.kind is ConferenceKind.GROUP else "conference",
                name=conf.name,
                host=conf.owner.caller_id,
                media_type=conf.media_type,
                floor=conf.floor_key(),
                call_ids=tuple(m.leg.id for m in conf.members.values() if m.leg.device is device),
            )
        )

    # members and the mixer ------------------------------------------------------------------
    async def add_member(self, conf: Conference, member: Member) -> None:
        leg = member.leg
        conf.members[leg.id] = member
        leg.conference = conf
        if member.in_mixer:
            await self.media.mixer_add(conf.id, leg.id)
            await self.apply(member)
        if conf.beep in ("always", "on_enter") and member.leg is not conf.host_leg:
            await self.beep(conf, "join")
        self.bus.publish(
            ParticipantJoined(conference_id=conf.id, name=conf.name, call_control_id=leg.id)
        )

    async def apply(self, member: Member) -> None:
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

    async def refresh(self, leg: Leg) -> None:
        """The leg's own flags changed (its mute): push its member's state to the mixer."""
        conf = leg.conference
        member = conf.members.get(leg.id) if isinstance(conf, Conference) else None
        if member is not None and member.in_mixer:
            await self.apply(member)

    async def leave_mixer(self, leg: Leg) -> None:
        """Out of the mixer, with the leg's own mute only (its endpoint may be closing)."""
        try:
            await self.media.mixer_remove(leg.id)
            await self.media.set_muted(leg.id, leg.muted)
        except MediaError:
            pass  # the endpoint is gone already: nothing to undo

    async def beep(self, conf: Conference, tone: str) -> None:
        try:
            await self.media.mixer_play(conf.id, new_id(), AudioSpec("tone", tone))
        except MediaError:
            log.exception("conference %s: beep failed", conf.id)

    async def end_member_call(self, leg: Leg, reason: EndReason, req_id: str | None = None) -> None:
        if leg.call is not None:
            await self.calls.end_call(leg.call, reason, reason, req_id)
        else:
            await self.calls.end_leg(leg, reason, req_id)

    # holding, ending ------------------------------------------------------------------------
    async def end(self, device: Device, conference_id: str, req_id: str | None) -> None:
        """``conference.end``: the host ends it for everyone; a participant leaves."""
        conf = self.get(device, conference_id)
        if conf.owner is device:
            await self.finish(conf, "ended-by-host", req_id)
            return
        for member in [m for m in conf.members.values() if m.leg.device is device]:
            await self.hosting.leave(member.leg, EndReason.HANGUP, req_id)

    async def hold(
        self, device: Device, conference_id: str, held: bool, req_id: str | None
    ) -> None:
        """``conference.hold`` / ``conference.resume``: take the device's own membership out
        of (or back into) the conversation; for a call group that is the whole group."""
        conf = self.get(device, conference_id)
        if conf.kind is ConferenceKind.GROUP:
            await self.groups.hold(conf, held, req_id)
            return
        for member in [m for m in conf.members.values() if m.leg.device is device]:
            await self.hosting.hold_member(member.leg, held, req_id)

    async def finish(self, conf: Conference, reason: str, req_id: str | None = None) -> None:
        """End the conference: every member's call ends, pending invitations are withdrawn.
        ``reason`` is what the members are told (``ended-by-host``, ``host-left``, …)."""
        if conf.ended:
            return
        conf.transition(ConferenceState.ENDING, cause=reason)
        for invitation in list(conf.invitations.values()):
            await self.hosting.withdraw(invitation)
        told: set[int] = set()
        for member in list(conf.members.values()):
            leg = member.leg
            # Each device hears it once; a group's far parties knew of no conference.
            tell = conf.kind is ConferenceKind.CONFERENCE or leg.device is conf.owner
            if tell and id(leg.device) not in told:
                told.add(id(leg.device))
                leg.device.deliver(
                    ConferenceOver(
                        req_id=req_id if leg.device is conf.owner else None,
                        conference_id=conf.id,
                        call_id=leg.id,
                        reason=reason,
                    )
                )
            await self.end_member_call(leg, EndReason.HANGUP)
        await self.teardown(conf, reason)

    async def teardown(self, conf: Conference, reason: str) -> None:
        """The conference's mixer goes (saving a running recording) and it is forgotten."""
        if conf.state is ConferenceState.ENDED:
            return
        conf.transition(ConferenceState.ENDING, cause=reason)
        self.conferences.pop(conf.id, None)
        self.media_ops.forget(conf)
        await self.media.destroy_mixer(conf.id)
        conf.transition(ConferenceState.ENDED, cause=reason)
        self.bus.publish(ConferenceEnded(conference_id=conf.id, name=conf.name, reason=reason))

    async def maybe_empty(self, conf: Conference) -> None:
        """A REST conference is over when its last member has left."""
        if conf.ends_when_empty and not conf.members and not conf.ended:
            await self.finish(conf, "last-left")

    # REST (seed 003): conferences of existing legs ------------------------------------------
    async def create_for_leg(
        self, owner: Device, leg: Leg, name: str, beep: BeepMode = "never"
    ) -> Conference:
        """A conference whose first member is an answered, unbridged leg; ``owner`` (an
        application) drives it. It ends when its last member leaves."""
        self._joinable(leg)
        conf = Conference(ConferenceKind.CONFERENCE, owner, name, beep=beep, ends_when_empty=True)
        conf.state_observer = self.calls.observer
        await self.media.create_mixer(conf.id)
        self.conferences[conf.id] = conf
        self.bus.publish(
            ConferenceCreated(
                conference_id=conf.id, name=conf.name, call_control_id=leg.id, hosted=False
            )
        )
        await self.join_leg(conf, leg)
        if not conf.ended:
            conf.transition(ConferenceState.ACTIVE, cause="its first member joined")
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
        await self.add_member(conf, member)
        if held:
            await self.media_ops.update_participant(
                None, conf, leg.id, held=True, hold_audio=hold_audio
            )
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
        await self.leave_mixer(leg)
        self.bus.publish(
            ParticipantLeft(conference_id=conf.id, name=conf.name, call_control_id=leg.id)
        )
        await self.maybe_empty(conf)

    # hooks from the call controller ---------------------------------------------------------
    async def leg_ending(self, leg: Leg) -> None:
        """A leg in (or invited to) a conference is ending, for whatever reason."""
        conf = leg.conference
        if not isinstance(conf, Conference):
            return
        if conf.kind is ConferenceKind.GROUP:
            await self.groups.leg_ending(leg)
            return
        member = conf.members.pop(leg.id, None)
        leg.conference = None
        if member is not None and member.in_mixer:
            await self.leave_mixer(leg)
        if member is not None:
            self.bus.publish(
                ParticipantLeft(conference_id=conf.id, name=conf.name, call_control_id=leg.id)
            )
            if conf.beep in ("always", "on_exit") and not conf.ended:
                await self.beep(conf, "leave")
        if leg is conf.host_leg and not conf.ended:
            await self.finish(conf, "host-left")
        else:
            await self.maybe_empty(conf)

    def on_media_event(self, event: MediaEvent) -> None:
        """A media event about a mixer, a playback or a recording."""
        self.media_ops.on_media_event(event)

    async def shutdown(self) -> None:
        for conf in list(self.conferences.values()):
            await self.finish(conf, "shutdown")


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
