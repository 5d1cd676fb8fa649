"""CDRs out and live calls (issue 14): real calls between Python SDK phones, one of them queued
and taken by an agent, then their CDRs through the official telnyx SDK's
``detail_records.list`` (filters, sort, paging, accounts kept apart), ``callbridge cdrs`` as
CSV and JSON, ``/v2/connections/{id}/active_calls`` and ``GET /v2/calls`` while a call lives
and after, the agent's ``bridged`` event, and the bad filters refused by name."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import itertools
import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import telnyx
from telnyx import AsyncTelnyx
from telnyx.types.call_hangup import PayloadCallQualityStats
from telnyx.types.call_hangup_webhook_event import CallHangupWebhookEvent
from telnyx.types.detail_record_list_params import Filter

import pg
from api_helpers import Api, api_fixture  # noqa: F401  (the fixture)
from callbridge.cdr_details import QUALITY_INTERVAL, CdrDetails, estimate_mos, stored_quality_stats
from callbridge.cli import main as cli_main
from callbridge.cli_cdrs import parse_when
from callbridge.client import Bridged, Call
from callbridge.core.app_model import AppCall
from callbridge.core.controller import CallController
from callbridge.media.interface import EndpointInfo, RtcpStats
from callbridge.store import Store
from callbridge.store.calls import CdrQuery
from callbridge.store.records import Cdr
from callbridge.testing import Server
from callbridge.testing.fake_media import FakeMediaServer
from conftest import MakeParty
from core_world import ANSWER, Directory, World
from parties import ALICE, BOB, CAROL, Party, until_async

pytestmark = pytest.mark.timeout(60)
_queues = itertools.count(1)
CALL_CONTROL = {"record_type": "call-control"}


def _filter(**filters: Any) -> Filter:
    # The SDK's Filter takes extra items (PEP 728), which mypy does not know yet.
    return cast(Filter, {**CALL_CONTROL, **filters})


async def records(client: AsyncTelnyx, **filters: Any) -> list[dict[str, Any]]:
    """Every detail record matching ``filters``, through the SDK's auto-pagination."""
    found = []
    async for record in client.detail_records.list(filter=_filter(**filters)):
        found.append(record.to_dict())
    return found


async def live(api: Api, path: str) -> list[dict[str, Any]]:
    body = await api.client.get(path, cast_to=object)
    assert isinstance(body, dict) and "meta" in body
    data: list[dict[str, Any]] = body["data"]
    return data


async def queued_call_taken_by_an_agent(api: Api, alice: Party, carol: Party) -> dict[str, Any]:
    """Alice calls the support line and waits in a queue; Carol, the agent, calls the agents'
    line and the application bridges her to Alice; then Alice hangs up. What the test saw."""
    support, agents, queue = await api.line(), await api.line(), f"cdr-q{next(_queues)}"
    actions = api.client.calls.actions
    caller = await alice.call(support)
    a = (await api.sink.wait("call.initiated", call_control_id=caller.id)).payload[
        "call_control_id"
    ]
    await actions.answer(a)
    await caller.wait_for("answered", timeout=5)
    await actions.enqueue(a, queue_name=queue)
    await api.sink.wait("call.enqueued", call_control_id=a)

    # While Alice waits, her call is live on the application's connection and in /v2/calls.
    active = await until_async(lambda: live(api, f"/connections/{api.app_id}/active_calls"))
    assert [c["call_control_id"] for c in active] == [a]
    assert active[0]["record_type"] == "call" and active[0]["call_duration"] >= 0
    sdk_active = await api.client.connections.list_active_calls(api.app_id)
    assert [c.call_control_id for c in sdk_active.data] == [a]
    listed = [c for c in await live(api, "/calls") if c["call_control_id"] == a]
    assert listed and listed[0]["connection_id"] == api.app_id and listed[0]["is_alive"]

    agent = await carol.call(agents)
    b = (await api.sink.wait("call.initiated", call_control_id=agent.id)).payload["call_control_id"]
    await actions.answer(b)
    await agent.wait_for("answered", timeout=5)
    await actions.bridge(b, call_control_id_to_bridge_with="", queue=queue)
    await agent.wait_for("bridged", timeout=5)
    await caller.hangup()
    await api.sink.wait("call.hangup", call_control_id=a)
    await api.sink.wait("call.hangup", call_control_id=b)
    # Both ended: the connection has no live call left.
    assert await until_async(lambda: _empty(live(api, f"/connections/{api.app_id}/active_calls")))
    return {"queue": queue, "agent": agent, "caller": caller}


