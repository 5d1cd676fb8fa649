"""``/ws`` encoders of the call facts (docs/protocol.md, "Calls", "In-call control", "Audio and
video"): the ones every part of the core tells, then the call controller's own (transfer,
move, modification, the recording notice). Each function returns the message without
``req_id``; :func:`to_wire` adds it."""

from __future__ import annotations

from callbridge.core.call_events import (
    CallMediaChanged,
    CallMediaModification,
    CallModificationInProgress,
    CallMoved,
    CallMoveFailed,
    CallMoving,
    CallRecording,
    CallTransferred,
)
from callbridge.core.callerid import clean_display_name
from callbridge.core.events import (
    CallAnswered,
    CallDtmf,
    CallEnded,
    CallHeld,
    CallIncoming,
    CallMuteChanged,
    CallResumed,
    CallRinging,
    CallTrying,
    IceCandidateOffered,
    IceGatheringDone,
    PeerNotice,
    SdpAnswer,
)
from callbridge.signalling.wire import WireMessage, encoder

__all__: list[str] = []


@encoder(CallTrying)
def _trying(e: CallTrying) -> WireMessage:
    return {"type": "call.trying", "call_id": e.call_id, "media_type": e.media_type}


@encoder(SdpAnswer)
def _sdp_answer(e: SdpAnswer) -> WireMessage:
    return {"type": "sdp.answer", "call_id": e.call_id, "sdp": e.sdp}


@encoder(CallRinging)
def _ringing(e: CallRinging) -> WireMessage:
    return {"type": "call.ringing", "call_id": e.call_id, "ringback": e.ringback}


@encoder(CallIncoming)
def _incoming(e: CallIncoming) -> WireMessage:
    message: WireMessage = {
        "type": "call.incoming",
        "call_id": e.call_id,
        "from": e.from_,
        # Sanitised again where it leaves: whatever path a name took into the core.
        "from_name": clean_display_name(e.from_name),
        "to": e.to,
        "sdp": e.sdp,
        "media_type": e.media_type,
    }
    if e.moved_from is not None:
        message["moved_from"] = e.moved_from
    return message


@encoder(IceCandidateOffered)
def _candidate(e: IceCandidateOffered) -> WireMessage:
    return {
        "type": "ice.candidate",
        "call_id": e.call_id,
        "candidate": e.candidate.line,
        "sdp_mid": e.candidate.sdp_mid,
        "sdp_m_line_index": e.candidate.sdp_m_line_index,
    }


@encoder(IceGatheringDone)
def _ice_done(e: IceGatheringDone) -> WireMessage:
    return {"type": "ice.done", "call_id": e.call_id}


@encoder(CallAnswered)
def _answered(e: CallAnswered) -> WireMessage:
    message: WireMessage = {"type": "call.answered", "call_id": e.call_id}
    if e.media_type is not None:
        message["media_type"] = e.media_type
    return message


@encoder(CallEnded)
def _ended(e: CallEnded) -> WireMessage:
    return {"type": "call.ended", "call_id": e.call_id, "reason": e.reason.value}


@encoder(CallHeld)
def _held(e: CallHeld) -> WireMessage:
    return {"type": "call.held", "call_id": e.call_id, "by": e.by}


@encoder(CallResumed)
def _resumed(e: CallResumed) -> WireMessage:
    return {"type": "call.resumed", "call_id": e.call_id, "by": e.by}


@encoder(CallMuteChanged)
def _mute(e: CallMuteChanged) -> WireMessage:
    return {"type": "call.muted" if e.muted else "call.unmuted", "call_id": e.call_id}


@encoder(CallDtmf)
def _dtmf(e: CallDtmf) -> WireMessage:
    return {"type": "call.dtmf", "call_id": e.call_id, "digit": e.digit}


@encoder(PeerNotice)
def _notice(e: PeerNotice) -> WireMessage:
    return {"type": "notification", "call_id": e.call_id, "code": e.code, "message": e.message}


# The call controller's own facts -------------------------------------------------------------
@encoder(CallTransferred)
def _transferred(e: CallTransferred) -> WireMessage:
    return {
        "type": "call.transferred",
        "call_id": e.call_id,
        "peer": e.peer,
        "peer_name": clean_display_name(e.peer_name),
    }


@encoder(CallModificationInProgress)
def _modification_in_progress(e: CallModificationInProgress) -> WireMessage:
    return {
        "type": "call.modification-in-progress",
        "call_id": e.call_id,
        "media_type": e.media_type,
        "operation": e.operation,
    }


@encoder(CallMediaModification)
def _media_modification(e: CallMediaModification) -> WireMessage:
    return {
        "type": "call.media-modification",
        "call_id": e.call_id,
        "media_type": e.media_type,
        "new_media_type": e.new_media_type,
        "operation": e.operation,
        "sdp": e.sdp,
    }


@encoder(CallMediaChanged)
def _media_changed(e: CallMediaChanged) -> WireMessage:
    return {
        "type": "call.state-changed",
        "call_id": e.call_id,
        "old_state": e.old,
        "new_state": e.new,
        "media_type": e.new,
        "operation": e.operation,
        "accepted": e.accepted,
        "video_send": e.video_send,
        "video_receive": e.video_receive,
    }


@encoder(CallMoving)
def _moving(e: CallMoving) -> WireMessage:
    return {"type": "call.moving", "call_id": e.call_id}


@encoder(CallMoved)
def _moved(e: CallMoved) -> WireMessage:
    return {"type": "call.moved", "call_id": e.call_id, "to_session": e.to_device}


@encoder(CallMoveFailed)
def _move_failed(e: CallMoveFailed) -> WireMessage:
    return {"type": "call.move-failed", "call_id": e.call_id, "reason": e.reason.value}


@encoder(CallRecording)
def _recording(e: CallRecording) -> WireMessage:
    return {"type": "call.recording", "call_id": e.call_id, "recording": e.recording}
