"""Hosted conferences (seed 002): a host starts one with its own leg, invites users, removes
participants and ends it; participants join by answering an invitation and leave by hanging up.

An invitation rings every device of the invitee at once (``/ws`` sessions and registered SIP
phones: ``ringable_devices``; a phone is alerted with an ordinary call from the host, since
INVITE is all it knows, :func:`~callbridge.core.ringing.rings_as_call`), in one ring group
(:mod:`callbridge.core.ringgroup`) that is each device leg's ``ring_owner``: the controller
hands it the device's answer or refusal without knowing it rings for a conference. Every
refusal (``call.reject``, busy or not, ``call.hangup``, a lost device) ends the leg
``rejected`` (docs/protocol.md, "Hosted conferences"): the group's ``refusal``. The first
answer claims the invitation (before any ``await``), the other devices stop ringing
(``answered-elsewhere``); when every device has declined, or nobody answered within the ring
timeout, the host is told the invitation was rejected.

An invitation answered just as the conference ends (the answer waits on the media plane while
the host ends it) ends the invitee's leg with ``canceled``, in reply to its answer: the same
as an invitation withdrawn while ringing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING

from callbridge.core.callerid import clean_display_name
from callbridge.core.calls import Call, Caller, Leg, LegState
from callbridge.core.conference_events import (
    ConferenceConnected,
    ConferenceInvitation,
    ConferenceJoined,
    ConferenceOver,
    ConferenceStarted,
    InvitationAccepted,
    InvitationRejected,
    InvitationSent,
    MemberHeld,
    MemberResumed,
    ParticipantDeparted,
    ParticipantRemoved,
    ParticipantUpdated,
)
from callbridge.core.conference_model import (
    Conference,
    ConferenceKind,
    ConferenceState,
    Invitation,
    InvitationState,
    Member,
)
from callbridge.core.devices import Device
from callbridge.core.events import CallAnswered, CommandFailed, ConferenceCreated, SdpAnswer
from callbridge.core.ringing import rings_as_call
from callbridge.core.tenancy import account_of
from callbridge.errors import ErrorCode, MediaError, ProtocolError
from callbridge.vocabulary import BeepMode, EndReason, MediaType

if TYPE_CHECKING:
    from callbridge.core.conferences import ConferenceManager

__all__ = ["HostedConferences"]

_NAME = re.compile(r"^[\w .:@+-]{1,128}$")


@dataclass(frozen=True, slots=True)
class _InvitationAlert:
    """What an invitee's device is told: ``conference.invitation`` (an
    :class:`~callbridge.core.ringing.Alert`). Video conferences carry audio only."""

    conference: Conference
    invitation: Invitation

    @property
    def video(self) -> bool:
        return False

    def event(self, call_id: str, offer: str) -> ConferenceInvitation:
        conf, host = self.conference, self.conference.owner
        return ConferenceInvitation(
            conference_id=conf.id,
            call_id=call_id,
            invitation_id=self.invitation.id,
            name=conf.name,
            from_=host.caller_id,
            from_name=clean_display_name(host.display_name),
            to=self.invitation.key,
            media_type=conf.media_type,
            sdp=offer,
        )


class HostedConferences:
    """Seed 002's conference operations, on the manager's registry and members."""

    def __init__(self, manager: ConferenceManager) -> None:
        self.manager = manager
        self.calls = manager.calls
        self.media = manager.media

    # starting ---------------------------------------------------------------------------------
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
        conf = Conference(
            ConferenceKind.CONFERENCE, device, name or "", media_type=media_type, beep=beep
        )
        conf.name = conf.name or f"conference-{conf.id[:8]}"
        conf.state_observer = self.calls.observer
        try:
            answer = await self.media.answer(leg.id, sdp, video=False)
            info = await self.media.endpoint_info(leg.id)
            await self.media.create_mixer(conf.id)
        except BaseException:
            await self.media.close(leg.id)
            raise
        self.manager.conferences[conf.id] = conf
        self.calls.legs[leg.id] = leg
        leg.call = _conference_call(leg, conf)
        leg.transition(LegState.TRYING)
        conf.host_leg = leg
        device.deliver(
            ConferenceStarted(
                req_id=req_id,
                conference_id=conf.id,
                call_id=leg.id,
                name=conf.name,
                media_type=conf.media_type,
            )
        )
        device.deliver(SdpAnswer(call_id=leg.id, sdp=answer))
        self.calls.deliver_candidates(leg, info.candidates)
        self.manager.bus.publish(
            ConferenceCreated(
                conference_id=conf.id, name=conf.name, call_control_id=leg.id, hosted=True
            )
        )
        await self.manager.add_member(conf, Member(leg, device.caller_id, device.display_name))
        if _over(leg, conf):  # the host hung up while its leg joined the mixer
            return conf
        conf.transition(ConferenceState.ACTIVE, cause="the host is in")
        leg.transition(LegState.ACTIVE)
        device.deliver(CallAnswered(call_id=leg.id, media_type="audio"))
        self.manager.tell_owner(
            conf,
            ConferenceConnected(
                conference_id=conf.id, roster=conf.roster(), call_id=leg.id, name=conf.name
            ),
        )
        return conf

    # inviting ---------------------------------------------------------------------------------
    async def invite(self, device: Device, conference_id: str, to: str, req_id: str | None) -> None:
        """Ring the invitee's devices (seed 002 ``addParticipant``)."""
        conf = self.manager.hosted(device, conference_id, "conference.invite")
        if conf.kind is not ConferenceKind.CONFERENCE:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"conference {conf.id} is a call group: merge calls into it instead",
            )
        user = await self.calls.directory.find_user(to, account_of(device))  # the host's
        if conf.ended:
            return
        if user is None:
            raise ProtocolError(
                ErrorCode.DESTINATION_NOT_FOUND, f"no user has the extension, number or name {to!r}"
            )
        devices = await self.calls.ringable_devices(user.name, but=device)  # SIP: the store
        # Issue 16: the invitee's rules: DND rings nothing, ring_seconds is how long it rings.
        dnd, ring_seconds = await self.calls.routing.followme.limits(user.name)
        if _ended(conf):  # the host ended it while the store answered
            return
        if to in conf.invitations or any(m.key == to for m in conf.members.values()):
            raise ProtocolError(
                ErrorCode.INVALID_STATE, f"{to!r} is already invited to or in conference {conf.id}"
            )
        if dnd:
            raise ProtocolError(ErrorCode.DESTINATION_NOT_FOUND, f"{to!r} is on do-not-disturb")
        if not devices:
            raise ProtocolError(
                ErrorCode.DESTINATION_NOT_FOUND,
                f"{to!r} ({user.name}) has no device logged in or SIP phone registered",
            )
        invitation = Invitation(conf, to, clean_display_name(user.display_name) or user.name)
        invitation.state_observer = self.calls.observer
        conf.invitations[to] = invitation
        group = self.calls.ring_group(
            "invitation ring",
            partial(self._answered, invitation),
            partial(self._exhausted, invitation),
            refusal=EndReason.REJECTED,
        )
        invitation.ring = group  # before any await: withdrawing it cancels the ringing
        host = conf.host_leg
        # Offer the host's codec first: the mixer then transcodes less.
        info = await self.calls.endpoint_info(host) if host is not None else None
        codec = info.codec if info is not None else None
        # /ws devices get conference.invitation; SIP phones an ordinary call from the host.
        phones = [d for d in devices if rings_as_call(d)]
        others = [d for d in devices if not rings_as_call(d)]
        owner = conf.owner
        as_call = Caller(owner.caller_id, clean_display_name(owner.display_name), to, "audio")
        rung = await self.calls.ring_devices(
            group, others, _InvitationAlert(conf, invitation), codec
        )
        rung += await self.calls.ring_devices(group, phones, as_call, codec)
        if conf.ended or invitation.state is InvitationState.CANCELED:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"the invitation of {to!r} was withdrawn, or the conference ended, while its "
                "devices were being rung",
            )
        if not rung:
            await group.start(self.calls.ring_timeout)  # nobody rings: the invitation failed
            raise ProtocolError(ErrorCode.INTERNAL, f"could not ring {to!r}; see the server log")
        self.manager.tell_owner(
            conf,
            InvitationSent(
                req_id=req_id,
                conference_id=conf.id,
                roster=conf.roster(),
                invitation_id=invitation.id,
                invitee=to,
            ),
        )
        # Arms the ring timeout; or, when every device declined while others were being
        # rung, the host hears invitation-rejected now (after invitation-sent).
        await group.start(ring_seconds)

    async def _exhausted(self, invitation: Invitation, reason: EndReason) -> None:
        """The ring group is over without an answer: every device declined (``rejected``),
        nobody answered in time (``no-answer``), or none could be rung (``failed``: the
        ``conference.invite`` fails instead)."""
        conf = invitation.conference
        if conf.invitations.get(invitation.key) is invitation:
            del conf.invitations[invitation.key]
        if not invitation.ringing:
            return
        if reason is EndReason.FAILED:
            invitation.transition(InvitationState.FAILED, cause="no device could be rung")
            return
        expired = reason is EndReason.NO_ANSWER
        invitation.transition(
            InvitationState.EXPIRED if expired else InvitationState.DECLINED, cause=reason.value
        )
        if not conf.ended:
            self._tell_rejected(invitation, reason)

    def _tell_rejected(self, invitation: Invitation, reason: EndReason) -> None:
        conf = invitation.conference
        self.manager.tell_owner(
            conf,
            InvitationRejected(
                conference_id=conf.id,
                roster=conf.roster(),
                invitation_id=invitation.id,
                invitee=invitation.key,
                reason=reason.value,
            ),
        )

    async def withdraw(self, invitation: Invitation) -> None:
        """The host withdrew the invitation, or the conference ends: its devices stop ringing
        (``canceled``)."""
        conf = invitation.conference
        if conf.invitations.get(invitation.key) is invitation:
            del conf.invitations[invitation.key]
        if invitation.ringing:
            invitation.transition(InvitationState.CANCELED, cause="withdrawn")
        if invitation.ring is not None:
            await invitation.ring.cancel(EndReason.CANCELED)

    # the invitee's devices --------------------------------------------------------------------
    async def _answered(
        self, invitation: Invitation, leg: Leg, sdp: str, req_id: str | None
    ) -> None:
        """The invitation's ring group's winner (``call.answer`` on its invitation; the other
        devices stopped ringing): accept its answer and make it a member."""
        conf = invitation.conference
        if not invitation.ringing or conf.ended:  # withdrawn while the others stopped ringing
            await self.calls.end_leg(leg, EndReason.CANCELED, req_id)
            return
        invitation.transition(InvitationState.ACCEPTED, cause=f"answered on {leg.device.id}")
        conf.invitations.pop(invitation.key, None)
        failure: MediaError | None = None
        try:
            await self.media.accept_answer(leg.id, sdp)
        except MediaError as exc:
            failure = exc
        if _ended(conf):  # the host ended it while the answer waited on the media plane
            invitation.transition(InvitationState.CANCELED, cause="the conference ended")
            await self.calls.end_leg(leg, EndReason.CANCELED, req_id)
            return
        if not leg.live:  # the invitee hung up meanwhile: its only device left declined
            invitation.transition(InvitationState.FAILED, cause="the invitee hung up")
            self._tell_rejected(invitation, EndReason.REJECTED)
            return
        if failure is not None:
            invitation.transition(InvitationState.FAILED, cause=str(failure))
            leg.device.deliver(CommandFailed(req_id=req_id, error=failure, call_id=leg.id))
            await self.calls.end_leg(leg, EndReason.FAILED)
            self._tell_rejected(invitation, EndReason.FAILED)
            return
        invitation.transition(InvitationState.JOINED)
        device = leg.device
        leg.call = _conference_call(leg, conf)
        leg.transition(LegState.ACTIVE)
        await self.manager.add_member(conf, Member(leg, invitation.key, invitation.name))
        if _over(leg, conf):
            return
        device.deliver(CallAnswered(req_id=req_id, call_id=leg.id))
        device.deliver(
            ConferenceJoined(
                conference_id=conf.id,
                call_id=leg.id,
                name=conf.name,
                from_=conf.owner.caller_id,
                media_type=conf.media_type,
            )
        )
        self.manager.tell_owner(
            conf,
            InvitationAccepted(
                conference_id=conf.id,
                roster=conf.roster(),
                invitation_id=invitation.id,
                invitee=invitation.key,
            ),
        )

    # the host's other requests ----------------------------------------------------------------
    async def remove(
        self, device: Device, conference_id: str, participant: str, req_id: str | None
    ) -> None:
        """The host removes a participant, or withdraws a pending invitation."""
        conf = self.manager.hosted(device, conference_id, "conference.remove")
        invitation = conf.invitations.get(participant)
        if invitation is not None:
            await self.withdraw(invitation)
        else:
            member = self.manager.member_of(conf, participant)
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
            member.leg.device.deliver(
                ConferenceOver(conference_id=conf.id, call_id=member.leg.id, reason="removed")
            )
            await self.manager.end_member_call(member.leg, EndReason.REMOVED)
        self.manager.tell_owner(
            conf,
            ParticipantRemoved(
                req_id=req_id, conference_id=conf.id, roster=conf.roster(), participant=participant
            ),
        )

    async def leave(self, leg: Leg, reason: EndReason, req_id: str | None = None) -> None:
        """A participant's leg leaves (hangup, ``conference.end``, lost device). The host's
        leg leaving ends the conference."""
        conf = leg.conference
        if not isinstance(conf, Conference) or conf.ended:
            await self.manager.end_member_call(leg, reason, req_id)
            return
        if leg is conf.host_leg and conf.kind is ConferenceKind.CONFERENCE:
            await self.manager.finish(conf, "host-left", req_id)
            return
        member = conf.members.get(leg.id)
        leg.device.deliver(ConferenceOver(conference_id=conf.id, call_id=leg.id, reason="left"))
        await self.manager.end_member_call(leg, reason, req_id)
        if member is not None and not conf.ended:
            self.manager.tell_owner(
                conf,
                ParticipantDeparted(
                    conference_id=conf.id, roster=conf.roster(), participant=member.key
                ),
            )

    async def hold_member(self, leg: Leg, held: bool, req_id: str | None) -> None:
        """``call.hold`` / ``call.resume`` (or ``conference.hold``) on one's own conference
        leg: it hears nothing and is not heard; the others go on talking."""
        conf, member = self.manager.own_member(leg)
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
        await self.manager.apply(member)
        leg.transition(LegState.HELD if held else LegState.ACTIVE)
        fact = MemberHeld if held else MemberResumed
        leg.device.deliver(fact(req_id=req_id, call_id=leg.id, by="local", conference_id=conf.id))
        if leg.device is not conf.owner:
            self.manager.tell_owner(
                conf,
                ParticipantUpdated(
                    conference_id=conf.id, roster=conf.roster(), participant=member.key
                ),
            )


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


def _ended(conf: Conference) -> bool:
    """As :func:`_over`, for the conference alone."""
    return conf.ended
