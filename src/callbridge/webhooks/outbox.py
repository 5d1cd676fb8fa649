"""``WebhookOutbox``: durable, ordered, at-least-once webhook delivery with retries.

Life of a message::

    enqueue ──► pending ──claim──► attempt ──2xx──► delivered
                  ▲                   │
                  └──── retry ◄───────┤ (non-2xx, timeout, connection error)
                                      └── limit reached ──► failed

* **Durable.** ``enqueue`` writes the message to the database (``webhook_outbox``) before it
  returns, then wakes the worker. A crash or restart loses nothing: on ``start`` the worker
  picks up every pending message. Delivery is at least once: a message whose attempt was cut
  short (crash, stop during the request) is sent again, with the same ``webhook-id`` and the
  same event, so receivers deduplicate on either.
* **Ordered per key.** Messages with the same ``ordering_key`` (a call's ``call_control_id``, a
  conference's id) are sent one at a time in enqueue order: a message waits until every earlier
  message of its key is delivered or has failed for good. Different keys do not wait for each
  other; "" orders nothing.
* **Retries** (``RetryPolicy``): after a failed attempt the next one waits ``first_delay``,
  then twice that, and so on up to ``max_delay``; an attempt fails on a non-2xx status (3xx
  included: redirects are not followed), on no complete answer within the timeout (the app's
  ``webhook_timeout_secs``, else ``RetryPolicy.timeout``), or on a connection error. The message
  fails for good once ``max_attempts`` attempts failed or, after a failed attempt, once it is
  older than ``max_age`` (a message is always tried at least once, however late).
* **Failover.** With a failover URL, odd attempts (1, 3, 5, …) go to the primary URL and even
  ones to the failover URL; the failover attempt follows a failed primary attempt at once, and
  the backoff applies between rounds (primary, failover). Without one, every attempt goes to
  the primary URL.
* **Batches.** The worker records the outcomes of the attempts that finished since it last
  looked and claims the next due messages in one transaction (``settle_and_claim_webhooks``):
  while it is busy, each database round trip serves many messages. A key's next message is
  claimable once its predecessor's outcome has committed, so batching keeps the order. An
  attempt's outcome is written after its answer: a crash in between sends it again (at least
  once).
* **Destinations.** At most ``RetryPolicy.per_destination`` requests are in flight to one
  destination (scheme, host and port) at a time; the others wait in memory, and while as many
  wait the worker claims no more for that URL, so a slow receiver holds back only its own
  messages.
  Connections are kept alive per destination (one pool each), opened through the outbound
  policy's guard (``callbridge.outbound``) like every request.
* **Several servers, one database.** Claims are leases in the database (see
  ``callbridge.store.outbox``): servers sharing a database share the work, never both send one
  message in normal operation, and take over a crashed server's messages when its leases end
  (``RetryPolicy.lease``: the longest answer timeout plus ``lease_margin``, a minute by
  default; an orderly ``stop`` hands its messages back at once). A worker also looks for work
  every ``poll_interval``. On PostgreSQL every enqueue sends ``NOTIFY`` and every worker
  ``LISTEN``s, so a message enqueued by any server wakes them all at once; claims there use
  ``FOR UPDATE SKIP LOCKED`` on a connection of the worker's own (``store.outbox_pg``). If that
  ``LISTEN`` connection drops, the worker polls every ``poll_interval`` until it is back.
* **Application settings** (signing secret, answer timeout) are read at most once a second
  per application: a changed secret or timeout applies to attempts from a second later.

The body is the Telnyx envelope (``events``): the event's ``data`` fixed at enqueue, ``meta``
(attempt number, URL) per attempt. Each attempt is signed when it is sent (``signing``).

Logging: nothing per delivery above DEBUG; a failed attempt and a message given up are WARNINGs
with the reason. The worker and its deliveries are tasks the outbox owns; ``stop`` ends them.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy.exc import SQLAlchemyError

from callbridge.outbound import webhook_policy
from callbridge.store import Application, OutboxMessage, Store
from callbridge.store.outbox import WebhookOutcome
from callbridge.store.outbox_pg import NotifyListener, PgDispatchConnection, dispatch_engine
from callbridge.store.records import validate_webhook_url
from callbridge.store.repository import now
from callbridge.webhooks.events import new_event, new_message_id, webhook_body
from callbridge.webhooks.senders import Http1Sender, HttpxSender, Sender
from callbridge.webhooks.signing import WebhookSigner, load_signer
from callbridge.webhooks.stats import DeliveryStats

__all__ = ["RetryPolicy", "WebhookOutbox"]

log = logging.getLogger(__name__)

_MAX_APP_TIMEOUT = 30.0  # the largest webhook_timeout_secs an application may have
_SETTINGS_TTL = 1.0  # seconds an application's secret and timeout are kept in memory


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard the outbox tries. Durations in seconds; tests make them tiny."""

    first_delay: float = 1.0  # wait after the first failed round
    max_delay: float = 600.0  # the backoff's ceiling
    max_attempts: int = 12  # HTTP attempts, failover ones included
    max_age: float = 24 * 3600.0  # no retry for a message older than this
    timeout: float = 10.0  # answer time allowed, unless the app sets webhook_timeout_secs
    concurrency: int = 256  # messages held at once, those waiting for a full destination aside
    per_destination: int = 8  # requests in flight (and connections) to one destination
    batch_window: float = 0.005  # outcomes gather this long before they are written
    poll_interval: float = 5.0  # look for others' work (and expired leases) this often
    lease_margin: float = 30.0  # a claim lasts the longest timeout plus this
    retention: float = 7 * 24 * 3600.0  # delivered and failed messages are kept this long

    def __post_init__(self) -> None:
        if min(self.max_attempts, self.concurrency, self.per_destination) < 1:
            raise ValueError("max_attempts, concurrency and per_destination must be 1 or more")
        if self.batch_window < 0:
            raise ValueError("batch_window must be 0 or more")
        if min(self.first_delay, self.max_delay, self.timeout, self.poll_interval) <= 0:
            raise ValueError("delays, timeout and poll_interval must be more than 0")

    def url_for(self, attempt: int, url: str, failover_url: str | None) -> str:
        """Where attempt number ``attempt`` (1, 2, …) goes."""
        return failover_url if failover_url and attempt % 2 == 0 else url

    def delay_after(self, attempt: int, has_failover: bool) -> float:
        """How long to wait after failed attempt number ``attempt`` before the next one."""
        if has_failover and attempt % 2 == 1:
            return 0.0  # the failover URL's turn, at once
        failed_rounds = attempt // 2 if has_failover else attempt
        return min(self.first_delay * 2.0 ** (failed_rounds - 1), self.max_delay)

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=max(self.timeout, _MAX_APP_TIMEOUT) + self.lease_margin)


