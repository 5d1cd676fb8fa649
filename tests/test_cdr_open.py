"""``open_cdr`` as one upsert (issue 15 call setup): a new call's record is written open, a
second open brings it up to date, an ended record is refused and left as it was. Runs on
SQLite and PostgreSQL (tests/pg.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

import pg
from callbridge.store import Cdr, CdrExists, Store

database = pg.database
T0 = datetime(2026, 12, 2, 6, 0, 0, tzinfo=UTC)


@pytest.fixture
async def db(database: pg.Database) -> AsyncIterator[Store]:
    store = await Store.open(database.url)
    yield store
    await store.close()


async def test_open_update_end_and_refuse(db: Store) -> None:
    await db.open_cdr(
        call_id="k1", callee="200", node_id="n1", caller="ann", destination="200", started_at=T0
    )
    assert await db.open_cdr_ids() == ["k1"]
    answered = T0 + timedelta(seconds=2)
    await db.open_cdr(
        call_id="k1",
        callee="bob",
        answered_at=answered,
        node_id="n2",
        caller="ann",
        destination="200",
        started_at=T0,
    )
    assert await db.open_cdr_ids("n2") == ["k1"]  # updated in place, not a second row
    ended = Cdr("k1", "ann", "bob", "200", T0, answered, T0 + timedelta(seconds=9), "completed")
    await db.record_cdr(ended)
    with pytest.raises(CdrExists, match="k1"):
        await db.open_cdr(
            call_id="k1", callee="eve", node_id="n3", caller="ann", destination="200", started_at=T0
        )
    [back] = await db.list_cdrs()
    assert (back.callee, back.answered_at, back.end_reason) == ("bob", answered, "completed")
    assert await db.open_cdr_ids() == []
