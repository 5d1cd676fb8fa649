"""Calls in the database: call detail records and the live calls of each node.

**CDRs.** A call's record is written twice: ``open_cdr`` when the call starts (state
``open``, with the node it runs on), and ``record_cdr`` when it ends (state ``ended``, its end
time, reason and talk time). A node that crashes leaves its calls' rows open; at its next
start it closes them (``close_open_cdrs``: reason ``failed``), so that every call has a record
whatever happened to the server. ``record_cdr`` also takes a call whose open row was never
written (a call that ended before its start could be recorded): it inserts the ended row.
``list_cdrs`` lists ended records only.

**Live calls.** One row per application call in progress (``live_calls``), holding in
``data_json`` what its end webhooks need (see ``callbridge.recovery``): kept up to date while
the call lives, deleted when it ends. Rows of a node that are still there when it starts
belong to calls its crash cut off.

Every write is idempotent, so that a write retried after an error that hid its success (the
spool in ``callbridge.store.spool`` retries) does no harm: opening an open CDR again, saving a
live call again or deleting one that is gone change nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from callbridge.store.errors import CdrExists
from callbridge.store.records import Cdr
from callbridge.store.repository import Repository, check_aware, now, page
from callbridge.store.schema import DEFAULT_ACCOUNT_ID, CdrRow, LiveCallRow

__all__ = ["CDR_FILTERS", "CDR_INSTANTS", "CallRepository", "CdrQuery", "ClosedCdr", "LiveCall"]

_LIMITS = (("call_id", 64), ("end_reason", 32), ("direction", 32))


@dataclass(frozen=True, slots=True)
class LiveCall:
    """A call in progress on ``node_id``, as ``live_calls`` keeps it."""

    call_control_id: str
    account_id: str
    application_id: str | None
    node_id: str | None
    data_json: str  # what its end webhooks need (callbridge.recovery)
    created_at: datetime
    updated_at: datetime


# What ``search_cdrs`` filters on: columns compared for equality, and instants (ranges, sort).
CDR_FILTERS = frozenset(
    {
        "call_id",
        "caller",
        "callee",
        "destination",
        "direction",
        "end_reason",
        "hangup_source",
        "answered_user",
        "queue_name",
        "conference_id",
    }
)
CDR_INSTANTS = frozenset({"started_at", "answered_at", "ended_at"})


@dataclass(frozen=True, slots=True)
class CdrQuery:
    """Which ended CDRs ``search_cdrs`` returns: the account's (None: every account), whose
    columns equal ``equal``, whose instants are within ``ranges`` (``[low, high)``, either end
    open), sorted on an instant (``-`` first: newest first)."""

    account_id: str | None = None
    equal: dict[str, str] = field(default_factory=dict)
    ranges: dict[str, tuple[datetime | None, datetime | None]] = field(default_factory=dict)
    sort: str = "-started_at"


@dataclass(frozen=True, slots=True)
class ClosedCdr:
    """A CDR that ``close_open_cdrs`` closed: its call, and where the record stood."""

    call_id: str
    account_id: str
    started_at: datetime
    answered_at: datetime | None


class CallRepository(Repository):
    # call detail records --------------------------------------------------------------------
    async def open_cdr(
        self,
        *,
        call_id: str,
        caller: str,
        callee: str,
        destination: str,
        started_at: datetime,
        answered_at: datetime | None = None,
        direction: str | None = None,
        node_id: str | None = None,
        account_id: str = DEFAULT_ACCOUNT_ID,
    ) -> None:
        """Write the record of a call in progress (state ``open``), or bring its open record
        up to date (who answered, when).

        ``CdrExists`` if the call's record is ended already.
        """
        check_aware("CDR started_at", started_at)
        check_aware("CDR answered_at", answered_at)
        _check_lengths(call_id=call_id, direction=direction)
        # One statement, no read first (issue 15: two of these per call): a new record is
        # inserted; an open one gets who answered and when; an ended one is left alone
        # (nothing written) and refused. Both dialects spell the upsert the same way.
        async with self._write.begin() as session:
            dialect = sqlite if session.get_bind().dialect.name == "sqlite" else postgresql
            upsert = dialect.insert(CdrRow).values(
                account_id=account_id,
                call_id=call_id,
                caller=caller,
                callee=callee,
                destination=destination,
                direction=direction,
                started_at=started_at,
                answered_at=answered_at,
                state="open",
                node_id=node_id,
            )
            upsert = upsert.on_conflict_do_update(
                index_elements=[CdrRow.call_id],
                set_={
                    "callee": upsert.excluded.callee,
                    "answered_at": upsert.excluded.answered_at,
                    "node_id": upsert.excluded.node_id,
                },
                where=CdrRow.state == "open",
            )
            result = await session.execute(upsert)
            if int(getattr(result, "rowcount", 0)) == 0:
                raise CdrExists(call_id)

    async def record_cdr(self, cdr: Cdr, *, node_id: str | None = None) -> None:
        """Keep a finished call's record: its open row is completed, or an ended row written.

        ``CdrExists`` if the call's record is ended already.
        """
        for what, value in (
            ("started_at", cdr.started_at),
            ("answered_at", cdr.answered_at),
            ("ended_at", cdr.ended_at),
        ):
            check_aware(f"CDR {what}", value)
        _check_lengths(call_id=cdr.call_id, end_reason=cdr.end_reason, direction=cdr.direction)
        values = {
            "caller": cdr.caller,
            "callee": cdr.callee,
            "destination": cdr.destination,
            "direction": cdr.direction,
            "started_at": cdr.started_at,
            "answered_at": cdr.answered_at,
            "ended_at": cdr.ended_at,
            "duration_seconds": cdr.duration_seconds,
            "end_reason": cdr.end_reason,
            "state": "ended",
            **_details(cdr),
        }
        try:
            async with self._write.begin() as session:
                result = await session.execute(
                    update(CdrRow)
                    .where(CdrRow.call_id == cdr.call_id, CdrRow.state == "open")
                    .values(**values),
                    execution_options={"synchronize_session": False},
                )
                if int(getattr(result, "rowcount", 0)) == 0:
                    session.add(
                        CdrRow(
                            call_id=cdr.call_id,
                            account_id=cdr.account_id,
                            node_id=node_id,
                            **values,
                        )
                    )
        except IntegrityError as exc:
            if await self._cdr_state(cdr.call_id) is None:
                raise
            raise CdrExists(cdr.call_id) from exc

    async def get_cdr(self, call_id: str) -> Cdr | None:
        """The ended record of a call (None while it is open or if there is none)."""
        async with self._read() as session:
            row = await session.scalar(
                select(CdrRow).where(CdrRow.call_id == call_id, CdrRow.state == "ended")
            )
        return None if row is None else _cdr(row)

    async def list_cdrs(self, limit: int = 100, *, account_id: str | None = None) -> list[Cdr]:
        """The ``limit`` most recent ended CDRs (of the account, if one is given), newest
        (latest start) first."""
        if limit < 0:
            raise ValueError(f"limit must be 0 or more, not {limit}")
        statement = select(CdrRow).where(CdrRow.state == "ended")
        if account_id is not None:
            statement = statement.where(CdrRow.account_id == account_id)
        async with self._read() as session:
            rows = await session.scalars(
                statement.order_by(CdrRow.started_at.desc(), CdrRow.id.desc()).limit(limit)
            )
            return [_cdr(row) for row in rows]

    async def search_cdrs(
        self, query: CdrQuery, page_number: int = 1, page_size: int = 20
    ) -> tuple[list[Cdr], int]:
        """One page of the ended CDRs that match ``query`` (``/v2/detail_records``, ``callbridge
        cdrs``), in ``query.sort`` order, and how many match in all."""
        statement = select(CdrRow).where(CdrRow.state == "ended")
        if query.account_id is not None:
            statement = statement.where(CdrRow.account_id == query.account_id)
        for name, value in query.equal.items():
            if name not in CDR_FILTERS:
                raise ValueError(f"CDRs cannot be filtered on {name!r}")
            statement = statement.where(getattr(CdrRow, name) == value)
        for name, (low, high) in query.ranges.items():
            if name not in CDR_INSTANTS:
                raise ValueError(f"{name!r} is not a CDR instant")
            column = getattr(CdrRow, name)
            check_aware(f"CDR filter {name}", low)
            check_aware(f"CDR filter {name}", high)
            if low is not None:
                statement = statement.where(column >= low)
            if high is not None:
                statement = statement.where(column < high)
        name = query.sort.lstrip("-")
        if name not in CDR_INSTANTS:
            raise ValueError(f"CDRs cannot be sorted on {name!r}")
        column = getattr(CdrRow, name)
        desc = query.sort.startswith("-")
        order = (column.desc(), CdrRow.id.desc()) if desc else (column.asc(), CdrRow.id.asc())
        async with self._read() as session:
            rows, total = await page(session, statement.order_by(*order), page_number, page_size)
            return [_cdr(row) for row in rows], total

    async def open_cdr_ids(self, node_id: str | None = None) -> list[str]:
        """Call ids of the records still open (of one node, if given), oldest first."""
        statement = select(CdrRow.call_id).where(CdrRow.state == "open").order_by(CdrRow.id)
        if node_id is not None:
            statement = statement.where(CdrRow.node_id == node_id)
        async with self._read() as session:
            return list(await session.scalars(statement))

    async def close_open_cdrs(
        self, node_id: str | None, *, end_reason: str, ended_at: datetime | None = None
    ) -> list[ClosedCdr]:
        """Close every record ``node_id`` left open (its calls were cut off by a crash):
        ended at ``ended_at`` (now) with ``end_reason``; the ones closed."""
        check_aware("ended_at", ended_at)
        at = ended_at or now()
        closed: list[ClosedCdr] = []
        async with self._write.begin() as session:
            rows = list(
                await session.scalars(
                    select(CdrRow).where(CdrRow.state == "open", CdrRow.node_id == node_id)
                )
            )
            for row in rows:
                row.state = "ended"
                row.ended_at = max(at, row.started_at)
                row.end_reason = end_reason
                answered = row.answered_at
                row.duration_seconds = (
                    0.0 if answered is None else max(0.0, (at - answered).total_seconds())
                )
                closed.append(ClosedCdr(row.call_id, row.account_id, row.started_at, answered))
        return closed

    async def _cdr_state(self, call_id: str) -> str | None:
        async with self._read() as session:
            return await session.scalar(select(CdrRow.state).where(CdrRow.call_id == call_id))

    # live calls -----------------------------------------------------------------------------
    async def save_live_call(
        self,
        call_control_id: str,
        *,
        data_json: str,
        node_id: str | None,
        application_id: str | None = None,
        account_id: str = DEFAULT_ACCOUNT_ID,
    ) -> None:
        """Write (or rewrite) what a live call's end webhooks need."""
        at = now()
        async with self._write.begin() as session:
            row = await session.get(LiveCallRow, call_control_id)
            if row is None:
                session.add(
                    LiveCallRow(
                        call_control_id=call_control_id,
                        account_id=account_id,
                        application_id=application_id,
                        node_id=node_id,
                        data_json=data_json,
                        created_at=at,
                        updated_at=at,
                    )
                )
                return
            row.data_json = data_json
            row.application_id = application_id
            row.node_id = node_id
            row.updated_at = at

    async def delete_live_call(self, call_control_id: str) -> bool:
        """The call ended: forget it. False if there was no row."""
        async with self._write.begin() as session:
            result = await session.execute(
                delete(LiveCallRow).where(LiveCallRow.call_control_id == call_control_id),
                execution_options={"synchronize_session": False},
            )
        return int(getattr(result, "rowcount", 0)) == 1

    async def list_live_calls(self, node_id: str | None = None) -> list[LiveCall]:
        """The live calls (of one node, if given), oldest first."""
        statement = select(LiveCallRow).order_by(LiveCallRow.created_at)
        if node_id is not None:
            statement = statement.where(LiveCallRow.node_id == node_id)
        async with self._read() as session:
            return [
                LiveCall(
                    row.call_control_id,
                    row.account_id,
                    row.application_id,
                    row.node_id,
                    row.data_json,
                    row.created_at,
                    row.updated_at,
                )
                for row in await session.scalars(statement)
            ]