async def _empty(listing: Any) -> bool:
    return not await listing


async def test_a_queued_call_s_cdr_names_the_agent_the_queue_the_wait_and_who_hung_up(
    api: Api, party: MakeParty, server: Server
) -> None:
    alice, bob, carol = await party(ALICE), await party(BOB), await party(CAROL)
    seen = await queued_call_taken_by_an_agent(api, alice, carol)

    # The agent's SDK learnt who she got, from which queue, after how long.
    agent: Call = seen["agent"]
    bridged = agent.bridged
    assert isinstance(bridged, Bridged)
    assert bridged.peer == alice.user.number and bridged.queue == seen["queue"]
    assert bridged.wait_time_secs is not None and bridged.wait_time_secs >= 0
    assert (await agent.wait_for("bridged", timeout=1)).data["type"] == "call.bridged"

    # A plain call: Alice calls Bob, Bob answers and hangs up.
    out = await alice.call(bob.user.extension)
    inc = await bob.answer()
    await out.wait_for("answered", timeout=5)
    await inc.hangup()
    await out.wait_for("ended", timeout=5)

    mine = await until_async(
        lambda: _at_least(records(api.client, cli=alice.user.name), 2), within=10
    )
    queued, plain = mine  # sorted newest first by default
    queued, plain = (plain, queued) if queued["cld"] == bob.user.extension else (queued, plain)
    assert queued["answered_user"] == carol.user.name
    assert queued["queue_name"] == seen["queue"] and queued["queue_wait_time_secs"] >= 0
    assert queued["hangup_source"] == "caller" and queued["end_reason"] == "hangup"
    assert queued["hangup_cause"] == "normal_clearing" and queued["record_type"] == "call-control"
    assert plain["answered_user"] == bob.user.name and plain["answered_device"]
    assert plain["hangup_source"] == "callee" and plain["call_sec"] >= 0
    assert plain["finished_at"] >= plain["started_at"]

    # Bob's call to the support line becomes a conference: his CDR names it.
    conf_call = await bob.call(await api.line())
    c = (await api.sink.wait("call.initiated", call_control_id=conf_call.id)).payload[
        "call_control_id"
    ]
    await api.client.calls.actions.answer(c)
    await conf_call.wait_for("answered", timeout=5)
    made = await api.client.conferences.create(call_control_id=c, name="cdr-conf")
    assert made.data is not None
    await api.sink.wait("conference.participant.joined", call_control_id=c)
    await api.client.calls.actions.hangup(c)  # the application ends it
    await conf_call.wait_for("ended", timeout=5)
    bobs = await until_async(lambda: _at_least(records(api.client, cli=bob.user.name), 1))
    assert [(r["conference_id"], r["hangup_source"]) for r in bobs] == [
        (made.data.id, "application")
    ]

    # The agent's own CDR names the queue she took a call from.
    carols = await records(api.client, cli=carol.user.name)
    assert [r["queue_name"] for r in carols] == [seen["queue"]]

    # Paging and sort: one record a page, oldest first, both pages through the SDK.
    pages = api.client.detail_records.list(
        filter=_filter(cli=alice.user.name),
        page_size=1,
        sort=["started_at"],
    )
    first = await pages
    assert first.meta is not None and first.meta.total_pages == 2
    ids = [r.to_dict()["id"] async for r in pages]
    assert ids == [queued["id"], plain["id"]]
    # Filters: an instant range and a column.
    since = {"gte": queued["started_at"]}
    assert [r["id"] for r in await records(api.client, cli=alice.user.name, started_at=since)]
    assert [r["id"] for r in await records(api.client, cld=bob.user.extension)] == [plain["id"]]
    today = await records(api.client, cli=alice.user.name, date_range="today")
    assert len(today) == 2
    assert await records(api.client, cli=alice.user.name, date_range="tomorrow") == []

    # Another account's key sees none of them.
    store_key = await _other_account_key(server)
    async with AsyncTelnyx(api_key=store_key, base_url=f"{server.url}/v2", max_retries=0) as other:
        assert await records(other, cli=alice.user.name) == []

    # The CLI: JSON and CSV, parsed.
    as_json = json.loads(await _cli(server, "--since", "1h", "--format", "json"))
    by_id = {r["id"]: r for r in as_json}
    assert by_id[queued["id"]]["answered_user"] == carol.user.name
    rows = list(csv.DictReader(io.StringIO(await _cli(server, "--since", "1h"))))
    row = next(r for r in rows if r["id"] == plain["id"])
    assert row["hangup_source"] == "callee" and row["answered_user"] == bob.user.name
    assert json.loads(await _cli(server, "--since", "2099-01-01", "--format", "json")) == []


