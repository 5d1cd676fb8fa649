"""Start-up: finish what a crash of this node left, then keep records as calls happen.

A node that dies (``kill -9``, power loss, an out-of-memory kill) leaves behind, in the
database, the traces its :class:`~callbridge.journal.Journal` wrote for calls in progress.
When it starts again (same ``node_id``: ``--node-id``, else the host name), before it serves
anyone, :func:`start`:

1. takes back the webhooks its dead instance was sending (their leases would hold back every
   later webhook of the same call for a minute); closes its CDRs still ``open``: ended now,
   reason ``failed`` (cause: the server restarted);
2. for each of its ``live_calls``: sends the webhooks the application would have had if the
   call had ended then (through the outbox, so with the usual signing and retries):
   ``call.dequeued`` (reason ``hangup``) if it waited in a queue,
   ``conference.participant.left`` if it was in a conference, then ``call.hangup``
   (``hangup_cause`` ``unspecified``, ``hangup_source`` ``unknown``: the call failed, nobody
   hung up); then deletes the row. ``GET /v2/calls/{id}`` of
   such a call then answers as for any call that ended recently (``is_alive`` false, state
   ``ended``);
3. removes its queue entries (their calls are gone), and loads every queue definition (queues
   survive restarts, empty of the calls that were on this node);
4. installs the journal (CDRs at start and end, live calls, queues) on the controller and the
   application layer.

Other nodes sharing the database are not touched: their rows carry their own ``node_id``.
"""

from __future__ import annotations

import json
import logging
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from callbridge.config import ServerConfig
from callbridge.core.app_events import (
    AppCallDequeued,
    AppCallHangup,
    AppEvent,
    AppParticipantLeft,
    CallFacts,
    ConferenceFacts,
    ParticipantFacts,
)
from callbridge.core.app_model import AppCall, AppCallState, now
from callbridge.core.appcalls import AppCalls
from callbridge.core.controller import CallController
from callbridge.journal import Journal
from callbridge.store import Store
from callbridge.store.calls import LiveCall
from callbridge.store.records import as_utc
from callbridge.store.spool import WriteSpool
from callbridge.vocabulary import EndReason
from callbridge.webhooks.outbox import WebhookOutbox
from callbridge.webhooks.telnyx import WebhookEvents, enqueue_event

__all__ = ["RESTART_CAUSE", "Recovered", "node_id_of", "recover", "start"]

log = logging.getLogger(__name__)

RESTART_CAUSE = "server restarted"  # why the calls a crash cut off ended (logs, docs)


def node_id_of(config: ServerConfig) -> str:
    """This server's name among the nodes that share a database: ``--node-id``, else the
    host name."""
    return config.node_id or socket.gethostname()


@dataclass(frozen=True, slots=True)
class Recovered:
    """What :func:`recover` found and finished."""

    cdrs_closed: int
    calls_ended: int  # live calls whose end webhooks were queued
    webhooks: int
    queue_entries_removed: int
    queues: int  # queue definitions loaded


async def start(
    config: ServerConfig,
    store: Store,
    controller: CallController,
    apps: AppCalls,
    outbox: WebhookOutbox,
    events: WebhookEvents,
) -> Journal:
    """Recover from a crash of this node, then keep records as calls happen (the module
    docstring); call it once, after the outbox exists and before serving."""
    node = node_id_of(config)
    events.spool_limit = config.spool_limit
    released = await outbox.release_stale_leases()
    if released:
        log.warning("recovery: %d webhooks the crashed instance was sending go again", released)
    await recover(store, outbox, apps, node, events.public_url)
    return Journal(
        store, WriteSpool(config.spool_limit, name="call records"), node, controller, apps
    )


