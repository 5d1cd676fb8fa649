"""``/v2/conferences``: every conference operation of seed 003.

A conference is created from an answered call (``POST /v2/conferences`` with its
``call_control_id``); other calls join and leave it (a call that leaves stays up, parked). The
media operations (mute, hold with hold audio, play, speak, stop, record, supervisor roles) are
the conference manager's, the same that the ``/ws`` host uses, so they act on /ws-hosted
conferences too; the endpoints reach them through the call-control facade
(:class:`~callbridge.core.control.CallControl`). Participants are named by their calls'
``call_control_id``; a list that may be left out (``call_control_ids``) means everyone.

Conferences are listed newest first, live ones and those that ended recently (``status``
``completed`` with their ``end_reason``).

A conference belongs to the account of the key that created it (a ``/ws`` host's to its user's
account); another account's conference, and another account's call named as a participant,
are unknown (404 in the path, 422 in the body), exactly as ones that do not exist.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import Field

from callbridge.api.commands import (
    audio_for,
    loop_count,
    protocol_errors,
    resolve_call,
    speech,
)
from callbridge.api.conference_models import (
    ConferenceOut,
    ParticipantOut,
    Role,
    conference_out,
    participant_out,
)
from callbridge.api.context import ApiContext, Ctx, Principal
from callbridge.api.errors import invalid, not_found, wrong_state
from callbridge.api.pagination import PageQuery, slice_page
from callbridge.api.schemas import (
    CommandResult,
    Data,
    ListOf,
    Params,
    check_client_state,
    ok,
    refuse_unsupported,
)
from callbridge.core.control import (
    AppCall,
    ConferenceRecord,
    NotAParticipant,
    RecordAction,
    UnknownConference,
)
from callbridge.errors import ProtocolError
from callbridge.media.interface import AudioSpec
from callbridge.vocabulary import BeepMode

__all__ = ["router"]

router = APIRouter(tags=["Conferences"])


# lookups --------------------------------------------------------------------------------------
def _live(ctx: ApiContext, principal: Principal, conference_id: str) -> ConferenceRecord:
    """The account's live conference the path names: 404 if there is none (or it is another
    account's), 422 if it has ended (or is a call group)."""
    try:
        return ctx.control.conference(conference_id, account_id=principal.account_id)
    except UnknownConference:
        raise not_found(f"no conference with id {conference_id!r}", "id") from None
    except ProtocolError as exc:
        raise wrong_state(exc.message) from None


async def _participant(
    ctx: ApiContext, principal: Principal, conference_id: str, call_control_id: str, pointer: str
) -> AppCall:
    """The participant a body field (``pointer``) names: 422 unless it is one."""
    call = await resolve_call(ctx, principal.account_id, call_control_id, pointer=pointer)
    try:
        ctx.control.ensure_participant(conference_id, call)
    except NotAParticipant as exc:
        raise invalid(exc.message, pointer=pointer) from None
    return call


async def _participants(
    ctx: ApiContext,
    principal: Principal,
    conference_id: str,
    ids: list[str] | None,
    pointer: str = "/call_control_ids",
) -> list[AppCall]:
    """The participants ``ids`` names (left out or empty: everyone, an empty list here)."""
    return [
        await _participant(ctx, principal, conference_id, cid, f"{pointer}/{i}")
        for i, cid in enumerate(ids or ())
    ]


# create, list, retrieve -----------------------------------------------------------------------
class CreateParams(Params):
    call_control_id: str = Field(description="An answered call: the first participant.")
    name: str = Field(min_length=1, max_length=128)
    beep_enabled: BeepMode = "never"
    client_state: str | None = None
    hold_audio_url: str | None = None
    hold_media_name: str | None = None
    max_participants: int | None = Field(None, ge=2, le=800)
    duration_minutes: int | None = Field(None, ge=1, le=1440)


