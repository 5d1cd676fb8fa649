"""Schemas of the client -> server messages of ``/ws`` (docs/protocol.md), and their parsing.

Parsing turns any wrong frame into a :class:`ProtocolError` whose message names the message
type and the field, e.g. ``call.create: field 'destination' is required``.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Annotated, Any, Literal, cast, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError

from callbridge.errors import ErrorCode, ProtocolError
from callbridge.vocabulary import BeepMode, MediaType, SupervisorRole

__all__ = [
    "MAX_JSON_DEPTH",
    "MAX_MESSAGE_BYTES",
    "ClientMessage",
    "check_sdp",
    "json_depth_over",
    "parse_message",
]

MAX_MESSAGE_BYTES = 64 * 1024
# No message of the protocol nests more than a few levels. Deeper JSON is refused before
# json.loads sees it: 2,000 levels made json.loads raise RecursionError (an internal_error and
# a traceback per message).
MAX_JSON_DEPTH = 32
# A JSON string (RFC 8259 section 7): its brackets are text, not structure.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}

ReqId = Annotated[str, StringConstraints(max_length=128)] | None
CallId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Destination = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]
Sdp = Annotated[str, StringConstraints(min_length=1)]


class _Msg(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    req_id: ReqId = None


Token = Annotated[str, StringConstraints(min_length=1, max_length=512)]
E911Id = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class SessionLogin(_Msg):
    type: Literal["session.login"]
    token: Token
    user_id: Annotated[str, StringConstraints(max_length=256)] | None = None
    e911_id: E911Id | None = None


class SessionResume(_Msg):
    type: Literal["session.resume"]
    session_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    token: Token


class SessionRefresh(_Msg):
    type: Literal["session.refresh"]
    token: Token


class SessionAssociateE911(_Msg):
    type: Literal["session.associate_e911"]
    e911_id: E911Id


class SessionLogout(_Msg):
    type: Literal["session.logout"]


class CallCreate(_Msg):
    type: Literal["call.create"]
    destination: Destination
    sdp: Sdp
    caller_id: Annotated[str, StringConstraints(max_length=64)] | None = None
    media_type: MediaType | None = None


class CallAnswer(_Msg):
    type: Literal["call.answer"]
    call_id: CallId
    sdp: Sdp


class CallReject(_Msg):
    type: Literal["call.reject"]
    call_id: CallId
    reason: Literal["busy"] | None = None


class _CallAction(_Msg):
    call_id: CallId


class CallHangup(_CallAction):
    type: Literal["call.hangup"]


class CallHold(_CallAction):
    type: Literal["call.hold"]


class CallResume(_CallAction):
    type: Literal["call.resume"]


class CallMute(_CallAction):
    type: Literal["call.mute"]


class CallUnmute(_CallAction):
    type: Literal["call.unmute"]


class CallTransfer(_CallAction):
    type: Literal["call.transfer"]
    destination: Destination


class CallRestartMedia(_CallAction):
    type: Literal["call.restart_media"]
    sdp: Sdp


class CallMove(_CallAction):
    type: Literal["call.move"]


class CallCompleteTransfer(_CallAction):
    type: Literal["call.complete_transfer"]
    target_call_id: CallId


class CallModify(_CallAction):
    type: Literal["call.modify"]
    media_type: MediaType
    sdp: Sdp


class CallModifyAccept(_CallAction):
    type: Literal["call.modify.accept"]
    sdp: Sdp


class CallModifyReject(_CallAction):
    type: Literal["call.modify.reject"]
    sdp: Sdp


class IceCandidate(_CallAction):
    type: Literal["ice.candidate"]
    candidate: Annotated[str, StringConstraints(max_length=1024)]
    sdp_mid: str | None = None
    sdp_m_line_index: Annotated[int, Field(ge=0, le=64)] | None = None


class IceDone(_CallAction):
    type: Literal["ice.done"]


ConferenceId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Participant = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]
Url = Annotated[str, StringConstraints(min_length=1, max_length=2048, pattern=r"^https?://")]
Participants = Annotated[list[Participant], Field(max_length=100)] | None


class _ConferenceAction(_Msg):
    conference_id: ConferenceId


class ConferenceStart(_Msg):
    type: Literal["conference.start"]
    sdp: Sdp
    media_type: MediaType = "audio"
    name: Annotated[str, StringConstraints(max_length=128)] | None = None
    beep: BeepMode = "never"


class ConferenceInvite(_ConferenceAction):
    type: Literal["conference.invite"]
    to: Destination


class ConferenceRemove(_ConferenceAction):
    type: Literal["conference.remove"]
    participant: Participant


class ConferenceEnd(_ConferenceAction):
    type: Literal["conference.end"]


class ConferenceGet(_ConferenceAction):
    type: Literal["conference.get"]


class ConferenceHold(_ConferenceAction):
    type: Literal["conference.hold"]


class ConferenceResume(_ConferenceAction):
    type: Literal["conference.resume"]


class ConferenceMerge(_Msg):
    type: Literal["conference.merge"]
    call_ids: Annotated[list[CallId], Field(min_length=1, max_length=20)]
    conference_id: ConferenceId | None = None


class ConferenceSplit(_ConferenceAction):
    type: Literal["conference.split"]
    call_id: CallId


class ConferencePlay(_ConferenceAction):
    type: Literal["conference.play"]
    audio_url: Url
    loops: Annotated[int, Field(ge=0, le=100)] = 1
    participants: Participants = None


class ConferenceSpeak(_ConferenceAction):
    type: Literal["conference.speak"]
    text: Annotated[str, StringConstraints(min_length=1, max_length=3000)]
    voice: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "female"
    language: Annotated[str, StringConstraints(min_length=2, max_length=16)] = "en-US"
    participants: Participants = None


class ConferenceStop(_ConferenceAction):
    type: Literal["conference.stop"]
    participants: Participants = None


class ConferenceRecord(_ConferenceAction):
    type: Literal["conference.record"]
    action: Literal["start", "pause", "resume", "stop"]
    format: Literal["wav", "mp3"] = "wav"


class ConferenceUpdateParticipant(_ConferenceAction):
    type: Literal["conference.participant.update"]
    participant: Participant
    muted: bool | None = None
    held: bool | None = None
    hold_audio_url: Url | None = None
    deaf: bool | None = None
    supervisor_role: SupervisorRole | None = None
    whisper_to: Participants = None


class HistoryList(_Msg):
    """The user's ended calls, newest first (signalling/ws_history.py)."""

    type: Literal["history.list"]
    limit: Annotated[int, Field(ge=1, le=100)] = 20  # store.history.MAX_HISTORY_PAGE
    before: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None


