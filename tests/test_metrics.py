"""``GET /metrics`` after a real call: two Python SDK phones with audio on the suite's server,
the exposition parsed with ``prometheus_client``'s own parser, the counters checked to have
moved; who may read it; the Grafana dashboard names only metrics a scrape has."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from api_helpers import Api, api_fixture  # noqa: F401  (the fixture)
from callbridge.store import Store
from callbridge.testing.server import Server
from conftest import MakeParty
from parties import ALICE, BOB, connect, hears, until_async

DASHBOARD = Path(__file__).parent.parent / "docs" / "grafana-callbridge.json"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(server: Server, key: str) -> tuple[set[str], Samples]:
    """The metric families' names and every sample (name, sorted labels) -> value."""
    async with httpx.AsyncClient(base_url=server.url) as http:
        answer = await http.get("/metrics", headers={"authorization": f"Bearer {key}"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    names: set[str] = set()
    samples: Samples = {}
    for family in text_string_to_metric_families(answer.text):
        names.add(family.name)
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return names, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_a_call_with_audio_moves_the_counters(
    server: Server, store: Store, party: MakeParty
) -> None:
    key = await store.create_api_key("metrics", admin=True, scope="read")
    _, before = await scrape(server, key)
    alice, bob = await party(ALICE), await party(BOB)
    out, inc = await connect(alice, bob)
    await hears(bob, ALICE)  # audio flows both ways through the server's relay
    _, during = await scrape(server, key)
    assert value(during, "callbridge_legs", state="active") >= 2
    assert value(during, "callbridge_calls", state="answered") >= 1
    assert value(during, "callbridge_sessions", state="attached") >= 2
    await out.hangup()
    await inc.wait_for("ended", timeout=5)
    _, after = await scrape(server, key)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("callbridge_calls_started_total") >= 1
    assert moved("callbridge_calls_answered_total") >= 1
    assert moved("callbridge_calls_ended_total", reason="hangup") >= 1
    assert moved("callbridge_legs_ended_total", reason="hangup") >= 2
    assert moved("callbridge_call_setup_seconds_count") >= 1
    assert moved("callbridge_call_setup_seconds_sum") > 0
    # 1 s of listening at 50 packets/s each way, at least; every one relayed.
    assert moved("callbridge_rtp_packets_received_total") > 50
    assert moved("callbridge_rtp_packets_relayed_total") > 50
    assert moved("callbridge_media_ticks_total") > 0  # the caller's ringback ran on the clock
    assert moved("callbridge_db_statement_seconds_count", operation="insert") >= 1  # the CDR
    assert value(after, "callbridge_rtp_packets_lost_total") >= 0
    assert value(after, "callbridge_build_info", version=_version(after)) == 1


async def test_a_call_to_an_application_counts_its_webhooks(
    server: Server, store: Store, api: Api, party: MakeParty
) -> None:
    key = await store.create_api_key("metrics-webhooks", admin=True, scope="read")
    _, before = await scrape(server, key)
    line = await api.line()
    alice = await party(ALICE)
    call = await alice.call(line)
    await api.sink.wait("call.initiated", call_control_id=call.id)
    _, during = await scrape(server, key)
    assert value(during, "callbridge_app_calls", state="parked") >= 1
    await call.hangup()
    await api.sink.wait("call.hangup", call_control_id=call.id)
    _, after = await scrape(server, key)
    delivered = value(after, "callbridge_webhook_deliveries_total") - value(
        before, "callbridge_webhook_deliveries_total"
    )
    assert delivered >= 2  # call.initiated, call.hangup
    lag = "callbridge_webhook_delivery_lag_seconds_count"
    assert value(after, lag) - value(before, lag) == delivered
    assert value(after, "callbridge_webhook_outbox_oldest_age_seconds") >= 0


def _version(samples: Samples) -> str:
    for name, labels in samples:
        if name == "callbridge_build_info":
            return dict(labels)["version"]
    raise AssertionError("no callbridge_build_info")


async def test_the_srtp_and_handler_counters_are_exported_in_all_and_per_worker(
    server: Server, store: Store
) -> None:
    """``callbridge_srtp_packets_rejected_total`` and ``callbridge_rtp_handler_errors_total``
    (counted by the legs' RTP ports: tests/test_packet_path.py, tests/test_packet_counts.py),
    and with media workers ``callbridge_media_worker_srtp_rejected`` and
    ``callbridge_media_worker_handler_errors`` for each worker, as the exposition parses."""
    key = await store.create_api_key("metrics-srtp", admin=True, scope="read")
    _, samples = await scrape(server, key)
    for name in ("callbridge_srtp_packets_rejected_total", "callbridge_rtp_handler_errors_total"):
        assert samples[(name, ())] >= 0
    health: dict[str, Any] = dict(server.health())
    for w in health.get("media_workers", []):  # --media-workers 2, the suite's default
        label = (("worker", str(w["index"])),)
        for name, field in (
            ("callbridge_media_worker_srtp_rejected", "srtp_rejected"),
            ("callbridge_media_worker_handler_errors", "handler_errors"),
        ):
            assert samples[(name, label)] >= 0
            assert w[field] >= 0  # /healthz has them too


async def test_forged_srtp_packets_are_counted_per_worker_and_in_all(
    server: Server, store: Store, party: MakeParty
) -> None:
    """RTP packets that are not authentic SRTP, sent to the server's leg over the caller's own
    ICE connection with the caller's SSRC (so the leg's fast path takes them), are dropped and
    counted: ``callbridge_srtp_packets_rejected_total`` and, per media worker,
    ``callbridge_media_worker_srtp_rejected``. ``callbridge_rtp_handler_errors_total`` is
    there too (a handler that raises is a bug: tests/test_packet_path.py makes one)."""
    key = await store.create_api_key("metrics-srtp", admin=True, scope="read")
    alice, bob = await party(ALICE), await party(BOB)
    out, inc = await connect(alice, bob)
    await hears(bob, ALICE)  # the server's leg has routed alice's SSRC to its fast path
    _, before = await scrape(server, key)
    media = out.media
    assert media is not None
    sender = media.transceiver.sender
    forged = 5
    for seq in range(forged):  # an RTP header (RFC 3550 5.1), then bytes no key protected
        header = struct.pack("!BBHII", 0x80, 111, seq, 960 * seq, sender._ssrc)
        await sender.transport.transport._connection.send(header + bytes(range(60)))

    async def counted() -> Samples | None:
        _, now = await scrape(server, key)
        moved = value(now, "callbridge_srtp_packets_rejected_total") - value(
            before, "callbridge_srtp_packets_rejected_total"
        )
        return now if moved >= forged else None

    after = await until_async(counted, within=5)  # a worker reports its counts every second
    assert value(after, "callbridge_rtp_handler_errors_total") >= 0
    assert ("callbridge_rtp_handler_errors_total", ()) in after
    health: dict[str, Any] = dict(server.health())
    if "media_workers" in health:  # --media-workers 2 (the suite's default): per worker too
        per = [
            value(after, "callbridge_media_worker_srtp_rejected", worker=str(w["index"]))
            for w in health["media_workers"]
        ]
        assert sum(per) >= forged and min(per) >= 0
        assert all(
            ("callbridge_media_worker_handler_errors", (("worker", str(w["index"])),)) in after
            for w in health["media_workers"]
        )
    await out.hangup()
    await inc.wait_for("ended", timeout=5)


async def test_metrics_need_an_admin_key(server: Server, store: Store) -> None:
    plain = await store.create_api_key("not-admin")
    async with httpx.AsyncClient(base_url=server.url) as http:
        anonymous = await http.get("/metrics")
        wrong = await http.get("/metrics", headers={"authorization": "Bearer KEYnope"})
        account = await http.get("/metrics", headers={"authorization": f"Bearer {plain}"})
    assert anonymous.status_code == 401
    assert "Authorization" in anonymous.json()["errors"][0]["detail"]
    assert wrong.status_code == 401
    assert account.status_code == 403
    assert "--admin" in account.json()["errors"][0]["detail"]


async def test_the_grafana_dashboard_uses_only_metrics_a_scrape_has(
    server: Server, store: Store
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    panels = dashboard["panels"]
    assert all(p["type"] and p["gridPos"] and p["id"] for p in panels)
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    assert len(exprs) >= 10
    used = {m for e in exprs for m in re.findall(r"\b((?:callbridge|process)_[a-z_]+)", e)}
    key = await store.create_api_key("grafana", admin=True, scope="read")
    names, samples = await scrape(server, key)
    # A histogram's series are NAME_bucket/_sum/_count, a counter's NAME_total.
    have = names | {name for name, _ in samples}
    missing = sorted(used - have)
    assert not missing, f"the dashboard names metrics that /metrics does not have: {missing}"