class WebhookOutbox:
    """Delivers webhooks from the database's outbox; one per server process.

    ``await WebhookOutbox.create(store)`` loads the signing key; ``start()`` runs the worker,
    ``stop()`` ends it (also as ``async with``). ``enqueue`` works whether or not the worker
    runs: a message enqueued while it is stopped goes when one starts.
    """

    def __init__(
        self,
        store: Store,
        signer: WebhookSigner,
        *,
        policy: RetryPolicy | None = None,
        client: httpx.AsyncClient | None = None,
        node_id: str | None = None,
    ) -> None:
        """``client``: an HTTP client to send with (the outbox makes its own by default);
        ``node_id``: this server among those sharing the database (default: the host name)."""
        self._store = store
        self._signer = signer
        self.policy = policy or RetryPolicy()
        # The outbox's own HTTP/1.1 pools unless a client was given (webhooks/senders.py).
        self._sender: Sender = (
            Http1Sender(webhook_policy(), self.policy.per_destination)
            if client is None
            else HttpxSender(webhook_policy(), self.policy.per_destination, client)
        )
        # Leases name their holder: one id per outbox instance (a restart is a new holder),
        # after its node's, so that a node restarting after a crash can take back at once what
        # its dead instance held (release_stale_leases) instead of waiting for the leases.
        self.node_prefix = lease_prefix(node_id or socket.gethostname())
        self._owner = self.node_prefix + uuid.uuid4().hex
        self._wake = asyncio.Event()
        self._stopping = False
        self._worker: asyncio.Task[None] | None = None
        self._deliveries: set[asyncio.Task[_Done]] = set()
        self._held = 0  # claimed, outcome not yet written
        self._done: list[_Done] = []  # outcomes to write at the next look
        self._destinations: dict[str, _Destination] = {}
        self._next_retry = float("inf")  # monotonic time of the earliest retry this one set
        self._next_purge = 0.0
        # app id -> (secret, timeout, monotonic time it is read again): a read per batch cost
        # a transaction per batch (six round trips on PostgreSQL, with the pool's ping).
        self._settings: dict[str | None, tuple[str | None, float, float]] = {}
        # PostgreSQL only (while running): the worker's own claim and LISTEN connections.
        self._pg: PgDispatchConnection | None = None
        self._listener: NotifyListener | None = None
        self.stats = DeliveryStats()  # for /metrics (callbridge.metrics)

    @classmethod
    async def create(
        cls,
        store: Store,
        *,
        policy: RetryPolicy | None = None,
        client: httpx.AsyncClient | None = None,
        node_id: str | None = None,
    ) -> WebhookOutbox:
        """An outbox signing with the server's key from ``store`` (made on first use)."""
        return cls(store, await load_signer(store), policy=policy, client=client, node_id=node_id)

    async def release_stale_leases(self) -> int:
        """Hand back the messages an earlier instance of this node held when it died (a
        crash): they go at once instead of when their leases run out (a minute), which would
        hold back every later message of their ordering keys. How many."""
        released = await self._store.release_webhooks_of(self.node_prefix, but=self._owner)
        if released:
            self._wake.set()
        return released

    @property
    def public_key(self) -> str:
        """The key apps verify signatures with: base64 of the raw 32-byte ed25519 key."""
        return self._signer.public_key

    @property
    def running(self) -> bool:
        return self._worker is not None

    @property
    def listening(self) -> bool:
        """PostgreSQL: whether the worker's LISTEN connection is up (False on SQLite)."""
        return self._listener is not None and self._listener.listening

    # enqueueing -----------------------------------------------------------------------------
    async def enqueue(
        self,
        event_type: str,
        payload: Mapping[str, Any],
        *,
        url: str,
        failover_url: str | None = None,
        ordering_key: str = "",
        application_id: str | None = None,
        event_id: str | None = None,
        occurred_at: datetime | None = None,
    ) -> OutboxMessage:
        """Store an event for delivery to ``url`` and wake the worker.

        ``application_id`` names the app whose signing secret (``v1``) and timeout apply, read
        at each attempt. ``ValueError`` for a bad event type, payload or URL.
        """
        validate_webhook_url(url)
        if failover_url is not None:
            validate_webhook_url(failover_url, "webhook failover URL")
        event = new_event(event_type, payload, event_id=event_id, occurred_at=occurred_at)
        message = await self._store.enqueue_webhook(
            message_id=new_message_id(),
            event_type=event_type,
            data_json=event.data_json,
            url=url,
            failover_url=failover_url,
            ordering_key=ordering_key,
            application_id=application_id,
        )
        self._wake.set()
        return message

    async def enqueue_many(self, messages: Sequence[Mapping[str, Any]]) -> list[OutboxMessage]:
        """``enqueue`` several messages in one database transaction (all or none), in order:
        each item holds ``enqueue``'s arguments (``event_type``, ``payload``, ``url``, …).
        Under load this is what keeps enqueueing cheap: one commit for many events."""
        rows = []
        for item in messages:
            url, failover_url = item["url"], item.get("failover_url")
            validate_webhook_url(url)
            if failover_url is not None:
                validate_webhook_url(failover_url, "webhook failover URL")
            event = new_event(
                item["event_type"],
                item["payload"],
                event_id=item.get("event_id"),
                occurred_at=item.get("occurred_at"),
            )
            rows.append(
                {
                    "message_id": new_message_id(),
                    "event_type": item["event_type"],
                    "data_json": event.data_json,
                    "url": url,
                    "failover_url": failover_url,
                    "ordering_key": item.get("ordering_key", ""),
                    "application_id": item.get("application_id"),
                }
            )
        if not rows:
            return []
        stored = await self._store.enqueue_webhooks(rows)
        self._wake.set()
        return stored

    async def enqueue_for_application(
        self,
        application: Application,
        event_type: str,
        payload: Mapping[str, Any],
        *,
        ordering_key: str = "",
        event_id: str | None = None,
        occurred_at: datetime | None = None,
    ) -> OutboxMessage:
        """``enqueue`` to an application's webhook URLs, signed with its secret."""
        return await self.enqueue(
            event_type,
            payload,
            url=application.webhook_event_url,
            failover_url=application.webhook_event_failover_url,
            ordering_key=ordering_key,
            application_id=application.id,
            event_id=event_id,
            occurred_at=occurred_at,
        )

    # running --------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the worker; it picks up every message already pending."""
        if self._worker is not None:
            raise RuntimeError("the webhook outbox is already running")
        self._sender.policy = webhook_policy()  # the operator's, as it is now
        if self._store.engine.dialect.name == "postgresql":
            engine = dispatch_engine(self._store.engine)
            self._pg = PgDispatchConnection(engine)
            self._listener = NotifyListener(engine, self._wake.set, self.policy.poll_interval)
            self._listener.start()
        self._wake.set()
        self._worker = asyncio.create_task(self._run(), name="webhook-outbox")

    async def stop(self, grace: float = 5.0) -> None:
        """Stop the worker; attempts in flight get ``grace`` seconds to finish.

        The HTTP requests still running then are cut short and their messages handed back to
        the database at once (they count as attempts and go again, from this or another
        server); so are the messages still waiting for their destination. The outcomes of the
        finished attempts are written first. Nothing is cancelled in the middle of a database
        statement: the worker stops between statements, and attempts make none (cancelling a
        task inside an asyncpg statement makes SQLAlchemy throw the connection away with an
        error that is not a cancellation; the task would not even know it).
        """
        worker, self._worker = self._worker, None
        if worker is None:
            return
        self._stopping = True
        self._wake.set()
        try:
            await worker
            for destination in self._destinations.values():
                destination.waiting.clear()  # never started: handed back below
            if self._deliveries:
                _, late = await asyncio.wait(set(self._deliveries), timeout=grace)
                for task in late:
                    task.cancel()  # only HTTP in there: httpx closes its connection
                if late:
                    await asyncio.wait(late)
            try:
                if self._done:
                    done, self._done = self._done, []
                    await self._store.settle_and_claim_webhooks(
                        self._owner, [d.outcome for d in done], limit=0, lease=self.policy.lease
                    )
                    self._count(done)
                await self._store.release_webhooks(self._owner)
            except SQLAlchemyError as exc:
                log.warning("webhook outbox: could not hand back claimed messages: %s", exc)
        finally:
            await self._sender.aclose()
            await self._close_connections()
            self._stopping = False
            self._held = 0
            self._done = []
            self._destinations.clear()
            self._next_retry = float("inf")

    async def _close_connections(self) -> None:
        listener, dispatch = self._listener, self._pg
        self._listener = self._pg = None
        if listener is not None:
            await listener.stop()
        if dispatch is not None:
            await dispatch.close()
            await dispatch.engine.dispose()
        self._settings.clear()

    async def __aenter__(self) -> WebhookOutbox:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()  # before looking: a wake-up during the look is not lost
            try:
                wait = await self._dispatch()
            except (SQLAlchemyError, OSError) as exc:
                _reraise_cancellation(exc)
                log.warning("webhook outbox: the database failed (%s); trying again soon", exc)
                wait = self.policy.poll_interval
            except Exception:  # a bug must not end deliveries for the whole server
                log.exception("webhook outbox: unexpected error; trying again soon")
                wait = self.policy.poll_interval
            if wait > 0 and not self._stopping:
                try:
                    await asyncio.wait_for(self._wake.wait(), wait)
                except TimeoutError:
                    pass
            # Let outcomes gather for a moment: a commit costs milliseconds (an fsync on
            # SQLite), so one per outcome would cap deliveries at a few hundred a second.
            if self._held and not self._stopping:
                await asyncio.sleep(self.policy.batch_window)

    async def _dispatch(self) -> float:
        """Write the finished attempts' outcomes and start attempts for the due messages (one
        transaction); how long until there may be more to do."""
        await self._purge_now_and_then()
        done, self._done = self._done, []
        # A destination with per_destination messages waiting is full: no more for it until
        # they start (less keeps a fast one fed during the next claim). What waits for a full
        # one does not count against `concurrency`, which slow receivers with that many calls
        # would fill otherwise (a full destination gets none: what waits stays bounded).
        busy, parked = self._full_destinations()
        free = self.policy.concurrency - (self._held - len(done) - parked)
        settle_and_claim = (
            self._store.settle_and_claim_webhooks if self._pg is None else self._pg.settle_and_claim
        )
        try:
            _, claimed = await settle_and_claim(
                self._owner,
                [d.outcome for d in done],
                limit=free,
                lease=self.policy.lease,
                skip_urls=busy,
            )
        except BaseException:
            self._done[:0] = done  # written at the next look
            raise
        self._held += len(claimed) - len(done)
        self._count(done)
        if self._stopping:
            return 0.0  # stop() hands the claimed ones back
        for message in claimed:
            secret, timeout = await self._application_settings(message.application_id)
            url = self.policy.url_for(message.attempts, message.url, message.failover_url)
            origin = _origin(url)
            destination = self._destinations.get(origin)
            if destination is None:
                destination = self._destinations[origin] = _Destination()
            destination.waiting.append((message, secret, timeout))
            self._start_attempts(destination)
        if len(claimed) == free:
            if self.policy.concurrency - (self._held - self._full_destinations()[1]) > 0:
                return 0.0  # some now wait for a full destination: room for others' messages
            return self.policy.poll_interval  # a finishing attempt wakes the worker
        if self._held:  # attempts finishing wake the worker; a retry this one set may be due
            return min(max(self._next_retry - time.monotonic(), 0.0), self.policy.poll_interval)
        self._next_retry = float("inf")
        due = await self._store.next_webhook_due()
        if due is None:
            return self.policy.poll_interval
        return min(max((due - now()).total_seconds(), 0.0), self.policy.poll_interval)

    def _full_destinations(self) -> tuple[set[str], int]:
        """The URLs of the messages waiting for a full destination, and how many those are."""
        full = [
            d for d in self._destinations.values() if len(d.waiting) >= self.policy.per_destination
        ]
        return {m.url for d in full for m, _, _ in d.waiting}, sum(len(d.waiting) for d in full)

    def _start_attempts(self, destination: _Destination) -> None:
        while destination.waiting and destination.in_flight < self.policy.per_destination:
            message, secret, timeout = destination.waiting.popleft()
            destination.in_flight += 1
            task = asyncio.create_task(
                self._attempt(message, secret, timeout), name=f"webhook {message.message_id}"
            )
            self._deliveries.add(task)
            task.add_done_callback(partial(self._attempt_done, destination))

    def _attempt_done(self, destination: _Destination, task: asyncio.Task[_Done]) -> None:
        self._deliveries.discard(task)
        destination.in_flight -= 1
        if not task.cancelled():  # cancelled: stop() hands the message back
            self._done.append(task.result())
            if not self._stopping:
                self._start_attempts(destination)
        self._wake.set()  # an outcome to write; the next message of its key may be due

    def _count(self, done: list[_Done]) -> None:
        """Stats for outcomes now written."""
        for item in done:
            if item.outcome.error is None:
                self.stats.delivered_after(item.lag)

    async def _purge_now_and_then(self) -> None:
        if time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + 3600.0
        before = now() - timedelta(seconds=self.policy.retention)
        deleted = await self._store.delete_finished_webhooks(before)
        if deleted:
            log.debug("webhook outbox: deleted %d finished messages", deleted)

    # one attempt ----------------------------------------------------------------------------
    async def _attempt(
        self, message: OutboxMessage, secret: str | None, answer_within: float
    ) -> _Done:
        """Send one attempt; its outcome, for the worker to write. No database here."""
        attempt = message.attempts  # counted by the claim
        url = self.policy.url_for(attempt, message.url, message.failover_url)
        try:
            body = webhook_body(message.data_json, attempt, url)
            headers = self._signer.headers(message_id=message.message_id, body=body, secret=secret)
            error = await self._sender.post(_origin(url), url, body, headers, answer_within)
        except Exception as exc:  # a bug: counts as a failed attempt, retried as usual
            log.exception("webhook %s: unexpected error in attempt %d", message.message_id, attempt)
            error = f"internal error: {type(exc).__name__}"
        at = now()
        age = (at - message.created_at).total_seconds()
        if error is None:
            log.debug("webhook %s delivered to %s (attempt %d)", message.message_id, url, attempt)
            return _Done(WebhookOutcome(message.id), age)
        self.stats.attempts_failed += 1
        if attempt >= self.policy.max_attempts or age >= self.policy.max_age:
            self.stats.given_up += 1
            log.warning(
                "webhook %s (%s) given up after %d attempts over %.0f s; last: %s from %s",
                message.message_id,
                message.event_type,
                attempt,
                age,
                error,
                url,
            )
            return _Done(WebhookOutcome(message.id, error=error), age)
        delay = self.policy.delay_after(attempt, message.failover_url is not None)
        self._next_retry = min(self._next_retry, time.monotonic() + delay)
        log.warning(
            "webhook %s (%s) attempt %d to %s failed: %s; next attempt in %.1f s",
            message.message_id,
            message.event_type,
            attempt,
            url,
            error,
            delay,
        )
        retry_at = at + timedelta(seconds=delay)
        return _Done(WebhookOutcome(message.id, error=error, retry_at=retry_at), age)

    async def _application_settings(self, application_id: str | None) -> tuple[str | None, float]:
        """The app's signing secret and answer timeout (defaults if it is gone), at most
        ``_SETTINGS_TTL`` old."""
        cached = self._settings.get(application_id)
        if cached is not None and cached[2] > time.monotonic():
            return cached[0], cached[1]
        app = None if application_id is None else await self._store.get_application(application_id)
        if app is None:
            secret, timeout = None, self.policy.timeout
        else:
            secret, timeout = (
                app.signing_secret,
                float(app.webhook_timeout_secs or self.policy.timeout),
            )
        self._settings[application_id] = (secret, timeout, time.monotonic() + _SETTINGS_TTL)
        return secret, timeout


@dataclass(slots=True)
class _Destination:
    """One receiver (scheme, host, port): its requests in flight and the messages waiting."""

    in_flight: int = 0
    waiting: deque[tuple[OutboxMessage, str | None, float]] = field(default_factory=deque)


@dataclass(frozen=True, slots=True)
class _Done:
    outcome: WebhookOutcome
    lag: float  # enqueue to outcome, seconds


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def lease_prefix(node_id: str) -> str:
    """What the lease owners of ``node_id``'s outboxes start with (fits the 64-character
    column with the 32-character instance id)."""
    return node_id[:31] + "/"


def _reraise_cancellation(exc: BaseException) -> None:
    """Raise CancelledError if the current task is being cancelled.

    SQLAlchemy may turn a cancellation that hits an asyncpg statement into a database error;
    a handler that logs database errors and carries on would then swallow the cancellation.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError() from exc