@router.post("/conferences", summary="Create a conference", response_model=Data[ConferenceOut])
async def create_conference(
    params: CreateParams, ctx: Ctx, principal: Principal
) -> Data[ConferenceOut]:
    state = check_client_state(params.client_state)
    hold = await audio_for(
        ctx,
        principal.account_id,
        audio_url=params.hold_audio_url,
        media_name=params.hold_media_name,
        loops=0,
        required=False,
    )
    call = await resolve_call(
        ctx, principal.account_id, params.call_control_id, pointer="/call_control_id"
    )
    record = await protocol_errors(
        ctx.control.create_conference(
            call,
            params.name,
            beep=params.beep_enabled,
            client_state=state,
            duration_minutes=params.duration_minutes,
            max_participants=params.max_participants,
            hold_audio=hold,
            account_id=principal.account_id,
        ),
        pointer="/call_control_id",
    )
    return Data[ConferenceOut](data=conference_out(record))


@router.get("/conferences", summary="List conferences", response_model=ListOf[ConferenceOut])
async def list_conferences(
    ctx: Ctx,
    principal: Principal,
    page: PageQuery,
    name: Annotated[str | None, Query(alias="filter[name]")] = None,
    status: Annotated[
        Literal["init", "in_progress", "completed"] | None, Query(alias="filter[status]")
    ] = None,
) -> ListOf[ConferenceOut]:
    records = [
        conference_out(r)
        for r in ctx.control.conference_records(account_id=principal.account_id)
        if name is None or r.name == name
    ]
    if status is not None:
        records = [r for r in records if r.status == status]
    items, meta = slice_page(records, page)
    return ListOf[ConferenceOut](data=items, meta=meta)


@router.get(
    "/conferences/{id}", summary="Retrieve a conference", response_model=Data[ConferenceOut]
)
async def retrieve_conference(id: str, ctx: Ctx, principal: Principal) -> Data[ConferenceOut]:
    record = ctx.control.conference_record(id, account_id=principal.account_id)
    if record is None:
        raise not_found(f"no conference with id {id!r}", "id")
    return Data[ConferenceOut](data=conference_out(record))


@router.get(
    "/conferences/{conference_id}/participants",
    summary="List a conference's participants",
    response_model=ListOf[ParticipantOut],
)
async def list_participants(
    conference_id: str,
    ctx: Ctx,
    principal: Principal,
    page: PageQuery,
    muted: Annotated[bool | None, Query(alias="filter[muted]")] = None,
    on_hold: Annotated[bool | None, Query(alias="filter[on_hold]")] = None,
    whispering: Annotated[bool | None, Query(alias="filter[whispering]")] = None,
) -> ListOf[ParticipantOut]:
    _live(ctx, principal, conference_id)
    out = [participant_out(p) for p in ctx.control.participants(conference_id)]
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
async def retrieve_participant(
    id: str, participant_id: str, ctx: Ctx, principal: Principal
) -> Data[ParticipantOut]:
    _live(ctx, principal, id)
    call = await _participant(ctx, principal, id, participant_id, "/participant_id")
    return Data[ParticipantOut](data=participant_out(ctx.control.participant(id, call)))


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
async def join(id: str, params: JoinParams, ctx: Ctx, principal: Principal) -> Data[CommandResult]:
    refuse_unsupported(params, ("end_conference_on_exit", "soft_end_conference_on_exit"))
    _live(ctx, principal, id)
    call = await resolve_call(
        ctx, principal.account_id, params.call_control_id, pointer="/call_control_id"
    )
    if call.seen(params.command_id):
        return ok()
    state = check_client_state(params.client_state)
    hold = await audio_for(
        ctx,
        principal.account_id,
        audio_url=params.hold_audio_url,
        media_name=params.hold_media_name,
        loops=0,
        required=False,
    )
    whisper = await _participants(
        ctx, principal, id, params.whisper_call_control_ids, pointer="/whisper_call_control_ids"
    )
    if params.supervisor_role == "whisper" and not whisper:
        raise invalid(
            "supervisor_role 'whisper' needs whisper_call_control_ids (who hears the whisper)",
            pointer="/whisper_call_control_ids",
        )
    await protocol_errors(
        ctx.control.join(
            id,
            call,
            client_state=state,
            muted=params.mute,
            held=params.hold,
            hold_audio=hold,
            role=params.supervisor_role,
            whisper_to=whisper,
        ),
        "/call_control_id",
    )
    call.remember(params.command_id)
    return ok()


