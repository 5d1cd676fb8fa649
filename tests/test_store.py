"""The store against a real SQLite file: schema, users, routing lookups, tokens, keys, CDRs.

PostgreSQL: the store is written for it too (portable types, ``timestamptz``, an advisory lock
around migrations), but this suite runs on SQLite only; there is no PostgreSQL test yet. Run
these scenarios against ``postgresql+asyncpg://`` before relying on a schema or query change
there.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

from callbridge.errors import CallbridgeError
from callbridge.store import (
    Cdr,
    CdrExists,
    SchemaError,
    Store,
    StoreError,
    TokenExpired,
    TokenInvalid,
    User,
    UserExists,
    UserNotFound,
)
from callbridge.store.engine import alembic_config
from callbridge.store.schema import Base

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def url_of(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "callbridge.db"


@pytest.fixture
async def db(db_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(url_of(db_path))
    yield store
    await store.close()


def sql(db_path: Path, statement: str, *params: object) -> list[tuple[object, ...]]:
    """Run SQL on the file through a second, plain sqlite3 connection (as another process)."""
    with sqlite3.connect(db_path) as conn:
        return conn.execute(statement, params).fetchall()


def test_the_public_surface_is_exactly_the_documented_one() -> None:
    import callbridge.store as store

    assert sorted(store.__all__) == sorted(
        ["Cdr", "CdrExists", "SchemaError", "Store", "StoreError", "TokenExpired",
         "TokenInvalid", "User", "UserExists", "UserNotFound"]
    )  # fmt: skip
    for name in store.__all__:
        assert getattr(store, name).__module__.startswith("callbridge.store.")


def test_the_store_errors_are_callbridge_errors() -> None:
    for error in (UserExists, UserNotFound, TokenInvalid, TokenExpired, CdrExists, SchemaError):
        assert issubclass(error, StoreError)
    assert issubclass(StoreError, CallbridgeError)


# schema -----------------------------------------------------------------------------------
async def test_opening_a_new_file_creates_its_directory_and_the_current_schema(
    db_path: Path,
) -> None:
    assert not db_path.parent.exists()
    store = await Store.open(url_of(db_path))
    await store.close()

    engine = create_engine(f"sqlite:///{db_path}")
    try:
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            assert {"users", "tokens", "api_keys", "cdrs", "alembic_version"} <= tables
            head = ScriptDirectory.from_config(alembic_config()).get_current_head()
            assert MigrationContext.configure(conn).get_current_revision() == head
            # The migrations build exactly what the models describe: nothing to autogenerate.
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    finally:
        engine.dispose()
    assert sql(db_path, "PRAGMA journal_mode") == [("wal",)]


async def test_reopening_keeps_the_data(db_path: Path) -> None:
    async with await Store.open(url_of(db_path)) as store:
        await store.add_user("alice", "1001")
    async with await Store.open(url_of(db_path)) as store:
        assert [u.name for u in await store.list_users()] == ["alice"]


async def test_stores_opened_at_once_on_a_new_file_migrate_it_once(db_path: Path) -> None:
    stores = await asyncio.gather(*(Store.open(url_of(db_path)) for _ in range(4)))
    try:
        await asyncio.gather(*(s.add_user(f"u{i}", f"10{i}") for i, s in enumerate(stores)))
        assert len(await stores[0].list_users()) == 4
    finally:
        for store in stores:
            await store.close()
    assert sql(db_path, "SELECT version_num FROM alembic_version") == [("0001",)]


async def test_a_database_from_a_newer_callbridge_is_refused(db_path: Path) -> None:
    async with await Store.open(url_of(db_path)):
        pass
    sql(db_path, "UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(SchemaError, match="9999"):
        await Store.open(url_of(db_path))


# users ------------------------------------------------------------------------------------
async def test_add_user_returns_it_with_the_number_in_e164(db: Store) -> None:
    user = await db.add_user("alice", "1001", number="+1 (415) 555-0100", display_name="Alice")
    assert user == User(user.id, "alice", "1001", "+14155550100", "Alice")
    assert await db.get_user("alice") == user
    assert await db.get_user("nobody") is None


async def test_optional_fields_default_to_none_and_blank_display_name_is_none(db: Store) -> None:
    user = await db.add_user("bob", "1002", display_name="   ")
    assert (user.number, user.display_name) == (None, None)


async def test_list_users_is_sorted_by_name(db: Store) -> None:
    for name, ext in (("carol", "1003"), ("alice", "1001"), ("bob", "1002")):
        await db.add_user(name, ext)
    assert [u.name for u in await db.list_users()] == ["alice", "bob", "carol"]


@pytest.mark.parametrize(
    ("second", "field", "message"),
    [
        (("alice", "2002", None), "name", "a user named 'alice' already exists"),
        (("bob", "1001", None), "extension", "extension 1001 is taken by user 'alice'"),
        (("bob", "2002", "+1 415.555.0100"), "number", "number +14155550100 is taken by user"),
    ],
    ids=["name", "extension", "number-spelled-differently"],
)
async def test_a_taken_name_extension_or_number_is_refused_saying_which(
    db: Store, second: tuple[str, str, str | None], field: str, message: str
) -> None:
    await db.add_user("alice", "1001", number="+14155550100")
    name, extension, number = second
    with pytest.raises(UserExists, match=re.escape(message)) as caught:
        await db.add_user(name, extension, number=number)
    assert caught.value.fields == (field,)
    assert len(await db.list_users()) == 1


async def test_every_collision_is_named_when_several_fields_are_taken(db: Store) -> None:
    await db.add_user("alice", "1001", number="+14155550100")
    with pytest.raises(UserExists) as caught:
        await db.add_user("alice", "1001", number="+14155550100")
    assert caught.value.fields == ("name", "extension", "number")
    assert "extension 1001" in str(caught.value)
    assert "number +14155550100" in str(caught.value)


async def test_users_without_numbers_do_not_collide(db: Store) -> None:
    await db.add_user("alice", "1001")
    await db.add_user("bob", "1002")
    assert len(await db.list_users()) == 2


@pytest.mark.parametrize(
    ("name", "extension", "number", "complaint"),
    [
        ("", "1001", None, "invalid user name"),
        ("al ice", "1001", None, "invalid user name"),
        ("a" * 65, "1001", None, "invalid user name"),
        ("zoë", "1001", None, "invalid user name"),
        ("alice", "1", None, "invalid extension"),
        ("alice", "123456789", None, "invalid extension"),
        ("alice", "10a", None, "invalid extension"),
        ("alice", "١٠٠١", None, "invalid extension"),  # Arabic-Indic digits are not dialable
        ("alice", "1001", "14155550100", "invalid number"),  # E.164 needs the '+'
        ("alice", "1001", "+04155550100", "invalid number"),  # no country code starts with 0
        ("alice", "1001", "+1415555", "invalid number"),  # 7 digits
        ("alice", "1001", "+1234567890123456", "invalid number"),  # 16 digits
        ("alice", "1001", "+1 415 CALL ME", "invalid number"),
    ],
)
async def test_malformed_fields_are_refused_with_the_rule(
    db: Store, name: str, extension: str, number: str | None, complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        await db.add_user(name, extension, number=number)
    assert await db.list_users() == []


async def test_boundary_lengths_are_accepted(db: Store) -> None:
    await db.add_user("a", "10", number="+12345678")
    await db.add_user("b" * 64, "12345678", number="+123456789012345")
    with pytest.raises(ValueError, match="display name"):
        await db.add_user("c", "11", display_name="x" * 129)


# routing lookups --------------------------------------------------------------------------
@pytest.fixture
async def directory(db: Store) -> Store:
    await db.add_user("alice", "1001", number="+14155550100", display_name="Alice")
    await db.add_user("bob", "1002", number="+442079460000")
    return db


@pytest.mark.parametrize(
    ("dialled", "expected"),
    [
        ("1001", "alice"),
        ("1002", "bob"),
        ("+14155550100", "alice"),
        ("14155550100", "alice"),
        ("+1 (415) 555-0100", "alice"),
        ("1.415.555.0100", "alice"),
        (" +1-415-555-0100 ", "alice"),
        ("+44 20 7946 0000", "bob"),
        ("alice", "alice"),
        ("bob", "bob"),
    ],
)
async def test_find_user_by_extension_number_or_name(
    directory: Store, dialled: str, expected: str
) -> None:
    user = await directory.find_user(dialled)
    assert user is not None and user.name == expected


@pytest.mark.parametrize("dialled", ["1003", "+14155550199", "carol", "Alice", "", "   ", "+"])
async def test_find_user_returns_none_for_an_unknown_destination(
    directory: Store, dialled: str
) -> None:
    assert await directory.find_user(dialled) is None


async def test_an_extension_wins_over_a_number_and_a_number_over_a_name(db: Store) -> None:
    await db.add_user("by-extension", "14155550", number="+15555555555")
    await db.add_user("by-number", "2000", number="+14155550")
    await db.add_user("14155550", "3000")  # a name that is all digits
    await db.add_user("16505550100", "4000")
    await db.add_user("by-number-2", "5000", number="+16505550100")

    found = await db.find_user("14155550")
    assert found is not None and found.name == "by-extension"
    found = await db.find_user("+14155550")
    assert found is not None and found.name == "by-number"
    found = await db.find_user("16505550100")
    assert found is not None and found.name == "by-number-2"


# login tokens -----------------------------------------------------------------------------
async def test_a_new_token_logs_its_user_in_until_it_expires(directory: Store) -> None:
    before = datetime.now(UTC)
    token, expires_at = await directory.create_token("alice", timedelta(hours=2))
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    assert expires_at.tzinfo == UTC
    assert before + timedelta(hours=2) <= expires_at <= datetime.now(UTC) + timedelta(hours=2)
    user = await directory.check_token(token)
    assert (user.name, user.extension, user.number) == ("alice", "1001", "+14155550100")


async def test_the_default_lifetime_is_a_day(directory: Store) -> None:
    _, expires_at = await directory.create_token("alice")
    assert abs(expires_at - datetime.now(UTC) - timedelta(hours=24)) < timedelta(minutes=1)


async def test_only_the_tokens_hash_is_stored(directory: Store, db_path: Path) -> None:
    token, _ = await directory.create_token("alice")
    assert sql(db_path, "SELECT token_hash FROM tokens") == [
        (hashlib.sha256(token.encode()).hexdigest(),)
    ]


async def test_each_token_of_a_user_works(directory: Store) -> None:
    first, _ = await directory.create_token("alice")
    second, _ = await directory.create_token("alice")
    assert first != second
    assert (await directory.check_token(first)).name == "alice"
    assert (await directory.check_token(second)).name == "alice"


@pytest.mark.parametrize("ttl", [timedelta(0), timedelta(seconds=-1), timedelta(days=-3)])
async def test_an_expired_token_is_refused_as_expired(directory: Store, ttl: timedelta) -> None:
    token, expires_at = await directory.create_token("bob", ttl)
    with pytest.raises(TokenExpired) as caught:
        await directory.check_token(token)
    assert caught.value.expires_at == expires_at


async def test_a_token_expires_at_its_stored_expiry(directory: Store, db_path: Path) -> None:
    token, _ = await directory.create_token("bob", timedelta(hours=1))
    past = (datetime.now(UTC) - timedelta(seconds=1)).replace(tzinfo=None).isoformat(" ")
    sql(db_path, "UPDATE tokens SET expires_at = ?", past)
    with pytest.raises(TokenExpired):
        await directory.check_token(token)


@pytest.mark.parametrize("token", ["", "not-a-token", "x" * 43])
async def test_an_unknown_token_is_refused_as_invalid(directory: Store, token: str) -> None:
    await directory.create_token("alice")
    with pytest.raises(TokenInvalid):
        await directory.check_token(token)


async def test_a_revoked_token_is_refused_as_invalid(directory: Store, db_path: Path) -> None:
    token, _ = await directory.create_token("alice")
    sql(db_path, "UPDATE tokens SET revoked = 1")
    with pytest.raises(TokenInvalid):
        await directory.check_token(token)


async def test_a_token_for_an_unknown_user_is_refused(directory: Store, db_path: Path) -> None:
    with pytest.raises(UserNotFound, match="carol"):
        await directory.create_token("carol")
    assert sql(db_path, "SELECT count(*) FROM tokens") == [(0,)]


# API keys ---------------------------------------------------------------------------------
async def test_a_new_api_key_is_accepted_and_stored_only_as_a_hash(
    db: Store, db_path: Path
) -> None:
    key = await db.create_api_key("billing app")
    assert re.fullmatch(r"KEY[A-Za-z0-9_-]{40}", key)
    assert await db.check_api_key(key)
    assert sql(db_path, "SELECT name, prefix, key_hash, revoked FROM api_keys") == [
        ("billing app", key[:8], hashlib.sha256(key.encode()).hexdigest(), 0)
    ]


async def test_api_keys_are_distinct_and_need_no_name(db: Store) -> None:
    keys = {await db.create_api_key() for _ in range(5)}
    assert len(keys) == 5
    for key in keys:
        assert await db.check_api_key(key)


async def test_wrong_or_revoked_api_keys_are_refused(db: Store, db_path: Path) -> None:
    key = await db.create_api_key()
    altered = key[:-1] + ("A" if key[-1] != "A" else "B")
    for wrong in ("", "KEY", altered, key + "x", key[3:], "key" + key[3:]):
        assert not await db.check_api_key(wrong)
    sql(db_path, "UPDATE api_keys SET revoked = 1")
    assert not await db.check_api_key(key)


# call detail records ----------------------------------------------------------------------
def cdr(call_id: str, start: datetime, answered_after: float | None, talk: float) -> Cdr:
    """A call that rang ``answered_after`` seconds (or ``talk`` seconds, unanswered)."""
    answered_at = None if answered_after is None else start + timedelta(seconds=answered_after)
    return Cdr(
        call_id=call_id,
        caller="alice",
        callee="bob",
        destination="1002",
        started_at=start,
        answered_at=answered_at,
        ended_at=(answered_at or start) + timedelta(seconds=talk),
        end_reason="hangup" if answered_at else "no-answer",
        direction="internal",
    )


async def test_a_cdr_reads_back_as_written(db: Store, db_path: Path) -> None:
    answered = cdr("c-answered", T0, answered_after=4.5, talk=61.25)
    missed = cdr("c-missed", T0 + timedelta(minutes=5), answered_after=None, talk=30)
    await db.record_cdr(answered)
    await db.record_cdr(missed)

    assert await db.list_cdrs() == [missed, answered]
    assert answered.duration_seconds == 61.25
    assert missed.duration_seconds == 0
    assert sql(db_path, "SELECT call_id, duration_seconds FROM cdrs ORDER BY id") == [
        ("c-answered", 61.25),
        ("c-missed", 0.0),
    ]
    for record in await db.list_cdrs():
        assert record.started_at.tzinfo == UTC and record.ended_at.tzinfo == UTC


async def test_cdr_times_in_any_zone_come_back_as_the_same_instants_in_utc(db: Store) -> None:
    paris = timezone(timedelta(hours=1))
    start = T0.astimezone(paris)
    await db.record_cdr(
        Cdr("c1", "alice", "bob", "bob", start, start, start + timedelta(seconds=9), "hangup")
    )
    (back,) = await db.list_cdrs()
    assert back.started_at == T0 and back.started_at.tzinfo == UTC
    assert back.direction is None
    assert back.duration_seconds == 9


async def test_cdrs_list_newest_first_up_to_the_limit(db: Store) -> None:
    starts = [T0 + timedelta(seconds=s) for s in (30, 10, 50, 20, 40)]
    for i, start in enumerate(starts):
        await db.record_cdr(cdr(f"c{i}", start, answered_after=1, talk=5))
    newest = await db.list_cdrs(limit=3)
    assert [c.started_at for c in newest] == sorted(starts, reverse=True)[:3]
    assert len(await db.list_cdrs()) == 5
    assert await db.list_cdrs(limit=0) == []


async def test_a_second_cdr_for_a_call_is_refused(db: Store) -> None:
    await db.record_cdr(cdr("c1", T0, answered_after=1, talk=5))
    with pytest.raises(CdrExists, match="c1"):
        await db.record_cdr(cdr("c1", T0, answered_after=None, talk=5))
    assert len(await db.list_cdrs()) == 1


async def test_a_cdr_with_naive_times_is_refused(db: Store) -> None:
    naive = T0.replace(tzinfo=None)
    with pytest.raises(ValueError, match="naive"):
        await db.record_cdr(Cdr("c1", "alice", "bob", "bob", naive, None, naive, "failed"))
    assert await db.list_cdrs() == []