def _check_lengths(**texts: str | None) -> None:
    for what, limit in _LIMITS:
        text = texts.get(what)
        if text is not None and len(text) > limit:
            raise ValueError(f"CDR {what} is longer than {limit} characters")


def _cdr(row: CdrRow) -> Cdr:
    assert row.ended_at is not None and row.end_reason is not None  # an ended row
    return Cdr(
        call_id=row.call_id,
        caller=row.caller,
        callee=row.callee,
        destination=row.destination,
        started_at=row.started_at,
        answered_at=row.answered_at,
        ended_at=row.ended_at,
        end_reason=row.end_reason,
        direction=row.direction,
        account_id=row.account_id,
        answered_device=row.answered_device,
        answered_user=row.answered_user,
        queue_name=row.queue_name,
        queue_wait_secs=row.queue_wait_secs,
        conference_id=row.conference_id,
        transferred_to=row.transferred_to,
        hangup_source=row.hangup_source,
        quality=None if row.quality_json is None else json.loads(row.quality_json),
        sip_cause=row.sip_cause,
        forwarding=None if row.forwarding_json is None else json.loads(row.forwarding_json),
    )


def _details(cdr: Cdr) -> dict[str, Any]:
    """The detail columns of a record (migration 0006), cut to their column sizes: a detail
    too long for its column must not cost the whole record."""
    texts = {
        "answered_device": (cdr.answered_device, 128),
        "answered_user": (cdr.answered_user, 255),
        "queue_name": (cdr.queue_name, 255),
        "conference_id": (cdr.conference_id, 64),
        "transferred_to": (cdr.transferred_to, 64),
        "hangup_source": (cdr.hangup_source, 16),
    }
    values: dict[str, Any] = {
        name: None if text is None else text[:limit] for name, (text, limit) in texts.items()
    }
    values["queue_wait_secs"] = cdr.queue_wait_secs
    values["quality_json"] = None if cdr.quality is None else json.dumps(cdr.quality)
    values["sip_cause"] = cdr.sip_cause
    values["forwarding_json"] = None if cdr.forwarding is None else json.dumps(cdr.forwarding)
    return values
