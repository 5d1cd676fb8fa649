"""Webhooks end to end: a real HTTP receiver on 127.0.0.1 gets what the outbox sends.

Signatures are checked by code that is not ours: the official ``telnyx`` SDK's
``webhooks.unwrap`` (ed25519, then its typed events), PyNaCl for the Standard Webhooks ``v1a``
ed25519 signature (callbridge signs with ``cryptography``), and the ``standardwebhooks`` library
for the ``v1`` HMAC. The receiver is a small asyncio HTTP/1.1 server that answers from a script
per path (a status, a dropped connection, or no answer at all), so every failure is exact.

Timing is made tiny by ``RetryPolicy``; ``poll_interval`` stays long on purpose, so that a
worker which only found its work by polling would show up as a slow (failing) test.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pytest
import standardwebhooks
import telnyx
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from telnyx.types import (
    CallAnsweredWebhookEvent,
    CallRecordingSavedWebhookEvent,
    ConferenceCreatedWebhookEvent,
    ConferenceParticipantJoinedWebhookEvent,
)

import pg
from callbridge.store import OutboxMessage, Store
from callbridge.testing.server import free_port
from callbridge.webhooks import (
    RetryPolicy,
    WebhookOutbox,
    WebhookVerificationError,
    generate_signing_secret,
    load_signer,
    new_event,
    verify_webhook,
    webhook_body,
    webhook_public_key,
)
from parties import until_async

database = pg.database  # the fixture, for the scenarios that run on SQLite and PostgreSQL

FAST = RetryPolicy(first_delay=0.05, max_delay=0.4, max_attempts=6, timeout=0.3, poll_interval=5.0)
T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


# the receiver -----------------------------------------------------------------------------
Action = int | Literal["drop", "hang"]


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: str
    at: float  # time.monotonic() on arrival

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def attempt(self) -> int:
        return int(self.json["meta"]["attempt"])

    @property
    def event_id(self) -> str:
        return str(self.json["data"]["id"])


class Receiver:
    """An HTTP/1.1 webhook receiver on 127.0.0.1 that records requests and answers by script.

    ``script(path, 500, "drop", "hang")``: the next requests to ``path`` get a 500, then a
    connection closed without an answer, then no answer until the receiver closes; after the
    script, 200.
    """

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._scripts: dict[str, list[Action]] = {}
        self._arrived = asyncio.Condition()
        self._connections: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._connections:
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, path: str, *actions: Action) -> None:
        self._scripts.setdefault(path, []).extend(actions)

    def at(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    async def wait_for(self, count: int, path: str | None = None, within: float = 5.0) -> None:
        def enough() -> bool:
            got = self.requests if path is None else self.at(path)
            return len(got) >= count

        async with asyncio.timeout(within), self._arrived:
            await self._arrived.wait_for(enough)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        line = await reader.readline()
        if not line:
            return False
        method, target, _ = line.decode("ascii").split(" ", 2)
        assert method == "POST", method
        headers: dict[str, str] = {}
        while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = header.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        async with self._arrived:
            self.requests.append(Received(target, headers, body.decode(), time.monotonic()))
            self._arrived.notify_all()
        script = self._scripts.get(target, [])
        action = script.pop(0) if script else 200
        if action == "drop":
            return False  # close without a word
        if action == "hang":
            await asyncio.Event().wait()  # until the receiver closes
        writer.write(f"HTTP/1.1 {action} Scripted\r\ncontent-length: 2\r\n\r\nok".encode())
        await writer.drain()
        return True


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    db = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'callbridge.db'}")
    yield db
    await db.close()


async def running_outbox(store: Store, policy: RetryPolicy = FAST) -> WebhookOutbox:
    outbox = await WebhookOutbox.create(store, policy=policy)
    await outbox.start()
    return outbox


async def settled(store: Store, message_id: str) -> OutboxMessage:
    """The message once it is delivered or failed."""
    return await stored(store, message_id, lambda m: m.status != "pending")


async def stored(
    store: Store, message_id: str, condition: Callable[[OutboxMessage], bool]
) -> OutboxMessage:
    """The stored message once ``condition`` holds for it (the outbox works in the background)."""

    async def probe() -> OutboxMessage | None:
        message = await store.get_webhook(message_id)
        assert message is not None
        return message if condition(message) else None

    return await until_async(probe)


# independent checks -------------------------------------------------------------------------
SDK = telnyx.Telnyx(api_key="KEY-unused", base_url="http://127.0.0.1:9/v2")


def nacl_verify_v1a(received: Received, public_key: str) -> None:
    """The Standard Webhooks v1a signature, checked with PyNaCl (not the code under test)."""
    headers = received.headers
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.{received.body}".encode()
    signatures = [
        item.split(",", 1)[1]
        for item in headers["webhook-signature"].split(" ")
        if item.startswith("v1a,")
    ]
    assert len(signatures) == 1
    VerifyKey(base64.b64decode(public_key)).verify(signed, base64.b64decode(signatures[0]))


def tampered(received: Received) -> Received:
    body = received.body.replace('"record_type":"event"', '"record_type":"evil"')
    assert body != received.body
    return Received(received.path, received.headers, body, received.at)


# signatures and the envelope --------------------------------------------------------------
Checked = (
    CallAnsweredWebhookEvent
    | ConferenceCreatedWebhookEvent
    | ConferenceParticipantJoinedWebhookEvent
    | CallRecordingSavedWebhookEvent
)
EVENTS: list[tuple[str, dict[str, Any], type[Checked]]] = [
    (
        "call.answered",
        {
            "call_control_id": "v3:call-1",
            "call_leg_id": "leg-1",
            "call_session_id": "session-1",
            "connection_id": "app",
            "from": "+14155550100",
            "to": "1001",
            "state": "answered",
            "start_time": T0,
        },
        CallAnsweredWebhookEvent,
    ),
    (
        "conference.created",
        {"conference_id": "conf-1", "occurred_at": T0},
        ConferenceCreatedWebhookEvent,
    ),
    (
        "conference.participant.joined",
        {"conference_id": "conf-1", "call_control_id": "v3:call-1"},
        ConferenceParticipantJoinedWebhookEvent,
    ),
    (
        "call.recording.saved",
        {"call_control_id": "v3:call-1", "channels": "single", "recording_urls": {"wav": "x"}},
        CallRecordingSavedWebhookEvent,
    ),
]


async def test_deliveries_verify_with_the_telnyx_sdk_pynacl_and_standard_webhooks(
    store: Store, receiver: Receiver
) -> None:
    secret = generate_signing_secret()
    app = await store.create_application(
        application_name="app", webhook_event_url=receiver.url(), signing_secret=secret
    )
    outbox = await running_outbox(store)
    try:
        messages = [
            await outbox.enqueue_for_application(app, event_type, payload, ordering_key="v3:call-1")
            for event_type, payload, _ in EVENTS
        ]
        await receiver.wait_for(len(EVENTS))
    finally:
        await outbox.stop()

    stored_key = await store.get_signing_key()
    assert stored_key is not None
    public_key = stored_key.public_key
    assert public_key == outbox.public_key == await webhook_public_key(store)
    assert len(base64.b64decode(public_key)) == 32

    for received, message, (event_type, payload, event_class) in zip(
        receiver.requests, messages, EVENTS, strict=True
    ):
        # The official SDK: ed25519 over "timestamp|body", then its typed event.
        event = SDK.webhooks.unwrap(received.body, headers=received.headers, key=public_key)
        assert isinstance(event, event_class)
        assert event.data is not None and event.data.event_type == event_type
        assert event.data.id == json.loads(message.data_json)["id"]
        assert event.data.payload is not None
        if event_type == "call.answered":
            assert isinstance(event, CallAnsweredWebhookEvent) and event.data.payload
            assert event.data.payload.from_ == "+14155550100"
            assert event.data.payload.start_time == T0
            assert event.data.occurred_at is not None
        # Standard Webhooks: v1a with PyNaCl, v1 with the standardwebhooks library.
        nacl_verify_v1a(received, public_key)
        assert standardwebhooks.Webhook(secret).verify(received.body, received.headers) == (
            received.json
        )
        verify_webhook(received.body, received.headers, public_key=public_key, secret=secret)

        # The body: the stored event verbatim, this attempt's meta, nothing else.
        assert received.body == webhook_body(message.data_json, 1, receiver.url())
        assert received.json["meta"] == {"attempt": 1, "delivered_to": receiver.url()}
        assert received.json["data"]["payload"] == json.loads(
            json.dumps(payload, default=lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        )
        headers = received.headers
        assert headers["webhook-id"] == message.message_id
        assert re.fullmatch(r"msg_[0-9a-f]{32}", message.message_id)
        assert headers["telnyx-timestamp"] == headers["webhook-timestamp"]
        assert abs(int(headers["webhook-timestamp"]) - time.time()) < 5
        assert headers["content-type"] == "application/json"
        assert headers["user-agent"].startswith("callbridge-webhooks/")
        assert (await settled(store, message.message_id)).status == "delivered"

    # Each check fails on a body that was changed on the way.
    bad = tampered(receiver.requests[0])
    with pytest.raises(ValueError, match="Signature verification failed"):
        SDK.webhooks.unwrap(bad.body, headers=bad.headers, key=public_key)
    with pytest.raises(BadSignatureError):
        nacl_verify_v1a(bad, public_key)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(bad.body, bad.headers)
    with pytest.raises(WebhookVerificationError, match="telnyx-signature-ed25519"):
        verify_webhook(bad.body, bad.headers, public_key=public_key)


async def test_without_an_app_secret_only_the_ed25519_signatures_are_sent(
    store: Store, receiver: Receiver
) -> None:
    outbox = await running_outbox(store)
    try:
        await outbox.enqueue("call.hangup", {"call_control_id": "v3:x"}, url=receiver.url())
        await receiver.wait_for(1)
    finally:
        await outbox.stop()
    (received,) = receiver.requests
    assert received.headers["webhook-signature"].startswith("v1a,")
    assert " " not in received.headers["webhook-signature"]
    SDK.webhooks.unwrap(received.body, headers=received.headers, key=outbox.public_key)
    nacl_verify_v1a(received, outbox.public_key)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(generate_signing_secret()).verify(received.body, received.headers)


def test_the_envelope_is_telnyxs_with_utc_z_instants_and_ascii_json() -> None:
    event = new_event(
        "call.initiated",
        {"from": "Zoë", "start_time": T0, "nested": {"at": T0}},
        event_id="0ccc7b54-4df3-4bcb-a65a-3da1ecc997d7",
        occurred_at=T0,
    )
    assert event.data_json == (
        '{"event_type":"call.initiated","id":"0ccc7b54-4df3-4bcb-a65a-3da1ecc997d7",'
        '"occurred_at":"2025-03-01T12:00:00.123456Z","payload":{"from":"Zo\\u00eb",'
        '"start_time":"2025-03-01T12:00:00.123456Z","nested":{"at":"2025-03-01T12:00:00.123456Z"}},'
        '"record_type":"event"}'
    )
    assert webhook_body(event.data_json, 3, "https://example.test/h") == (
        '{"data":'
        + event.data_json
        + ',"meta":{"attempt":3,"delivered_to":"https://example.test/h"}}'
    )
    fresh = new_event("call.hangup", {})
    assert re.fullmatch(r"[0-9a-f-]{36}", fresh.id) and fresh.occurred_at.tzinfo == UTC


@pytest.mark.parametrize(
    ("event_type", "payload", "url", "complaint"),
    [
        ("Call.Answered", {}, "http://127.0.0.1:9/h", "invalid event type"),
        ("answered", {}, "http://127.0.0.1:9/h", "invalid event type"),
        ("call.answered", {"x": object()}, "http://127.0.0.1:9/h", "not JSON"),
        ("call.answered", {"x": float("nan")}, "http://127.0.0.1:9/h", "not JSON"),
        ("call.answered", {"at": datetime(2025, 1, 1)}, "http://127.0.0.1:9/h", "naive"),
        ("call.answered", {}, "127.0.0.1:9/h", "invalid webhook URL"),
    ],
)
async def test_an_event_that_cannot_be_sent_is_refused_at_enqueue(
    store: Store, event_type: str, payload: dict[str, Any], url: str, complaint: str
) -> None:
    outbox = await WebhookOutbox.create(store, policy=FAST)
    with pytest.raises(ValueError, match=complaint):
        await outbox.enqueue(event_type, payload, url=url)
    assert await store.list_webhooks() == []


def test_verify_webhook_says_what_is_wrong() -> None:
    from callbridge.webhooks import WebhookSigner

    signer = WebhookSigner.generate()
    body = webhook_body(new_event("call.hangup", {}).data_json, 1, "http://127.0.0.1:9/")
    headers = signer.headers(message_id="msg_1", body=body)
    verify_webhook(body, headers, public_key=signer.public_key)
    old = signer.headers(message_id="msg_1", body=body, timestamp=int(time.time()) - 301)
    with pytest.raises(WebhookVerificationError, match="more than 300 s"):
        verify_webhook(body, old, public_key=signer.public_key)
    with pytest.raises(WebhookVerificationError, match="telnyx-timestamp header is missing"):
        verify_webhook(body, {}, public_key=signer.public_key)
    with pytest.raises(WebhookVerificationError, match="does not match"):
        verify_webhook(body, headers, public_key=WebhookSigner.generate().public_key)
    with pytest.raises(WebhookVerificationError, match="no v1 signature"):
        verify_webhook(
            body, headers, public_key=signer.public_key, secret=generate_signing_secret()
        )


async def test_the_signing_key_is_made_once_and_kept_in_the_database(store: Store) -> None:
    first = await load_signer(store)
    second = await load_signer(store)
    assert first.public_key == second.public_key
    assert first.private_key == second.private_key


# retries, failover, order -----------------------------------------------------------------
def test_the_retry_schedule_doubles_per_round_and_failover_takes_every_second_attempt() -> None:
    policy = RetryPolicy(first_delay=1, max_delay=5)
    assert [policy.delay_after(n, has_failover=False) for n in range(1, 6)] == [1, 2, 4, 5, 5]
    assert [policy.delay_after(n, has_failover=True) for n in range(1, 7)] == [0, 1, 0, 2, 0, 4]
    assert [policy.url_for(n, "P", "F") for n in range(1, 5)] == ["P", "F", "P", "F"]
    assert [policy.url_for(n, "P", None) for n in range(1, 3)] == ["P", "P"]
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


async def test_retries_back_off_after_a_500_a_dropped_connection_and_no_answer(
    store: Store, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="callbridge.webhooks")
    receiver.script("/hook", 500, "drop", "hang")
    outbox = await running_outbox(store)
    try:
        message = await outbox.enqueue("call.answered", {}, url=receiver.url())
        await receiver.wait_for(4)
        done = await settled(store, message.message_id)
    finally:
        await outbox.stop()

    requests = receiver.requests
    assert [r.attempt for r in requests] == [1, 2, 3, 4]
    assert {r.headers["webhook-id"] for r in requests} == {message.message_id}
    assert {json.dumps(r.json["data"]) for r in requests} == {
        json.dumps(json.loads(message.data_json))
    }
    gaps = [b.at - a.at for a, b in itertools.pairwise(requests)]
    # 0.05 s, then 0.1 s; the third attempt first waits out its 0.3 s timeout, then 0.2 s.
    assert 0.05 <= gaps[0] < 1.0
    assert 0.1 <= gaps[1] < 1.0
    assert 0.3 + 0.2 <= gaps[2] < 1.5
    assert (done.status, done.attempts, done.last_error) == ("delivered", 4, None)
    assert done.delivered_at is not None

    records = [r for r in caplog.records if r.name.startswith("callbridge.webhooks")]
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert "HTTP 500" in warnings[0]
    assert "RemoteProtocolError" in warnings[1]
    assert "no answer within 0.3 s" in warnings[2]
    assert {r.levelno for r in records} <= {logging.DEBUG, logging.WARNING}  # nothing at INFO


async def test_an_applications_webhook_timeout_is_how_long_an_attempt_waits(
    store: Store, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.script("/slow", "hang")
    app = await store.create_application(
        application_name="app", webhook_event_url=receiver.url("/slow"), webhook_timeout_secs=1
    )
    outbox = await running_outbox(store, RetryPolicy(first_delay=0.05, timeout=10.0))
    try:
        message = await outbox.enqueue_for_application(app, "call.answered", {})
        await receiver.wait_for(2)
        assert (await settled(store, message.message_id)).status == "delivered"
    finally:
        await outbox.stop()
    first, second = receiver.requests
    assert 1.0 <= second.at - first.at < 2.0
    assert any("no answer within 1 s" in r.getMessage() for r in caplog.records)


async def test_the_failover_url_gets_the_attempt_right_after_a_failed_primary(
    store: Store, receiver: Receiver
) -> None:
    receiver.script("/primary", 500, 503)
    receiver.script("/failover", 502)
    app = await store.create_application(
        application_name="app",
        webhook_event_url=receiver.url("/primary"),
        webhook_event_failover_url=receiver.url("/failover"),
    )
    outbox = await running_outbox(store, RetryPolicy(first_delay=0.5, poll_interval=5.0))
    try:
        message = await outbox.enqueue_for_application(app, "call.answered", {})
        await receiver.wait_for(4)
        done = await settled(store, message.message_id)
    finally:
        await outbox.stop()

    requests = receiver.requests
    assert [(r.path, r.attempt) for r in requests] == [
        ("/primary", 1), ("/failover", 2), ("/primary", 3), ("/failover", 4),
    ]  # fmt: skip
    assert [r.json["meta"]["delivered_to"] for r in requests] == [
        receiver.url("/primary"), receiver.url("/failover"),
        receiver.url("/primary"), receiver.url("/failover"),
    ]  # fmt: skip
    assert requests[1].at - requests[0].at < 0.4  # at once
    assert requests[2].at - requests[1].at >= 0.5  # the backoff, between rounds
    assert requests[3].at - requests[2].at < 0.4
    assert (done.status, done.attempts) == ("delivered", 4)


async def test_one_calls_events_keep_their_order_while_another_calls_are_not_held_up(
    store: Store, receiver: Receiver
) -> None:
    receiver.script("/a", 500, 500)  # call A's first event fails twice
    outbox = await running_outbox(store, RetryPolicy(first_delay=0.2, poll_interval=5.0))
    try:
        for n in (1, 2, 3):
            for call in ("a", "b"):
                await outbox.enqueue(
                    "call.dtmf.received",
                    {"call_control_id": call, "digit": str(n)},
                    url=receiver.url(f"/{call}"),
                    ordering_key=call,
                    event_id=f"{call}{n}",
                )
        await receiver.wait_for(5, "/a")
        await receiver.wait_for(3, "/b")
    finally:
        await outbox.stop()

    assert [r.event_id for r in receiver.at("/a")] == ["a1", "a1", "a1", "a2", "a3"]
    assert [r.event_id for r in receiver.at("/b")] == ["b1", "b2", "b3"]
    # B went while A's first event was still waiting for its retries.
    assert receiver.at("/b")[-1].at < receiver.at("/a")[2].at


async def test_an_undeliverable_message_ends_failed_and_its_key_moves_on(
    store: Store, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/hook"  # a port where nobody listens
    policy = RetryPolicy(first_delay=0.02, max_attempts=3, timeout=0.5, poll_interval=5.0)
    outbox = await running_outbox(store, policy)
    try:
        doomed = await outbox.enqueue("call.answered", {}, url=dead, ordering_key="call-1")
        after = await outbox.enqueue("call.hangup", {}, url=receiver.url(), ordering_key="call-1")
        failed = await settled(store, doomed.message_id)
        await receiver.wait_for(1)
        assert (await settled(store, after.message_id)).status == "delivered"
    finally:
        await outbox.stop()
    assert (failed.status, failed.attempts) == ("failed", 3)
    assert failed.last_error is not None and "ConnectError" in failed.last_error
    assert any("given up after 3 attempts" in r.getMessage() for r in caplog.records)


# restarts and several servers -------------------------------------------------------------
async def test_messages_pending_when_the_server_stops_go_after_a_restart_unchanged(
    database: pg.Database, receiver: Receiver
) -> None:
    receiver.script("/retrying", 500)
    receiver.script("/in-flight", "hang")
    policy = RetryPolicy(first_delay=0.3, timeout=10.0, poll_interval=5.0)

    store = await Store.open(database.url)
    outbox = await running_outbox(store, policy)
    retrying = await outbox.enqueue("call.answered", {"n": 1}, url=receiver.url("/retrying"))
    in_flight = await outbox.enqueue("call.hangup", {"n": 2}, url=receiver.url("/in-flight"))
    await receiver.wait_for(1, "/retrying")
    await receiver.wait_for(1, "/in-flight")
    await stored(store, retrying.message_id, lambda m: m.last_error == "HTTP 500")  # retry due
    await outbox.stop(grace=0.1)  # the server goes down; the hanging attempt is cut short
    first_key = outbox.public_key
    await store.close()

    store = await Store.open(database.url)  # a new process on the same database
    try:
        for message in (retrying, in_flight):
            left = await store.get_webhook(message.message_id)
            assert left is not None and (left.status, left.attempts) == ("pending", 1)
        outbox = await running_outbox(store, policy)
        assert outbox.public_key == first_key
        try:
            await receiver.wait_for(2, "/retrying")
            await receiver.wait_for(2, "/in-flight")
            for message in (retrying, in_flight):
                assert (await settled(store, message.message_id)).status == "delivered"
        finally:
            await outbox.stop()
    finally:
        await store.close()

    for message, path in ((retrying, "/retrying"), (in_flight, "/in-flight")):
        before, after = receiver.at(path)
        assert before.headers["webhook-id"] == after.headers["webhook-id"] == message.message_id
        assert after.body == webhook_body(message.data_json, 2, receiver.url(path))
        assert before.json["data"] == after.json["data"]
        SDK.webhooks.unwrap(after.body, headers=after.headers, key=first_key)
        nacl_verify_v1a(after, first_key)


async def test_two_servers_on_one_database_send_each_message_once_in_order(
    database: pg.Database, receiver: Receiver
) -> None:
    stores = [await Store.open(database.url) for _ in range(2)]
    outboxes = [await running_outbox(s) for s in stores]
    try:
        assert outboxes[0].public_key == outboxes[1].public_key
        for n in range(5):
            for key in ("k1", "k2", "k3", "k4"):
                await outboxes[n % 2].enqueue(
                    "call.dtmf.received", {"digit": str(n)}, url=receiver.url(f"/{key}"),
                    ordering_key=key, event_id=f"{key}-{n}",
                )  # fmt: skip
        for key in ("k1", "k2", "k3", "k4"):
            await receiver.wait_for(5, f"/{key}")
    finally:
        for outbox in outboxes:
            await outbox.stop()
        for store in stores:
            await store.close()
    ids = [r.headers["webhook-id"] for r in receiver.requests]
    assert len(ids) == len(set(ids)) == 20
    for key in ("k1", "k2", "k3", "k4"):
        assert [r.event_id for r in receiver.at(f"/{key}")] == [f"{key}-{n}" for n in range(5)]


class ScriptedReceiver:
    """A raw HTTP/1.x receiver on 127.0.0.1 that answers the i-th request with ``answers[i]``
    byte for byte (``None``: read it and close without a word); an HTTP/1.0 answer ends its
    connection. ``requests`` holds (connection number, body) in arrival order."""

    def __init__(self, answers: Sequence[bytes | None]) -> None:
        self.answers = answers
        self.requests: list[tuple[int, bytes]] = []
        self.all_answered = asyncio.Event()
        self._connections = 0
        self._server: asyncio.Server | None = None

    async def start(self, path: str) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}{path}"

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections += 1
        number = self._connections
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                start = head.lower().find(b"content-length:") + 15
                body = await reader.readexactly(int(head[start : head.find(b"\r\n", start)]))
                self.requests.append((number, body))
                answer = self.answers[len(self.requests) - 1]
                if answer is not None:
                    writer.write(answer)
                    await writer.drain()
                if len(self.requests) == len(self.answers):
                    self.all_answered.set()
                if answer is None or answer.startswith(b"HTTP/1.0"):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def test_the_outboxs_http_client_reads_every_answer_form_and_keeps_what_it_can(
    store: Store,
) -> None:
    """The outbox's own HTTP/1.1 client (webhooks/http1.py): 1xx then a chunked answer, an
    empty one on the same kept connection, one too long to read (delivered, connection
    closed), an HTTP/1.0 answer ending with the connection, and a malformed one (a failed
    attempt with the reason, retried on a new connection)."""
    answers = [
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n" + b"x" * 100000,
        b"HTTP/1.0 200 OK\r\n\r\nbye",
        b"not http at all\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    ]
    receiver = ScriptedReceiver(answers)
    url = await receiver.start("/hook?x=1")
    outbox = await running_outbox(store)
    try:
        messages = [
            await outbox.enqueue("call.answered", {"n": n}, url=url, ordering_key="call-1")
            for n in range(5)
        ]
        await asyncio.wait_for(receiver.all_answered.wait(), 10)
        done = [await settled(store, m.message_id) for m in messages]
    finally:
        await outbox.stop()
        receiver.close()
    requests = receiver.requests
    assert [m.status for m in done] == ["delivered"] * 5
    assert [m.attempts for m in done] == [1, 1, 1, 1, 2]
    assert [json.loads(body)["data"]["payload"]["n"] for _, body in requests] == [
        0, 1, 2, 3, 4, 4,
    ]  # fmt: skip
    # 1-3 share a connection (the too-long answer then closes it); 4 ends its own; the
    # malformed answer's connection is not reused.
    assert [number for number, _ in requests] == [1, 1, 1, 2, 3, 4]


async def test_the_outboxs_http_client_closes_what_the_receiver_will_not_keep(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """``connection: close`` on an HTTP/1.1 answer: the next request opens a new connection;
    a receiver that closes without answering fails the attempt with that reason (retried)."""
    answers: list[bytes | None] = [
        b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
        None,  # read the request, close without a word
        b"HTTP/1.1 204 No Content\r\n\r\n",
    ]
    caplog.set_level(logging.WARNING, logger="callbridge.webhooks")
    receiver = ScriptedReceiver(answers)
    url = await receiver.start("/hook")
    outbox = await running_outbox(store)
    try:
        messages = [
            await outbox.enqueue("call.answered", {"n": n}, url=url, ordering_key="call-1")
            for n in range(2)
        ]
        await asyncio.wait_for(receiver.all_answered.wait(), 10)
        done = [await settled(store, m.message_id) for m in messages]
    finally:
        await outbox.stop()
        receiver.close()
    requests = receiver.requests
    assert [(m.status, m.attempts) for m in done] == [("delivered", 1), ("delivered", 2)]
    assert [number for number, _ in requests] == [1, 2, 3]
    assert any(
        "RemoteProtocolError: the receiver closed the connection without an answer"
        in r.getMessage()
        for r in caplog.records
    )
