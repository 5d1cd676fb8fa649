"""``/v2/calls``: dial, and the call commands (``/v2/calls/{call_control_id}/actions/...``).

A ``call_control_id`` is an application call's id (``POST /v2/calls`` returns it, webhooks
carry it) or any live softphone leg's ``call_id``: the commands work on both
(:mod:`callbridge.core.appcalls` says how; the endpoints reach it through
:class:`~callbridge.core.control.CallControl`). Every command answers ``{"data": {"result": "ok"}}``
once it has taken effect; what follows (playback ended, digits gathered, ...) comes as webhooks.

Shared rules: ``client_state`` (base64) given with a command goes with every later webhook of
the call; a ``command_id`` already used on the call makes the command a no-op that answers ok
(Telnyx's duplicate protection). An unknown call is 404; a call that has ended, or whose state
does not allow the command, is 422 with the reason.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from fastapi import APIRouter
from pydantic import BaseModel, Field

from callbridge.api.context import ApiContext, Ctx
from callbridge.api.errors import (
    ApiError,
    call_ended,
    forbidden,
    from_protocol_error,
    invalid,
    not_found,
    wrong_state,
)
from callbridge.api.schemas import (
    CommandResult,
    Data,
    Params,
    check_client_state,
    iso,
    ok,
    refuse_unsupported,
)
from callbridge.core.control import (
    DTMF_DIGITS,
    AppCall,
    CallHasEnded,
    ConferenceFull,
    TargetLegs,
    UnknownCall,
)
from callbridge.errors import ProtocolError
from callbridge.media.interface import AudioSpec
from callbridge.store.records import validate_webhook_url

__all__ = ["audio_for", "loop_count", "protocol_errors", "resolve_call", "router"]

router = APIRouter(tags=["Calls"])
T = TypeVar("T")


class CallOut(BaseModel):
    record_type: Literal["call"] = "call"
    call_control_id: str
    call_leg_id: str
    call_session_id: str
    is_alive: bool
    client_state: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    call_duration: int | None = None
    state: str = Field(description="callbridge: parked, dialing, ringing, answered or ended")


def call_out(call: AppCall, *, is_alive: bool | None = None) -> CallOut:
    end = call.ended_at
    duration = None
    if call.answered_at is not None:
        duration = int(((end or datetime.now(UTC)) - call.answered_at).total_seconds())
    return CallOut(
        call_control_id=call.id,
        call_leg_id=call.id,
        call_session_id=call.session_id,
        is_alive=(not call.ended) if is_alive is None else is_alive,
        client_state=call.client_state,
        start_time=iso(call.started_at),
        end_time=iso(end),
        call_duration=duration,
        state=call.state.value,
    )


# errors ---------------------------------------------------------------------------------------
def resolve_call(ctx: ApiContext, call_control_id: str, pointer: str | None = None) -> AppCall:
    """The call a path (or, with ``pointer``, a body field) names: 404 / 422 if none."""
    try:
        return ctx.control.call(call_control_id)
    except CallHasEnded as exc:
        if pointer is not None:
            raise invalid(exc.message, pointer=pointer) from None
        raise call_ended(call_control_id, exc.reason) from None
    except UnknownCall:
        if pointer is not None:
            raise invalid(f"no call {call_control_id!r}", pointer=pointer) from None
        raise not_found(
            f"no call with call_control_id {call_control_id!r}", "call_control_id"
        ) from None


async def protocol_errors(action: Awaitable[T], pointer: str | None = None) -> T:
    """Run a control-plane action; its refusals become API errors (``pointer``: the field
    the refusal is about, e.g. the audio of a playback)."""
    try:
        return await action
    except CallHasEnded as exc:
        raise call_ended(exc.call_control_id, exc.reason) from None
    except ConferenceFull as exc:  # the state of the conference in the path, not of a field
        raise wrong_state(exc.message) from None
    except ApiError:
        raise
    except ProtocolError as exc:
        raise from_protocol_error(exc, pointer) from None


async def _command(
    ctx: ApiContext,
    call_control_id: str,
    params: Params,
    run: Callable[[AppCall], Awaitable[Any]],
    pointer: str | None = None,
) -> Data[CommandResult]:
    call = resolve_call(ctx, call_control_id)
    if call.seen(params.command_id):
        return ok()
    state = check_client_state(getattr(params, "client_state", None))
    if state is not None:
        ctx.control.set_client_state(call, state)
    await protocol_errors(run(call), pointer)
    call.remember(params.command_id)
    return ok()


async def audio_for(
    ctx: ApiContext,
    *,
    audio_url: str | None,
    media_name: str | None,
    loops: int,
    required: bool = True,
) -> AudioSpec | None:
    """The sound an ``audio_url`` or a ``media_name`` (uploaded with /v2/media) names."""
    if audio_url and media_name:
        raise invalid("give audio_url or media_name, not both", pointer="/media_name")
    if media_name:
        media = await ctx.store.get_media(media_name)
        if media is None:
            raise invalid(
                f"no media named {media_name!r}: upload it with POST /v2/media first",
                pointer="/media_name",
            )
        return AudioSpec("file", media.path, loops=loops)
    if audio_url:
        if not audio_url.lower().startswith(("http://", "https://")):
            raise invalid("audio_url must be an http:// or https:// URL", pointer="/audio_url")
        return AudioSpec("url", audio_url, loops=loops)
    if required:
        raise invalid("give audio_url or media_name", pointer="/audio_url")
    return None


def loop_count(loop: int | str | None) -> int:
    """Telnyx's ``loop``: a count, or "infinity" (0 here: until stopped)."""
    if loop is None:
        return 1
    if loop == "infinity":
        return 0
    try:
        count = int(loop)
    except (TypeError, ValueError):
        raise invalid("loop must be a number of times or 'infinity'", pointer="/loop") from None
    if count < 1:
        raise invalid("loop must be 1 or more (or 'infinity')", pointer="/loop")
    return count


