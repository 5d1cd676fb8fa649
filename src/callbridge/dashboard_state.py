"""The operator dashboard's snapshot: what is live on this server, as one JSON-ready dict.

Read straight from the core (no REST round trip, no polling of the database for live state):

- ``calls``: the device calls of the call controller (``controller.legs``, grouped by call) and
  the application calls (``appcalls.calls``) that are not one of those; each with its legs.
- ``conferences``: the live conferences and call groups with their members. ``talking`` is the
  mixer's active talker (``Conference.floor``, the leg whose audio is loudest over the mixer's
  voice threshold, published as ``ConferenceFloorChanged``): one member at a time, not a level
  meter per member.
- ``queues``: the application queues and their waiting callers, oldest first.
- ``devices``: ``/ws`` sessions of this server and the SIP registrations (the store's live
  bindings, every server's).
- ``cdrs``: the most recent ended CDRs (the store).
- ``webhooks``: the outbox: pending messages (every server's) and the oldest one's age (the
  lag), deliveries and failures counted by this server since it started. Admin keys only (the
  outbox is shared by every account).
- ``media``: this server's media plane: each media worker process (``--media-workers``: up or
  restarting, its restarts, media objects, mixers, late 20 ms ticks) and the bridges and room
  members relayed between workers, or the one process that holds the media. Admin keys only.

``account`` is ``None`` for an admin key (every account) or the one account whose things are
shown; another account's things are left out entirely.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from callbridge.core.calls import Call, Leg
from callbridge.core.tenancy import account_of, application_account
from callbridge.media.workers.proxy import WorkerMediaServer

if TYPE_CHECKING:
    from callbridge.core.app_model import AppCall
    from callbridge.server import Runtime

__all__ = ["RECENT_CDRS", "snapshot"]

RECENT_CDRS = 15  # how many ended calls the dashboard lists


def _iso(at: datetime | None) -> str | None:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z") if at is not None else None


def _seconds(since: datetime | None, now: datetime) -> int | None:
    return max(0, int((now - since).total_seconds())) if since is not None else None


def _leg(leg: Leg) -> dict[str, Any]:
    return {
        "id": leg.id,
        "user": leg.device.user_name,
        "direction": leg.direction,
        "state": leg.state.value,
        "muted": leg.muted,
        "media_type": leg.media_type,
    }


def _device_call(call: Call, now: datetime) -> dict[str, Any]:
    legs = [call.origin]
    if call.answered_leg is not None:
        legs.append(call.answered_leg)
    elif call.ring is not None:
        legs.extend(leg for leg in call.ring.legs if leg.live)
    far = call.answered_leg
    state = call.state.value
    to_user = far.device.user_name if far is not None else call.callee_name or None
    if far is None and call.answered_at is not None and call.origin.conference is not None:
        # A leg in a hosted conference keeps a call for its CDR (core.hosted): answered by
        # the conference, with no far leg, so its call never leaves ``routing``.
        state, to_user = call.origin.state.value, None
    return {
        "id": call.id,
        "kind": "device",
        "state": state,
        "from": call.caller_id,
        "from_user": call.origin.device.user_name,
        "to": call.destination,
        "to_user": to_user,
        "media_type": call.media_type,
        "started_at": _iso(call.started_at),
        "answered_at": _iso(call.answered_at),
        "duration_secs": _seconds(call.answered_at, now),
        "application": None,
        "queue": None,
        "conference": None,
        "legs": [_leg(leg) for leg in legs],
        "account_id": account_of(call.origin.device),
    }


def _app_call(call: AppCall, now: datetime) -> dict[str, Any]:
    app = call.application
    entry = call.queue_entry
    leg = call.leg
    conference = leg.conference if leg is not None else None
    return {
        "id": call.id,
        "kind": "application",
        "state": call.state.value,
        "from": call.from_,
        "from_user": None,
        "to": call.to,
        "to_user": None,
        "media_type": leg.media_type if leg is not None else "audio",
        "started_at": _iso(call.started_at),
        "answered_at": _iso(call.answered_at),
        "duration_secs": _seconds(call.answered_at, now),
        "application": getattr(app, "application_name", None) if app is not None else None,
        "queue": entry.queue.name if entry is not None and entry.state.value == "waiting" else None,
        "conference": conference.name if conference is not None else None,
        "legs": [_leg(leg)] if leg is not None else [],
        "account_id": (
            application_account(app)
            if app is not None
            else account_of(leg.device)
            if leg is not None
            else "default"
        ),
    }


def _calls(rt: Runtime, now: datetime) -> list[dict[str, Any]]:
    calls: dict[str, dict[str, Any]] = {}
    leg_to_call: dict[str, dict[str, Any]] = {}
    for leg in list(rt.controller.legs.values()):
        call = leg.call
        if call is None or call.ended or call.id in calls:
            continue
        row = _device_call(call, now)
        calls[call.id] = row
        for member in row["legs"]:
            leg_to_call[member["id"]] = row
    for app_call in list(rt.appcalls.calls.values()):
        if app_call.state.value == "ended":
            continue
        app_leg = app_call.leg
        shared = leg_to_call.get(app_leg.id) if app_leg is not None else None
        if shared is not None:
            # A device leg an application adopted: one call, with the application named.
            extra = _app_call(app_call, now)
            shared["application"] = shared["application"] or extra["application"]
            shared["queue"] = shared["queue"] or extra["queue"]
            continue
        if app_call.id not in calls:
            calls[app_call.id] = _app_call(app_call, now)
    for leg in list(rt.controller.legs.values()):
        shared = leg_to_call.get(leg.id)
        if leg.conference is not None and shared is not None:
            shared["conference"] = leg.conference.name
    return sorted(calls.values(), key=lambda c: c["started_at"] or "")


def _conferences(rt: Runtime, now: datetime) -> list[dict[str, Any]]:
    rows = []
    for conf in list(rt.controller.conferences.conferences.values()):
        if conf.ended:
            continue
        members = [
            {
                "call_id": m.leg.id,
                "key": m.key,
                "name": m.name,
                "user": m.leg.device.user_name,
                "muted": m.muted or m.leg.muted,
                "held": m.held or m.self_held,
                "deaf": m.deaf,
                "role": m.role,
                "talking": conf.floor == m.leg.id,
                "host": m.leg is conf.host_leg,
                "joined_at": _iso(m.joined_at),
            }
            for m in conf.members.values()
        ]
        rows.append(
            {
                "id": conf.id,
                "name": conf.name,
                "kind": conf.kind.value,
                "state": conf.state.value,
                "created_at": _iso(conf.created_at),
                "age_secs": _seconds(conf.created_at, now),
                "recording": conf.recording_id is not None,
                "talking": conf.floor_key(),
                "members": members,
                "account_id": account_of(conf.owner),
            }
        )
    return rows


def _queues(rt: Runtime) -> list[dict[str, Any]]:
    rows = []
    for queue in rt.appcalls.queues.all(account_id=None):
        rows.append(
            {
                "name": queue.name,
                "max_size": queue.max_size,
                "average_wait_secs": queue.average_wait_time_secs,
                "waiting": [
                    {
                        "call_control_id": entry.call.id,
                        "from": entry.call.from_,
                        "to": entry.call.to,
                        "position": position,
                        "wait_secs": entry.wait_secs,
                    }
                    for position, entry in enumerate(queue.entries, 1)
                ],
                "account_id": queue.account_id,
            }
        )
    return rows


async def _devices(rt: Runtime, now: datetime) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {
            "kind": "ws",
            "id": session.id,
            "user": session.user_name,
            "display_name": session.display_name,
            "state": session.state.value,
            "detail": "",
            "expires_in": _seconds(now, session.expires_at),
            "account_id": account_of(session),
        }
        for session in list(rt.sessions.sessions.values())
        if not session.ended
    ]
    for binding in await rt.store.bindings(at=now):
        rows.append(
            {
                "kind": "sip",
                "id": str(binding.id),
                "user": binding.user_name,
                "display_name": binding.user_agent or "",
                "state": "registered",
                "detail": f"{binding.transport} {binding.source_host}:{binding.source_port}",
                "expires_in": binding.expires_in(now),
                "account_id": binding.account_id,
            }
        )
    return sorted(rows, key=lambda d: (d["user"], d["kind"], d["id"]))


async def _cdrs(rt: Runtime, account: str | None) -> list[dict[str, Any]]:
    return [
        {
            "call_id": cdr.call_id,
            "caller": cdr.caller,
            "callee": cdr.callee,
            "destination": cdr.destination,
            "started_at": _iso(cdr.started_at),
            "ended_at": _iso(cdr.ended_at),
            "duration_secs": round(cdr.duration_seconds),
            "answered": cdr.answered_at is not None,
            "end_reason": cdr.end_reason,
            "hangup_source": cdr.hangup_source,
            "queue": cdr.queue_name,
            "answered_user": cdr.answered_user,
            "account_id": cdr.account_id,
        }
        for cdr in await rt.store.list_cdrs(RECENT_CDRS, account_id=account)
    ]


async def _webhooks(rt: Runtime, now: datetime) -> dict[str, Any]:
    depth, oldest = await rt.store.webhook_backlog()
    stats = rt.outbox.stats
    return {
        "pending": depth,
        "lag_secs": round((now - oldest).total_seconds(), 1) if oldest is not None else 0.0,
        "delivered": stats.delivered,
        "attempts_failed": stats.attempts_failed,
        "given_up": stats.given_up,
    }


def _media(rt: Runtime) -> dict[str, Any]:
    media = rt.media
    if not isinstance(media, WorkerMediaServer):  # --media-workers 1: the server's own process
        return {
            "workers": [
                {
                    "name": "in the server process",
                    "pid": os.getpid(),
                    "up": True,
                    "restarts": 0,
                    "objects": media.endpoint_count,
                    "mixers": None,
                    "late_ticks": media.late_ticks,
                }
            ],
            "relays": None,
        }
    return {
        "workers": [
            {
                "name": f"worker {w['index']}",
                "pid": w["pid"] if w["alive"] else None,
                "up": w["alive"],
                "restarts": w["restarts"],
                "objects": w["media_objects"],
                "mixers": w["mixers"],
                "late_ticks": w["late_ticks"],
            }
            for w in media.worker_health()
        ],
        "relays": media.relays.counts(),
    }


async def snapshot(rt: Runtime, account: str | None) -> dict[str, Any]:
    """The live state, of ``account`` (``None``: every account)."""
    now = datetime.now(UTC)

    def mine(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return rows if account is None else [r for r in rows if r["account_id"] == account]

    return {
        "at": _iso(now),
        "account": account,
        "calls": mine(_calls(rt, now)),
        "conferences": mine(_conferences(rt, now)),
        "queues": mine(_queues(rt)),
        "devices": mine(await _devices(rt, now)),
        "cdrs": await _cdrs(rt, account),
        "webhooks": await _webhooks(rt, now) if account is None else None,
        "media": _media(rt) if account is None else None,
    }
