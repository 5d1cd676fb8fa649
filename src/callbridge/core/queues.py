"""Call queues: application calls waiting, hearing hold music, for an agent; oldest first.

A queue is made by the first ``enqueue`` that names it (or explicitly). A call waits in it
until ``bridge`` with the queue takes the longest-waiting call, the call leaves (``leave``),
hangs up, or waits longer than its ``max_wait_time_secs`` (``timeout``; it then hears
silence). Each entry reports ``call.enqueued`` and, once, ``call.dequeued`` with why it left.

Queues belong to an account (the application's): names are unique within it, and every
method takes ``account_id`` (the default account's unless given). The live objects (entries
point at live calls) are here, in memory; the definitions and the waiting order are also
written down through a :class:`QueueJournal` (the server's writes them to the database, see
``callbridge.journal``), so that queues survive a restart: :meth:`Queues.restore` brings them
back, empty of the calls a crash cut off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import partial
from typing import TYPE_CHECKING, ClassVar, Protocol

from callbridge.core.app_events import AppCallDequeued, AppCallEnqueued, DequeueReason
from callbridge.core.app_model import AppCall, now
from callbridge.core.calls import new_id
from callbridge.core.tenancy import DEFAULT_ACCOUNT_ID, application_account
from callbridge.errors import ErrorCode, ProtocolError
from callbridge.statemachine import StateMachine

if TYPE_CHECKING:
    from callbridge.core.appcalls import AppCalls

__all__ = ["DEFAULT_MAX_SIZE", "EntryState", "Queue", "QueueEntry", "QueueJournal", "Queues"]

DEFAULT_MAX_SIZE = 100


class EntryState(StrEnum):
    """State of a call's place in a queue.

    ::

        waiting ──bridged / leave / timeout / hangup──► left
    """

    WAITING = "waiting"  # in the queue, hearing hold music
    LEFT = "left"  # out of it (``call.dequeued`` was published)


@dataclass(eq=False)
class QueueEntry(StateMachine[EntryState]):
    """One call's place in a queue."""

    TRANSITIONS: ClassVar[dict[EntryState, frozenset[EntryState]]] = {
        EntryState.WAITING: frozenset({EntryState.LEFT}),
        EntryState.LEFT: frozenset(),
    }

    call: AppCall
    queue: Queue
    enqueued_at: datetime = field(default_factory=now)
    max_wait: float | None = None
    state: EntryState = EntryState.WAITING

    @property
    def kind(self) -> str:
        return "queue entry"

    @property
    def id(self) -> str:
        return self.call.id

    @property
    def wait_secs(self) -> int:
        return int((now() - self.enqueued_at).total_seconds())


@dataclass(eq=False)
class Queue:
    """A named queue of calls waiting for an agent; oldest first."""

    name: str
    max_size: int = DEFAULT_MAX_SIZE
    account_id: str = DEFAULT_ACCOUNT_ID
    id: str = field(default_factory=new_id)
    created_at: datetime = field(default_factory=now)
    updated_at: datetime = field(default_factory=now)
    entries: list[QueueEntry] = field(default_factory=list)
    waited: float = 0.0  # seconds waited by calls that left, for the average
    left: int = 0  # how many calls left

    @property
    def average_wait_time_secs(self) -> int:
        waiting = sum(e.wait_secs for e in self.entries)
        count = self.left + len(self.entries)
        return round((self.waited + waiting) / count) if count else 0

    def position(self, call: AppCall) -> int:
        """1 for the longest-waiting call (0: not in this queue)."""
        for i, entry in enumerate(self.entries, 1):
            if entry.call is call:
                return i
        return 0

    def entry(self, call_control_id: str) -> tuple[QueueEntry, int] | None:
        """The entry of the call with this id (its call's or its leg's) and its position."""
        for i, entry in enumerate(self.entries, 1):
            leg = entry.call.leg
            if call_control_id in (entry.call.id, leg.id if leg is not None else None):
                return entry, i
        return None


class QueueJournal(Protocol):
    """Where queues are written down (the server's: the database, through its spool). Each
    method is told a change once it is made in memory, in the order they are made."""

    def queue_saved(self, queue: Queue) -> None:
        """A queue was made, or its ``max_size`` changed."""

    def queue_deleted(self, queue: Queue) -> None: ...

    def entry_added(self, entry: QueueEntry) -> None:
        """A call waits, at the end of its queue."""

    def entry_removed(self, entry: QueueEntry) -> None: ...


Key = tuple[str, str]  # (account_id, queue name)