async def _application(ctx: ApiContext, connection_id: str) -> Any:
    app = await ctx.store.get_application(connection_id)
    if app is None:
        raise invalid(
            f"no call control application with id {connection_id!r} "
            "(connection_id is the application's id)",
            pointer="/connection_id",
        )
    if not app.active:
        raise forbidden(
            f"call control application {connection_id} is inactive: set active to true first",
            pointer="/connection_id",
        )
    return app


def _webhook_url(url: str | None, pointer: str = "/webhook_url") -> str | None:
    if url is None:
        return None
    try:
        return validate_webhook_url(url)
    except ValueError as exc:
        raise invalid(str(exc), pointer=pointer) from None


# dial -----------------------------------------------------------------------------------------
_DIAL_UNSUPPORTED = (
    "record",
    "link_to",
    "bridge_intent",
    "bridge_on_answer",
    "conference_config",
    "stream_url",
    "transcription",
    "audio_url",
    "media_name",
    "send_digits_on_answer",
    "supervise_call_control_id",
    "enable_dialogflow",
    "assistant",
)


class DialParams(Params):
    connection_id: str = Field(description="The call control application's id.")
    to: str | list[str] = Field(description="A user's extension, number or name.")
    from_: str = Field(alias="from", description="The caller id the callee's devices show.")
    from_display_name: str | None = None
    webhook_url: str | None = None
    timeout_secs: int = Field(30, ge=5, le=600, description="Ring this long, then give up.")
    client_state: str | None = None
    answering_machine_detection: str | None = None


