"""``Journal``: what the server writes down as calls happen, so that a crash loses nothing.

The core keeps calls, queues and application calls in memory and says what happens; this
adapter writes down, through one ordered :class:`~callbridge.store.spool.WriteSpool`:

* **CDRs**: each call's record when it starts (``open``, with this node's id), again when it
  is answered, and its end (the controller's :class:`~callbridge.core.controller.CdrWriter`);
* **live calls**: for every call an application owns, what its end webhooks need
  (``live_calls.data_json``, below), rewritten when that changes and deleted when the call
  ends;
* **queues**: definitions and waiting order (the core's
  :class:`~callbridge.core.queues.QueueJournal`).

At start-up, :mod:`callbridge.recovery` reads back what a crash left and finishes it.

A live call's ``data_json``::

    {"call_control_id", "call_session_id", "application_id", "webhook_url", "client_state",
     "from", "to", "direction", "started_at",
     "queue": {"name", "account_id", "enqueued_at", "position"} | null,
     "conference": {"conference_id", "application_id", "webhook_url", "client_state",
                    "participant": {"call_control_id", "call_session_id", "client_state"}}
                   | null}

Changes of one call within one turn of the event loop make one write (the newest state).
Every write is awaited by a task the application layer's shutdown drains, so an orderly stop
leaves no live call behind (which the next start would take for a crash's).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace
from datetime import datetime
from functools import partial
from typing import Any

from callbridge.cdr_details import CdrDetails
from callbridge.core.app_events import AppCallAnswered, AppParticipantJoined, AppParticipantLeft
from callbridge.core.app_model import AppCall
from callbridge.core.appcalls import AppCalls
from callbridge.core.calls import Call
from callbridge.core.controller import CallController
from callbridge.core.events import LegAnswered
from callbridge.core.queues import Queue, QueueEntry
from callbridge.core.tenancy import account_of, application_account
from callbridge.store import Store
from callbridge.store.records import Cdr
from callbridge.store.spool import WriteSpool

__all__ = ["Journal"]

log = logging.getLogger(__name__)


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


class Journal:
    """Writes CDRs, live calls and queues of this node down (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        spool: WriteSpool,
        node_id: str,
        controller: CallController,
        apps: AppCalls,
    ) -> None:
        self.store = store
        self.spool = spool
        self.node_id = node_id
        self.apps = apps
        self._dirty: dict[str, AppCall] = {}
        self._saved: set[str] = set()  # calls with a live_calls row (written or on its way)
        self._conference: dict[str, dict[str, Any]] = {}  # call id -> its conference's facts
        self.controller = controller
        self._open: set[str] = set()  # calls whose CDR is open
        self._cdr_dirty: dict[str, Call] = {}  # calls whose open CDR needs writing
        self._flush_soon: asyncio.Handle | None = None
        self._unsubscribe = [
            controller.bus.subscribe(AppParticipantJoined, self._joined),
            controller.bus.subscribe(AppParticipantLeft, self._left),
            controller.bus.subscribe(LegAnswered, self._leg_answered),
            controller.bus.subscribe(AppCallAnswered, self._app_answered),
        ]
        controller.cdrs = self
        self.details = CdrDetails(controller, apps)  # who answered, queue, hangup source...
        apps.leg_quality = self.details.leg_quality  # call.hangup's call_quality_stats
        apps.on_call_change = self._changed
        apps.queues.journal = self

    def _write(self, write: Any, what: str) -> None:
        """Spool ``write``; the application layer's shutdown waits for it."""
        self.apps.store_later(_settled(self.spool.submit(write, what)), what)

    # CDRs (CdrWriter) -------------------------------------------------------------------------
    def opened(self, call: Call) -> None:
        self._cdr_changed(call)

    def _leg_answered(self, event: LegAnswered) -> None:
        leg = self.controller.legs.get(event.leg.call_control_id)
        if leg is not None and leg.call is not None and leg.call.id in self._open:
            self._cdr_changed(leg.call)

    def _app_answered(self, event: AppCallAnswered) -> None:
        call = self.apps.calls.get(event.call.call_control_id)
        leg = call.leg if call is not None else None
        if leg is not None and leg.call is not None and leg.call.id in self._open:
            self._cdr_changed(leg.call)

    def _cdr_changed(self, call: Call) -> None:
        """Write the call's open record once this turn of the loop is over (its answer's
        facts, ``answered_at`` and who answered, are set by then)."""
        self._open.add(call.id)
        self._cdr_dirty[call.id] = call
        self._soon()

    def _open_cdr(self, call: Call) -> None:
        far = call.answered_leg
        write = partial(
            self.store.open_cdr,
            call_id=call.id,
            caller=call.origin.device.user_name,
            callee=far.device.user_name if far is not None else call.callee_name,
            destination=call.destination,
            started_at=call.started_at,
            answered_at=call.answered_at,
            direction="internal",
            node_id=self.node_id,
            account_id=account_of(call.origin.device),
        )
        self.spool.submit(write, f"the open CDR of call {call.id}")

    async def ended(self, call: Call, cdr: Any) -> None:
        self._open.discard(call.id)
        self._cdr_dirty.pop(call.id, None)  # the end says it all
        details = await self.details.settle(call, getattr(cdr, "end_reason", ""))
        if isinstance(cdr, Cdr):
            cdr = replace(cdr, account_id=account_of(call.origin.device), **details)
        write = partial(self.store.record_cdr, cdr, node_id=self.node_id)
        await self.spool.submit(write, f"the CDR of call {call.id}")

    # live calls -------------------------------------------------------------------------------
    def _changed(self, call: AppCall) -> None:
        if call.application is None and call.webhook_url is None and call.id not in self._saved:
            return  # nobody to send its webhooks to: nothing to recover
        self._dirty[call.id] = call
        self._soon()

    def _soon(self) -> None:
        if self._flush_soon is None:
            self._flush_soon = asyncio.get_running_loop().call_soon(self._flush)

    def _joined(self, event: AppParticipantJoined) -> None:
        participant = event.participant
        call = self.apps.calls.get(participant.call_control_id)
        if call is None or not participant.app_call:
            return
        conference = event.conference
        self._conference[call.id] = {
            "conference_id": conference.conference_id,
            "application_id": getattr(conference.application, "id", None),
            "webhook_url": conference.webhook_url,
            "client_state": conference.client_state,
            "participant": {
                "call_control_id": participant.call_control_id,
                "call_session_id": participant.call_session_id,
                "client_state": participant.client_state,
            },
        }
        self._changed(call)

    def _left(self, event: AppParticipantLeft) -> None:
        call_id = event.participant.call_control_id
        if self._conference.pop(call_id, None) is not None:
            call = self.apps.calls.get(call_id)
            if call is not None:
                self._changed(call)

    def _flush(self) -> None:
        self._flush_soon = None
        cdrs, self._cdr_dirty = self._cdr_dirty, {}
        for cdr_call in cdrs.values():
            if not cdr_call.ended:  # else its end is written (or about to be)
                self._open_cdr(cdr_call)
        dirty, self._dirty = self._dirty, {}
        for call in dirty.values():
            if call.ended:
                self._conference.pop(call.id, None)
                if call.id in self._saved:
                    self._saved.discard(call.id)
                    self._write(
                        partial(self.store.delete_live_call, call.id), f"the end of call {call.id}"
                    )
                continue
            self._saved.add(call.id)
            self._write(
                partial(
                    self.store.save_live_call,
                    call.id,
                    data_json=json.dumps(self._data(call)),
                    node_id=self.node_id,
                    application_id=getattr(call.application, "id", None),
                    account_id=application_account(call.application),
                ),
                f"the state of call {call.id}",
            )

    def _data(self, call: AppCall) -> dict[str, Any]:
        entry = call.queue_entry
        queue = None
        if entry is not None:
            queue = {
                "name": entry.queue.name,
                "account_id": entry.queue.account_id,
                "enqueued_at": _iso(entry.enqueued_at),
                "position": entry.queue.position(call),
            }
        return {
            "call_control_id": call.id,
            "call_session_id": call.session_id,
            "application_id": getattr(call.application, "id", None),
            "webhook_url": call.webhook_url,
            "client_state": call.client_state,
            "from": call.from_,
            "to": call.to,
            "direction": call.direction,
            "started_at": _iso(call.started_at),
            "answered_at": _iso(call.answered_at),
            "queue": queue,
            "conference": self._conference.get(call.id),
        }

    # queues (QueueJournal) --------------------------------------------------------------------
    def queue_saved(self, queue: Queue) -> None:
        self._write(
            partial(
                self.store.save_queue,
                queue.name,
                queue.max_size,
                account_id=queue.account_id,
                created_at=queue.created_at,
            ),
            f"queue {queue.name!r}",
        )

    def queue_deleted(self, queue: Queue) -> None:
        self._write(
            partial(self.store.delete_queue, queue.name, account_id=queue.account_id),
            f"the deletion of queue {queue.name!r}",
        )

    def entry_added(self, entry: QueueEntry) -> None:
        queue = entry.queue
        self._write(
            partial(
                self.store.add_queue_entry,
                queue.name,
                entry.call.id,
                enqueued_at=entry.enqueued_at,
                node_id=self.node_id,
                account_id=queue.account_id,
                max_size=queue.max_size,
            ),
            f"call {entry.call.id} waiting in queue {queue.name!r}",
        )

    def entry_removed(self, entry: QueueEntry) -> None:
        self._write(
            partial(self.store.remove_queue_entry, entry.call.id),
            f"call {entry.call.id} leaving queue {entry.queue.name!r}",
        )

    def close(self) -> None:
        self.details.close()
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        if self._flush_soon is not None:
            self._flush_soon.cancel()
            self._flush()


async def _settled(future: asyncio.Future[None]) -> None:
    await future