async def recover(
    store: Store, outbox: WebhookOutbox, apps: AppCalls, node_id: str, public_url: str
) -> Recovered:
    """Finish what a crash of ``node_id`` left (steps 1-3 of the module docstring)."""
    at = now()
    closed = await store.close_open_cdrs(node_id, end_reason=EndReason.FAILED.value, ended_at=at)
    positions = await _queue_positions(store, node_id)
    webhooks = 0
    live = await store.list_live_calls(node_id)
    for row in live:
        try:
            webhooks += await _end(store, outbox, apps, row, positions, at, public_url)
        except (ValueError, KeyError, TypeError):
            log.exception("recovery: the record of call %s is unreadable", row.call_control_id)
        await store.delete_live_call(row.call_control_id)
    removed = await store.remove_queue_entries_of_node(node_id)
    queues = await store.list_queues()
    for queue in queues:
        apps.queues.restore(
            queue.name, queue.max_size, account_id=queue.account_id, created_at=queue.created_at
        )
    found = Recovered(len(closed), len(live), webhooks, removed, len(queues))
    if closed or live or removed:
        log.warning(
            "recovered from a crash of node %s (%s): %d open CDRs closed (failed), %d calls' "
            "end webhooks queued (%d webhooks), %d queue entries removed",
            node_id,
            RESTART_CAUSE,
            found.cdrs_closed,
            found.calls_ended,
            found.webhooks,
            found.queue_entries_removed,
        )
    return found


async def _queue_positions(store: Store, node_id: str) -> dict[str, int]:
    """Where each call of ``node_id`` waited in its queue (1: longest-waiting)."""
    positions: dict[str, int] = {}
    for queue in await store.list_queues():
        entries = await store.list_queue_entries(queue.name, account_id=queue.account_id)
        for position, entry in enumerate(entries, 1):
            if entry.node_id == node_id:
                positions[entry.call_control_id] = position
    return positions


async def _end(
    store: Store,
    outbox: WebhookOutbox,
    apps: AppCalls,
    row: LiveCall,
    positions: dict[str, int],
    at: datetime,
    public_url: str,
) -> int:
    """Queue the end webhooks of one call a crash cut off; how many."""
    data: dict[str, Any] = json.loads(row.data_json)
    application = await _application(store, data.get("application_id"))
    facts = CallFacts(
        call_control_id=data["call_control_id"],
        call_session_id=data["call_session_id"],
        application=application,
        webhook_url=data.get("webhook_url"),
        client_state=data.get("client_state"),
        from_=data.get("from", ""),
        to=data.get("to", ""),
        direction=_direction(data.get("direction")),
        started_at=_instant(data.get("started_at")) or row.created_at,
    )
    events: list[AppEvent] = []
    queue = data.get("queue")
    if queue:
        enqueued = _instant(queue.get("enqueued_at")) or at
        events.append(
            AppCallDequeued(
                at=at,
                call=facts,
                queue=queue["name"],
                position=positions.get(facts.call_control_id, queue.get("position", 0)),
                reason="hangup",
                wait_secs=max(0, int((at - enqueued).total_seconds())),
            )
        )
    conference = data.get("conference")
    if conference:
        participant = conference["participant"]
        events.append(
            AppParticipantLeft(
                at=at,
                conference=ConferenceFacts(
                    conference_id=conference["conference_id"],
                    application=await _application(store, conference.get("application_id")),
                    webhook_url=conference.get("webhook_url"),
                    client_state=conference.get("client_state"),
                ),
                participant=ParticipantFacts(
                    participant["call_control_id"],
                    participant["call_session_id"],
                    participant.get("client_state"),
                    app_call=True,
                ),
            )
        )
    events.append(AppCallHangup(at=at, call=facts, reason=EndReason.FAILED, by_application=False))
    sent = 0
    for event in events:
        sent += await enqueue_event(outbox, event, public_url)
    apps.remember_ended(_ended_call(facts, _instant(data.get("answered_at")), at))
    return sent


async def _application(store: Store, application_id: object) -> Any:
    if not isinstance(application_id, str):
        return None
    return await store.get_application(application_id)


def _ended_call(facts: CallFacts, answered_at: datetime | None, at: datetime) -> AppCall:
    """The call as status queries see it: ended, ``failed``."""
    call = AppCall(
        id=facts.call_control_id,
        direction=facts.direction,
        session_id=facts.call_session_id,
        from_=facts.from_,
        to=facts.to,
        state=AppCallState.ENDED,
        application=facts.application,
        webhook_url=facts.webhook_url,
        client_state=facts.client_state,
        end_reason=EndReason.FAILED,
        started_at=facts.started_at,
        answered_at=answered_at,
        ended_at=at,
    )
    return call


def _instant(text: object) -> datetime | None:
    return as_utc(datetime.fromisoformat(text)) if isinstance(text, str) else None


def _direction(text: object) -> Literal["incoming", "outgoing"]:
    return "outgoing" if text == "outgoing" else "incoming"
