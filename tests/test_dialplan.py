"""The account dial plan (issue 16): rules, ring groups, time of day, REST and CLI.

A module-scoped ``callbridge serve``; each test makes its own users (and rules of the default
account, with patterns no other test dials). Callers and callees are aiortc ``Phone``s; where
a call is answered, the caller hears the callee's tone (analysed). Ring groups ring 1-3 s per
member so the module stays short. Time-of-day decisions are tested through the engine with an
injected clock (and a real store), and once end to end with hours that exclude now.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from callbridge.cli import main as cli_main
from callbridge.client import BufferSink, Phone, ToneSource
from callbridge.core.dialplan import DialPlans
from callbridge.forwarding import parse_forwarding
from callbridge.store import Store
from callbridge.testing import tone_level_db
from callbridge.testing.server import Server, create_user, running

TONE = 1100.0
_n = itertools.count(1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(tmp_path_factory.mktemp("dialplan"), ring_timeout=6.0) as srv:
        yield srv


async def _users(server: Server, count: int) -> list[tuple[str, str]]:
    made = []
    async with server.store() as store:
        for _ in range(count):
            n = next(_n)
            user = await create_user(store, f"dp{n}", str(6000 + n), ttl=timedelta(hours=1))
            made.append((user.name, user.extension))
    return made


async def _phone(server: Server, name: str, phones: list[Phone]) -> Phone:
    phone = Phone(server.ws_url, await server.token(name))
    await phone.login()
    phones.append(phone)
    return phone


def _callee(phone: Phone, log: list[tuple[str, float]], name: str, answer: bool) -> list[Any]:
    """Record when ``phone`` rings (``log``); answer with a tone when ``answer``."""
    calls: list[Any] = []

    async def incoming(call: Any) -> None:
        log.append((name, asyncio.get_running_loop().time()))
        calls.append(call)
        if answer:
            await call.answer(source=ToneSource(TONE), sink=BufferSink())

    phone.on("incoming", incoming)
    return calls


async def _heard(call: Any, sink: BufferSink) -> float:
    await call.wait_for("answered", timeout=12)
    await asyncio.sleep(1.0)
    level = tone_level_db(sink.samples(0.8), 48000, TONE)
    await call.hangup()
    return level


async def test_sequential_group_rings_members_in_turn_and_the_second_answers(
    server: Server, phones: list[Phone]
) -> None:
    """A sequential group: alice rings alone for 1 s (ignored, ends no-answer), then bob, who
    answers; the caller hears bob's tone."""
    (alice, _), (bob, _), (carol, _) = await _users(server, 3)
    async with server.store() as store:
        await store.add_ring_group(
            "default",
            f"seq-{alice}",
            [{"user": alice, "seconds": 1}, {"user": bob, "seconds": 5}],
            strategy="sequential",
        )
        await store.add_dial_rule("default", "5101", "ring_group", f"seq-{alice}")
    log: list[tuple[str, float]] = []
    alice_calls = _callee(await _phone(server, alice, phones), log, alice, answer=False)
    _callee(await _phone(server, bob, phones), log, bob, answer=True)
    caller = await _phone(server, carol, phones)
    sink = BufferSink()
    call = await caller.call("5101", source=ToneSource(440.0), sink=sink)
    level = await _heard(call, sink)
    assert [name for name, _ in log] == [alice, bob]
    assert log[1][1] - log[0][1] >= 0.5  # bob only after alice's second (less setup)
    assert alice_calls[0].end_reason == "no-answer"
    assert level > -35, f"the caller did not hear bob ({level:.1f} dB)"


async def test_simultaneous_group_rings_everyone_and_the_first_answer_wins(
    server: Server, phones: list[Phone]
) -> None:
    (alice, _), (bob, _), (carol, _) = await _users(server, 3)
    async with server.store() as store:
        await store.add_ring_group("default", f"sim-{alice}", [alice, bob])
        await store.add_dial_rule("default", "5102", "ring_group", f"sim-{alice}")
    log: list[tuple[str, float]] = []
    alice_calls = _callee(await _phone(server, alice, phones), log, alice, answer=False)
    _callee(await _phone(server, bob, phones), log, bob, answer=True)
    caller = await _phone(server, carol, phones)
    sink = BufferSink()
    call = await caller.call("5102", source=ToneSource(440.0), sink=sink)
    level = await _heard(call, sink)
    assert sorted(name for name, _ in log) == sorted([alice, bob])
    assert abs(log[0][1] - log[1][1]) < 1.0  # at once
    await alice_calls[0].wait_for("ended", timeout=5)
    assert alice_calls[0].end_reason == "answered-elsewhere"
    assert level > -35, f"the caller did not hear bob ({level:.1f} dB)"