@router.post("/calls", summary="Dial a call", response_model=Data[CallOut])
async def dial(params: DialParams, ctx: Ctx) -> Data[CallOut]:
    refuse_unsupported(params, _DIAL_UNSUPPORTED)
    if params.answering_machine_detection not in (None, "disabled"):
        raise invalid(
            "answering_machine_detection is not supported by callbridge (use 'disabled')",
            pointer="/answering_machine_detection",
        )
    to = params.to
    if isinstance(to, list):
        if len(to) != 1:
            raise invalid("to: give one destination (simultaneous ring is not supported)", "/to")
        to = to[0]
    if not to.strip():
        raise invalid("to must name a user's extension, number or name", pointer="/to")
    app = await _application(ctx, params.connection_id)
    call = await protocol_errors(
        ctx.control.dial(
            app,
            to,
            params.from_,
            from_display_name=params.from_display_name or "",
            webhook_url=_webhook_url(params.webhook_url),
            timeout_secs=float(params.timeout_secs),
            client_state=check_client_state(params.client_state),
        ),
        pointer="/to",
    )
    return Data[CallOut](data=call_out(call, is_alive=False))


@router.get(
    "/calls/{call_control_id}", summary="Retrieve a call's status", response_model=Data[CallOut]
)
async def retrieve_call(call_control_id: str, ctx: Ctx) -> Data[CallOut]:
    call = ctx.control.find_call(call_control_id)
    if call is None:
        raise not_found(f"no call with call_control_id {call_control_id!r}", "call_control_id")
    return Data[CallOut](data=call_out(call))


# commands -------------------------------------------------------------------------------------
class StateParams(Params):
    client_state: str | None = None


class AnswerParams(StateParams):
    webhook_url: str | None = None


_ANSWER_UNSUPPORTED = (
    "record",
    "stream_url",
    "transcription",
    "assistant",
    "send_silence_when_idle",
)


@router.post(
    "/calls/{call_control_id}/actions/answer",
    summary="Answer a call parked for the application",
    response_model=Data[CommandResult],
)
async def answer(call_control_id: str, params: AnswerParams, ctx: Ctx) -> Data[CommandResult]:
    refuse_unsupported(params, _ANSWER_UNSUPPORTED)
    url = _webhook_url(params.webhook_url)

    async def run(call: AppCall) -> None:
        await ctx.control.answer(call, webhook_url=url)

    return await _command(ctx, call_control_id, params, run)


@router.post(
    "/calls/{call_control_id}/actions/hangup",
    summary="Hang up a call",
    response_model=Data[CommandResult],
)
async def hangup(call_control_id: str, params: StateParams, ctx: Ctx) -> Data[CommandResult]:
    return await _command(ctx, call_control_id, params, ctx.control.hangup)


class RejectParams(StateParams):
    cause: Literal["CALL_REJECTED", "NOT_FOUND", "TEMPORARILY_UNAVAILABLE", "USER_BUSY"]


@router.post(
    "/calls/{call_control_id}/actions/reject",
    summary="Reject a call parked for the application",
    response_model=Data[CommandResult],
)
async def reject(call_control_id: str, params: RejectParams, ctx: Ctx) -> Data[CommandResult]:
    busy = params.cause == "USER_BUSY"
    return await _command(ctx, call_control_id, params, lambda call: ctx.control.reject(call, busy))


class BridgeParams(StateParams):
    call_control_id: str | None = Field(
        None, description="The call to bridge with (or leave it empty and give queue)."
    )
    queue: str | None = Field(None, description="Bridge with the longest-waiting call here.")
    park_after_unbridge: str | None = Field(
        None, description="'self': stay up when the other call ends (default: hang up)."
    )


_BRIDGE_UNSUPPORTED = ("record", "hold_after_unbridge", "video_room_id")


