"""``/v2/queues``: call queues and the calls waiting in them (longest-waiting first).

A queue is made by the first ``enqueue`` that names it (or by ``POST /v2/queues``); calls wait
in it hearing hold music until ``bridge`` with ``queue`` takes the longest-waiting one, the
call leaves (``leave_queue``, ``DELETE /v2/queues/{name}/calls/{id}``), hangs up, or waits
longer than its ``max_wait_time_secs``.

Queues belong to an account (the API key's; a queue made by ``enqueue``, to the call's): names
are unique within an account, and another account's queue is unknown (404), as one that does
not exist.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from callbridge.api.commands import protocol_errors, resolve_call
from callbridge.api.context import ApiContext, Ctx, Principal
from callbridge.api.errors import invalid, not_found, wrong_state
from callbridge.api.pagination import PageQuery, slice_page
from callbridge.api.schemas import Data, ListOf, Params, iso
from callbridge.core.control import Queue, QueueEntry
from callbridge.errors import ProtocolError

__all__ = ["router"]

router = APIRouter(tags=["Queues"])


class QueueOut(BaseModel):
    record_type: Literal["queue"] = "queue"
    id: str
    name: str
    current_size: int
    max_size: int
    average_wait_time_secs: int
    created_at: str
    updated_at: str


class QueueCallOut(BaseModel):
    model_config = {"populate_by_name": True}

    record_type: Literal["queue_call"] = "queue_call"
    call_control_id: str
    call_leg_id: str
    call_session_id: str
    connection_id: str
    from_: str = Field(alias="from")
    to: str
    queue_id: str
    queue_position: int
    enqueued_at: str
    wait_time_secs: int
    is_alive: bool = True


def _queue_out(queue: Queue) -> QueueOut:
    return QueueOut(
        id=queue.id,
        name=queue.name,
        current_size=len(queue.entries),
        max_size=queue.max_size,
        average_wait_time_secs=queue.average_wait_time_secs,
        created_at=iso(queue.created_at) or "",
        updated_at=iso(queue.updated_at) or "",
    )


def _queue_call_out(entry: QueueEntry, position: int) -> QueueCallOut:
    call = entry.call
    return QueueCallOut.model_validate(
        {
            "call_control_id": call.id,
            "call_leg_id": call.id,
            "call_session_id": call.session_id,
            "connection_id": call.connection_id or "",
            "from": call.from_,
            "to": call.to,
            "queue_id": entry.queue.id,
            "queue_position": position,
            "enqueued_at": iso(entry.enqueued_at) or "",
            "wait_time_secs": entry.wait_secs,
        }
    )


def _queue(ctx: ApiContext, principal: Principal, name: str) -> Queue:
    queue = ctx.control.queue(name, account_id=principal.account_id)
    if queue is None:
        raise not_found(f"no queue named {name!r}", "queue_name")
    return queue


class CreateParams(Params):
    queue_name: str = Field(min_length=1, max_length=255)
    max_size: int | None = Field(None, ge=1, le=5000)


@router.post("/queues", summary="Create a queue", response_model=Data[QueueOut])
async def create_queue(params: CreateParams, ctx: Ctx, principal: Principal) -> Data[QueueOut]:
    account = principal.account_id
    if ctx.control.queue(params.queue_name, account_id=account) is not None:
        raise invalid(f"queue {params.queue_name!r} exists already", pointer="/queue_name")
    queue = ctx.control.create_queue(params.queue_name, params.max_size, account_id=account)
    return Data[QueueOut](data=_queue_out(queue))


@router.get("/queues", summary="List queues", response_model=ListOf[QueueOut])
async def list_queues(ctx: Ctx, principal: Principal, page: PageQuery) -> ListOf[QueueOut]:
    queues = [_queue_out(q) for q in ctx.control.queues(account_id=principal.account_id)]
    items, meta = slice_page(queues, page)
    return ListOf[QueueOut](data=items, meta=meta)


@router.get("/queues/{queue_name}", summary="Retrieve a queue", response_model=Data[QueueOut])
async def retrieve_queue(queue_name: str, ctx: Ctx, principal: Principal) -> Data[QueueOut]:
    return Data[QueueOut](data=_queue_out(_queue(ctx, principal, queue_name)))


class UpdateParams(Params):
    max_size: int = Field(ge=1, le=5000)


@router.post(
    "/queues/{queue_name}", summary="Change a queue's max_size", response_model=Data[QueueOut]
)
async def update_queue(
    queue_name: str, params: UpdateParams, ctx: Ctx, principal: Principal
) -> Data[QueueOut]:
    queue = _queue(ctx, principal, queue_name)
    try:
        ctx.control.resize_queue(queue, params.max_size)
    except ProtocolError as exc:
        raise invalid(exc.message, pointer="/max_size") from None
    return Data[QueueOut](data=_queue_out(queue))


@router.delete("/queues/{queue_name}", summary="Delete an empty queue", status_code=204)
async def delete_queue(queue_name: str, ctx: Ctx, principal: Principal) -> Response:
    _queue(ctx, principal, queue_name)
    try:
        ctx.control.delete_queue(queue_name, account_id=principal.account_id)
    except ProtocolError as exc:
        raise wrong_state(exc.message) from None
    return Response(status_code=204)


@router.get(
    "/queues/{queue_name}/calls",
    summary="List the calls waiting in a queue, longest-waiting first",
    response_model=ListOf[QueueCallOut],
)
async def list_queue_calls(
    queue_name: str, ctx: Ctx, principal: Principal, page: PageQuery
) -> ListOf[QueueCallOut]:
    queue = _queue(ctx, principal, queue_name)
    calls = [_queue_call_out(e, i) for i, e in enumerate(queue.entries, 1)]
    items, meta = slice_page(calls, page)
    return ListOf[QueueCallOut](data=items, meta=meta)


def _entry(
    ctx: ApiContext, principal: Principal, queue_name: str, call_control_id: str
) -> tuple[QueueEntry, int]:
    found = _queue(ctx, principal, queue_name).entry(call_control_id)
    if found is not None:
        return found
    raise not_found(
        f"call {call_control_id} is not waiting in queue {queue_name!r}", "call_control_id"
    )


@router.get(
    "/queues/{queue_name}/calls/{call_control_id}",
    summary="Retrieve a call waiting in a queue",
    response_model=Data[QueueCallOut],
)
async def retrieve_queue_call(
    queue_name: str, call_control_id: str, ctx: Ctx, principal: Principal
) -> Data[QueueCallOut]:
    entry, position = _entry(ctx, principal, queue_name, call_control_id)
    return Data[QueueCallOut](data=_queue_call_out(entry, position))


class QueueCallParams(Params):
    keep_after_hangup: bool = False


@router.patch(
    "/queues/{queue_name}/calls/{call_control_id}",
    summary="Update a waiting call (keep_after_hangup is accepted; calls leave on hangup)",
    status_code=204,
)
async def update_queue_call(
    queue_name: str, call_control_id: str, params: QueueCallParams, ctx: Ctx, principal: Principal
) -> Response:
    if params.keep_after_hangup:
        raise invalid("keep_after_hangup is not supported by callbridge", "/keep_after_hangup")
    _entry(ctx, principal, queue_name, call_control_id)
    return Response(status_code=204)


@router.delete(
    "/queues/{queue_name}/calls/{call_control_id}",
    summary="Take a call out of a queue (it stays up, parked)",
    status_code=204,
)
async def remove_queue_call(
    queue_name: str, call_control_id: str, ctx: Ctx, principal: Principal
) -> Response:
    entry, _ = _entry(ctx, principal, queue_name, call_control_id)
    call = await resolve_call(ctx, principal.account_id, entry.call.id)
    await protocol_errors(ctx.control.leave_queue(call))
    return Response(status_code=204)