async def test_a_member_on_dnd_is_skipped_and_the_next_member_answers(
    server: Server, phones: list[Phone]
) -> None:
    """A sequential group whose first member has DND on (followme.limits): their logged-in
    phone never rings, the next member rings at once (not after the first's 5 s), answers,
    and is heard."""
    (dana, _), (bob, _), (carol, _) = await _users(server, 3)
    async with server.store() as store:
        await store.set_forwarding(dana, parse_forwarding({"dnd": True}))
        await store.add_ring_group(
            "default",
            f"dnd-{dana}",
            [{"user": dana, "seconds": 5}, {"user": bob, "seconds": 5}],
            strategy="sequential",
        )
        # Its own pattern: the module's tests share one server, whose rules add up.
        await store.add_dial_rule("default", "5105", "ring_group", f"dnd-{dana}")
    log: list[tuple[str, float]] = []
    _callee(await _phone(server, dana, phones), log, dana, answer=True)
    _callee(await _phone(server, bob, phones), log, bob, answer=True)
    caller = await _phone(server, carol, phones)
    sink = BufferSink()
    started = asyncio.get_running_loop().time()
    call = await caller.call("5105", source=ToneSource(440.0), sink=sink)
    level = await _heard(call, sink)
    assert [name for name, _ in log] == [bob], log
    assert log[0][1] - started < 4.0, "bob rang only after dana's 5 s"
    assert level > -35, f"the caller did not hear bob ({level:.1f} dB)"


async def test_round_robin_starts_with_the_next_member_on_each_call(
    server: Server, phones: list[Phone]
) -> None:
    """Two calls to a round-robin group of alice and bob (each answers): the first rings
    alice first, the second bob first."""
    (alice, _), (bob, _), (carol, _) = await _users(server, 3)
    async with server.store() as store:
        await store.add_ring_group(
            "default",
            f"rr-{alice}",
            [{"user": alice, "seconds": 3}, {"user": bob, "seconds": 3}],
            strategy="round_robin",
        )
        await store.add_dial_rule("default", "5103", "ring_group", f"rr-{alice}")
    log: list[tuple[str, float]] = []
    _callee(await _phone(server, alice, phones), log, alice, answer=True)
    _callee(await _phone(server, bob, phones), log, bob, answer=True)
    caller = await _phone(server, carol, phones)
    for _ in range(2):
        call = await caller.call("5103", source=ToneSource(440.0), sink=BufferSink())
        await call.wait_for("answered", timeout=10)
        await call.hangup()
    assert [name for name, _ in log] == [alice, bob]


async def test_extension_range_to_a_queue_and_a_prefix_rewritten_to_users(
    server: Server, phones: list[Phone]
) -> None:
    """8100-8199 goes to the queue 'dp-support' (answered, waiting there); 9XXXX drops the 9
    and rings the user whose extension is the rest."""
    (alice, ext), (carol, _) = await _users(server, 2)
    async with server.store() as store:
        await store.add_dial_rule("default", "8100-8199", "queue", "dp-support")
        await store.add_dial_rule("default", "9XXXX", "user", strip=1)
        key = await store.create_api_key("dialplan tests")
    caller = await _phone(server, carol, phones)
    queued = await caller.call("8123", source=ToneSource(440.0), sink=BufferSink())
    await queued.wait_for("answered", timeout=10)
    async with httpx.AsyncClient(
        base_url=f"{server.url}/v2", headers={"Authorization": f"Bearer {key}"}
    ) as http:
        waiting = (await http.get("/queues/dp-support/calls")).json()["data"]
    assert [c["to"] for c in waiting] == ["8123"]
    await queued.hangup()
    log: list[tuple[str, float]] = []
    _callee(await _phone(server, alice, phones), log, alice, answer=True)
    sink = BufferSink()
    call = await caller.call("9" + ext, source=ToneSource(440.0), sink=sink)
    assert await _heard(call, sink) > -35
    assert [name for name, _ in log] == [alice]