async def _at_least(found: Any, n: int) -> list[dict[str, Any]] | None:
    got: list[dict[str, Any]] = await found
    return got if len(got) >= n else None


async def _other_account_key(server: Server) -> str:
    async with server.store() as store:
        account = await store.create_account(f"cdr-other-{next(_queues)}")
        return await store.create_api_key("other", account_id=account.id)


async def _cli(server: Server, *args: str) -> str:
    out = io.StringIO()

    def run() -> int:
        with contextlib.redirect_stdout(out):
            return cli_main(["cdrs", "--data-dir", str(server.data_dir), *args])

    assert await asyncio.to_thread(run) == 0
    return out.getvalue()


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ({}, "filter[record_type]"),
        ({"filter[record_type]": "messaging"}, "filter[record_type]"),
        ({**{"filter[record_type]": "call-control"}, "filter[bogus]": "x"}, "filter[bogus]"),
        (
            {"filter[record_type]": "call-control", "filter[started_at][gte]": "yesterday"},
            "filter[started_at][gte]",
        ),
        (
            {"filter[record_type]": "call-control", "filter[started_at][gte]": "2026-12-01T10:00"},
            "filter[started_at][gte]",
        ),
        (
            {"filter[record_type]": "call-control", "filter[date_range]": "soon"},
            "filter[date_range]",
        ),
        ({"filter[record_type]": "call-control", "sort": "-caller"}, "sort"),
        ({"filter[record_type]": "call-control", "page[size]": "0"}, "page[size]"),
        ({"filter[record_type]": "call-control", "limit": "5"}, "limit"),
    ],
)
async def test_a_bad_filter_is_refused_naming_it(
    api: Api, query: dict[str, str], parameter: str
) -> None:
    with pytest.raises(telnyx.UnprocessableEntityError) as err:
        await api.client.get("/detail_records", options={"params": query}, cast_to=object)
    body = err.value.body
    assert isinstance(body, dict)
    assert body["errors"][0]["source"] == {"parameter": parameter}, body
    assert parameter.split("[")[0] in body["errors"][0]["detail"]


async def test_an_unknown_connection_has_no_active_calls_list(api: Api) -> None:
    with pytest.raises(telnyx.NotFoundError) as err:
        await api.client.connections.list_active_calls("no-such-application")
    assert "call control application" in str(err.value.body)


