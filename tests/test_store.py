"""The store on SQLite and on a real PostgreSQL: schema, users, routing lookups, tokens, keys,
CDRs, call-control applications and routes, media, recordings, the webhook outbox's rows and the
signing key.

Every scenario runs on both databases (``[sqlite]``/``[postgresql]``, see ``tests/pg.py`` for
where PostgreSQL comes from); the few about SQLite's file and journal run on SQLite only.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, insert, inspect, update

import pg
from callbridge.errors import CallbridgeError
from callbridge.store import (
    Application,
    ApplicationNotFound,
    Cdr,
    CdrExists,
    Media,
    MediaExists,
    MediaNotFound,
    NotFound,
    OutboxMessage,
    Recording,
    RecordingExists,
    RecordingNotFound,
    Route,
    RouteNotFound,
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
from callbridge.store.schema import Base, TokenRow, UserRow, WebhookOutboxRow

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()

database = pg.database  # the fixture: each test below runs on SQLite and on PostgreSQL


@pytest.fixture
async def db(database: pg.Database) -> AsyncIterator[Store]:
    store = await Store.open(database.url)
    yield store
    await store.close()


def test_the_public_surface_is_exactly_the_documented_one() -> None:
    import callbridge.store as store

    assert sorted(store.__all__) == sorted(
        ["APPLICATION_SORTS", "MAX_PAGE_SIZE", "Application", "ApplicationChanges",
         "ApplicationNotFound", "Cdr", "CdrExists", "Media", "MediaChanges", "MediaExists",
         "MediaNotFound", "NotFound", "OutboxMessage", "Recording", "RecordingExists",
         "RecordingNotFound", "Route", "RouteNotFound", "SchemaError", "SigningKey", "Store",
         "StoreError", "TokenExpired", "TokenInvalid", "User", "UserExists", "UserNotFound"]
    )  # fmt: skip
    for name in store.__all__:
        value = getattr(store, name)
        if isinstance(value, type):
            assert value.__module__.startswith("callbridge.store.")


def test_the_store_errors_are_callbridge_errors() -> None:
    error: type[StoreError]
    for error in (UserExists, TokenInvalid, TokenExpired, CdrExists, SchemaError, MediaExists,
                  RecordingExists, NotFound):  # fmt: skip
        assert issubclass(error, StoreError)
    for error in (UserNotFound, ApplicationNotFound, RouteNotFound, MediaNotFound,
                  RecordingNotFound):  # fmt: skip
        assert issubclass(error, NotFound) and issubclass(error, LookupError)
    assert issubclass(StoreError, CallbridgeError)
    assert str(UserNotFound("carol")) == "no user named 'carol'"
    assert ApplicationNotFound("42").key == "42"


# schema -----------------------------------------------------------------------------------
def _schema_state(conn: Connection) -> tuple[set[str], str | None, list[Any]]:
    context = MigrationContext.configure(conn)
    tables = set(inspect(conn).get_table_names())
    return tables, context.get_current_revision(), compare_metadata(context, Base.metadata)


async def test_opening_a_new_database_creates_the_current_schema(database: pg.Database) -> None:
    store = await Store.open(database.url)
    await store.close()
    tables, revision, differences = await database.run_sync(_schema_state)
    assert {"users", "tokens", "api_keys", "cdrs", "call_control_applications", "routes",
            "media", "recordings", "webhook_outbox", "signing_keys", "accounts", "numbers",
            "live_calls", "queues", "queue_entries", "sip_credentials", "sip_bindings",
            "sip_secrets",
            "alembic_version"} <= tables  # fmt: skip
    assert revision == HEAD == "0011"
    # The migrations build exactly what the models describe: nothing to autogenerate.
    assert differences == []


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_a_new_sqlite_file_gets_its_directory_and_the_wal_journal(
    database: pg.Database,
) -> None:
    assert database.path is not None and not database.path.parent.exists()
    store = await Store.open(database.url)
    await store.close()
    assert database.path.exists()
    assert await database.sql("PRAGMA journal_mode") == [("wal",)]


async def test_the_first_schema_upgrades_to_the_current_one_keeping_the_data(
    database: pg.Database,
) -> None:
    from callbridge.store.engine import create_engine, migrate

    engine = create_engine(database.url)
    try:
        await migrate(engine, "0001")
    finally:
        await engine.dispose()
    row = {"name": "alice", "extension": "1001", "created_at": T0}
    await database.run_sync(lambda conn: conn.execute(insert(UserRow).values(**row)))
    async with await Store.open(database.url) as store:
        assert [u.name for u in await store.list_users()] == ["alice"]
        assert await store.list_applications() == ([], 0)
    assert await database.sql("SELECT version_num FROM alembic_version") == [(HEAD,)]


async def test_reopening_keeps_the_data(database: pg.Database) -> None:
    async with await Store.open(database.url) as store:
        await store.add_user("alice", "1001")
    async with await Store.open(database.url) as store:
        assert [u.name for u in await store.list_users()] == ["alice"]


async def test_stores_opened_at_once_on_a_new_database_migrate_it_once(
    database: pg.Database,
) -> None:
    stores = await asyncio.gather(*(Store.open(database.url) for _ in range(4)))
    try:
        await asyncio.gather(*(s.add_user(f"u{i}", f"10{i}") for i, s in enumerate(stores)))
        assert len(await stores[0].list_users()) == 4
    finally:
        for store in stores:
            await store.close()
    assert await database.sql("SELECT version_num FROM alembic_version") == [(HEAD,)]


async def test_a_database_from_a_newer_callbridge_is_refused(database: pg.Database) -> None:
    async with await Store.open(database.url):
        pass
    await database.sql("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(SchemaError, match="9999"):
        await Store.open(database.url)


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


async def test_only_the_tokens_hash_is_stored(directory: Store, database: pg.Database) -> None:
    token, _ = await directory.create_token("alice")
    assert await database.sql("SELECT token_hash FROM tokens") == [
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


async def test_a_token_expires_at_its_stored_expiry(
    directory: Store, database: pg.Database
) -> None:
    token, _ = await directory.create_token("bob", timedelta(hours=1))
    past = datetime.now(UTC) - timedelta(seconds=1)
    # Through the model's column type: it writes an instant the way each database keeps it.
    await database.run_sync(lambda conn: conn.execute(update(TokenRow).values(expires_at=past)))
    with pytest.raises(TokenExpired):
        await directory.check_token(token)


@pytest.mark.parametrize("token", ["", "not-a-token", "x" * 43])
async def test_an_unknown_token_is_refused_as_invalid(directory: Store, token: str) -> None:
    await directory.create_token("alice")
    with pytest.raises(TokenInvalid):
        await directory.check_token(token)


async def test_a_revoked_token_is_refused_as_invalid(
    directory: Store, database: pg.Database
) -> None:
    token, _ = await directory.create_token("alice")
    await database.sql("UPDATE tokens SET revoked = :yes", yes=True)
    with pytest.raises(TokenInvalid):
        await directory.check_token(token)


async def test_a_token_for_an_unknown_user_is_refused(
    directory: Store, database: pg.Database
) -> None:
    with pytest.raises(UserNotFound, match="carol"):
        await directory.create_token("carol")
    assert await database.sql("SELECT count(*) FROM tokens") == [(0,)]


# API keys ---------------------------------------------------------------------------------
async def test_a_new_api_key_is_accepted_and_stored_only_as_a_hash(
    db: Store, database: pg.Database
) -> None:
    key = await db.create_api_key("billing app")
    assert re.fullmatch(r"KEY[A-Za-z0-9_-]{40}", key)
    assert await db.check_api_key(key)
    assert await database.sql("SELECT name, prefix, key_hash, revoked FROM api_keys") == [
        ("billing app", key[:8], hashlib.sha256(key.encode()).hexdigest(), False)
    ]


async def test_api_keys_are_distinct_and_need_no_name(db: Store) -> None:
    keys = {await db.create_api_key() for _ in range(5)}
    assert len(keys) == 5
    for key in keys:
        assert await db.check_api_key(key)


async def test_wrong_or_revoked_api_keys_are_refused(db: Store, database: pg.Database) -> None:
    key = await db.create_api_key()
    altered = key[:-1] + ("A" if key[-1] != "A" else "B")
    for wrong in ("", "KEY", altered, key + "x", key[3:], "key" + key[3:]):
        assert not await db.check_api_key(wrong)
    await database.sql("UPDATE api_keys SET revoked = :yes", yes=True)
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


async def test_a_cdr_reads_back_as_written(db: Store, database: pg.Database) -> None:
    answered = cdr("c-answered", T0, answered_after=4.5, talk=61.25)
    missed = cdr("c-missed", T0 + timedelta(minutes=5), answered_after=None, talk=30)
    await db.record_cdr(answered)
    await db.record_cdr(missed)

    assert await db.list_cdrs() == [missed, answered]
    assert answered.duration_seconds == 61.25
    assert missed.duration_seconds == 0
    assert await database.sql("SELECT call_id, duration_seconds FROM cdrs ORDER BY id") == [
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


# call-control applications ----------------------------------------------------------------
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # base64 of 24 bytes


async def new_app(db: Store, name: str = "Support line", **fields: Any) -> Application:
    return await db.create_application(
        application_name=name, webhook_event_url="https://example.test/hooks", **fields
    )


async def test_a_new_application_has_a_time_ordered_string_id_and_the_defaults(
    db: Store,
) -> None:
    before = datetime.now(UTC)
    first = await new_app(db)
    second = await new_app(db, "Sales")
    assert re.fullmatch(r"[1-9][0-9]{15,18}", first.id)
    assert int(first.id) < int(second.id)
    assert first == Application(
        id=first.id,
        application_name="Support line",
        webhook_event_url="https://example.test/hooks",
        webhook_event_failover_url=None,
        webhook_api_version="2",
        webhook_timeout_secs=None,
        active=True,
        signing_secret=None,
        created_at=first.created_at,
        updated_at=first.created_at,
    )
    assert before <= first.created_at <= datetime.now(UTC)
    assert first.created_at.tzinfo == UTC
    assert await db.get_application(first.id) == first
    assert await db.get_application("404") is None


async def test_every_application_field_reads_back_as_written(db: Store) -> None:
    app = await new_app(
        db,
        webhook_event_failover_url="http://127.0.0.1:9000/failover",
        webhook_timeout_secs=30,
        active=False,
        signing_secret=SECRET,
    )
    assert await db.get_application(app.id) == app
    assert (app.webhook_event_failover_url, app.webhook_timeout_secs, app.active) == (
        "http://127.0.0.1:9000/failover",
        30,
        False,
    )
    assert app.signing_secret == SECRET
    assert SECRET not in repr(app)


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"application_name": ""}, "invalid application name"),
        ({"application_name": "   "}, "invalid application name"),
        ({"application_name": "x" * 256}, "invalid application name"),
        ({"application_name": "tab\there"}, "invalid application name"),
        ({"webhook_event_url": "ftp://example.test/x"}, "invalid webhook URL"),
        ({"webhook_event_url": "/hooks"}, "invalid webhook URL"),
        ({"webhook_event_url": "http:///hooks"}, "invalid webhook URL"),
        ({"webhook_event_url": "http://exa mple.test/"}, "invalid webhook URL"),
        ({"webhook_event_url": "http://example.test:port/"}, "invalid webhook URL"),
        ({"webhook_event_url": "https://example.test/" + "x" * 2048}, "invalid webhook URL"),
        ({"webhook_event_failover_url": "mailto:a@b"}, "invalid webhook failover URL"),
        ({"webhook_api_version": "1"}, "API v2 webhooks only"),
        ({"webhook_timeout_secs": 0}, "1 to 30 seconds"),
        ({"webhook_timeout_secs": 31}, "1 to 30 seconds"),
        ({"webhook_timeout_secs": True}, "1 to 30 seconds"),
        ({"active": "yes"}, "invalid active"),
        ({"signing_secret": "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, "invalid signing secret"),
        ({"signing_secret": "whsec_not base64!"}, "invalid signing secret"),
        ({"signing_secret": "whsec_c2hvcnQ="}, "invalid signing secret"),  # 5 bytes
    ],
)
async def test_a_malformed_application_field_is_refused_with_the_rule(
    db: Store, fields: dict[str, Any], complaint: str
) -> None:
    values: dict[str, Any] = {
        "application_name": "App",
        "webhook_event_url": "https://example.test/hooks",
    } | fields
    with pytest.raises(ValueError, match=complaint):
        await db.create_application(**values)
    assert await db.list_applications() == ([], 0)
    app = await new_app(db)
    with pytest.raises(ValueError, match=complaint):
        await db.update_application(app.id, **fields)
    assert await db.get_application(app.id) == app


async def test_applications_list_in_pages_with_the_total(db: Store) -> None:
    apps = [await new_app(db, f"app {i}") for i in range(5)]
    assert await db.list_applications(1, 2) == (apps[0:2], 5)
    assert await db.list_applications(3, 2) == (apps[4:5], 5)
    assert await db.list_applications(4, 2) == ([], 5)
    assert await db.list_applications(1, 2, sort="-created_at") == (apps[::-1][0:2], 5)


async def test_applications_filter_by_name_ignoring_case_and_wildcards(db: Store) -> None:
    support = await new_app(db, "Support line")
    await new_app(db, "Sales")
    percent = await new_app(db, "100% uptime")
    under = await new_app(db, "a_b")
    assert await db.list_applications(name_contains="SUPPORT") == ([support], 1)
    assert await db.list_applications(name_contains="%") == ([percent], 1)
    assert await db.list_applications(name_contains="_") == ([under], 1)
    assert await db.list_applications(name_contains="nothing") == ([], 0)


async def test_applications_sort_by_name_or_active_either_way(db: Store) -> None:
    b = await new_app(db, "beta")
    a = await new_app(db, "alpha", active=False)
    c = await new_app(db, "gamma")
    assert (await db.list_applications(sort="application_name"))[0] == [a, b, c]
    assert (await db.list_applications(sort="-application_name"))[0] == [c, b, a]
    assert (await db.list_applications(sort="active"))[0] == [a, b, c]
    assert (await db.list_applications(sort="-active"))[0] == [c, b, a]


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        ({"page_number": 0}, "page number"),
        ({"page_size": 0}, "page size"),
        ({"page_size": 251}, "page size"),
        ({"sort": "name"}, "invalid sort"),
        ({"sort": "--created_at"}, "invalid sort"),
    ],
)
async def test_a_bad_page_or_sort_is_refused(
    db: Store, args: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        await db.list_applications(**args)


async def test_an_update_changes_only_the_given_fields(db: Store) -> None:
    app = await new_app(db, webhook_event_failover_url="https://example.test/failover")
    changed = await db.update_application(
        app.id, application_name="Renamed", webhook_event_failover_url=None, signing_secret=SECRET
    )
    assert changed.application_name == "Renamed"
    assert changed.webhook_event_failover_url is None
    assert changed.signing_secret == SECRET
    assert changed.webhook_event_url == app.webhook_event_url
    assert changed.created_at == app.created_at
    assert changed.updated_at > app.updated_at
    assert await db.get_application(app.id) == changed


async def test_updating_or_deleting_an_unknown_application_says_so(db: Store) -> None:
    with pytest.raises(ApplicationNotFound, match="'404'"):
        await db.update_application("404", active=False)
    with pytest.raises(ApplicationNotFound, match="'404'"):
        await db.delete_application("404")


async def test_an_unknown_application_field_is_a_type_error(db: Store) -> None:
    app = await new_app(db)
    with pytest.raises(TypeError, match="colour"):
        await db.update_application(app.id, colour="red")  # type: ignore[call-arg]


async def test_deleting_an_application_returns_it_and_takes_its_routes(db: Store) -> None:
    app = await new_app(db)
    other = await new_app(db, "Other")
    await db.set_route("2000", app.id)
    await db.set_route("2001", other.id)
    assert await db.delete_application(app.id) == app
    assert await db.get_application(app.id) is None
    assert [r.destination for r in await db.list_routes()] == ["2001"]
    assert await db.find_route("2000") is None
    with pytest.raises(ApplicationNotFound):
        await db.delete_application(app.id)


# routes -----------------------------------------------------------------------------------
async def test_a_route_sends_an_extension_or_a_number_to_its_application(db: Store) -> None:
    app = await new_app(db)
    before = datetime.now(UTC)
    route = await db.set_route("+1 (415) 555-0100", app.id)
    assert route == Route("+14155550100", app.id, route.created_at)
    assert before <= route.created_at <= datetime.now(UTC)
    await db.set_route("2000", app.id)
    for dialled in ("+14155550100", "14155550100", "+1 415.555.0100", " 2000 "):
        assert await db.find_route(dialled) == app.id
    for dialled in ("2001", "+14155550101", "", "  ", "alice"):
        assert await db.find_route(dialled) is None


async def test_setting_a_route_again_moves_it_to_the_new_application(db: Store) -> None:
    first = await new_app(db, "first")
    second = await new_app(db, "second")
    await db.set_route("2000", first.id)
    moved = await db.set_route("2000", second.id)
    assert moved.application_id == second.id
    assert await db.find_route("2000") == second.id
    assert await db.list_routes() == [moved]
    assert await db.list_routes(first.id) == []
    assert await db.list_routes(second.id) == [moved]


async def test_an_extension_route_wins_over_a_number_route_for_the_same_digits(
    db: Store,
) -> None:
    by_extension = await new_app(db, "by extension")
    by_number = await new_app(db, "by number")
    await db.set_route("14155550", by_extension.id)
    await db.set_route("+14155550", by_number.id)
    assert await db.find_route("14155550") == by_extension.id
    assert await db.find_route("+14155550") == by_number.id


async def test_routes_list_by_destination_and_for_one_application(db: Store) -> None:
    a = await new_app(db, "a")
    b = await new_app(db, "b")
    for destination, app in (("3000", b), ("+442079460000", a), ("2000", a)):
        await db.set_route(destination, app.id)
    assert [r.destination for r in await db.list_routes()] == ["+442079460000", "2000", "3000"]
    assert [r.destination for r in await db.list_routes(a.id)] == ["+442079460000", "2000"]


@pytest.mark.parametrize("destination", ["1", "123456789", "alice", "14155550100x", "+0123456789"])
async def test_a_malformed_route_destination_is_refused(db: Store, destination: str) -> None:
    app = await new_app(db)
    with pytest.raises(ValueError, match="invalid destination"):
        await db.set_route(destination, app.id)
    assert await db.list_routes() == []


async def test_a_route_to_an_unknown_application_is_refused(db: Store) -> None:
    with pytest.raises(ApplicationNotFound):
        await db.set_route("2000", "404")
    assert await db.list_routes() == []


async def test_deleting_a_route_returns_it_then_says_there_is_none(db: Store) -> None:
    app = await new_app(db)
    route = await db.set_route("+14155550100", app.id)
    assert await db.delete_route("+1 415 555 0100") == route
    assert await db.find_route("+14155550100") is None
    with pytest.raises(RouteNotFound, match="14155550100"):
        await db.delete_route("+14155550100")
    with pytest.raises(RouteNotFound):
        await db.delete_route("not a destination")


# media ------------------------------------------------------------------------------------
async def add_media(db: Store, name: str, **fields: Any) -> Media:
    values: dict[str, Any] = {
        "content_type": "audio/wav",
        "path": f"/data/media/{name}",
        "size": 1234,
    } | fields
    return await db.add_media(name, **values)


async def test_media_reads_back_as_added(db: Store) -> None:
    expires = datetime.now(UTC) + timedelta(hours=1)
    media = await add_media(db, "welcome.wav", expires_at=expires)
    assert media == Media(
        "welcome.wav", "audio/wav", "/data/media/welcome.wav", 1234,
        media.created_at, media.created_at, expires,
    )  # fmt: skip
    assert await db.get_media("welcome.wav") == media
    assert await db.get_media("other.wav") is None


async def test_a_taken_media_name_is_refused(db: Store) -> None:
    await add_media(db, "welcome.wav")
    with pytest.raises(MediaExists, match=r"welcome\.wav"):
        await add_media(db, "welcome.wav", size=1)
    assert (await db.get_media("welcome.wav") or pytest.fail()).size == 1234


@pytest.mark.parametrize(
    ("name", "fields", "complaint"),
    [
        ("", {}, "invalid media name"),
        (".hidden", {}, "invalid media name"),
        ("..", {}, "invalid media name"),
        ("a/b.wav", {}, "invalid media name"),
        ("x" * 256, {}, "invalid media name"),
        ("ok.wav", {"content_type": "wav"}, "invalid content type"),
        ("ok.wav", {"content_type": "audio/"}, "invalid content type"),
        ("ok.wav", {"size": -1}, "invalid media size"),
        ("ok.wav", {"path": ""}, "media path"),
        ("ok.wav", {"expires_at": datetime(2030, 1, 1)}, "naive"),
    ],
)
async def test_malformed_media_is_refused_with_the_rule(
    db: Store, name: str, fields: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        await add_media(db, name, **fields)
    assert await db.list_media() == ([], 0)


async def test_media_list_by_name_in_pages_and_by_content_type(db: Store) -> None:
    names = ["c.mp3", "a.wav", "b.wav", "d.wav"]
    for name in names:
        await add_media(
            db, name, content_type="audio/mpeg" if name.endswith("mp3") else "audio/wav"
        )
    first, total = await db.list_media(1, 3)
    assert ([m.media_name for m in first], total) == (["a.wav", "b.wav", "c.mp3"], 4)
    assert [m.media_name for m in (await db.list_media(2, 3))[0]] == ["d.wav"]
    mp3, total = await db.list_media(content_type="audio/mpeg")
    assert ([m.media_name for m in mp3], total) == (["c.mp3"], 1)


async def test_expired_media_is_gone_until_swept_and_the_sweep_hands_it_over(
    db: Store,
) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    expired = await add_media(db, "old.wav", expires_at=past)
    kept = await add_media(db, "new.wav", expires_at=datetime.now(UTC) + timedelta(hours=1))
    assert await db.get_media("old.wav") is None
    assert await db.list_media() == ([kept], 1)
    for gone in (db.delete_media("old.wav"), db.update_media("old.wav", size=1)):
        with pytest.raises(MediaNotFound, match=r"old\.wav"):
            await gone
    with pytest.raises(MediaExists):  # the name stays held until the sweep
        await add_media(db, "old.wav")
    assert await db.delete_expired_media() == [expired]
    assert await db.delete_expired_media() == []
    assert (await add_media(db, "old.wav")).expires_at is None


async def test_updating_media_changes_the_given_fields(db: Store) -> None:
    media = await add_media(db, "welcome.wav", expires_at=datetime.now(UTC) + timedelta(hours=1))
    changed = await db.update_media(
        "welcome.wav", path="/data/media/welcome-2.wav", size=99, expires_at=None
    )
    assert (changed.path, changed.size, changed.expires_at) == (
        "/data/media/welcome-2.wav",
        99,
        None,
    )
    assert changed.content_type == media.content_type
    assert changed.updated_at > media.updated_at
    assert await db.get_media("welcome.wav") == changed
    with pytest.raises(ValueError, match="invalid media size"):
        await db.update_media("welcome.wav", size=-5)
    with pytest.raises(MediaNotFound):
        await db.update_media("other.wav", size=1)


async def test_deleting_media_returns_it(db: Store) -> None:
    media = await add_media(db, "welcome.wav")
    assert await db.delete_media("welcome.wav") == media
    assert await db.get_media("welcome.wav") is None
    with pytest.raises(MediaNotFound):
        await db.delete_media("welcome.wav")


# recordings -------------------------------------------------------------------------------
async def add_recording(db: Store, **fields: Any) -> Recording:
    values: dict[str, Any] = {
        "path": "/data/recordings/r.wav",
        "format": "wav",
        "channels": "single",
        "duration_millis": 61_250,
        "recording_started_at": T0,
        "recording_ended_at": T0 + timedelta(milliseconds=61_250),
    } | fields
    return await db.add_recording(**values)


async def test_a_recording_reads_back_as_added_with_a_uuid(db: Store) -> None:
    paris = timezone(timedelta(hours=1))
    recording = await add_recording(
        db,
        format="mp3",
        channels="dual",
        call_control_id="v3:abc",
        call_leg_id="leg-1",
        call_session_id="session-1",
        recording_started_at=T0.astimezone(paris),
    )
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", recording.id
    )
    assert (recording.format, recording.channels, recording.status) == ("mp3", "dual", "completed")
    assert recording.conference_id is None
    back = await db.get_recording(recording.id)
    assert back == recording
    assert back is not None and back.recording_started_at == T0
    assert back.recording_started_at.tzinfo == UTC
    assert await db.get_recording("nope") is None


async def test_a_recording_id_can_be_chosen_once(db: Store) -> None:
    await add_recording(db, recording_id="rec-1")
    with pytest.raises(RecordingExists, match="rec-1"):
        await add_recording(db, recording_id="rec-1")


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"format": "ogg"}, "invalid recording format"),
        ({"channels": "stereo"}, "invalid recording channels"),
        ({"duration_millis": -1}, "invalid duration_millis"),
        ({"duration_millis": 1.5}, "invalid duration_millis"),
        ({"path": ""}, "path"),
        ({"recording_ended_at": T0 - timedelta(seconds=1)}, "end before it starts"),
        ({"recording_started_at": T0.replace(tzinfo=None)}, "naive"),
        ({"conference_id": "x" * 65}, "conference_id"),
    ],
)
async def test_a_malformed_recording_is_refused_with_the_rule(
    db: Store, fields: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        await add_recording(db, **fields)
    assert await db.list_recordings() == ([], 0)


async def test_recordings_list_newest_first_filtered_with_the_total(db: Store) -> None:
    made = [
        await add_recording(db, conference_id="conf-1"),
        await add_recording(db, call_control_id="call-1"),
        await add_recording(db, conference_id="conf-1"),
        await add_recording(db, conference_id="conf-2"),
    ]
    newest_first = made[::-1]
    assert await db.list_recordings() == (newest_first, 4)
    assert await db.list_recordings(1, 2) == (newest_first[:2], 4)
    assert await db.list_recordings(conference_id="conf-1") == ([made[2], made[0]], 2)
    assert await db.list_recordings(call_control_id="call-1") == ([made[1]], 1)
    assert await db.list_recordings(created_at_gte=made[1].created_at,
                                     created_at_lte=made[2].created_at) == (
        [made[2], made[1]], 2
    )  # fmt: skip
    assert await db.list_recordings(created_at_gte=made[3].created_at + timedelta(seconds=1)) == (
        [],
        0,
    )


async def test_deleting_a_recording_returns_it(db: Store) -> None:
    recording = await add_recording(db)
    assert await db.delete_recording(recording.id) == recording
    assert await db.get_recording(recording.id) is None
    with pytest.raises(RecordingNotFound):
        await db.delete_recording(recording.id)


# webhook outbox rows ----------------------------------------------------------------------
LEASE = timedelta(seconds=30)


async def enqueue(db: Store, message_id: str, key: str = "", **fields: Any) -> OutboxMessage:
    values: dict[str, Any] = {
        "event_type": "call.answered",
        "data_json": f'{{"id":"{message_id}"}}',
        "url": "http://127.0.0.1:9/hook",
    } | fields
    return await db.enqueue_webhook(message_id=message_id, ordering_key=key, **values)


async def claim(db: Store, owner: str = "w1", limit: int = 10) -> list[str]:
    return [m.message_id for m in await db.claim_webhooks(owner, limit=limit, lease=LEASE)]


async def test_an_enqueued_webhook_is_stored_pending_as_given(db: Store) -> None:
    message = await enqueue(
        db, "msg_1", "call-1", failover_url="http://127.0.0.1:9/failover", application_id="7"
    )
    assert (message.status, message.attempts, message.last_error) == ("pending", 0, None)
    assert message.next_attempt_at == message.created_at
    assert message.delivered_at is None
    assert await db.get_webhook("msg_1") == message
    assert await db.list_webhooks() == [message]
    assert await db.get_webhook("msg_2") is None


async def test_one_key_goes_one_at_a_time_in_order_while_other_keys_go_too(db: Store) -> None:
    for message_id, key in (("a1", "A"), ("a2", "A"), ("b1", "B"), ("u1", ""), ("u2", "")):
        await enqueue(db, message_id, key)
    assert await claim(db) == ["a1", "b1", "u1", "u2"]
    assert await claim(db) == []  # all taken; a2 waits for a1
    a1 = await db.get_webhook("a1")
    assert a1 is not None
    assert await db.webhook_delivered(a1.id, "w1")
    assert await claim(db) == ["a2"]


async def test_a_failed_head_lets_the_next_message_of_its_key_go(db: Store) -> None:
    first = await enqueue(db, "a1", "A")
    await enqueue(db, "a2", "A")
    await claim(db)
    assert await db.webhook_failed(first.id, "w1", error="HTTP 500")
    failed = await db.get_webhook("a1")
    assert failed is not None and (failed.status, failed.last_error) == ("failed", "HTTP 500")
    assert await claim(db) == ["a2"]


async def test_a_retry_waits_for_its_time_and_holds_back_its_key(
    db: Store, database: pg.Database
) -> None:
    first = await enqueue(db, "a1", "A")
    await enqueue(db, "a2", "A")
    await claim(db)
    later = datetime.now(UTC) + timedelta(hours=1)
    assert await db.webhook_retry(first.id, "w1", error="timed out", next_attempt_at=later)
    assert await claim(db) == []
    assert await db.next_webhook_due() == later
    retried = await db.get_webhook("a1")
    assert retried is not None
    assert (retried.status, retried.attempts, retried.last_error) == ("pending", 1, "timed out")
    # The hour passes.
    due = datetime.now(UTC)
    await database.run_sync(
        lambda conn: conn.execute(update(WebhookOutboxRow).values(next_attempt_at=due))
    )
    assert await claim(db) == ["a1"]
    assert (await db.get_webhook("a1") or pytest.fail()).attempts == 2


async def test_a_lease_keeps_others_off_until_it_ends_or_is_released(db: Store) -> None:
    message = await enqueue(db, "a1", "A")
    assert await claim(db, "w1") == ["a1"]
    assert await claim(db, "w2") == []
    # Only the holder's report counts.
    assert await db.webhook_delivered(message.id, "w2") is False
    assert await db.release_webhooks("w1") == 1
    assert await claim(db, "w2") == ["a1"]
    assert await db.webhook_delivered(message.id, "w1") is False
    assert await db.webhook_delivered(message.id, "w2") is True
    delivered = await db.get_webhook("a1")
    assert delivered is not None and delivered.status == "delivered"
    assert delivered.delivered_at is not None and delivered.attempts == 2
    assert await db.webhook_delivered(message.id, "w2") is False  # once only


async def test_an_expired_lease_is_taken_over(db: Store) -> None:
    await enqueue(db, "a1", "A")
    assert [m.message_id for m in await db.claim_webhooks("w1", limit=5, lease=timedelta(0))] == [
        "a1"
    ]
    assert await claim(db, "w2") == ["a1"]


async def test_next_due_is_the_earliest_claimable_head(db: Store) -> None:
    assert await db.next_webhook_due() is None
    soon = datetime.now(UTC) + timedelta(minutes=1)
    await enqueue(db, "later", "A", not_before=soon + timedelta(minutes=5))
    await enqueue(db, "held-back", "A")  # behind "later": not a head
    await enqueue(db, "soon", "B", not_before=soon)
    assert await db.next_webhook_due() == soon
    assert await claim(db) == []


async def test_claims_from_several_servers_at_once_never_share_a_message(
    database: pg.Database,
) -> None:
    stores = [await Store.open(database.url) for _ in range(3)]
    try:
        for i in range(30):
            await enqueue(stores[0], f"m{i}", key=f"k{i % 10}" if i % 3 else "")
        claims = await asyncio.gather(
            *(claim(store, f"w{n}", limit=4) for n, store in enumerate(stores) for _ in range(3))
        )
        taken = [message_id for claimed in claims for message_id in claimed]
        assert len(taken) == len(set(taken))
        assert len(taken) == 10 + 10  # one head per key k1..k9 and k0 + the 10 unordered ones
    finally:
        for store in stores:
            await store.close()


async def test_finished_webhooks_are_deleted_after_their_time(db: Store) -> None:
    delivered = await enqueue(db, "d")
    failed = await enqueue(db, "f")
    await enqueue(db, "p")
    await claim(db)
    await db.webhook_delivered(delivered.id, "w1")
    await db.webhook_failed(failed.id, "w1", error="gone")
    await db.release_webhooks("w1")
    assert await db.delete_finished_webhooks(before=T0) == 0
    assert await db.delete_finished_webhooks(before=datetime.now(UTC) + timedelta(seconds=1)) == 2
    assert [m.message_id for m in await db.list_webhooks()] == ["p"]
    assert [m.message_id for m in await db.list_webhooks(status="pending")] == ["p"]


# the signing key --------------------------------------------------------------------------
async def test_the_first_signing_key_stored_is_the_one_every_server_gets(
    database: pg.Database,
) -> None:
    stores = [await Store.open(database.url) for _ in range(4)]
    try:
        assert await stores[0].get_signing_key() is None
        keys = await asyncio.gather(
            *(s.ensure_signing_key(f"private-{i}", f"public-{i}") for i, s in enumerate(stores))
        )
        assert len({(k.private_key, k.public_key) for k in keys}) == 1
        assert keys[0].private_key.startswith("private-")
        assert "private-" not in repr(keys[0])
        assert await stores[3].get_signing_key() == keys[0]
    finally:
        for store in stores:
            await store.close()
