"""Accounts on /ws (issue 10): who a user reaches, what caller ID a call may present, the
display names a callee sees, and the recording notice.

Real server (the session's), real aiortc softphones and REST on 127.0.0.1. Each test makes its
own accounts; users get unique login names and numbers (both are global), while extensions
repeat across accounts (1001 in each). Numbers are owned only by the accounts made here: the
default account must own none, or the other modules' caller IDs would be refused.
"""

# mypy: no-warn-unreachable

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import create_async_engine

import pg
from api_helpers import WebhookSink
from callbridge.client import Call, Phone, SilenceSource
from callbridge.core.callerid import clean_display_name
from callbridge.core.tenancy import DEFAULT_ACCOUNT_ID
from callbridge.errors import RemoteError
from callbridge.store import Store
from callbridge.store.schema import DEFAULT_ACCOUNT_ID as STORE_DEFAULT_ACCOUNT_ID
from callbridge.store.schema import UserRow
from callbridge.testing.server import Server
from parties import ALICE, BOB, CAROL, Party, PartyUser, until

pytestmark = pytest.mark.timeout(60)

_numbers = itertools.count(1)
NOT_FOUND = "no user has the extension, number or name {!r}"


def new_number() -> str:
    return f"+4930555{next(_numbers):05d}"


@dataclass
class Tenant:
    """An account of this test: its id and an API key of it."""

    id: str
    key: str


MakeTenant = Callable[..., Awaitable[Tenant]]
MakeMember = Callable[..., Awaitable[Party]]


@pytest.fixture
async def tenant(store: Store) -> MakeTenant:
    async def make(*, recording_notice: bool = True) -> Tenant:
        account = await store.create_account(
            f"tenancy-{uuid.uuid4().hex[:8]}", recording_notice=recording_notice
        )
        return Tenant(account.id, await store.create_api_key("tenancy", account_id=account.id))

    return make


@pytest.fixture
async def member(server: Server, store: Store) -> AsyncIterator[MakeMember]:
    """Factory: a user of an account, logged in on a softphone that sends ``tone``."""
    phones: list[Phone] = []

    async def make(
        tenant: Tenant, extension: str, tone: float = ALICE, display_name: str | None = None
    ) -> Party:
        name = f"t{uuid.uuid4().hex[:10]}"
        user = await store.add_user(
            name,
            extension,
            number=new_number(),
            display_name=display_name,
            account_id=tenant.id,
        )
        token, _ = await store.create_token(name)
        assert user.number is not None
        phone = Phone(server.ws_url, token)
        await phone.login()
        phones.append(phone)
        return Party(phone, tone, PartyUser(name, extension, user.number, display_name, token))

    yield make
    for phone in phones:
        await phone.logout()


async def rest(server: Server, tenant: Tenant, path: str, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"{server.url}/v2", timeout=10) as http:
        return await http.post(path, json=body, headers={"authorization": f"Bearer {tenant.key}"})


async def refused(caller: Party, destination: str, **kw: Any) -> RemoteError:
    """``caller`` dials ``destination``: the server refuses (the call ends if it started)."""
    with pytest.raises(RemoteError) as info:
        call = await caller.call(destination, **kw)
        await call.wait_for("ended", timeout=5)
    return info.value


async def answered(caller: Party, callee: Party, destination: str) -> tuple[Call, Call]:
    out = await caller.call(destination)
    inc = await callee.answer()
    await out.wait_for("answered", timeout=5)
    return out, inc


def test_the_core_and_the_store_name_the_same_default_account() -> None:
    assert DEFAULT_ACCOUNT_ID == STORE_DEFAULT_ACCOUNT_ID


# the store's answers (SQLite and PostgreSQL) ---------------------------------------------------
database = pg.database  # the fixture: each store test runs on SQLite and on PostgreSQL


@pytest.fixture
async def db(database: pg.Database) -> AsyncIterator[Store]:
    store = await Store.open(database.url)
    yield store
    await store.close()


async def test_find_user_looks_only_in_the_account(db: Store) -> None:
    a, b = await db.create_account("a"), await db.create_account("b")
    await db.add_user("ann", "1001", number="+14155550101", account_id=a.id)
    await db.add_user("ben", "1001", number="+14155550102", account_id=b.id)
    for dialled in ("1001", "ann", "+1 415 555 0101"):
        found = await db.find_user(dialled, a.id)
        assert found is not None and found.name == "ann"
    for dialled in ("ann", "+14155550101"):
        assert await db.find_user(dialled, b.id) is None
    found = await db.find_user("1001", b.id)
    assert found is not None and found.name == "ben"
    assert await db.find_user("1001") is None  # the default account has no 1001