# Media quality ---------------------------------------------------------------------------------
async def test_real_calls_carry_rtcp_quality_and_device_calls_are_listed_live(
    api: Api, party: MakeParty, server: Server
) -> None:
    """Two WebRTC (Python SDK) phones talk while a third is in an application's call: the
    device call is in GET /v2/calls once (not on the connection); after one quality sample
    both legs' RTCP figures are in the CDR, and the app call's in its call.hangup webhook."""
    alice, bob, carol = await party(ALICE), await party(BOB), await party(CAROL)
    out = await alice.call(bob.user.extension)
    inc = await bob.answer()
    await out.wait_for("answered", timeout=5)
    to_app = await carol.call(await api.line())
    c = (await api.sink.wait("call.initiated", call_control_id=to_app.id)).payload[
        "call_control_id"
    ]
    await api.client.calls.actions.answer(c)
    await to_app.wait_for("answered", timeout=5)

    # The device call: listed once, named by Alice's leg, with no connection.
    listed = await live(api, "/calls")
    mine = [x for x in listed if out.id in (x["call_control_id"], x["call_session_id"])]
    assert len(mine) == 1 and inc.id not in [x["call_control_id"] for x in listed], listed
    device_call = mine[0]
    assert device_call["call_control_id"] == out.id and device_call["connection_id"] is None
    assert device_call["to"] == bob.user.extension and device_call["state"] == "answered"
    assert device_call["direction"] == "outgoing" and device_call["is_alive"]
    assert [x["call_control_id"] for x in listed].count(c) == 1  # the app call, from the table
    on_app = await api.client.get(
        "/calls", options={"params": {"filter[connection_id]": api.app_id}}, cast_to=object
    )
    assert isinstance(on_app, dict)
    assert [x["call_control_id"] for x in on_app["data"]] == [c]
    connection = await live(api, f"/connections/{api.app_id}/active_calls")
    assert [x["call_control_id"] for x in connection] == [c]
    other_key = await _other_account_key(server)  # another account sees neither call
    async with AsyncTelnyx(api_key=other_key, base_url=f"{server.url}/v2", max_retries=0) as other:
        assert (await other.get("/calls", cast_to=object))["data"] == []  # type: ignore[index]

    # The calls last longer than one sampling interval (what is tested is a call's length:
    # the figures are sampled every QUALITY_INTERVAL s, and RTCP comes every ~1 s).
    await asyncio.sleep(QUALITY_INTERVAL + 1.0)
    await inc.hangup()
    await out.wait_for("ended", timeout=5)
    await api.client.calls.actions.hangup(c)
    hangup = await api.sink.wait("call.hangup", call_control_id=c)
    await listing_without(api, out.id)

    # call.hangup carries the app call's leg's figures, in the SDK's own model.
    event = CallHangupWebhookEvent.model_validate(json.loads(hangup.body))
    assert event.data is not None and event.data.payload is not None
    webhook_stats = event.data.payload.call_quality_stats
    assert webhook_stats is not None and webhook_stats.inbound is not None
    assert int(webhook_stats.inbound.packet_count or 0) > 100  # Carol's 20 ms frames for > 5 s
    assert 1.0 < float(webhook_stats.inbound.mos or 0) <= 4.5

    # The device call's CDR: both WebRTC legs' figures.
    found = await until_async(lambda: _at_least(records(api.client, id=out.id), 1), within=10)
    stats = found[0]["call_quality_stats"]
    assert stats is not None and set(stats) == {out.id, inc.id}, stats
    for leg in (out.id, inc.id):
        figures = PayloadCallQualityStats.model_validate(stats[leg])
        assert figures.inbound is not None and figures.outbound is not None
        assert int(figures.inbound.packet_count or 0) > 100
        assert float(figures.inbound.mos or 0) > 4.0  # loopback: no loss, little jitter


async def listing_without(api: Api, call_control_id: str) -> None:
    """Wait until GET /v2/calls no longer lists the call."""

    async def gone() -> bool:
        calls = await live(api, "/calls")
        return call_control_id not in [x["call_control_id"] for x in calls]

    assert await until_async(gone)


