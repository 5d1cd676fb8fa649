"""``history.list`` (docs/protocol.md, "Call history") and ``Phone.call_history``: a signed-in
user reads their own call records from the server — real calls placed by the test through
the session server, answered, missed and rejected — and never anyone else's, nor another
account's."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from callbridge.client import Phone
from callbridge.client.callhistory import HistoryEntry
from callbridge.errors import RemoteError
from callbridge.store import Store
from callbridge.store.records import Cdr
from callbridge.testing import Server
from conftest import Connect, MakeParty, MakeUser
from parties import ALICE, BOB, CAROL, connect


async def _entries(phone: Phone, limit: int = 20) -> list[HistoryEntry]:
    return (await phone.call_history(limit=limit)).entries


async def test_answered_missed_and_rejected_calls_are_in_each_sides_history(
    party: MakeParty,
) -> None:
    alice = await party(ALICE)
    bob = await party(BOB)
    carol = await party(CAROL)

    # 1. alice -> bob, answered, bob hangs up.
    out, inc = await connect(alice, bob)
    await inc.hangup()
    await out.wait_for("ended", timeout=5)
    # 2. alice -> bob, bob rejects it (busy).
    out = await alice.call(bob.user.extension)
    await (await bob.ringing()).reject("busy")
    await out.wait_for("ended", timeout=5)
    # 3. alice -> bob, alice gives up while it rings: a missed call for bob.
    out = await alice.call(bob.user.extension)
    rung = await bob.ringing()
    await out.hangup()
    await rung.wait_for("ended", timeout=5)
    # 4. carol -> alice, answered (someone bob has nothing to do with).
    out, inc = await connect(carol, alice)
    await out.hangup()
    await inc.wait_for("ended", timeout=5)

    # Asked right after the last call.ended: the server waits for the records being written.
    mine = await _entries(alice.phone)
    assert [(e.direction, e.party) for e in mine] == [
        ("in", carol.user.name),
        ("out", bob.user.name),
        ("out", bob.user.name),
        ("out", bob.user.name),
    ], mine
    from_carol, missed_by_bob, rejected, answered = mine
    assert from_carol.dial == carol.user.number and from_carol.party_number == carol.user.number
    assert from_carol.answered_at is not None and not from_carol.missed
    assert answered.end_reason == "hangup" and answered.answered_at is not None
    assert answered.dial == bob.user.extension and answered.party_extension == bob.user.extension
    assert 0 < answered.duration_seconds < 30
    assert answered.started_at <= answered.answered_at <= answered.ended_at
    assert rejected.end_reason == "busy" and rejected.answered_at is None
    assert rejected.duration_seconds == 0
    assert not any(e.missed for e in mine), "alice's own calls are never missed"

    theirs = await _entries(bob.phone)
    assert [(e.direction, e.party, e.missed) for e in theirs] == [
        ("in", alice.user.name, True),
        ("in", alice.user.name, False),
        ("in", alice.user.name, False),
    ], theirs
    assert [e.call_id for e in theirs] == [e.call_id for e in mine[1:]]
    assert theirs[0].answered_at is None and theirs[0].end_reason == missed_by_bob.end_reason
    assert theirs[1].end_reason == "busy"  # rejected: not missed
    assert theirs[0].dial == alice.user.number  # calling back dials alice's number

    # carol sees only her call to alice: never alice's calls with bob.
    assert [(e.direction, e.party) for e in await _entries(carol.phone)] == [
        ("out", alice.user.name)
    ]


async def test_pages_follow_each_other_without_gaps_or_repeats(party: MakeParty) -> None:
    alice = await party(ALICE)
    bob = await party(BOB)
    for _ in range(3):
        out, inc = await connect(alice, bob)
        await out.hangup()
        await inc.wait_for("ended", timeout=5)
    everything = await _entries(alice.phone)
    first = await alice.phone.call_history(limit=2)
    assert len(first) == 2 and first.next_before is not None
    second = await alice.phone.call_history(limit=2, before=first.next_before)
    assert second.next_before is None, "one call is left: the last page"
    assert [e.call_id for e in (*first, *second)] == [e.call_id for e in everything]
    # The largest page the protocol allows (the server reads one row more: the fuzzer found
    # that this asked the store for 101 rows and failed).
    largest = await alice.phone.call_history(limit=100)
    assert [e.call_id for e in largest][:3] == [e.call_id for e in everything][:3]


async def test_another_accounts_calls_never_show(
    server: Server, store: Store, party: MakeParty
) -> None:
    """Accounts isolate: a user of account B sees B's calls only, and a record of another
    account that names alice (her name once used there) is not hers."""
    alice = await party(ALICE)
    account = await store.create_account(f"history-b-{datetime.now(UTC).timestamp()}")
    names = [f"hist-b{i}-{datetime.now(UTC).timestamp():.0f}" for i in range(2)]
    users = []
    for i, name in enumerate(names):
        await store.add_user(name, f"7{i}", account_id=account.id)
        token, _ = await store.create_token(name, timedelta(hours=1))
        users.append(token)
    b0 = Phone(server.ws_url, users[0])
    b1 = Phone(server.ws_url, users[1])
    await b0.login()
    await b1.login()
    try:
        rang: asyncio.Queue[object] = asyncio.Queue()
        b1.on("incoming", rang.put_nowait)
        out = await b0.call("71")
        await asyncio.wait_for(rang.get(), 5)
        await out.hangup()
        await out.wait_for("ended", timeout=5)
        at = datetime.now(UTC)
        await store.record_cdr(
            Cdr(
                call_id=f"other-account-{at.timestamp()}",
                caller=alice.user.name,
                callee=names[1],
                destination="71",
                started_at=at,
                answered_at=None,
                ended_at=at,
                end_reason="hangup",
                direction="internal",
                account_id=account.id,
            )
        )
        b_sees = await _entries(b1)
        assert [(e.direction, e.party, e.missed) for e in b_sees] == [
            ("in", alice.user.name, True),  # the record of account B naming "alice"
            ("in", names[0], True),
        ], b_sees
        assert b_sees[1].party_extension == "70"  # a user of B, found in B
        assert await _entries(alice.phone) == [], "account B's record is not alice's"
    finally:
        await b0.close()
        await b1.close()


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"limit": 0}, "field 'limit': Input should be greater than or equal to 1"),
        ({"limit": 101}, "field 'limit': Input should be less than or equal to 100"),
        ({"limit": "many"}, "field 'limit'"),
        ({"before": "yesterday"}, "'yesterday' is not a cursor of this server"),
        ({"before": "1-99999999999999999999"}, "field 'before'"),
        ({"before": "9999999999999999999-1"}, "is not a cursor of this server"),
        ({"before": ""}, "field 'before'"),
    ],
)
async def test_a_bad_limit_or_cursor_gets_a_precise_error(
    raw: Connect, make_user: MakeUser, fields: dict[str, object], says: str
) -> None:
    user = await make_user()
    client = await raw()
    await client.login(user.token)
    await client.send({"type": "history.list", "req_id": "h", **fields})
    error = await client.expect("error", req_id="h")
    assert error["code"] == "invalid_message" and error["method"] == "history.list", error
    assert says in error["message"], error
    # The connection goes on serving: a good request is answered.
    await client.send({"type": "history.list", "req_id": "ok"})
    page = await client.expect("history.page", req_id="ok")
    assert page["calls"] == [] and page["next_before"] is None


async def test_history_needs_a_session_and_the_sdk_raises_the_servers_error(
    raw: Connect, party: MakeParty
) -> None:
    client = await raw()
    await client.send({"type": "history.list", "req_id": "h"})
    error = await client.expect("error", req_id="h")
    assert error["code"] == "not_logged_in", error
    alice = await party(ALICE)
    with pytest.raises(RemoteError) as caught:
        await alice.phone.call_history(limit=500)
    assert caught.value.code == "invalid_message" and "limit" in str(caught.value)
    with pytest.raises(RemoteError, match="not a cursor"):
        await alice.phone.call_history(before="nope")


async def test_a_call_is_listed_by_both_sides_the_moment_it_ends(party: MakeParty) -> None:
    # Asked right after call.ended (the hanging-up side's own, which comes while the server
    # still closes that leg's media and has not ended the call itself, so its record is not
    # in the write spool yet): the answer waits for the calls this user has just ended.
    # Before that wait, the first list came back without the call. Several calls: each a
    # fresh race, from each side.
    alice = await party(ALICE)
    bob = await party(BOB)
    for k in range(3):
        out, inc = await connect(alice, bob)
        hanging_up, other = (alice, bob) if k % 2 == 0 else (bob, alice)
        await (out if hanging_up is alice else inc).hangup()
        listed = await _entries(hanging_up.phone, limit=1)
        assert [e.call_id for e in listed] == [out.id], (k, listed)
        await (inc if hanging_up is alice else out).wait_for("ended", timeout=5)
        assert [e.call_id for e in await _entries(other.phone, limit=1)] == [out.id], k
