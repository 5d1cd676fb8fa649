"""A user's call history: the ended CDRs that name them, newest first, a page at a time.

What a phone shows as "recent calls" (``history.list`` on ``/ws``, docs/protocol.md). A call
is the user's when its record names them as ``caller`` (they placed it) or ``callee`` (they
were called, or answered). Only records of the user's own account are read: that condition,
not the name, is what isolates tenants (a name recorded in another account, e.g. a user
removed there and the name taken again here, never brings that account's calls along).

Pages are keyset-paged on ``(started_at, id)``, the order of the list: the next page starts
after the last record of the previous one, so calls that end meanwhile do not shift it.

Only the columns the history needs are read, so that columns added to ``cdrs`` later do not
change this query.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select

from callbridge.store.repository import Repository, check_aware
from callbridge.store.schema import CdrRow, UserRow

__all__ = ["MAX_HISTORY_PAGE", "Party", "UserCall", "list_user_calls"]

MAX_HISTORY_PAGE = 100  # records in one page: a phone shows a screenful at a time


@dataclass(frozen=True, slots=True)
class Party:
    """The user at the other end of a call, as the users table has them now."""

    name: str
    extension: str
    number: str | None
    display_name: str | None


@dataclass(frozen=True, slots=True)
class UserCall:
    """One ended call of a user, from their side. Datetimes are timezone-aware UTC."""

    call_id: str
    outgoing: bool  # the user placed it (else they were called)
    other: str  # the other party's name in the record: the callee or the caller
    destination: str  # what the caller dialled
    party: Party | None  # ``other`` as a user of the account, if it is one
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime
    end_reason: str
    position: tuple[datetime, int]  # (started_at, row id): a page after this one starts here

    @property
    def duration_seconds(self) -> float:
        """Talk time: from the answer to the end; 0 for a call nobody answered."""
        if self.answered_at is None:
            return 0.0
        return max(0.0, (self.ended_at - self.answered_at).total_seconds())


async def list_user_calls(
    store: Repository,
    user_name: str,
    account_id: str,
    limit: int = 20,
    *,
    before: tuple[datetime, int] | None = None,
) -> list[UserCall]:
    """The ended calls of ``user_name`` in ``account_id``, newest (latest start) first: the
    ``limit`` after ``before`` (the ``position`` of the previous page's last call), or the
    newest ones."""
    # A page of MAX_HISTORY_PAGE asks for one row more, to know whether another page follows.
    if not 0 <= limit <= MAX_HISTORY_PAGE + 1:
        raise ValueError(f"limit must be from 0 to {MAX_HISTORY_PAGE + 1}, not {limit}")
    statement = select(
        CdrRow.id,
        CdrRow.call_id,
        CdrRow.caller,
        CdrRow.callee,
        CdrRow.destination,
        CdrRow.started_at,
        CdrRow.answered_at,
        CdrRow.ended_at,
        CdrRow.end_reason,
    ).where(
        CdrRow.state == "ended",
        CdrRow.account_id == account_id,
        or_(CdrRow.caller == user_name, CdrRow.callee == user_name),
    )
    if before is not None:
        at, row_id = before
        check_aware("before", at)
        statement = statement.where(
            or_(CdrRow.started_at < at, and_(CdrRow.started_at == at, CdrRow.id < row_id))
        )
    statement = statement.order_by(CdrRow.started_at.desc(), CdrRow.id.desc()).limit(limit)
    async with store._read() as session:
        rows = list(await session.execute(statement))
        others = {row.callee if row.caller == user_name else row.caller for row in rows}
        parties: dict[str, Party] = {}
        if others:
            users = await session.scalars(
                select(UserRow).where(UserRow.account_id == account_id, UserRow.name.in_(others))
            )
            parties = {u.name: Party(u.name, u.extension, u.number, u.display_name) for u in users}
    calls = []
    for row in rows:
        outgoing = row.caller == user_name
        other = row.callee if outgoing else row.caller
        assert row.ended_at is not None and row.end_reason is not None  # an ended row
        calls.append(
            UserCall(
                call_id=row.call_id,
                outgoing=outgoing,
                other=other,
                destination=row.destination,
                party=parties.get(other),
                started_at=row.started_at,
                answered_at=row.answered_at,
                ended_at=row.ended_at,
                end_reason=row.end_reason,
                position=(row.started_at, row.id),
            )
        )
    return calls