class Queues:
    """Every queue of the server (one per :class:`AppCalls`)."""

    def __init__(self, apps: AppCalls) -> None:
        self.apps = apps
        self.queues: dict[Key, Queue] = {}
        self.journal: QueueJournal | None = None

    def get(self, name: str, *, account_id: str = DEFAULT_ACCOUNT_ID) -> Queue | None:
        return self.queues.get((account_id, name))

    def all(self, *, account_id: str | None = None) -> list[Queue]:
        """The queues (of one account, if given), oldest first."""
        return [q for q in self.queues.values() if account_id in (None, q.account_id)]

    def create(
        self, name: str, max_size: int | None, *, account_id: str = DEFAULT_ACCOUNT_ID
    ) -> Queue:
        if (account_id, name) in self.queues:
            raise ProtocolError(ErrorCode.INVALID_STATE, f"queue {name!r} exists already")
        return self._add(name, max_size, account_id)

    def _add(self, name: str, max_size: int | None, account_id: str) -> Queue:
        queue = Queue(name, max_size if max_size is not None else DEFAULT_MAX_SIZE, account_id)
        self.queues[(account_id, name)] = queue
        if self.journal is not None:
            self.journal.queue_saved(queue)
        return queue

    def restore(
        self, name: str, max_size: int | None, *, account_id: str, created_at: datetime
    ) -> Queue:
        """Bring back a queue from the database at start-up (nobody waits in it)."""
        queue = Queue(name, max_size if max_size is not None else DEFAULT_MAX_SIZE, account_id)
        queue.created_at = queue.updated_at = created_at
        self.queues[(account_id, name)] = queue
        return queue

    def delete(self, name: str, *, account_id: str = DEFAULT_ACCOUNT_ID) -> None:
        """Delete an empty queue."""
        queue = self.queues.get((account_id, name))
        if queue is None:
            return
        if queue.entries:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"queue {name!r} has {len(queue.entries)} calls waiting: bridge them or "
                "make them leave first",
            )
        del self.queues[(account_id, name)]
        if self.journal is not None:
            self.journal.queue_deleted(queue)

    def resize(self, queue: Queue, max_size: int) -> None:
        if max_size < len(queue.entries):
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE,
                f"max_size {max_size} is less than the {len(queue.entries)} calls waiting",
            )
        queue.max_size = max_size
        queue.updated_at = now()
        if self.journal is not None:
            self.journal.queue_saved(queue)

    def head(self, name: str, *, account_id: str = DEFAULT_ACCOUNT_ID) -> tuple[Queue, QueueEntry]:
        """The queue and its longest-waiting entry; refused when there is none."""
        queue = self.queues.get((account_id, name))
        if queue is None or not queue.entries:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"queue {name!r} is empty: no call waits in it"
                if queue is not None
                else f"there is no queue {name!r}",
            )
        return queue, queue.entries[0]

    async def enqueue(
        self,
        call: AppCall,
        name: str,
        *,
        max_size: int | None = None,
        max_wait_time_secs: float | None = None,
        account_id: str | None = None,
    ) -> Queue:
        """Park the call in a queue (created on first use) hearing hold music; the longest-
        waiting call is the one ``bridge`` with the queue takes. The queue is the account's
        (by default the account of the call's application)."""
        apps = self.apps
        if account_id is None:
            account_id = application_account(call.application)
        leg = apps.bridgeable(call, "enqueue")
        if leg.peer is not None:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"enqueue: call {call.id} is bridged to another call: hang that up first",
            )
        if call.queue_entry is not None:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"call {call.id} is in queue {call.queue_entry.queue.name!r} already",
            )
        queue = self.queues.get((account_id, name)) or self._add(name, max_size, account_id)
        if len(queue.entries) >= queue.max_size:
            raise ProtocolError(
                ErrorCode.INVALID_STATE,
                f"queue {name!r} is full ({len(queue.entries)} calls, max_size {queue.max_size})",
            )
        entry = QueueEntry(call, queue, max_wait=max_wait_time_secs)
        entry.state_observer = apps.controller.observer
        queue.entries.append(entry)
        queue.updated_at = entry.enqueued_at
        call.queue_entry = entry
        if self.journal is not None:
            self.journal.entry_added(entry)
        await apps.playing.stop_app_audio(leg)
        if call.queue_entry is entry and leg.live:
            await apps.media.play(leg.id, "hold-music")
        if call.queue_entry is not entry:
            return queue  # it left (hung up, bridged) while the music started
        if max_wait_time_secs is not None:
            apps.scheduler.later(
                max_wait_time_secs,
                entry,
                partial(self._timeout, entry),
                f"max wait of {call.id} in queue {name!r}",
            )
        apps.publish(
            AppCallEnqueued(
                call=apps.facts(call),
                queue=name,
                position=queue.position(call),
                average_wait_secs=queue.average_wait_time_secs,
            )
        )
        return queue

    async def leave_queue(self, call: AppCall) -> None:
        """The application takes the call out of its queue: it stays up, hearing nothing."""
        leg = self.apps.live(call)
        if call.queue_entry is None:
            raise ProtocolError(ErrorCode.INVALID_STATE, f"call {call.id} is in no queue")
        self.leave(call, "leave")
        await self.apps.media.stop_playing(leg.id)

    async def _timeout(self, entry: QueueEntry) -> None:
        call = entry.call
        if call.queue_entry is entry and not call.ended:
            self.leave(call, "timeout")
            if call.leg is not None and call.leg.live:
                await self.apps.media.stop_playing(call.leg.id)

    def leave(self, call: AppCall, reason: DequeueReason) -> None:
        """``call`` leaves its queue, if it is in one (``call.dequeued``)."""
        entry = call.queue_entry
        if entry is None:
            return
        queue = entry.queue
        position = queue.position(call)
        wait = entry.wait_secs
        entry.transition(EntryState.LEFT, cause=reason)
        queue.entries.remove(entry)
        queue.waited += (now() - entry.enqueued_at).total_seconds()
        queue.left += 1
        queue.updated_at = now()
        call.queue_entry = None
        self.apps.scheduler.cancel(entry)
        if self.journal is not None:
            self.journal.entry_removed(entry)
        self.apps.publish(
            AppCallDequeued(
                call=self.apps.facts(call),
                queue=queue.name,
                position=position,
                reason=reason,
                wait_secs=wait,
            )
        )