async def test_who_claims_a_number_and_what_an_account_owns(db: Store) -> None:
    a, b = await db.create_account("a"), await db.create_account("b")
    await db.add_user("ann", "1001", number="+14155550101", account_id=a.id)
    await db.add_number("+14155550199", b.id)
    app = await db.create_application(
        application_name="line", webhook_event_url="http://127.0.0.1:9/h", account_id=a.id
    )
    await db.set_route("+14155550177", app.id)
    claims = await db.number_claims(a.id, "+1 (415) 555-0101")
    assert claims is not None
    assert (claims.number, claims.owner_account, claims.user_account) == (
        "+14155550101",
        None,
        a.id,
    )
    assert not claims.routed and not claims.account_owns_numbers
    claims = await db.number_claims(a.id, "+14155550199")
    assert claims is not None and claims.owner_account == b.id and claims.user_account is None
    claims = await db.number_claims(a.id, "+14155550177")
    assert claims is not None and claims.routed
    claims = await db.number_claims(b.id, "+14155550177")
    assert claims is not None and not claims.routed and claims.account_owns_numbers
    assert await db.number_claims(a.id, "911") is None
    assert await db.owned_numbers(a.id) == ([], 0)
    for n in range(7):
        await db.add_number(f"+1650555010{n}", a.id)
    assert await db.owned_numbers(a.id, 2) == (["+16505550100", "+16505550101"], 7)


async def test_the_recording_notice_is_on_unless_the_account_turned_it_off(db: Store) -> None:
    quiet = await db.create_account("quiet", recording_notice=False)
    assert await db.recording_notice(STORE_DEFAULT_ACCOUNT_ID)
    assert not await db.recording_notice(quiet.id)
    await db.set_recording_notice(quiet.id, True)
    assert await db.recording_notice(quiet.id)
    assert await db.recording_notice("no-such-account")


# reach ----------------------------------------------------------------------------------------
async def test_two_accounts_each_with_extension_1001_reach_their_own(
    tenant: MakeTenant, member: MakeMember
) -> None:
    a, b = await tenant(), await tenant()
    a1001, b1001 = await member(a, "1001", BOB), await member(b, "1001", BOB)
    a_caller, b_caller = await member(a, "1002"), await member(b, "1002")
    for caller, callee in ((a_caller, a1001), (b_caller, b1001)):
        out, inc = await answered(caller, callee, "1001")
        assert inc.from_ == caller.user.number and inc.to == "1001"
        await out.hangup()
        await inc.wait_for("ended", timeout=5)
    # Each 1001 rang once: for its own account's caller.
    assert a1001.incoming.empty() and b1001.incoming.empty()


async def test_a_user_cannot_reach_another_accounts_users_by_extension_name_or_number(
    tenant: MakeTenant, member: MakeMember
) -> None:
    a, b = await tenant(), await tenant()
    alice = await member(a, "1001")
    bob = await member(b, "1007", BOB)  # an extension only account B has
    for destination in (bob.user.extension, bob.user.name, bob.user.number, "1999"):
        error = await refused(alice, destination)
        # The same answer as for a destination nobody has ("1999"): nothing leaks.
        assert error.code == "destination_not_found", (destination, error)
        assert error.message == NOT_FOUND.format(destination)
    assert bob.incoming.empty()


async def test_transfers_and_invitations_do_not_reach_across_accounts(
    tenant: MakeTenant, member: MakeMember
) -> None:
    a, b = await tenant(), await tenant()
    alice, bob = await member(a, "1001"), await member(a, "1002", BOB)
    carol = await member(b, "1003", CAROL)
    out, inc = await answered(alice, bob, "1002")
    for destination in (carol.user.extension, carol.user.name, carol.user.number):
        with pytest.raises(RemoteError) as info:
            await out.transfer(destination)
        assert info.value.code == "destination_not_found"
    conference = await alice.phone.start_conference(source=SilenceSource(), sink=alice.sink)
    with pytest.raises(RemoteError) as info:
        await conference.add_participant(carol.user.name)
    assert info.value.code == "destination_not_found"
    assert info.value.message == NOT_FOUND.format(carol.user.name)
    await conference.end()
    await out.hangup()
    await inc.wait_for("ended", timeout=5)
    assert carol.incoming.empty()


async def test_a_route_of_the_callers_account_sends_an_extension_to_its_application(
    server: Server, store: Store, tenant: MakeTenant, member: MakeMember
) -> None:
    a, b = await tenant(), await tenant()
    alice = await member(a, "1001")
    bob = await member(b, "1050", BOB)  # B's 1050; A routes its own 1050 to its application
    sink = WebhookSink()
    url = await sink.start()
    try:
        app = await store.create_application(
            application_name="tenancy line", webhook_event_url=url, account_id=a.id
        )
        await store.set_route("1050", app.id)
        out = await alice.call("1050")
        await out.wait_for("ringing", timeout=5)  # parked for the application (ringback)
        initiated = await sink.wait("call.initiated")
        assert initiated.payload["to"] == "1050"
        assert initiated.payload["connection_id"] == app.id
        await out.hangup()
        await sink.wait("call.hangup")
    finally:
        await sink.close()
    assert bob.incoming.empty()


