"""``history.list`` on ``/ws``: the signed-in user's call history from the server's CDRs
(docs/protocol.md, "Call history").

A page of the user's ended calls, newest first, each from the user's side: ``direction``
``out`` (they placed it) or ``in`` (they were called), the other party, the times, the end
reason and whether it was ``missed``. ``before`` is the cursor of the previous page
(``next_before``), opaque to clients: ``<started_at in µs since the epoch>-<row id>``.

A client asks for its history right after ``call.ended``; the record of that call is written
by the server's write spool a moment later. So the answer first waits (up to
``SETTLE_SECONDS`` in all) for two things: the calls the user's legs have just left to finish
ending (the core sends ``call.ended`` to a leg, then closes its media and ends the other
legs, and only then hands the CDR to the journal: :func:`_ending_calls`), and then the CDRs
queued before the request to be written: the call just ended is in the page. A database that
refuses writes does not hold the answer up longer than that.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from callbridge.core.calls import Call
from callbridge.core.controller import CallController
from callbridge.core.tenancy import account_of
from callbridge.errors import ErrorCode, ProtocolError
from callbridge.signalling import protocol as p
from callbridge.signalling.sessions import Session
from callbridge.store.history import UserCall, list_user_calls
from callbridge.store.repository import Repository
from callbridge.store.spool import WriteSpool

__all__ = ["SETTLE_SECONDS", "decode_cursor", "encode_cursor", "history_page"]

SETTLE_SECONDS = 2.0  # the longest a history.list waits for CDRs still being written
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_MAX_ROW_ID = 2**63 - 1  # a BIGINT: a larger id is refused by PostgreSQL, not just unknown
_CURSOR = re.compile(r"(\d{1,19})-(\d{1,19})")
# Ends of an unanswered incoming call that the user chose: not "missed".
_DECLINED = frozenset({"busy", "rejected"})


def encode_cursor(position: tuple[datetime, int]) -> str:
    at, row_id = position
    return f"{(at - _EPOCH) // _MICROSECOND}-{row_id}"


def decode_cursor(text: str) -> tuple[datetime, int]:
    """``before`` -> (started_at, row id); :class:`ProtocolError` for anything this server
    did not hand out as ``next_before``."""
    match = _CURSOR.fullmatch(text)
    at: datetime | None = None
    if match is not None:
        try:
            at = _EPOCH + int(match[1]) * _MICROSECOND
        except OverflowError:
            at = None
    if match is None or at is None or int(match[2]) > _MAX_ROW_ID:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE,
            f"history.list: field 'before': {text[:64]!r} is not a cursor of this server; "
            "pass the next_before of the previous history.page, or leave it out for the "
            "newest calls",
        )
    return at, int(match[2])


async def history_page(
    store: Any, controller: CallController, session: Session, msg: p.HistoryList
) -> dict[str, Any]:
    """The ``history.page`` answering ``msg`` for ``session``'s user."""
    before = decode_cursor(msg.before) if msg.before is not None else None
    if not isinstance(store, Repository):
        raise ProtocolError(
            ErrorCode.INTERNAL, "history.list: this server keeps no call records to list"
        )
    await _settle(controller, session.user_name)
    # One more than asked: whether there is a next page, without a count query.
    calls = await list_user_calls(
        store, session.user_name, account_of(session), msg.limit + 1, before=before
    )
    more = len(calls) > msg.limit
    calls = calls[: msg.limit]
    return {
        "type": "history.page",
        "req_id": msg.req_id,
        "calls": [_entry(call) for call in calls],
        "next_before": encode_cursor(calls[-1].position) if more else None,
    }


def _ending_calls(controller: CallController, user: str) -> set[str]:
    """The calls whose end is under way and whose CDR is not with the journal yet: those
    ``user`` took part in, and those with no live leg left (whoever's they were).

    :attr:`CallController.cdr_pending` holds the calls whose CDR was opened and not yet
    handed over; :meth:`CallController.write_cdr` takes a call out as it hands its record to
    the journal, after ending every leg of it.
    """
    opened = controller.cdr_pending
    if not opened:
        return set()
    calls = {leg.call.id: leg.call for leg in controller.legs.values() if leg.call is not None}
    ending: set[str] = set()
    for call_id in opened:
        call = calls.get(call_id)
        # No live leg left: write_cdr() is a moment away. A leg of a two-party call that
        # hung up ended first (its device got call.ended), and the call ends next.
        if call is None or (_ends(call) and _took_part(call, user)):
            ending.add(call_id)
    return ending


def _ends(call: Call) -> bool:
    far = call.answered_leg
    return call.ended or not call.origin.live or (far is not None and not far.live)


def _took_part(call: Call, user: str) -> bool:
    far = call.answered_leg
    return user in (
        call.origin.device.user_name,
        far.device.user_name if far is not None else None,
        call.callee_name,
    )


async def _settle(controller: CallController, user: str) -> None:
    """Wait (a bounded time) for the calls ``user`` just ended to reach the write spool, then
    for the CDR writes queued so far (see the module docstring)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_SECONDS
    ending = _ending_calls(controller, user)
    while ending & _ending_calls(controller, user) and loop.time() < deadline:
        # asyncio.wait: a timeout must not raise, and the waiter is ours to drop.
        waiter = asyncio.ensure_future(controller.cdr_handed())
        done, _ = await asyncio.wait({waiter}, timeout=deadline - loop.time())
        if not done:
            waiter.cancel()
    if ending:
        # The journal's task for the record (spawned by write_cdr) queues it on its first
        # step: let it run before the spool is looked at.
        await asyncio.sleep(0)
    spool = getattr(controller.cdrs, "spool", None)  # callbridge.journal.Journal's
    left = deadline - loop.time()
    if isinstance(spool, WriteSpool) and spool.waiting and left > 0:
        # asyncio.wait, not wait_for: a timeout must not cancel the records' own futures.
        await asyncio.wait({asyncio.ensure_future(spool.drain())}, timeout=left)


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def _entry(call: UserCall) -> dict[str, Any]:
    party = call.party
    if call.outgoing:
        dial = call.destination  # what the user dialled, as they dialled it
    elif party is not None:
        dial = party.number or party.extension
    else:
        dial = call.other  # an application's or a SIP caller's number
    return {
        "call_id": call.call_id,
        "direction": "out" if call.outgoing else "in",
        "party": call.other or call.destination,
        "party_name": party.display_name if party is not None else None,
        "party_number": party.number if party is not None else None,
        "party_extension": party.extension if party is not None else None,
        "dial": dial,
        "started_at": _iso(call.started_at),
        "answered_at": _iso(call.answered_at),
        "ended_at": _iso(call.ended_at),
        "duration_seconds": round(call.duration_seconds, 3),
        "end_reason": call.end_reason,
        "missed": not call.outgoing
        and call.answered_at is None
        and call.end_reason not in _DECLINED,
    }
