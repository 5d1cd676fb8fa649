"""``/ws`` encoders of the conference and call group facts (docs/protocol.md, "Conferences").

Each function returns the message without ``req_id``; :func:`~callbridge.signalling.wire.to_wire`
adds it. The roster travels as the seed's ``participants`` and ``invitations`` objects, keyed by
participant id.
"""

from __future__ import annotations

from callbridge.core.conference_events import (
    ConferenceConnected,
    ConferenceInvitation,
    ConferenceJoined,
    ConferenceOver,
    ConferenceReport,
    ConferenceStarted,
    GroupChanged,
    GroupDissolved,
    GroupView,
    InvitationAccepted,
    InvitationRejected,
    InvitationSent,
    InvitationView,
    MemberHeld,
    MemberResumed,
    ParticipantDeparted,
    ParticipantRemoved,
    ParticipantUpdated,
    ParticipantView,
    PlaybackAccepted,
    PlaybackProgress,
    PlaybacksStopped,
    RecordingChanged,
    RecordingFileFailed,
    RecordingFileSaved,
    RosterEvent,
    TalkerChanged,
)
from callbridge.errors import ErrorCode, ProtocolError
from callbridge.signalling.wire import WireMessage, encoder

__all__: list[str] = []


def _participant(p: ParticipantView) -> WireMessage:
    return {
        "id": p.key,
        "call_id": p.call_id,
        "name": p.name,
        "status": "held" if p.held or p.self_held else "joined",
        "muted": p.muted,
        "held": p.held,
        "deaf": p.deaf,
        "supervisor_role": p.supervisor_role,
        "joined_at": p.joined_at.isoformat(),
    }


def _invitation(i: InvitationView) -> WireMessage:
    return {"id": i.key, "invitation_id": i.invitation_id, "name": i.name, "status": "pending"}


def _roster(kind: str, e: RosterEvent) -> WireMessage:
    """A message to the host: its type, the conference and its roster."""
    return {
        "type": kind,
        "conference_id": e.conference_id,
        "participants": {p.key: _participant(p) for p in e.roster.participants},
        "invitations": {i.key: _invitation(i) for i in e.roster.invitations},
    }


def _group(view: GroupView) -> WireMessage:
    return {
        "call_ids": list(view.call_ids),
        "media_call_id": view.media_call_id,
        "state": "held" if view.held else "connected",
    }


# hosted conferences ------------------------------------------------------------------------------
@encoder(ConferenceStarted)
def _started(e: ConferenceStarted) -> WireMessage:
    return {
        "type": "conference.started",
        "conference_id": e.conference_id,
        "call_id": e.call_id,
        "name": e.name,
        "media_type": e.media_type,
    }


@encoder(ConferenceConnected)
def _connected(e: ConferenceConnected) -> WireMessage:
    return {**_roster("conference.connected", e), "call_id": e.call_id, "name": e.name}


@encoder(ConferenceInvitation)
def _invited(e: ConferenceInvitation) -> WireMessage:
    return {
        "type": "conference.invitation",
        "call_id": e.call_id,
        "conference_id": e.conference_id,
        "invitation_id": e.invitation_id,
        "name": e.name,
        "from": e.from_,
        "from_name": e.from_name,
        "to": e.to,
        "media_type": e.media_type,
        "sdp": e.sdp,
    }


@encoder(InvitationSent)
def _invitation_sent(e: InvitationSent) -> WireMessage:
    message = _roster("conference.invitation-sent", e)
    return {**message, "invitation_id": e.invitation_id, "invitee": e.invitee}


@encoder(InvitationAccepted)
def _invitation_accepted(e: InvitationAccepted) -> WireMessage:
    message = _roster("conference.invitation-accepted", e)
    return {**message, "invitation_id": e.invitation_id, "invitee": e.invitee}


@encoder(InvitationRejected)
def _invitation_rejected(e: InvitationRejected) -> WireMessage:
    message = _roster("conference.invitation-rejected", e)
    return {
        **message,
        "invitation_id": e.invitation_id,
        "invitee": e.invitee,
        "reason": e.reason,
    }


@encoder(ConferenceJoined)
def _joined(e: ConferenceJoined) -> WireMessage:
    return {
        "type": "conference.joined",
        "call_id": e.call_id,
        "conference_id": e.conference_id,
        "name": e.name,
        "from": e.from_,
        "media_type": e.media_type,
    }