async def test_hours_that_exclude_now_fall_through_to_the_after_hours_rule(
    server: Server, phones: list[Phone]
) -> None:
    """Business hours (a window that ends an hour ago, every day) -> a ring group; otherwise
    -> the conference 'dp-night'. Now is after hours: the call is answered into it."""
    (alice, _), (carol, _) = await _users(server, 2)
    now = datetime.now(UTC)
    start, end = (
        (now - timedelta(hours=3)).strftime("%H:%M"),
        (now - timedelta(hours=1)).strftime("%H:%M"),
    )
    async with server.store() as store:
        await store.add_ring_group("default", f"day-{alice}", [alice])
        await store.add_dial_rule(
            "default", "5104", "ring_group", f"day-{alice}", start=start, end=end
        )
        await store.add_dial_rule("default", "5104", "conference", "dp-night")
    rung: list[tuple[str, float]] = []
    _callee(await _phone(server, alice, phones), rung, alice, answer=True)
    caller = await _phone(server, carol, phones)
    call = await caller.call("5104", source=ToneSource(440.0), sink=BufferSink())
    await call.wait_for("answered", timeout=10)
    await call.hangup()
    assert rung == []  # the group is for business hours


async def test_time_of_day_with_an_injected_clock(tmp_path: Path) -> None:
    """The engine's decision at given instants: Mon-Fri 09:00-17:00 Europe/London goes to the
    group, other times and holidays to the queue; 22:00-06:00 crosses midnight."""
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    try:
        acct = "default"
        await store.set_dial_settings(acct, time_zone="Europe/London", holidays=["2026-12-25"])
        await store.add_dial_rule(
            acct, "200", "ring_group", "sales", days="mon-fri", start="09:00", end="17:00"
        )
        await store.add_dial_rule(acct, "200", "queue", "after-hours")
        await store.add_dial_rule(acct, "300", "user", "night", start="22:00", end="06:00")
        now = [datetime(2026, 7, 1, 8, 30, tzinfo=UTC)]  # a Wednesday, 09:30 in London (BST)
        plans = DialPlans(None, store, None, clock=lambda: now[0])  # type: ignore[arg-type]

        async def where(dest: str) -> str | None:
            rule = await plans.match(acct, dest)
            return rule.target if rule else None

        assert await where("200") == "sales"
        now[0] = datetime(2026, 7, 1, 16, 5, tzinfo=UTC)  # 17:05 London: closed
        assert await where("200") == "after-hours"
        now[0] = datetime(2026, 7, 4, 10, 0, tzinfo=UTC)  # Saturday
        assert await where("200") == "after-hours"
        now[0] = datetime(2026, 12, 25, 10, 0, tzinfo=UTC)  # a Friday, a holiday
        assert await where("200") == "after-hours"
        now[0] = datetime(2026, 12, 24, 10, 0, tzinfo=UTC)  # the Thursday before (GMT)
        assert await where("200") == "sales"
        now[0] = datetime(2026, 12, 24, 23, 0, tzinfo=UTC)
        assert await where("300") == "night"
        now[0] = datetime(2026, 12, 24, 7, 0, tzinfo=UTC)
        assert await where("300") is None
        assert await where("201") is None  # no rule: routing as before
    finally:
        await store.close()