# caller ID ------------------------------------------------------------------------------------
async def test_caller_id_that_is_not_the_callers_is_refused(
    store: Store, tenant: MakeTenant, member: MakeMember
) -> None:
    a, b = await tenant(), await tenant()
    owned = new_number()
    await store.add_number(owned, a.id)
    b_owned = new_number()
    await store.add_number(b_owned, b.id)
    alice, bob = await member(a, "1001"), await member(a, "1002", BOB)
    carol = await member(b, "1003", CAROL)
    for caller_id in (
        bob.user.number,  # another user's number
        carol.user.number,  # another account's user's
        b_owned,  # a number another account owns
        "+4930555999999",  # nobody's, but account A owns numbers: only those
        "911",
        "\u202eAlice",
        "bob",
        bob.user.extension,
    ):
        error = await refused(alice, bob.user.extension, caller_id=caller_id)
        assert error.code == "caller_id_not_allowed", caller_id
        # The refusal names what alice may present, and quotes what she sent safely.
        assert repr(caller_id) in error.message
        assert alice.user.extension in error.message and alice.user.number in error.message
        assert owned in error.message
        assert "\u202e" not in error.message
    assert bob.incoming.empty()


async def test_own_extension_own_number_and_an_owned_number_are_presented(
    store: Store, tenant: MakeTenant, member: MakeMember
) -> None:
    a = await tenant()
    owned = new_number()
    await store.add_number(owned, a.id)
    alice, bob = await member(a, "1001"), await member(a, "1002", BOB)
    spaced = f"{alice.user.number[:3]} {alice.user.number[3:6]}-{alice.user.number[6:]}"
    for caller_id, shown in (
        (None, alice.user.number),
        ("1001", "1001"),
        (alice.user.number, alice.user.number),
        (spaced, alice.user.number),
        (owned, owned),
        (f" {owned} ", owned),
    ):
        out = await alice.call(bob.user.extension, caller_id=caller_id)
        inc = await bob.ringing()
        assert inc.from_ == shown, caller_id
        await out.hangup()
        await inc.wait_for("ended", timeout=5)


async def test_an_account_that_owns_no_numbers_may_present_one_nobody_claims(
    tenant: MakeTenant, member: MakeMember
) -> None:
    a = await tenant()
    alice, bob = await member(a, "1001"), await member(a, "1002", BOB)
    out = await alice.call("1002", caller_id="+4930555999998")
    inc = await bob.ringing()
    assert inc.from_ == "+4930555999998"
    await out.hangup()
    # ... but still not another user's number.
    error = await refused(alice, "1002", caller_id=bob.user.number)
    assert error.code == "caller_id_not_allowed"


async def test_an_application_dials_only_its_accounts_users_from_an_allowed_number(
    server: Server, store: Store, tenant: MakeTenant, member: MakeMember
) -> None:
    a, b = await tenant(), await tenant()
    owned = new_number()
    await store.add_number(owned, a.id)
    bob = await member(a, "1001", BOB)
    carol = await member(b, "1002", CAROL)
    sink = WebhookSink()
    url = await sink.start()
    try:
        app = await store.create_application(
            application_name="tenancy dialler", webhook_event_url=url, account_id=a.id
        )
        dial = {"connection_id": app.id, "to": "1001"}
        for bad in ("911", carol.user.number, "+4930555999997", "\u202eAlice"):
            response = await rest(server, a, "/calls", {**dial, "from": bad})
            assert response.status_code == 422, response.text
            error = response.json()["errors"][0]
            assert "is not allowed" in error["detail"] and owned in error["detail"]
        # Another account's user is "no such user", as an unknown one is.
        response = await rest(server, a, "/calls", {**dial, "to": carol.user.name, "from": owned})
        assert response.status_code == 422
        assert NOT_FOUND.format(carol.user.name) in response.json()["errors"][0]["detail"]
        # Allowed: a number the account owns, with a display name cleaned on its way in.
        response = await rest(
            server,
            a,
            "/calls",
            {**dial, "from": owned, "from_display_name": "\u202eEvil\u0007 \u2066 Corp\u2069\n"},
        )
        assert response.status_code == 200, response.text
        inc = await bob.ringing()
        assert inc.from_ == owned
        assert inc.from_name == "Evil Corp"
        await inc.answer(source=SilenceSource(), sink=bob.sink)
        await sink.wait("call.answered")
        # The application records the call: its /ws party is told (the account's default).
        heard = notices(inc)
        await record(server, a, response.json()["data"]["call_control_id"], "record_start")
        await until(lambda: heard == [True])
        await inc.hangup()
        await sink.wait("call.hangup")
    finally:
        await sink.close()
    assert carol.incoming.empty()