class ForwardingTargetModel(BaseModel):
    """One target of a forwarding step (callbridge.forwarding.Target)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["devices", "user", "number", "queue", "application", "conference"]
    value: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    screening: bool = False


class ForwardingStepModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    targets: Annotated[list[ForwardingTargetModel], Field(min_length=1, max_length=10)]
    seconds: Annotated[int, Field(ge=1, le=600)] | None = None


ForwardingAction = Annotated[str, StringConstraints(min_length=1, max_length=80)]


class ForwardingGet(_Msg):
    """The signed-in user's own forwarding rules (signalling/ws_forwarding.py)."""

    type: Literal["forwarding.get"]


class ForwardingSet(_Msg):
    """Change the signed-in user's own rules; fields left out are kept."""

    type: Literal["forwarding.set"]
    ring_seconds: Annotated[int, Field(ge=1, le=600)] | None = None
    dnd: bool | None = None
    steps: Annotated[list[ForwardingStepModel], Field(max_length=10)] | None = None
    on_busy: ForwardingAction | None = None
    on_no_answer: ForwardingAction | None = None
    on_offline: ForwardingAction | None = None
    on_dnd: ForwardingAction | None = None


class ForwardingDnd(_Msg):
    """Turn the signed-in user's do-not-disturb on or off."""

    type: Literal["forwarding.dnd"]
    dnd: bool


ClientMessage = (
    SessionLogin
    | SessionResume
    | SessionRefresh
    | SessionAssociateE911
    | SessionLogout
    | CallCreate
    | CallAnswer
    | CallReject
    | CallHangup
    | CallHold
    | CallResume
    | CallMute
    | CallUnmute
    | CallTransfer
    | CallCompleteTransfer
    | CallMove
    | CallRestartMedia
    | CallModify
    | CallModifyAccept
    | CallModifyReject
    | IceCandidate
    | IceDone
    | ConferenceStart
    | ConferenceInvite
    | ConferenceRemove
    | ConferenceEnd
    | ConferenceGet
    | ConferenceHold
    | ConferenceResume
    | ConferenceMerge
    | ConferenceSplit
    | ConferencePlay
    | ConferenceSpeak
    | ConferenceStop
    | ConferenceRecord
    | ConferenceUpdateParticipant
    | HistoryList
    | ForwardingGet
    | ForwardingSet
    | ForwardingDnd
)
_MODELS: dict[str, type[BaseModel]] = {
    get_args(m.model_fields["type"].annotation)[0]: m for m in get_args(ClientMessage)
}
_ADAPTERS = {name: TypeAdapter(model) for name, model in _MODELS.items()}
MESSAGE_TYPES = tuple(sorted(_MODELS))


