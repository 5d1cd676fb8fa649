"""``/v2/calls``: dial, status, and the commands that connect and end calls (answer, reject,
hangup, bridge, transfer, enqueue, leave_queue, client_state_update).

A ``call_control_id`` is an application call's id (``POST /v2/calls`` returns it, webhooks
carry it) or any live softphone leg's ``call_id``: the commands work on both
(:mod:`callbridge.core.appcalls` says how; the endpoints reach it through
:class:`~callbridge.core.control.CallControl`). Every command answers
``{"data": {"result": "ok"}}`` once it has taken effect; what follows comes as webhooks. The
media commands (speak, playback, DTMF, gather, record) are in :mod:`callbridge.api.call_media`;
the rules every command shares in :mod:`callbridge.api.commands`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from callbridge.api.commands import (
    StateParams,
    command,
    find_call,
    protocol_errors,
    resolve_call,
    unknown_call,
)
from callbridge.api.context import ApiContext, Ctx, Principal
from callbridge.api.errors import forbidden, invalid
from callbridge.api.schemas import (
    CommandResult,
    Data,
    Params,
    check_client_state,
    iso,
    refuse_unsupported,
)
from callbridge.core.control import AppCall
from callbridge.store.records import validate_webhook_url

__all__ = ["router"]

router = APIRouter(tags=["Calls"])


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


async def _application(ctx: ApiContext, account_id: str, connection_id: str) -> Any:
    app = await ctx.store.get_application(connection_id, account_id)
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
    to: str | list[str] = Field(
        description="A user's extension, number or name; or an E.164 number (the account's "
        "outbound route) or sip:NUMBER@TRUNK-HOST[:PORT] to dial out through a SIP trunk."
    )
    from_: str = Field(alias="from", description="The caller id the callee's devices show.")
    from_display_name: str | None = None
    webhook_url: str | None = None
    timeout_secs: int = Field(30, ge=5, le=600, description="Ring this long, then give up.")
    client_state: str | None = None
    answering_machine_detection: str | None = None


@router.post("/calls", summary="Dial a call", response_model=Data[CallOut])
async def dial(params: DialParams, ctx: Ctx, principal: Principal) -> Data[CallOut]:
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
    app = await _application(ctx, principal.account_id, params.connection_id)
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
async def retrieve_call(call_control_id: str, ctx: Ctx, principal: Principal) -> Data[CallOut]:
    call = await find_call(ctx, principal.account_id, call_control_id)
    if call is None:
        raise unknown_call(call_control_id)
    return Data[CallOut](data=call_out(call))


# commands -------------------------------------------------------------------------------------
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
async def answer(
    call_control_id: str, params: AnswerParams, ctx: Ctx, principal: Principal
) -> Data[CommandResult]:
    refuse_unsupported(params, _ANSWER_UNSUPPORTED)
    url = _webhook_url(params.webhook_url)

    async def run(call: AppCall) -> None:
        await ctx.control.answer(call, webhook_url=url)

    return await command(ctx, principal.account_id, call_control_id, params, run)


@router.post(
    "/calls/{call_control_id}/actions/hangup",
    summary="Hang up a call",
    response_model=Data[CommandResult],
)
async def hangup(
    call_control_id: str, params: StateParams, ctx: Ctx, principal: Principal
) -> Data[CommandResult]:
    return await command(ctx, principal.account_id, call_control_id, params, ctx.control.hangup)


class RejectParams(StateParams):
    cause: Literal["CALL_REJECTED", "NOT_FOUND", "TEMPORARILY_UNAVAILABLE", "USER_BUSY"]


@router.post(
    "/calls/{call_control_id}/actions/reject",
    summary="Reject a call parked for the application",
    response_model=Data[CommandResult],
)
async def reject(
    call_control_id: str, params: RejectParams, ctx: Ctx, principal: Principal
) -> Data[CommandResult]:
    busy = params.cause == "USER_BUSY"
    return await command(
        ctx,
        principal.account_id,
        call_control_id,
        params,
        lambda call: ctx.control.reject(call, busy),
    )


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
async def bridge(
    call_control_id: str, params: BridgeParams, ctx: Ctx, principal: Principal
) -> Data[CommandResult]:
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
            await ctx.control.bridge_queue(
                call, queue, park_after_unbridge=park, account_id=principal.account_id
            )

        return await command(
            ctx, principal.account_id, call_control_id, params, run, pointer="/queue"
        )
    assert other_id is not None
    other = await resolve_call(ctx, principal.account_id, other_id, pointer="/call_control_id")
    return await command(
        ctx,
        principal.account_id,
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
async def transfer(
    call_control_id: str, params: TransferParams, ctx: Ctx, principal: Principal
) -> Data[CommandResult]:
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

    return await command(ctx, principal.account_id, call_control_id, params, run, pointer="/to")


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
async def enqueue(
    call_control_id: str, params: EnqueueParams, ctx: Ctx, principal: Principal
) -> Data[CommandResult]:
    async def run(call: AppCall) -> None:
        await ctx.control.enqueue(
            call,
            params.queue_name,
            max_size=params.max_size,
            max_wait_time_secs=params.max_wait_time_secs,
            account_id=principal.account_id,
        )

    return await command(
        ctx, principal.account_id, call_control_id, params, run, pointer="/queue_name"
    )


@router.post(
    "/calls/{call_control_id}/actions/leave_queue",
    summary="Take a call out of its queue",
    response_model=Data[CommandResult],
)
async def leave_queue(
    call_control_id: str, params: StateParams, ctx: Ctx, principal: Principal
) -> Data[CommandResult]:
    return await command(
        ctx, principal.account_id, call_control_id, params, ctx.control.leave_queue
    )


class ClientStateParams(Params):
    client_state: str


@router.post(
    "/calls/{call_control_id}/actions/client_state_update",
    summary="Change the client_state of a call's later webhooks",
    response_model=Data[CommandResult],
)
async def client_state_update(
    call_control_id: str, params: ClientStateParams, ctx: Ctx, principal: Principal
) -> Data[CommandResult]:
    async def run(call: AppCall) -> None:
        return None

    return await command(ctx, principal.account_id, call_control_id, params, run)