@router.post(
    "/calls/{call_control_id}/actions/bridge",
    summary="Bridge two calls (or a call with the head of a queue)",
    response_model=Data[CommandResult],
)
async def bridge(call_control_id: str, params: BridgeParams, ctx: Ctx) -> Data[CommandResult]:
    refuse_unsupported(params, _BRIDGE_UNSUPPORTED)
    if params.park_after_unbridge not in (None, "", "self"):
        raise invalid(
            "park_after_unbridge: use 'self' (the call stays up when the other ends)",
            pointer="/park_after_unbridge",
        )
    park = params.park_after_unbridge == "self"
    other_id = params.call_control_id or None
    if params.queue and other_id:
        raise invalid(
            "give call_control_id or queue, not both (leave call_control_id empty)",
            pointer="/queue",
        )
    if not params.queue and not other_id:
        raise invalid("give the call_control_id to bridge with, or a queue", "/call_control_id")
    queue = params.queue
    if queue is not None:

        async def run(call: AppCall) -> None:
            await ctx.control.bridge_queue(call, queue, park_after_unbridge=park)

        return await _command(ctx, call_control_id, params, run, pointer="/queue")
    assert other_id is not None
    other = resolve_call(ctx, other_id, pointer="/call_control_id")
    return await _command(
        ctx,
        call_control_id,
        params,
        lambda call: ctx.control.bridge(call, other, park_after_unbridge=park),
        pointer="/call_control_id",
    )


class TransferParams(StateParams):
    to: str
    from_: str | None = Field(None, alias="from")
    from_display_name: str | None = None
    webhook_url: str | None = None
    timeout_secs: int = Field(30, ge=5, le=600)
    target_leg_client_state: str | None = None


_TRANSFER_UNSUPPORTED = ("audio_url", "media_name", "record")