async def test_rest_rules_and_groups_with_errors(server: Server) -> None:
    async with server.store() as store:
        key = await store.create_api_key("dialplan rest")
        reader = await store.create_api_key("dialplan reader", scope="read")
        other = await store.create_account(f"dp-other-{next(_n)}")
        other_key = await store.create_api_key("other", account_id=other.id)

    def client(k: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=f"{server.url}/v2", headers={"Authorization": f"Bearer {k}"}
        )

    async with client(key) as http, client(reader) as ro, client(other_key) as them:
        made = await http.post(
            "/ring_groups",
            json={
                "name": "dp-rest",
                "strategy": "round_robin",
                "members": ["dp1", {"user": "dp2", "seconds": 9}],
                "no_answer": {"type": "queue", "target": "dp-q"},
            },
        )
        assert made.status_code == 200, made.text
        group = made.json()["data"]
        assert group["members"] == [{"user": "dp1", "seconds": 20}, {"user": "dp2", "seconds": 9}]
        rule = await http.post(
            "/dial_plan_rules",
            json={
                "pattern": "+44*",
                "target_type": "ring_group",
                "target": "dp-rest",
                "days": ["mon-fri"],
                "start_time": "09:00",
                "end_time": "17:30",
            },
        )
        assert rule.status_code == 200, rule.text
        rid = rule.json()["data"]["id"]
        assert rule.json()["data"]["days"] == ["mon", "tue", "wed", "thu", "fri"]
        listed = (await http.get("/dial_plan_rules")).json()["data"]
        assert rid in [r["id"] for r in listed]
        for body, pointer, words in [
            ({"pattern": "2099-2000", "target_type": "user"}, "/pattern", "starts above its end"),
            ({"pattern": "9X.X", "target_type": "user"}, "/pattern", "only at the end"),
            ({"pattern": "5", "target_type": "voicemail"}, "/target_type", "use one of"),
            ({"pattern": "5", "target_type": "queue"}, "/target", "needs a target"),
            (
                {"pattern": "5", "target_type": "user", "start_time": "25:00", "end_time": "10:00"},
                "/start_time",
                "HH:MM",
            ),
            ({"pattern": "5", "target_type": "user", "days": ["funday"]}, "/days", "mon"),
        ]:
            bad = await http.post("/dial_plan_rules", json=body)
            assert bad.status_code == 422, (body, bad.text)
            error = bad.json()["errors"][0]
            assert error["source"]["pointer"] == pointer and words in error["detail"], error
        bad = await http.post(
            "/ring_groups", json={"name": "x", "members": ["a"], "strategy": "hunt"}
        )
        assert (
            bad.status_code == 422 and bad.json()["errors"][0]["source"]["pointer"] == "/strategy"
        )
        bad = await http.patch("/dial_plan_settings", json={"time_zone": "Mars/Olympus"})
        assert bad.status_code == 422 and "IANA" in bad.json()["errors"][0]["detail"]
        ok = await http.patch("/dial_plan_settings", json={"time_zone": "Europe/Paris"})
        assert ok.json()["data"]["time_zone"] == "Europe/Paris"
        # read-only keys read but not write; another account sees nothing of ours
        assert (await ro.get(f"/dial_plan_rules/{rid}")).status_code == 200
        assert (await ro.delete(f"/dial_plan_rules/{rid}")).status_code == 403
        assert (
            await ro.post("/ring_groups", json={"name": "y", "members": ["a"]})
        ).status_code == 403
        assert (await them.get(f"/dial_plan_rules/{rid}")).status_code == 404
        assert (await them.delete(f"/ring_groups/{group['id']}")).status_code == 404
        assert (await them.get("/dial_plan_rules")).json()["data"] == []
        assert (await http.delete(f"/dial_plan_rules/{rid}")).status_code == 200
        assert (await http.get(f"/dial_plan_rules/{rid}")).status_code == 404
        assert (await http.delete("/ring_groups/dp-rest")).status_code == 200


def test_cli_dialplan_and_ringgroups(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--data-dir", str(tmp_path), "--init"]
    assert (
        cli_main(
            [
                "ringgroups",
                "add",
                "sales",
                "--members",
                "alice:15,bob",
                "--strategy",
                "sequential",
                "--no-answer",
                "queue:sales-q",
                *base,
            ]
        )
        == 0
    )
    assert (
        cli_main(
            [
                "dialplan",
                "add",
                "2000-2099",
                "--to",
                "ring_group:sales",
                "--days",
                "mon-fri",
                "--hours",
                "09:00-17:00",
                *base,
            ]
        )
        == 0
    )
    assert (
        cli_main(
            ["dialplan", "add", "9*", "--to", "trunk", "--strip", "1", "--prepend", "+44", *base]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "sales (sequential): alice:15, bob:20; no answer -> queue:sales-q" in out
    assert cli_main(["dialplan", "list", *base]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert "2000-2099" in listing[0] and "mon,tue,wed,thu,fri 09:00-17:00" in listing[0]
    assert "9*" in listing[1] and "prepend '+44'" in listing[1]
    rule_id = listing[0].rsplit("[", 1)[1].rstrip("]")
    assert cli_main(["dialplan", "add", "20-2000", "--to", "user", *base]) != 0
    assert "same number of digits" in capsys.readouterr().err
    assert (
        cli_main(["ringgroups", "add", "x", "--members", "a", "--no-answer", "mars:1", *base]) != 0
    )
    assert "invalid no_answer kind 'mars'" in capsys.readouterr().err
    assert cli_main(["dialplan", "remove", rule_id, *base]) == 0
    assert cli_main(["ringgroups", "remove", "sales", *base]) == 0
    assert cli_main(["ringgroups", "list", *base]) == 0
    assert "no ring groups" in capsys.readouterr().out