@encoder(ConferenceOver)
def _over(e: ConferenceOver) -> WireMessage:
    return {
        "type": "conference.ended",
        "call_id": e.call_id,
        "conference_id": e.conference_id,
        "reason": e.reason,
    }


@encoder(ParticipantUpdated)
def _participant_updated(e: ParticipantUpdated) -> WireMessage:
    return {**_roster("conference.participant-updated", e), "participant": e.participant}


@encoder(ParticipantRemoved)
def _participant_removed(e: ParticipantRemoved) -> WireMessage:
    return {**_roster("conference.participant-removed", e), "participant": e.participant}


@encoder(ParticipantDeparted)
def _participant_left(e: ParticipantDeparted) -> WireMessage:
    return {**_roster("conference.participant-left", e), "participant": e.participant}


@encoder(ConferenceReport)
def _report(e: ConferenceReport) -> WireMessage:
    return {
        **_roster("conference.state", e),
        "kind": e.kind,
        "name": e.name,
        "host": e.host,
        "media_type": e.media_type,
        "floor": e.floor,
        "call_ids": list(e.call_ids),
    }


@encoder(MemberHeld)
def _member_held(e: MemberHeld) -> WireMessage:
    return {"type": "call.held", "call_id": e.call_id, "by": e.by, "conference_id": e.conference_id}


@encoder(MemberResumed)
def _member_resumed(e: MemberResumed) -> WireMessage:
    return {
        "type": "call.resumed",
        "call_id": e.call_id,
        "by": e.by,
        "conference_id": e.conference_id,
    }


# call groups -------------------------------------------------------------------------------------
@encoder(GroupChanged)
def _group_changed(e: GroupChanged) -> WireMessage:
    message = {**_roster(f"conference.{e.change}", e), **_group(e.group)}
    if e.split_call_id is not None:
        message["split_call_id"] = e.split_call_id
    return message


@encoder(GroupDissolved)
def _group_dissolved(e: GroupDissolved) -> WireMessage:
    message = {
        **_roster("conference.ended", e),
        "reason": "dissolved",
        "call_ids": [],
        "released_call_ids": list(e.released_call_ids),
    }
    if e.split_call_id is not None:
        message["split_call_id"] = e.split_call_id
    return message


# media -------------------------------------------------------------------------------------------
@encoder(TalkerChanged)
def _talker(e: TalkerChanged) -> WireMessage:
    return {
        "type": "conference.floor-changed",
        "call_id": e.call_id,
        "conference_id": e.conference_id,
        "participant": e.participant,
        "talker_call_id": e.talker_call_id,
    }


@encoder(PlaybackAccepted)
def _playback_accepted(e: PlaybackAccepted) -> WireMessage:
    return {
        "type": f"conference.{e.kind}",
        "conference_id": e.conference_id,
        "playback_id": e.playback_id,
    }


@encoder(PlaybackProgress)
def _playback_progress(e: PlaybackProgress) -> WireMessage:
    message: WireMessage = {
        "type": f"conference.{e.kind}-{e.state}",
        "conference_id": e.conference_id,
        "playback_id": e.playback_id,
        "status": e.status,
    }
    if e.detail:
        message["detail"] = e.detail
    return message


@encoder(PlaybacksStopped)
def _stopped(e: PlaybacksStopped) -> WireMessage:
    return {"type": "conference.stopped", "conference_id": e.conference_id}


@encoder(RecordingChanged)
def _recording(e: RecordingChanged) -> WireMessage:
    return {
        "type": "conference.recording",
        "conference_id": e.conference_id,
        "recording_id": e.recording_id,
        "status": e.status,
    }


@encoder(RecordingFileFailed)
def _recording_failed(e: RecordingFileFailed) -> WireMessage:
    # An `error` with no req_id, as for a request that failed: the host's conference.record
    # was answered long ago, the file failed later.
    error = ProtocolError(
        ErrorCode.RECORDING_FAILED, f"the recording {e.recording_id} failed: {e.detail}"
    )
    return {
        **error.to_wire(method="conference.record"),
        "conference_id": e.conference_id,
        "recording_id": e.recording_id,
    }


@encoder(RecordingFileSaved)
def _recording_saved(e: RecordingFileSaved) -> WireMessage:
    return {
        "type": "conference.recording-saved",
        "conference_id": e.conference_id,
        "recording_id": e.recording_id,
        "duration_secs": round(e.duration_secs, 3),
        "path": e.path,
    }