@router.post(
    "/calls/{call_control_id}/actions/transfer",
    summary="Transfer a call: dial a destination and bridge when it answers",
    response_model=Data[CommandResult],
)
async def transfer(call_control_id: str, params: TransferParams, ctx: Ctx) -> Data[CommandResult]:
    refuse_unsupported(params, _TRANSFER_UNSUPPORTED)
    url = _webhook_url(params.webhook_url)
    target_state = check_client_state(params.target_leg_client_state, "/target_leg_client_state")

    async def run(call: AppCall) -> None:
        await ctx.control.transfer(
            call,
            params.to,
            from_=params.from_,
            from_display_name=params.from_display_name or "",
            webhook_url=url,
            timeout_secs=float(params.timeout_secs),
            target_client_state=target_state,
        )

    return await _command(ctx, call_control_id, params, run, pointer="/to")


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
async def speak(call_control_id: str, params: SpeakParams, ctx: Ctx) -> Data[CommandResult]:
    if params.payload_type == "ssml":
        raise invalid("payload_type 'ssml' is not supported: send plain text", "/payload_type")
    if params.voice not in ("female", "male"):
        raise invalid(f"voice {params.voice!r} is not available: use 'female' or 'male'", "/voice")
    audio = AudioSpec("tts", params.payload, voice=params.voice, language=params.language)

    async def run(call: AppCall) -> None:
        await ctx.control.play(call, audio, kind="speak", target_legs=params.target_legs)

    return await _command(ctx, call_control_id, params, run, pointer="/payload")


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
    call_control_id: str, params: PlaybackParams, ctx: Ctx
) -> Data[CommandResult]:
    refuse_unsupported(params, ("playback_content",))
    if params.overlay:
        raise invalid(
            "overlay is not supported: the audio replaces what the call hears", "/overlay"
        )
    audio = await audio_for(
        ctx, audio_url=params.audio_url, media_name=params.media_name, loops=loop_count(params.loop)
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
    return await _command(ctx, call_control_id, params, run, pointer=pointer)


class StopParams(StateParams):
    stop: str = "all"


@router.post(
    "/calls/{call_control_id}/actions/playback_stop",
    summary="Stop audio playing to a call",
    response_model=Data[CommandResult],
)
async def playback_stop(call_control_id: str, params: StopParams, ctx: Ctx) -> Data[CommandResult]:
    return await _command(ctx, call_control_id, params, ctx.control.stop_playback)


class DtmfParams(StateParams):
    digits: str
    duration_millis: int = Field(250, ge=100, le=500)


@router.post(
    "/calls/{call_control_id}/actions/send_dtmf",
    summary="Send DTMF digits to a call",
    response_model=Data[CommandResult],
)
async def send_dtmf(call_control_id: str, params: DtmfParams, ctx: Ctx) -> Data[CommandResult]:
    if not params.digits or set(params.digits) - DTMF_DIGITS:
        raise invalid(
            f"digits {params.digits!r}: use 0-9, A-D, * and #, w (0.5 s pause) or W (1 s)",
            pointer="/digits",
        )
    return await _command(
        ctx,
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
async def gather(call_control_id: str, params: GatherParams, ctx: Ctx) -> Data[CommandResult]:
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

    return await _command(ctx, call_control_id, params, run)


@router.post(
    "/calls/{call_control_id}/actions/gather_stop",
    summary="Stop gathering digits",
    response_model=Data[CommandResult],
)
async def gather_stop(call_control_id: str, params: StateParams, ctx: Ctx) -> Data[CommandResult]:
    async def run(call: AppCall) -> None:
        ctx.control.stop_gather(call)

    return await _command(ctx, call_control_id, params, run)


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
async def record_start(call_control_id: str, params: RecordParams, ctx: Ctx) -> Data[CommandResult]:
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

    return await _command(ctx, call_control_id, params, run)


class RecordingIdParams(StateParams):
    recording_id: str | None = None


@router.post(
    "/calls/{call_control_id}/actions/record_stop",
    summary="Stop recording a call",
    response_model=Data[CommandResult],
)
async def record_stop(
    call_control_id: str, params: RecordingIdParams, ctx: Ctx
) -> Data[CommandResult]:
    return await _command(
        ctx,
        call_control_id,
        params,
        lambda call: ctx.control.record_stop(call, params.recording_id),
    )


@router.post(
    "/calls/{call_control_id}/actions/record_pause",
    summary="Pause recording a call",
    response_model=Data[CommandResult],
)
async def record_pause(
    call_control_id: str, params: RecordingIdParams, ctx: Ctx
) -> Data[CommandResult]:
    return await _command(
        ctx,
        call_control_id,
        params,
        lambda call: ctx.control.record_pause(call, True, params.recording_id),
    )


@router.post(
    "/calls/{call_control_id}/actions/record_resume",
    summary="Resume recording a call",
    response_model=Data[CommandResult],
)
async def record_resume(
    call_control_id: str, params: RecordingIdParams, ctx: Ctx
) -> Data[CommandResult]:
    return await _command(
        ctx,
        call_control_id,
        params,
        lambda call: ctx.control.record_pause(call, False, params.recording_id),
    )


class EnqueueParams(StateParams):
    queue_name: str = Field(min_length=1, max_length=255)
    max_size: int | None = Field(None, ge=1, le=5000)
    max_wait_time_secs: int | None = Field(None, ge=1)
    keep_after_hangup: bool = False


@router.post(
    "/calls/{call_control_id}/actions/enqueue",
    summary="Put a call in a queue",
    response_model=Data[CommandResult],
)
async def enqueue(call_control_id: str, params: EnqueueParams, ctx: Ctx) -> Data[CommandResult]:
    async def run(call: AppCall) -> None:
        await ctx.control.enqueue(
            call,
            params.queue_name,
            max_size=params.max_size,
            max_wait_time_secs=params.max_wait_time_secs,
        )

    return await _command(ctx, call_control_id, params, run, pointer="/queue_name")


@router.post(
    "/calls/{call_control_id}/actions/leave_queue",
    summary="Take a call out of its queue",
    response_model=Data[CommandResult],
)
async def leave_queue(call_control_id: str, params: StateParams, ctx: Ctx) -> Data[CommandResult]:
    return await _command(ctx, call_control_id, params, ctx.control.leave_queue)


class ClientStateParams(Params):
    client_state: str


@router.post(
    "/calls/{call_control_id}/actions/client_state_update",
    summary="Change the client_state of a call's later webhooks",
    response_model=Data[CommandResult],
)
async def client_state_update(
    call_control_id: str, params: ClientStateParams, ctx: Ctx
) -> Data[CommandResult]:
    async def run(call: AppCall) -> None:
        return None

    return await _command(ctx, call_control_id, params, run)
