"""``/v2/calls/{call_control_id}/actions/...``: what an application plays to, sends to,
gathers from and records of a call (speak, playback, send_dtmf, gather, record).

Each answers ``{"data": {"result": "ok"}}`` once it has started; what follows (playback ended,
digits gathered, recording saved) comes as webhooks. The rules every command shares are in
:mod:`callbridge.api.commands`.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import Field

from callbridge.api.commands import StateParams, audio_for, command, loop_count, speech
from callbridge.api.context import ApiContext, Ctx, Principal
from callbridge.api.errors import invalid
from callbridge.api.schemas import CommandResult, Data, refuse_unsupported
from callbridge.core.control import DTMF_DIGITS, AppCall, TargetLegs

__all__ = ["router"]

router = APIRouter(tags=["Calls"])


class SpeakParams(StateParams):
    payload: str = Field(description="The text to speak.")
    voice: str = Field(description="'female' or 'male'.")
    language: str = "en-US"
    payload_type: Literal["text", "ssml"] = "text"
    target_legs: TargetLegs = "self"


@router.post(
    "/calls/{call_control_id}/actions/speak",
    summary="Speak text to a call (text to speech)",
    response_model=Data[CommandResult],
)
async def speak(
    call_control_id: str, params: SpeakParams, ctx: Ctx, principal: Principal
) -> Data[CommandResult]:
    audio = speech(params.payload, params.voice, params.language, params.payload_type)

    async def run(call: AppCall) -> None:
        await ctx.control.play(call, audio, kind="speak", target_legs=params.target_legs)

    return await command(
        ctx, principal.account_id, call_control_id, params, run, pointer="/payload"
    )


class PlaybackParams(StateParams):
    audio_url: str | None = None
    media_name: str | None = None
    loop: int | str | None = None
    overlay: bool = False
    target_legs: TargetLegs = "self"


@router.post(
    "/calls/{call_control_id}/actions/playback_start",
    summary="Play an audio file to a call",
    response_model=Data[CommandResult],
)
async def playback_start(
    call_control_id: str, params: PlaybackParams, ctx: Ctx, principal: Principal
) -> Data[CommandResult]:
    refuse_unsupported(params, ("playback_content",))
    if params.overlay:
        raise invalid(
            "overlay is not supported: the audio replaces what the call hears", "/overlay"
        )
    audio = await audio_for(
        ctx,
        principal.account_id,
        audio_url=params.audio_url,
        media_name=params.media_name,
        loops=loop_count(params.loop),
    )
    assert audio is not None

    async def run(call: AppCall) -> None:
        await ctx.control.play(
            call,
            audio,
            kind="playback",
            target_legs=params.target_legs,
            media_url=params.audio_url,
            media_name=params.media_name,
        )

    pointer = "/media_name" if params.media_name else "/audio_url"
    return await command(ctx, principal.account_id, call_control_id, params, run, pointer=pointer)


class StopParams(StateParams):
    stop: str = "all"


@router.post(
    "/calls/{call_control_id}/actions/playback_stop",
    summary="Stop audio playing to a call",
    response_model=Data[CommandResult],
)
async def playback_stop(
    call_control_id: str, params: StopParams, ctx: Ctx, principal: Principal
) -> Data[CommandResult]:
    return await command(
        ctx, principal.account_id, call_control_id, params, ctx.control.stop_playback
    )


class DtmfParams(StateParams):
    digits: str
    duration_millis: int = Field(250, ge=100, le=500)


@router.post(
    "/calls/{call_control_id}/actions/send_dtmf",
    summary="Send DTMF digits to a call",
    response_model=Data[CommandResult],
)
async def send_dtmf(
    call_control_id: str, params: DtmfParams, ctx: Ctx, principal: Principal
) -> Data[CommandResult]:
    if not params.digits or set(params.digits) - DTMF_DIGITS:
        raise invalid(
            f"digits {params.digits!r}: use 0-9, A-D, * and #, w (0.5 s pause) or W (1 s)",
            pointer="/digits",
        )
    return await command(
        ctx,
        principal.account_id,
        call_control_id,
        params,
        lambda call: ctx.control.send_dtmf(call, params.digits, params.duration_millis),
    )


class GatherParams(StateParams):
    minimum_digits: int = Field(1, ge=1, le=128)
    maximum_digits: int = Field(128, ge=1, le=128)
    timeout_millis: int = Field(60000, ge=1)
    initial_timeout_millis: int = Field(5000, ge=1)
    inter_digit_timeout_millis: int = Field(5000, ge=1)
    terminating_digit: str = "#"
    valid_digits: str = "0123456789#*"
    gather_id: str | None = None


@router.post(
    "/calls/{call_control_id}/actions/gather",
    summary="Gather DTMF digits",
    response_model=Data[CommandResult],
)
async def gather(
    call_control_id: str, params: GatherParams, ctx: Ctx, principal: Principal
) -> Data[CommandResult]:
    if params.minimum_digits > params.maximum_digits:
        raise invalid("minimum_digits is more than maximum_digits", pointer="/minimum_digits")
    if len(params.terminating_digit) > 1 or set(params.terminating_digit) - DTMF_DIGITS:
        raise invalid("terminating_digit must be one DTMF digit", pointer="/terminating_digit")
    if set(params.valid_digits) - DTMF_DIGITS:
        raise invalid("valid_digits may hold 0-9, A-D, * and #", pointer="/valid_digits")

    async def run(call: AppCall) -> None:
        ctx.control.gather(
            call,
            minimum=params.minimum_digits,
            maximum=params.maximum_digits,
            terminating=params.terminating_digit,
            valid=params.valid_digits,
            timeout=params.timeout_millis / 1000,
            initial_timeout=params.initial_timeout_millis / 1000,
            inter_digit_timeout=params.inter_digit_timeout_millis / 1000,
            gather_id=params.gather_id,
        )

    return await command(ctx, principal.account_id, call_control_id, params, run)


@router.post(
    "/calls/{call_control_id}/actions/gather_stop",
    summary="Stop gathering digits",
    response_model=Data[CommandResult],
)
async def gather_stop(
    call_control_id: str, params: StateParams, ctx: Ctx, principal: Principal
) -> Data[CommandResult]:
    async def run(call: AppCall) -> None:
        ctx.control.stop_gather(call)

    return await command(ctx, principal.account_id, call_control_id, params, run)


class RecordParams(StateParams):
    format: Literal["wav", "mp3"]
    channels: Literal["single", "dual"]
    play_beep: bool = False
    max_length: int = 0
    timeout_secs: int = 0
    recording_track: Literal["both", "inbound", "outbound"] = "both"


@router.post(
    "/calls/{call_control_id}/actions/record_start",
    summary="Start recording a call",
    response_model=Data[CommandResult],
)
async def record_start(
    call_control_id: str, params: RecordParams, ctx: Ctx, principal: Principal
) -> Data[CommandResult]:
    refuse_unsupported(params, ("transcription", "trim"))
    if params.channels != "single":
        raise invalid("channels 'dual' is not supported: use 'single'", pointer="/channels")
    if params.recording_track != "both":
        raise invalid("recording_track: only 'both' is supported", pointer="/recording_track")
    for name in ("play_beep", "max_length", "timeout_secs"):
        if getattr(params, name):
            raise invalid(f"{name} is not supported by callbridge; leave it out", f"/{name}")

    async def run(call: AppCall) -> None:
        await ctx.control.record_start(call, params.format)

    return await command(ctx, principal.account_id, call_control_id, params, run)


class RecordingIdParams(StateParams):
    recording_id: str | None = None


@router.post(
    "/calls/{call_control_id}/actions/record_stop",
    summary="Stop recording a call",
    response_model=Data[CommandResult],
)
async def record_stop(
    call_control_id: str, params: RecordingIdParams, ctx: Ctx, principal: Principal
) -> Data[CommandResult]:
    return await command(
        ctx,
        principal.account_id,
        call_control_id,
        params,
        lambda call: ctx.control.record_stop(call, params.recording_id),
    )


async def _pause(
    ctx: ApiContext,
    principal: Principal,
    call_control_id: str,
    params: RecordingIdParams,
    paused: bool,
) -> Data[CommandResult]:
    return await command(
        ctx,
        principal.account_id,
        call_control_id,
        params,
        lambda call: ctx.control.record_pause(call, paused, params.recording_id),
    )


@router.post(
    "/calls/{call_control_id}/actions/record_pause",
    summary="Pause recording a call",
    response_model=Data[CommandResult],
)
async def record_pause(
    call_control_id: str, params: RecordingIdParams, ctx: Ctx, principal: Principal
) -> Data[CommandResult]:
    return await _pause(ctx, principal, call_control_id, params, True)


@router.post(
    "/calls/{call_control_id}/actions/record_resume",
    summary="Resume recording a call",
    response_model=Data[CommandResult],
)
async def record_resume(
    call_control_id: str, params: RecordingIdParams, ctx: Ctx, principal: Principal
) -> Data[CommandResult]:
    return await _pause(ctx, principal, call_control_id, params, False)