async def test_a_refused_from_is_pointed_at_in_the_rest_error(
    server: Server, store: Store, tenant: MakeTenant
) -> None:
    a = await tenant()
    app = await store.create_application(
        application_name="tenancy pointer",
        webhook_event_url="http://127.0.0.1:9/hook",
        account_id=a.id,
    )
    response = await rest(
        server, a, "/calls", {"connection_id": app.id, "to": "1001", "from": "911"}
    )
    assert response.status_code == 422, response.text
    error = response.json()["errors"][0]
    assert error["code"] == "10015"  # an invalid value, as every refused field
    assert error["source"] == {"pointer": "/from"}


async def test_a_display_name_stored_with_bidi_controls_reaches_the_callee_clean(
    server: Server, tenant: MakeTenant, member: MakeMember
) -> None:
    a = await tenant()
    alice, bob = await member(a, "1001", display_name="Alice"), await member(a, "1002", BOB)
    # A row written before names were checked (or by another tool): the store refuses such a
    # name today, so it is written straight into the database.
    engine = create_async_engine(server.database_url)
    try:
        async with engine.begin() as db:
            await db.execute(
                update(UserRow)
                .where(UserRow.name == alice.user.name)
                .values(display_name="\u202eecilA\u202c \x1b[31m  Admin\u200f")
            )
    finally:
        await engine.dispose()
    alice2 = Phone(server.ws_url, alice.user.token)  # a new session reads the new name
    await alice2.login()
    try:
        out = await alice2.call("1002", source=SilenceSource())
        inc = await bob.ringing()
        assert inc.from_name == "ecilA [31m Admin"
        await out.hangup()
        await inc.wait_for("ended", timeout=5)
    finally:
        await alice2.logout()


def test_display_names_lose_control_format_and_bidi_characters() -> None:
    assert clean_display_name("  Alice  Smith ") == "Alice Smith"
    assert clean_display_name("\u202eAlice\u202c") == "Alice"
    assert clean_display_name("\u2066Bob\u2069\u2067x\u2068") == "Bobx"
    assert clean_display_name("a\tb\nc\u2028d") == "a b c d"
    assert clean_display_name("Zoë 👩\u200d💻") == "Zoë 👩💻"
    assert clean_display_name("\x00\x07\x7f\u0085") == ""
    assert clean_display_name("x" * 500) == "x" * 128
    assert clean_display_name(None) == ""


# recording notice -----------------------------------------------------------------------------
async def record(server: Server, tenant: Tenant, call_id: str, action: str) -> None:
    body = {"format": "wav", "channels": "single"} if action == "record_start" else {}
    response = await rest(server, tenant, f"/calls/{call_id}/actions/{action}", body)
    assert response.status_code == 200, response.text


def notices(call: Call) -> list[bool]:
    seen: list[bool] = []
    call.on("recording", seen.append)
    return seen


async def test_recording_a_call_tells_both_parties_when_it_starts_and_stops(
    server: Server, tenant: MakeTenant, member: MakeMember
) -> None:
    a = await tenant()
    alice, bob = await member(a, "1001"), await member(a, "1002", BOB)
    out, inc = await answered(alice, bob, "1002")
    heard_out, heard_inc = notices(out), notices(inc)
    await record(server, a, out.id, "record_start")
    await until(lambda: heard_out == [True] and heard_inc == [True])
    assert out.is_recorded and inc.is_recorded
    await record(server, a, out.id, "record_stop")
    await until(lambda: heard_out == [True, False] and heard_inc == [True, False])
    assert not out.is_recorded and not inc.is_recorded
    await out.hangup()
    await inc.wait_for("ended", timeout=5)


async def test_an_account_that_turned_the_notice_off_records_without_telling(
    server: Server, tenant: MakeTenant, member: MakeMember
) -> None:
    a = await tenant(recording_notice=False)
    alice, bob = await member(a, "1001"), await member(a, "1002", BOB)
    out, inc = await answered(alice, bob, "1002")
    heard_out, heard_inc = notices(out), notices(inc)
    await record(server, a, out.id, "record_start")
    await record(server, a, out.id, "record_stop")
    # Messages to a device keep their order: a hold after the recording is the mark that
    # whatever the recording would have told has arrived.
    await out.hold()
    await asyncio.gather(out.wait_for("held", timeout=5), inc.wait_for("held", timeout=5))
    assert heard_out == [] and heard_inc == []
    assert not out.is_recorded and not inc.is_recorded
    await out.hangup()
    await inc.wait_for("ended", timeout=5)
