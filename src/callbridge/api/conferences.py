"""``/v2/conferences``: every conference operation of seed 003, on the conference manager.

A conference is created from an answered call (``POST /v2/conferences`` with its
``call_control_id``); other calls join and leave it (a call that leaves stays up, parked). The
media operations (mute, hold with hold audio, play, speak, stop, record, supervisor roles) are
:class:`~callbridge.core.conferences.ConferenceManager`'s, the same that the ``/ws`` host uses,
so they act on /ws-hosted conferences too. Participants are named by their calls'
``call_control_id``; a list that may be left out (``call_control_ids``) means everyone.

Conferences are listed newest first, live ones and those that ended recently (``status``
``completed`` with their ``end_reason``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from callbridge.api.calls import audio_for, protocol_errors, resolve_call
from callbridge.api.context import ApiContext, Ctx
from callbridge.api.errors import invalid, not_found, wrong_state
from callbridge.api.pagination import PageQuery, slice_page
from callbridge.api.schemas import (
    CommandResult,
    Data,
    ListOf,
    Params,
    check_client_state,
    iso,
    ok,
    refuse_unsupported,
)
from callbridge.core.appcalls import AppCall, ConferenceRecord
from callbridge.core.conferences import Conference, ConferenceKind, Member, RecordAction
from callbridge.media.interface import AudioSpec

__all__ = ["router"]

router = APIRouter(tags=["Conferences"])

Beep = Literal["always", "never", "on_enter", "on_exit"]
Role = Literal["barge", "monitor", "none", "whisper"]


class ConferenceOut(BaseModel):
    record_type: Literal["conference"] = "conference"
    id: str
    name: str
    created_at: str
    updated_at: str
    expires_at: str
    status: Literal["init", "in_progress", "completed"]
    connection_id: str | None = None
    end_reason: Literal["all_left", "ended_via_api", "host_left", "time_exceeded"] | None = None


def _conference_out(record: ConferenceRecord) -> ConferenceOut:
    expires = record.expires_at or record.created_at
    reason = record.end_reason
    return ConferenceOut(
        id=record.id,
        name=record.name,
        created_at=iso(record.created_at) or "",
        updated_at=iso(record.ended_at or record.created_at) or "",
        expires_at=iso(expires) or "",
        status="completed" if record.ended_at is not None else "in_progress",
        connection_id=record.application.id if record.application is not None else None,
        end_reason=reason  # type: ignore[arg-type]  # one of the four, set by AppCalls
        if reason in ("all_left", "ended_via_api", "host_left", "time_exceeded")
        else None,
    )


class ConferenceRef(BaseModel):
    id: str
    name: str


class ParticipantOut(BaseModel):
    record_type: Literal["participant"] = "participant"
    id: str
    call_control_id: str
    call_leg_id: str
    conference: ConferenceRef
    created_at: str
    updated_at: str
    status: Literal["joining", "joined", "left"] = "joined"
    muted: bool
    on_hold: bool
    end_conference_on_exit: bool = False
    soft_end_conference_on_exit: bool = False
    whisper_call_control_ids: list[str]
    supervisor_role: Role = Field(description="callbridge: the participant's supervisor role")


def _call_id(ctx: ApiContext, leg_id: str) -> str:
    call = ctx.appcalls.by_leg.get(leg_id)
    return call.id if call is not None else leg_id


def _participant_out(ctx: ApiContext, conf: Conference, member: Member) -> ParticipantOut:
    cid = _call_id(ctx, member.leg.id)
    joined = iso(member.joined_at) or ""
    return ParticipantOut(
        id=cid,
        call_control_id=cid,
        call_leg_id=cid,
        conference=ConferenceRef(id=conf.id, name=conf.name),
        created_at=joined,
        updated_at=joined,
        muted=member.muted or member.leg.muted,
        on_hold=member.held,
        whisper_call_control_ids=[_call_id(ctx, x) for x in member.whisper_to],
        supervisor_role=member.role,
    )


# lookups --------------------------------------------------------------------------------------
def _live(ctx: ApiContext, conference_id: str) -> Conference:
    conf = ctx.controller.conferences.conferences.get(conference_id)
    if conf is None or conf.ended:
        if ctx.appcalls.conference_record(conference_id) is not None:
            raise wrong_state(f"conference {conference_id} has ended")
        raise not_found(f"no conference with id {conference_id!r}", "id")
    if conf.kind is not ConferenceKind.CONFERENCE:
        raise wrong_state(
            f"{conference_id} is a call group (seed 000) of a softphone, not a conference"
        )
    return conf


def _member(ctx: ApiContext, conf: Conference, call_control_id: str, pointer: str) -> Member:
    call = resolve_call(ctx, call_control_id, pointer=pointer)
    leg = call.leg
    member = conf.members.get(leg.id) if leg is not None else None
    if member is None or member.leg.device is conf.owner:
        raise invalid(
            f"call {call_control_id} is not a participant of conference {conf.id}",
            pointer=pointer,
        )
    return member


def _members(
    ctx: ApiContext, conf: Conference, ids: list[str] | None, pointer: str = "/call_control_ids"
) -> list[Member]:
    """The participants ``ids`` names; everyone when it is left out (or empty)."""
    if not ids:
        return list(conf.participants)
    return [_member(ctx, conf, cid, f"{pointer}/{i}") for i, cid in enumerate(ids)]


# create, list, retrieve -----------------------------------------------------------------------
class CreateParams(Params):
    call_control_id: str = Field(description="An answered call: the first participant.")
    name: str = Field(min_length=1, max_length=128)
    beep_enabled: Beep = "never"
    client_state: str | None = None
    hold_audio_url: str | None = None
    hold_media_name: str | None = None
    max_participants: int | None = Field(None, ge=2, le=800)
    duration_minutes: int | None = Field(None, ge=1, le=1440)


@router.post("/conferences", summary="Create a conference", response_model=Data[ConferenceOut])
async def create_conference(params: CreateParams, ctx: Ctx) -> Data[ConferenceOut]:
    state = check_client_state(params.client_state)
    hold = await audio_for(
        ctx,
        audio_url=params.hold_audio_url,
        media_name=params.hold_media_name,
        loops=0,
        required=False,
    )
    call = resolve_call(ctx, params.call_control_id, pointer="/call_control_id")
    record = await protocol_errors(
        ctx.appcalls.create_conference(
            call,
            params.name,
            beep=params.beep_enabled,
            client_state=state,
            duration_minutes=params.duration_minutes,
        ),
        pointer="/call_control_id",
    )
    record.max_participants = params.max_participants
    record.hold_audio = hold
    return Data[ConferenceOut](data=_conference_out(record))


@router.get("/conferences", summary="List conferences", response_model=ListOf[ConferenceOut])
async def list_conferences(
    ctx: Ctx,
    page: PageQuery,
    name: Annotated[str | None, Query(alias="filter[name]")] = None,
    status: Annotated[
        Literal["init", "in_progress", "completed"] | None, Query(alias="filter[status]")
    ] = None,
) -> ListOf[ConferenceOut]:
    records = [
        _conference_out(r)
        for r in reversed(ctx.appcalls.conferences.values())
        if r.id and (name is None or r.name == name)
    ]
    if status is not None:
        records = [r for r in records if r.status == status]
    items, meta = slice_page(records, page)
    return ListOf[ConferenceOut](data=items, meta=meta)


@router.get(
    "/conferences/{id}", summary="Retrieve a conference", response_model=Data[ConferenceOut]
)
async def retrieve_conference(id: str, ctx: Ctx) -> Data[ConferenceOut]:
    record = ctx.appcalls.conference_record(id)
    if record is None:
        raise not_found(f"no conference with id {id!r}", "id")
    return Data[ConferenceOut](data=_conference_out(record))


@router.get(
    "/conferences/{conference_id}/participants",
    summary="List a conference's participants",
    response_model=ListOf[ParticipantOut],
)
async def list_participants(
    conference_id: str,
    ctx: Ctx,
    page: PageQuery,
    muted: Annotated[bool | None, Query(alias="filter[muted]")] = None,
    on_hold: Annotated[bool | None, Query(alias="filter[on_hold]")] = None,
    whispering: Annotated[bool | None, Query(alias="filter[whispering]")] = None,
) -> ListOf[ParticipantOut]:
    conf = _live(ctx, conference_id)
    out = [_participant_out(ctx, conf, m) for m in conf.participants]
    if muted is not None:
        out = [p for p in out if p.muted == muted]
    if on_hold is not None:
        out = [p for p in out if p.on_hold == on_hold]
    if whispering is not None:
        out = [p for p in out if (p.supervisor_role == "whisper") == whispering]
    items, meta = slice_page(out, page)
    return ListOf[ParticipantOut](data=items, meta=meta)


@router.get(
    "/conferences/{id}/participants/{participant_id}",
    summary="Retrieve a participant",
    response_model=Data[ParticipantOut],
)
async def retrieve_participant(id: str, participant_id: str, ctx: Ctx) -> Data[ParticipantOut]:
    conf = _live(ctx, id)
    member = _member(ctx, conf, participant_id, "/participant_id")
    return Data[ParticipantOut](data=_participant_out(ctx, conf, member))


# actions --------------------------------------------------------------------------------------
class JoinParams(Params):
    call_control_id: str
    client_state: str | None = None
    mute: bool = False
    hold: bool = False
    hold_audio_url: str | None = None
    hold_media_name: str | None = None
    supervisor_role: Role = "none"
    whisper_call_control_ids: list[str] | None = None


@router.post(
    "/conferences/{id}/actions/join",
    summary="Join a call to a conference",
    response_model=Data[CommandResult],
)
async def join(id: str, params: JoinParams, ctx: Ctx) -> Data[CommandResult]:
    refuse_unsupported(params, ("end_conference_on_exit", "soft_end_conference_on_exit"))
    conf = _live(ctx, id)
    record = ctx.appcalls.conference_record(id)
    call = resolve_call(ctx, params.call_control_id, pointer="/call_control_id")
    if call.seen(params.command_id):
        return ok()
    state = check_client_state(params.client_state)
    hold = await audio_for(
        ctx,
        audio_url=params.hold_audio_url,
        media_name=params.hold_media_name,
        loops=0,
        required=False,
    )
    if hold is None and record is not None:
        hold = record.hold_audio
    whisper = tuple(
        _member(ctx, conf, cid, f"/whisper_call_control_ids/{i}").leg.id
        for i, cid in enumerate(params.whisper_call_control_ids or ())
    )
    if params.supervisor_role == "whisper" and not whisper:
        raise invalid(
            "supervisor_role 'whisper' needs whisper_call_control_ids (who hears the whisper)",
            pointer="/whisper_call_control_ids",
        )
    limit = record.max_participants if record is not None else None
    if limit is not None and len(conf.participants) >= limit:
        raise wrong_state(f"conference {id} is full (max_participants {limit})")
    if state is not None:
        call.client_state = state
    await protocol_errors(_join(ctx, conf, call, params, hold, whisper), "/call_control_id")
    call.remember(params.command_id)
    return ok()


async def _join(
    ctx: ApiContext,
    conf: Conference,
    call: AppCall,
    params: JoinParams,
    hold: AudioSpec | None,
    whisper: tuple[str, ...],
) -> None:
    leg = await ctx.appcalls.ready_for_conference(call)
    await ctx.controller.conferences.join_leg(
        conf,
        leg,
        muted=params.mute,
        held=params.hold,
        hold_audio=hold,
        role=params.supervisor_role,
        whisper_to=whisper,
    )


class LeaveParams(Params):
    call_control_id: str


@router.post(
    "/conferences/{id}/actions/leave",
    summary="Take a call out of a conference (it stays up, parked)",
    response_model=Data[CommandResult],
)
async def leave(id: str, params: LeaveParams, ctx: Ctx) -> Data[CommandResult]:
    conf = _live(ctx, id)
    member = _member(ctx, conf, params.call_control_id, "/call_control_id")
    await protocol_errors(ctx.controller.conferences.leave_leg(conf, member.leg))
    return ok()


class ParticipantsParams(Params):
    call_control_ids: list[str] | None = None


class HoldParams(ParticipantsParams):
    audio_url: str | None = None
    media_name: str | None = None


@router.post(
    "/conferences/{id}/actions/hold",
    summary="Hold participants: they hear hold audio and are not heard",
    response_model=Data[CommandResult],
)
async def hold(id: str, params: HoldParams, ctx: Ctx) -> Data[CommandResult]:
    conf = _live(ctx, id)
    members = _members(ctx, conf, params.call_control_ids)
    audio = await audio_for(
        ctx, audio_url=params.audio_url, media_name=params.media_name, loops=0, required=False
    )
    record = ctx.appcalls.conference_record(id)
    if audio is None and record is not None:
        audio = record.hold_audio
    pointer = "/media_name" if params.media_name else "/audio_url"
    for member in members:
        await protocol_errors(
            ctx.controller.conferences.update_participant(
                None, conf, member.leg.id, held=True, hold_audio=audio
            ),
            pointer,
        )
    return ok()


class UnholdParams(Params):
    call_control_ids: list[str] = Field(min_length=1)


@router.post(
    "/conferences/{id}/actions/unhold",
    summary="Take participants off hold",
    response_model=Data[CommandResult],
)
async def unhold(id: str, params: UnholdParams, ctx: Ctx) -> Data[CommandResult]:
    conf = _live(ctx, id)
    for member in _members(ctx, conf, params.call_control_ids):
        await protocol_errors(
            ctx.controller.conferences.update_participant(None, conf, member.leg.id, held=False)
        )
    return ok()


async def _mute(ctx: ApiContext, id: str, ids: list[str] | None, muted: bool) -> None:
    conf = _live(ctx, id)
    for member in _members(ctx, conf, ids):
        await protocol_errors(
            ctx.controller.conferences.update_participant(None, conf, member.leg.id, muted=muted)
        )


@router.post(
    "/conferences/{id}/actions/mute",
    summary="Mute participants (everyone when call_control_ids is left out)",
    response_model=Data[CommandResult],
)
async def mute(id: str, params: ParticipantsParams, ctx: Ctx) -> Data[CommandResult]:
    await _mute(ctx, id, params.call_control_ids, True)
    return ok()


@router.post(
    "/conferences/{id}/actions/unmute",
    summary="Unmute participants (everyone when call_control_ids is left out)",
    response_model=Data[CommandResult],
)
async def unmute(id: str, params: ParticipantsParams, ctx: Ctx) -> Data[CommandResult]:
    await _mute(ctx, id, params.call_control_ids, False)
    return ok()


async def _play(
    ctx: ApiContext, conf: Conference, audio: AudioSpec, ids: list[str] | None, pointer: str
) -> None:
    targets = [m.leg.id for m in _members(ctx, conf, ids)] if ids else []
    ctx.appcalls.expect_play(conf.id, tuple(targets))
    playback_id: str | None = None
    try:
        playback_id = await protocol_errors(
            ctx.controller.conferences.play(None, conf, audio, targets or None), pointer
        )
    finally:
        ctx.appcalls.played(conf.id, playback_id)


class PlayParams(ParticipantsParams):
    audio_url: str | None = None
    media_name: str | None = None
    loop: int | str | None = None


@router.post(
    "/conferences/{id}/actions/play",
    summary="Play audio to all or some participants",
    response_model=Data[CommandResult],
)
async def play(id: str, params: PlayParams, ctx: Ctx) -> Data[CommandResult]:
    conf = _live(ctx, id)
    loops = 1
    if params.loop is not None:
        loops = 0 if params.loop == "infinity" else int(params.loop)
        if loops < 0:
            raise invalid("loop must be a count or 'infinity'", pointer="/loop")
    audio = await audio_for(
        ctx, audio_url=params.audio_url, media_name=params.media_name, loops=loops
    )
    assert audio is not None
    pointer = "/media_name" if params.media_name else "/audio_url"
    await _play(ctx, conf, audio, params.call_control_ids, pointer)
    return ok()


class SpeakParams(ParticipantsParams):
    payload: str = Field(min_length=1, max_length=3000)
    voice: str
    language: str = "en-US"
    payload_type: Literal["text", "ssml"] = "text"


@router.post(
    "/conferences/{id}/actions/speak",
    summary="Speak text to all or some participants",
    response_model=Data[CommandResult],
)
async def speak(id: str, params: SpeakParams, ctx: Ctx) -> Data[CommandResult]:
    conf = _live(ctx, id)
    if params.payload_type == "ssml":
        raise invalid("payload_type 'ssml' is not supported: send plain text", "/payload_type")
    if params.voice not in ("female", "male"):
        raise invalid(f"voice {params.voice!r} is not available: use 'female' or 'male'", "/voice")
    audio = AudioSpec("tts", params.payload, voice=params.voice, language=params.language)
    await _play(ctx, conf, audio, params.call_control_ids, "/payload")
    return ok()


@router.post(
    "/conferences/{id}/actions/stop",
    summary="Stop audio playing to all or some participants",
    response_model=Data[CommandResult],
)
async def stop(id: str, params: ParticipantsParams, ctx: Ctx) -> Data[CommandResult]:
    conf = _live(ctx, id)
    targets = [m.leg.id for m in _members(ctx, conf, params.call_control_ids)]
    await protocol_errors(
        ctx.controller.conferences.stop(None, conf, targets if params.call_control_ids else None)
    )
    return ok()


class RecordStartParams(Params):
    format: Literal["wav", "mp3"]
    channels: Literal["single", "dual"] = "single"
    play_beep: bool = False


class RecordingParams(Params):
    recording_id: str | None = None


def _recording(conf: Conference, recording_id: str | None) -> None:
    if recording_id is not None and conf.recording_id not in (None, recording_id):
        raise invalid(
            f"conference {conf.id} is recording {conf.recording_id}, not {recording_id}",
            pointer="/recording_id",
        )


@router.post(
    "/conferences/{id}/actions/record_start",
    summary="Start recording the conference's mix",
    response_model=Data[CommandResult],
)
async def record_start(id: str, params: RecordStartParams, ctx: Ctx) -> Data[CommandResult]:
    refuse_unsupported(params, ("trim",))
    if params.channels != "single":
        raise invalid("channels 'dual' is not supported: use 'single'", pointer="/channels")
    if params.play_beep:
        raise invalid("play_beep is not supported by callbridge; leave it out", "/play_beep")
    conf = _live(ctx, id)
    await protocol_errors(ctx.controller.conferences.record(None, conf, "start", params.format))
    return ok()


async def _record(ctx: ApiContext, id: str, params: RecordingParams, action: RecordAction) -> None:
    conf = _live(ctx, id)
    _recording(conf, params.recording_id)
    await protocol_errors(ctx.controller.conferences.record(None, conf, action))


@router.post(
    "/conferences/{id}/actions/record_pause",
    summary="Pause recording the conference",
    response_model=Data[CommandResult],
)
async def record_pause(id: str, params: RecordingParams, ctx: Ctx) -> Data[CommandResult]:
    await _record(ctx, id, params, "pause")
    return ok()


@router.post(
    "/conferences/{id}/actions/record_resume",
    summary="Resume recording the conference",
    response_model=Data[CommandResult],
)
async def record_resume(id: str, params: RecordingParams, ctx: Ctx) -> Data[CommandResult]:
    await _record(ctx, id, params, "resume")
    return ok()


@router.post(
    "/conferences/{id}/actions/record_stop",
    summary="Stop recording the conference (conference.recording.saved follows)",
    response_model=Data[CommandResult],
)
async def record_stop(id: str, params: RecordingParams, ctx: Ctx) -> Data[CommandResult]:
    await _record(ctx, id, params, "stop")
    return ok()


class UpdateParams(Params):
    call_control_id: str
    supervisor_role: Role
    whisper_call_control_ids: list[str] | None = None


@router.post(
    "/conferences/{id}/actions/update",
    summary="Change a participant's supervisor role (whisper, barge, monitor, none)",
    response_model=Data[CommandResult],
)
async def update(id: str, params: UpdateParams, ctx: Ctx) -> Data[CommandResult]:
    conf = _live(ctx, id)
    member = _member(ctx, conf, params.call_control_id, "/call_control_id")
    whisper = None
    if params.whisper_call_control_ids is not None:
        whisper = [
            _member(ctx, conf, cid, f"/whisper_call_control_ids/{i}").leg.id
            for i, cid in enumerate(params.whisper_call_control_ids)
        ]
    if params.supervisor_role == "whisper" and not (whisper or member.whisper_to):
        raise invalid(
            "supervisor_role 'whisper' needs whisper_call_control_ids (who hears the whisper)",
            pointer="/whisper_call_control_ids",
        )
    await protocol_errors(
        ctx.controller.conferences.update_participant(
            None, conf, member.leg.id, role=params.supervisor_role, whisper_to=whisper
        ),
        "/supervisor_role",
    )
    return ok()


@router.post(
    "/conferences/{id}/actions/end",
    summary="End the conference: every participant's call is hung up",
    response_model=Data[CommandResult],
)
async def end(id: str, params: Params, ctx: Ctx) -> Data[CommandResult]:
    conf = _live(ctx, id)
    await protocol_errors(ctx.appcalls.end_conference(conf))
    return ok()