class RtcpMedia(FakeMediaServer):
    """The in-memory media plane, whose endpoints report RTCP figures as a plain RTP leg's do
    (a WebRTC or SIP peer that reports loss on demand is what this stands in for)."""

    def __init__(self) -> None:
        super().__init__()
        self.rtcp: dict[str, RtcpStats] = {}

    async def endpoint_info(self, endpoint_id: str) -> EndpointInfo:
        info = await super().endpoint_info(endpoint_id)
        return replace(info, rtcp=self.rtcp.get(endpoint_id))


@dataclass
class NoAppCalls:
    calls: dict[str, AppCall] = field(default_factory=dict)

    def call_of_leg(self, leg_id: str) -> AppCall | None:
        return None


def rtcp(received: int, lost: int, jitter_ms: float) -> RtcpStats:
    return RtcpStats(
        reports_sent=2,
        reports_received=2,
        fraction_lost=0.0,
        packets_lost=3,
        jitter_ms=4.0,
        round_trip_ms=40.0,
        received_packets=received,
        received_lost=lost,
        received_jitter_ms=jitter_ms,
    )


async def test_a_call_s_cdr_keeps_each_leg_s_last_rtcp_figures_in_telnyx_s_shape() -> None:
    media = RtcpMedia()
    directory = Directory()
    controller = CallController(media, directory, ring_timeout=5.0, cdr_factory=Cdr)
    world = World(media, controller, directory, [])
    details = CdrDetails(controller, NoAppCalls())
    details.interval = 0.01
    try:
        alice, bob = world.phone("alice"), world.phone("bob")
        out, inc = await world.connect(alice, bob)
        media.rtcp[out] = rtcp(500, 5, 12.0)  # 1 % lost
        media.rtcp[inc] = rtcp(250, 0, 1.0)
        call = controller.legs[out].call
        assert call is not None
        await until_async(lambda: _sampled(details, call, 2))
        await controller.hangup(bob, inc, None)
        kept = details.take(call)
    finally:
        details.close()
        await controller.shutdown()
    assert kept["hangup_source"] == "callee" and kept["answered_user"] == "bob"
    stats = stored_quality_stats(kept["quality"])
    assert stats is not None and set(stats) == {out, inc}
    alice_leg = PayloadCallQualityStats.model_validate(stats[out])  # the SDK's own model
    assert alice_leg.inbound is not None and alice_leg.outbound is not None
    assert (alice_leg.inbound.packet_count, alice_leg.inbound.skip_packet_count) == ("500", "5")
    assert alice_leg.inbound.jitter_max_variance == "12.00"
    assert alice_leg.outbound.skip_packet_count == "3"
    assert alice_leg.inbound.mos is not None and stats[inc]["inbound"]["mos"] is not None
    assert 1.0 < float(alice_leg.inbound.mos) < float(stats[inc]["inbound"]["mos"]) <= 4.5


async def _sampled(details: CdrDetails, call: Any, legs: int) -> bool:
    return len(details._details.get(call.id, {}).get("quality", {})) >= legs


def test_the_estimated_mos_falls_with_loss_jitter_and_delay() -> None:
    clean = estimate_mos(0.0, 0.0, 0.0)
    assert 4.3 < clean <= 4.5
    assert estimate_mos(5.0, 0.0, 0.0) < clean
    assert estimate_mos(0.0, 60.0, 0.0) < clean
    assert estimate_mos(0.0, 0.0, 600.0) < estimate_mos(0.0, 0.0, 100.0)
    assert estimate_mos(60.0, 100.0, 1000.0) == 1.0
    assert stored_quality_stats({"leg": {"packets": "not ours"}}) is None  # a damaged record