def _describe(exc: ValidationError, type_: str) -> str:
    parts = []
    for err in exc.errors()[:3]:
        field = ".".join(str(x) for x in err["loc"]) or "message"
        if err["type"] == "missing":
            parts.append(f"field '{field}' is required")
        else:
            parts.append(f"field '{field}': {err['msg']}")
    return f"{type_}: " + "; ".join(parts)


def peek_req_id(raw: Any) -> str | None:
    """The ``req_id`` of a frame, if it has a usable one (for echoing in errors)."""
    if isinstance(raw, dict):
        req_id = raw.get("req_id")
        if isinstance(req_id, str) and len(req_id) <= 128:
            return req_id
    return None


def json_depth_over(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``text`` nests arrays and objects more than ``limit`` deep, without parsing it.

    Cheap where it matters: a frame with no more than ``limit`` opening brackets (every real
    message) is answered by two ``str.count`` calls; otherwise the brackets outside strings are
    summed with C-level iterators, never a Python loop per character.
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    brackets = _BRACKET.findall(_JSON_STRING.sub("", text))
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0) > limit


def check_sdp(sdp: str, max_bytes: int, max_media: int) -> None:
    """Refuse an SDP over ``max_bytes`` or with more than ``max_media`` m-lines (RFC 8866
    section 5.14), before anything parses it: a 58 KB offer with 500 m-lines cost 0.75 s of
    the event loop in aiortc's parser."""
    size = len(sdp.encode())
    if size > max_bytes:
        raise ProtocolError(
            ErrorCode.INVALID_SDP,
            f"the SDP is {size} bytes; the server takes at most {max_bytes} "
            "(--max-sdp-bytes): offer fewer media sections or codecs",
        )
    media = sdp.count("\nm=") + sdp.startswith("m=")
    if media > max_media:
        raise ProtocolError(
            ErrorCode.INVALID_SDP,
            f"the SDP has {media} m= lines (media sections); the server takes at most "
            f"{max_media} (--max-sdp-media): offer one audio and at most one video section",
        )


def decode_frame(text: str | bytes | None) -> dict[str, Any]:
    """Frame -> JSON object, or the precise protocol error."""
    if text is None or isinstance(text, bytes):
        raise ProtocolError(ErrorCode.INVALID_JSON, "binary frames are not accepted; send text")
    if len(text.encode()) > MAX_MESSAGE_BYTES:
        raise ProtocolError(
            ErrorCode.MESSAGE_TOO_LARGE,
            f"message of {len(text.encode())} bytes is over the {MAX_MESSAGE_BYTES}-byte limit",
        )
    if json_depth_over(text):
        raise ProtocolError(
            ErrorCode.INVALID_JSON,
            f"JSON nested more than {MAX_JSON_DEPTH} levels deep; the limit is {MAX_JSON_DEPTH}",
        )
    try:
        raw = json.loads(text)
    except RecursionError as exc:  # cannot happen under the depth limit; never a traceback
        raise ProtocolError(ErrorCode.INVALID_JSON, "JSON nested too deep") from exc
    except ValueError as exc:
        raise ProtocolError(ErrorCode.INVALID_JSON, f"not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ProtocolError(ErrorCode.INVALID_JSON, "a message must be a JSON object")
    return raw


def parse_message(raw: dict[str, Any]) -> ClientMessage:
    type_ = raw.get("type")
    if not isinstance(type_, str):
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, "the message has no string field 'type'")
    adapter = _ADAPTERS.get(type_)
    if adapter is None:
        raise ProtocolError(
            ErrorCode.UNKNOWN_TYPE,
            f"unknown message type {type_[:64]!r}; expected one of {', '.join(MESSAGE_TYPES)}",
        )
    try:
        msg = cast(ClientMessage, adapter.validate_python(raw))
    except ValidationError as exc:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, _describe(exc, type_)) from exc
    return msg
