"""Live calls: ``GET /v2/calls`` and ``GET /v2/connections/{id}/active_calls`` (Telnyx's).

Telnyx's *connection* of a call-control call is its Call Control Application (its
``connection_id`` is the application's id), so a connection here is a call-control
application of the key's account (``/v2/call_control_applications``); an unknown one, or
another account's, is a 404.

Both list the calls that applications drive (incoming calls routed to an application,
``POST /v2/calls`` dials, the calls those are bridged to), which are the calls the
database keeps while they live (``live_calls``, written by :mod:`callbridge.journal`). So they
also list the calls of the other nodes that share the database. Such a call shows up at most a
loop turn after it starts (the journal's write), and is gone once its end is written.
``GET /v2/calls`` also lists this node's softphone-to-softphone calls that no application
touches (:meth:`~callbridge.core.control.CallControl.live_calls`; they have no connection, so
``active_calls`` and ``filter[connection_id]`` leave them out): named by the caller's leg, with
``connection_id`` ``null`` and ``direction`` ``outgoing``; a call the table lists is not
listed again.

- ``active_calls`` answers Telnyx's shape: ``call_control_id``, ``call_leg_id``,
  ``call_session_id``, ``client_state``, ``call_duration`` (seconds since it started),
  ``record_type: "call"``; paged with ``page[number]`` / ``page[size]``.
- ``GET /v2/calls`` (Telnyx has no listing there; ``POST`` dials) answers each call as
  ``GET /v2/calls/{id}`` does, plus ``connection_id``, ``from``, ``to``, ``direction``; paged
  the same way, oldest first, and ``filter[connection_id]`` narrows it to one application.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from callbridge.api.context import Ctx, Principal
from callbridge.api.errors import not_found
from callbridge.api.pagination import PageQuery, slice_page
from callbridge.core.control import DeviceCall
from callbridge.store.calls import LiveCall

__all__ = ["router"]

router = APIRouter(tags=["Live calls"])


def _since(text: Any, fallback: datetime) -> datetime:
    try:
        at = datetime.fromisoformat(str(text))
    except ValueError:
        return fallback
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _call(ctx: Ctx, row: LiveCall) -> dict[str, Any]:
    """One live call: what this node knows of it now, else what the database kept."""
    try:
        data: dict[str, Any] = json.loads(row.data_json)
    except ValueError:
        data = {}
    started = _since(data.get("started_at"), row.created_at)
    answered = data.get("answered_at")
    live = ctx.control.find_call(row.call_control_id)
    state = live.state.value if live is not None else ("answered" if answered else "parked")
    client_state = live.client_state if live is not None else data.get("client_state")
    return {
        "record_type": "call",
        "call_control_id": row.call_control_id,
        "call_leg_id": row.call_control_id,
        "call_session_id": data.get("call_session_id") or row.call_control_id,
        "connection_id": row.application_id,
        "client_state": client_state or "",
        "call_duration": max(0, int((datetime.now(UTC) - started).total_seconds())),
        "from": data.get("from"),
        "to": data.get("to"),
        "direction": data.get("direction"),
        "is_alive": True,
        "state": state,
        "start_time": started.isoformat().replace("+00:00", "Z"),
        "answered": answered is not None,
    }


def _device_call(call: DeviceCall) -> dict[str, Any]:
    """A device-to-device call, in the shape of :func:`_call`'s (no application: no
    connection, no client state)."""
    return {
        "record_type": "call",
        "call_control_id": call.call_control_id,
        "call_leg_id": call.call_control_id,
        "call_session_id": call.call_session_id,
        "connection_id": None,
        "client_state": "",
        "call_duration": max(0, int((datetime.now(UTC) - call.started_at).total_seconds())),
        "from": call.caller_id,
        "to": call.destination,
        "direction": "outgoing",  # as its caller's leg: the call that names it
        "is_alive": True,
        "state": call.state,
        "start_time": call.started_at.isoformat().replace("+00:00", "Z"),
        "answered": call.answered_at is not None,
    }


async def _live(ctx: Ctx, account_id: str, application_id: str | None) -> list[LiveCall]:
    rows = await ctx.store.list_live_calls()
    return [
        row
        for row in rows
        if row.account_id == account_id
        and (application_id is None or row.application_id == application_id)
    ]


_ACTIVE_FIELDS = (
    "record_type",
    "call_control_id",
    "call_leg_id",
    "call_session_id",
    "client_state",
    "call_duration",
)


@router.get(
    "/connections/{connection_id}/active_calls",
    summary="List a connection's (call control application's) active calls",
)
async def active_calls(
    connection_id: str, ctx: Ctx, who: Principal, page: PageQuery
) -> dict[str, Any]:
    if await ctx.store.get_application(connection_id, who.account_id) is None:
        raise not_found(
            f"no connection {connection_id!r}: a connection is a call control application "
            "(GET /v2/call_control_applications lists their ids)",
            "connection_id",
        )
    calls = [_call(ctx, row) for row in await _live(ctx, who.account_id, connection_id)]
    items, page_meta = slice_page(calls, page)
    data = [{name: call[name] for name in _ACTIVE_FIELDS} for call in items]
    return {"data": data, "meta": page_meta.model_dump()}


@router.get("/calls", summary="List the live calls (applications' and devices')")
async def list_calls(
    ctx: Ctx,
    who: Principal,
    page: PageQuery,
    connection_id: Annotated[
        str | None,
        Query(alias="filter[connection_id]", description="Only this application's calls."),
    ] = None,
) -> dict[str, Any]:
    rows = await _live(ctx, who.account_id, connection_id)
    calls = [_call(ctx, row) for row in rows]
    if connection_id is None:  # device calls have no connection
        listed = {row.call_control_id for row in rows}
        listed |= {str(c["call_session_id"]) for c in calls}
        calls += [
            _device_call(call)
            for call in ctx.control.live_calls(who.account_id)
            if listed.isdisjoint((call.call_session_id, *call.leg_ids))
        ]
        calls.sort(key=lambda c: str(c["start_time"]))
    items, page_meta = slice_page(calls, page)
    return {"data": items, "meta": page_meta.model_dump()}