async def test_a_transferred_call_s_record_names_the_call_it_goes_on_as() -> None:
    media = FakeMediaServer()
    directory = Directory()
    controller = CallController(media, directory, ring_timeout=5.0, cdr_factory=Cdr)
    world = World(media, controller, directory, [])
    details = CdrDetails(controller, NoAppCalls())
    try:
        alice, bob, carol = world.phone("alice"), world.phone("bob"), world.phone("carol")
        out, inc = await world.connect(alice, bob)
        old = controller.legs[out].call
        assert old is not None
        # Bob sends Alice to Carol (blind): the old call's record waits for the new call.
        settled = asyncio.ensure_future(details.settle(old, "transferred"))
        await controller.transfers.blind(bob, inc, "carol", None)
        ringing = (await carol.expect("call.incoming"))["call_id"]
        await controller.answer(carol, ringing, ANSWER, None)
        kept = await asyncio.wait_for(settled, 5)
        new = controller.legs[out].call
        assert new is not None and new is not old
        assert kept["transferred_to"] == new.id
        await controller.hangup(alice, out, None)
        assert details.take(new)["answered_user"] == "carol"
    finally:
        details.close()
        await controller.shutdown()


# The store's search, on SQLite and PostgreSQL ---------------------------------------------------
database = pg.database


async def test_the_store_searches_cdrs_by_column_instant_account_and_page(
    database: pg.Database,
) -> None:
    t0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    store = await Store.open(database.url)
    try:
        for n, (caller, account) in enumerate((("ann", "a"), ("ann", "a"), ("ann", "b"))):
            await store.record_cdr(
                Cdr(
                    call_id=f"c{n}",
                    caller=caller,
                    callee="agent",
                    destination="5000",
                    started_at=t0 + timedelta(minutes=n),
                    answered_at=t0 + timedelta(minutes=n, seconds=5),
                    ended_at=t0 + timedelta(minutes=n, seconds=50),
                    end_reason="hangup",
                    account_id=account,
                    answered_user="agent",
                    queue_name="q" * 300,  # longer than its column: cut, the record kept
                    queue_wait_secs=n,
                    hangup_source="caller",
                    quality={"leg": {"packets_received": 1, "packets_lost": 0, "jitter_ms": 1.0}},
                )
            )
        newest, total = await store.search_cdrs(CdrQuery(account_id="a"), 1, 1)
        assert total == 2 and [c.call_id for c in newest] == ["c1"]
        oldest, _ = await store.search_cdrs(CdrQuery(account_id="a", sort="started_at"), 1, 5)
        assert [c.call_id for c in oldest] == ["c0", "c1"]
        assert oldest[0].queue_name == "q" * 255 and oldest[0].quality is not None
        assert oldest[1].queue_wait_secs == 1 and oldest[1].answered_user == "agent"
        later = CdrQuery(ranges={"started_at": (t0 + timedelta(seconds=30), None)})
        assert (await store.search_cdrs(later))[1] == 2  # every account: c1 and c2
        by_caller = CdrQuery(account_id="b", equal={"caller": "ann", "hangup_source": "caller"})
        assert [c.call_id for c in (await store.search_cdrs(by_caller))[0]] == ["c2"]
        with pytest.raises(ValueError, match="sorted"):
            await store.search_cdrs(CdrQuery(sort="caller"))
        with pytest.raises(ValueError, match="filtered"):
            await store.search_cdrs(CdrQuery(equal={"node_id": "x"}))
    finally:
        await store.close()


def test_cdrs_times_are_instants_dates_or_spans_and_a_bad_one_says_what_to_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert parse_when("7d", now) == now - timedelta(days=7)
    assert parse_when("90m", now) == now - timedelta(minutes=90)
    assert parse_when("2026-12-01") == datetime(2026, 12, 1, tzinfo=UTC)
    assert parse_when("2026-12-01T10:00+01:00") == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    for bad in ("2026-12-01T10:00", "last tuesday", "7x"):
        with pytest.raises(argparse.ArgumentTypeError, match="ISO 8601"):
            parse_when(bad)
    data = ["--data-dir", str(tmp_path)]
    assert cli_main(["cdrs", *data, "--since", "yesterday-ish"]) == 2
    assert "is not a time" in capsys.readouterr().err
    assert cli_main(["cdrs", *data, "--since", "2026-12-02", "--until", "2026-12-01"]) == 2
    assert "--until" in capsys.readouterr().err