class LeaveParams(Params):
    call_control_id: str


@router.post(
    "/conferences/{id}/actions/leave",
    summary="Take a call out of a conference (it stays up, parked)",
    response_model=Data[CommandResult],
)
async def leave(
    id: str, params: LeaveParams, ctx: Ctx, principal: Principal
) -> Data[CommandResult]:
    _live(ctx, principal, id)
    call = await _participant(ctx, principal, id, params.call_control_id, "/call_control_id")
    await protocol_errors(ctx.control.leave(id, call))
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
async def hold(id: str, params: HoldParams, ctx: Ctx, principal: Principal) -> Data[CommandResult]:
    _live(ctx, principal, id)
    calls = await _participants(ctx, principal, id, params.call_control_ids)
    audio = await audio_for(
        ctx,
        principal.account_id,
        audio_url=params.audio_url,
        media_name=params.media_name,
        loops=0,
        required=False,
    )
    pointer = "/media_name" if params.media_name else "/audio_url"
    await protocol_errors(ctx.control.hold(id, calls, audio), pointer)
    return ok()


class UnholdParams(Params):
    call_control_ids: list[str] = Field(min_length=1)


@router.post(
    "/conferences/{id}/actions/unhold",
    summary="Take participants off hold",
    response_model=Data[CommandResult],
)
async def unhold(
    id: str, params: UnholdParams, ctx: Ctx, principal: Principal
) -> Data[CommandResult]:
    _live(ctx, principal, id)
    calls = await _participants(ctx, principal, id, params.call_control_ids)
    await protocol_errors(ctx.control.unhold(id, calls))
    return ok()


async def _mute(
    ctx: ApiContext, principal: Principal, id: str, ids: list[str] | None, muted: bool
) -> None:
    _live(ctx, principal, id)
    calls = await _participants(ctx, principal, id, ids)
    await protocol_errors(ctx.control.mute(id, calls, muted))


@router.post(
    "/conferences/{id}/actions/mute",
    summary="Mute participants (everyone when call_control_ids is left out)",
    response_model=Data[CommandResult],
)
async def mute(
    id: str, params: ParticipantsParams, ctx: Ctx, principal: Principal
) -> Data[CommandResult]:
    await _mute(ctx, principal, id, params.call_control_ids, True)
    return ok()


@router.post(
    "/conferences/{id}/actions/unmute",
    summary="Unmute participants (everyone when call_control_ids is left out)",
    response_model=Data[CommandResult],
)
async def unmute(
    id: str, params: ParticipantsParams, ctx: Ctx, principal: Principal
) -> Data[CommandResult]:
    await _mute(ctx, principal, id, params.call_control_ids, False)
    return ok()


async def _play(
    ctx: ApiContext,
    principal: Principal,
    id: str,
    audio: AudioSpec,
    ids: list[str] | None,
    pointer: str,
) -> None:
    calls = await _participants(ctx, principal, id, ids)
    await protocol_errors(ctx.control.play_to_conference(id, audio, calls), pointer)


class PlayParams(ParticipantsParams):
    audio_url: str | None = None
    media_name: str | None = None
    loop: int | str | None = None


@router.post(
    "/conferences/{id}/actions/play",
    summary="Play audio to all or some participants",
    response_model=Data[CommandResult],
)
async def play(id: str, params: PlayParams, ctx: Ctx, principal: Principal) -> Data[CommandResult]:
    _live(ctx, principal, id)
    audio = await audio_for(
        ctx,
        principal.account_id,
        audio_url=params.audio_url,
        media_name=params.media_name,
        loops=loop_count(params.loop),
    )
    assert audio is not None
    pointer = "/media_name" if params.media_name else "/audio_url"
    await _play(ctx, principal, id, audio, params.call_control_ids, pointer)
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
async def speak(
    id: str, params: SpeakParams, ctx: Ctx, principal: Principal
) -> Data[CommandResult]:
    _live(ctx, principal, id)
    audio = speech(params.payload, params.voice, params.language, params.payload_type)
    await _play(ctx, principal, id, audio, params.call_control_ids, "/payload")
    return ok()


@router.post(
    "/conferences/{id}/actions/stop",
    summary="Stop audio playing to all or some participants",
    response_model=Data[CommandResult],
)
async def stop(
    id: str, params: ParticipantsParams, ctx: Ctx, principal: Principal
) -> Data[CommandResult]:
    _live(ctx, principal, id)
    calls = await _participants(ctx, principal, id, params.call_control_ids)
    await protocol_errors(ctx.control.stop_conference_audio(id, calls))
    return ok()


class RecordStartParams(Params):
    format: Literal["wav", "mp3"]
    channels: Literal["single", "dual"] = "single"
    play_beep: bool = False


class RecordingParams(Params):
    recording_id: str | None = None


@router.post(
    "/conferences/{id}/actions/record_start",
    summary="Start recording the conference's mix",
    response_model=Data[CommandResult],
)
async def record_start(
    id: str, params: RecordStartParams, ctx: Ctx, principal: Principal
) -> Data[CommandResult]:
    refuse_unsupported(params, ("trim",))
    if params.channels != "single":
        raise invalid("channels 'dual' is not supported: use 'single'", pointer="/channels")
    if params.play_beep:
        raise invalid("play_beep is not supported by callbridge; leave it out", "/play_beep")
    _live(ctx, principal, id)
    await protocol_errors(ctx.control.record_conference(id, "start", params.format))
    return ok()


async def _record(
    ctx: ApiContext, principal: Principal, id: str, params: RecordingParams, action: RecordAction
) -> None:
    _live(ctx, principal, id)
    running = ctx.control.conference_recording_id(id)
    if params.recording_id is not None and running not in (None, params.recording_id):
        raise invalid(
            f"conference {id} is recording {running}, not {params.recording_id}",
            pointer="/recording_id",
        )
    await protocol_errors(ctx.control.record_conference(id, action))


@router.post(
    "/conferences/{id}/actions/record_pause",
    summary="Pause recording the conference",
    response_model=Data[CommandResult],
)
async def record_pause(
    id: str, params: RecordingParams, ctx: Ctx, principal: Principal
) -> Data[CommandResult]:
    await _record(ctx, principal, id, params, "pause")
    return ok()


@router.post(
    "/conferences/{id}/actions/record_resume",
    summary="Resume recording the conference",
    response_model=Data[CommandResult],
)
async def record_resume(
    id: str, params: RecordingParams, ctx: Ctx, principal: Principal
) -> Data[CommandResult]:
    await _record(ctx, principal, id, params, "resume")
    return ok()


@router.post(
    "/conferences/{id}/actions/record_stop",
    summary="Stop recording the conference (conference.recording.saved follows)",
    response_model=Data[CommandResult],
)
async def record_stop(
    id: str, params: RecordingParams, ctx: Ctx, principal: Principal
) -> Data[CommandResult]:
    await _record(ctx, principal, id, params, "stop")
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
async def update(
    id: str, params: UpdateParams, ctx: Ctx, principal: Principal
) -> Data[CommandResult]:
    _live(ctx, principal, id)
    call = await _participant(ctx, principal, id, params.call_control_id, "/call_control_id")
    whisper = None
    if params.whisper_call_control_ids is not None:
        whisper = await _participants(
            ctx, principal, id, params.whisper_call_control_ids, pointer="/whisper_call_control_ids"
        )
    if params.supervisor_role == "whisper" and not (whisper or ctx.control.whispers(id, call)):
        raise invalid(
            "supervisor_role 'whisper' needs whisper_call_control_ids (who hears the whisper)",
            pointer="/whisper_call_control_ids",
        )
    await protocol_errors(
        ctx.control.update_participant(id, call, params.supervisor_role, whisper),
        "/supervisor_role",
    )
    return ok()


@router.post(
    "/conferences/{id}/actions/end",
    summary="End the conference: every participant's call is hung up",
    response_model=Data[CommandResult],
)
async def end(id: str, params: Params, ctx: Ctx, principal: Principal) -> Data[CommandResult]:
    _live(ctx, principal, id)
    await protocol_errors(ctx.control.end_conference(id))
    return ok()
