"""``GET /metrics``: the server's metrics in the Prometheus text format (``prometheus_client``).

Each server has its own :class:`~prometheus_client.CollectorRegistry` (never the library's
global one): tests run several servers in one process, and a registry is what one scrape
shows. Three kinds of sources, chosen so that nothing on a hot path pays for a scrape:

- **Live state, read at scrape time** (gauges): sessions, legs, calls and application calls by
  state, media endpoints; the webhook outbox's depth and its oldest pending message's age (one
  ``COUNT``/``MIN`` query per scrape); the media plane's packet and tick counters and the
  outbox's delivery counters (plain integers the media and webhook code increment,
  :mod:`callbridge.media.counters`, :mod:`callbridge.webhooks.stats`).
- **Events of the core** (the bus, :mod:`callbridge.core.events`): calls started, answered and
  ended (by reason), legs ended (by reason), and the call setup latency histogram.
- **Timings around I/O**: each database statement (SQLAlchemy's ``before/after_cursor_execute``
  on the engine; labelled by its first SQL word) and each webhook's delivery lag.

Call setup latency (``callbridge_call_setup_seconds``) is the post-dial delay the server adds:
from the caller's call being placed (its offer answered, routing starts) to the call's first
``ringing`` or ``answered`` (a destination that answers at once). It covers ``/ws`` and SIP
calls between devices; calls an application dials over REST are not in it.

Access: every request needs an **admin** API key as ``Authorization: Bearer KEY`` (a
read-only admin key is enough: ``callbridge apikey create --admin --read-only``). The metrics
are server-wide, across accounts, so an account's key may not read them (``403`` saying which
key to use). There is on purpose no "open from loopback" mode: behind a reverse proxy on the
same machine every request comes from loopback (docs/security.md, "Metrics").

The names, and a Grafana dashboard that uses them, are in docs/operations.md, "Monitoring",
and docs/grafana-callbridge.json.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from callbridge import __version__
from callbridge.api.context import Principal
from callbridge.api.errors import forbidden
from callbridge.core.app_model import AppCallState
from callbridge.core.call_events import StateChangedEvent
from callbridge.core.calls import CallState, LegState
from callbridge.core.events import LegEnded, LegInitiated
from callbridge.signalling.sessions import SessionState

if TYPE_CHECKING:
    from callbridge.server import Runtime

__all__ = ["Metrics", "install_metrics"]

# Seconds. Setup latency on a LAN is tens of ms (ICE gathering for the rung devices dominates);
# a carrier or a slow application pushes it to seconds.
SETUP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# A statement on SQLite is tens of µs; a remote PostgreSQL a few ms; seconds mean trouble.
DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
# Webhook lag: enqueue to the receiver's 2xx, retries included (backoff goes to minutes).
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)
_SQL_OPERATIONS = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE"})
_STARTED = "callbridge_db_started"  # a connection's info key: its statement's start


class Metrics:
    """One server's metrics: its registry, the event subscriptions and the scrape."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.registry = CollectorRegistry()
        r = self.registry
        self.calls_started = Counter(
            "callbridge_calls_started", "Calls placed by devices (/ws, SIP)", registry=r
        )
        self.calls_answered = Counter(
            "callbridge_calls_answered", "Calls placed by devices that were answered", registry=r
        )
        self.calls_ended = Counter(
            "callbridge_calls_ended",
            "Calls ended, by the caller's end reason",
            ["reason"],
            registry=r,
        )
        self.legs_ended = Counter(
            "callbridge_legs_ended", "Legs (calls' sides) ended, by reason", ["reason"], registry=r
        )
        self.setup = Histogram(
            "callbridge_call_setup_seconds",
            "Call placed to its first ringing or answer (post-dial delay)",
            buckets=SETUP_BUCKETS,
            registry=r,
        )
        self.db = Histogram(
            "callbridge_db_statement_seconds",
            "Database statements, by SQL operation",
            ["operation"],
            buckets=DB_BUCKETS,
            registry=r,
        )
        self.webhook_lag = Histogram(
            "callbridge_webhook_delivery_lag_seconds",
            "Webhook event enqueued to its receiver's 2xx (retries included)",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        ProcessCollector(registry=r)  # process_cpu_seconds_total, resident memory, fds
        r.register(_LiveState(self))
        self._backlog: tuple[int, datetime | None] = (0, None)
        self._unsubscribe = [
            runtime.controller.bus.subscribe(LegInitiated, self._leg_initiated),
            runtime.controller.bus.subscribe(LegEnded, self._leg_ended),
            runtime.controller.bus.subscribe(StateChangedEvent, self._state_changed),
        ]
        runtime.outbox.stats.on_delivered = self.webhook_lag.observe
        self._engine = _engine_of(runtime)
        event.listen(self._engine.sync_engine, "before_cursor_execute", self._before_statement)
        event.listen(self._engine.sync_engine, "after_cursor_execute", self._after_statement)

    def close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self.runtime.outbox.stats.on_delivered = None
        event.remove(self._engine.sync_engine, "before_cursor_execute", self._before_statement)
        event.remove(self._engine.sync_engine, "after_cursor_execute", self._after_statement)

    async def scrape(self) -> bytes:
        """The text exposition; the outbox backlog is read from the database first."""
        self._backlog = await self.runtime.store.webhook_backlog()
        return generate_latest(self.registry)

    # events of the core -----------------------------------------------------------------------
    def _leg_initiated(self, event: LegInitiated) -> None:
        if event.leg.direction == "outgoing" and event.leg.call_control_id == (
            event.leg.call_session_id
        ):
            self.calls_started.inc()

    def _leg_ended(self, event: LegEnded) -> None:
        self.legs_ended.labels(event.reason.value).inc()

    def _state_changed(self, event: StateChangedEvent) -> None:
        if event.kind != "call":
            return
        if event.new == "ended":
            self.calls_ended.labels(event.cause or "unknown").inc()
            return
        if event.new == "answered":
            self.calls_answered.inc()
        if event.old == "routing":
            # A placed call's id is its caller's leg id (core.routing): its start is there.
            leg = self.runtime.controller.legs.get(event.id)
            call = leg.call if leg is not None else None
            if call is not None and call.id == event.id:
                self.setup.observe(max(0.0, (event.at - call.started_at).total_seconds()))

    # database timing --------------------------------------------------------------------------
    # A connection runs one statement at a time; one that fails never reaches "after", and the
    # next "before" overwrites its start.
    def _before_statement(self, conn: Any, *_: Any) -> None:
        conn.info[_STARTED] = time.perf_counter()

    def _after_statement(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        started = conn.info.pop(_STARTED, None)
        if started is None:
            return
        took = time.perf_counter() - started
        word = statement.lstrip()[:6].upper()
        self.db.labels(word.lower() if word in _SQL_OPERATIONS else "other").observe(took)


class _LiveState(Collector):
    """What is live and what the media and webhook code counted, read at each scrape."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        rt = self.metrics.runtime
        yield _by_state(
            "callbridge_sessions",
            "/ws sessions by state",
            SessionState,
            (s.state for s in rt.sessions.sessions.values()),
        )
        legs = list(rt.controller.legs.values())
        yield _by_state(
            "callbridge_legs", "Live legs by state", LegState, (leg.state for leg in legs)
        )
        calls = {id(leg.call): leg.call for leg in legs if leg.call is not None}
        yield _by_state(
            "callbridge_calls",
            "Live device calls by state",
            CallState,
            (c.state for c in calls.values()),
        )
        yield _by_state(
            "callbridge_app_calls",
            "Live application (REST) calls by state",
            AppCallState,
            (c.state for c in rt.appcalls.calls.values()),
        )
        media = rt.media
        yield _gauge("callbridge_media_endpoints", "Live media objects", media.endpoint_count)
        packets = media.packet_counts()
        yield _counter("callbridge_rtp_packets_received", "RTP packets received", packets.received)
        yield _counter(
            "callbridge_rtp_packets_relayed",
            "Audio packets relayed to the bridged leg",
            packets.relayed,
        )
        yield _counter("callbridge_rtp_packets_lost", "RTP packets never received", packets.lost)
        yield _counter(
            "callbridge_rtp_packets_late", "RTP packets received out of order", packets.late
        )
        yield _counter(
            "callbridge_srtp_packets_rejected",
            "SRTP packets dropped: not authentic, or replayed (RFC 3711 3.3)",
            packets.srtp_rejected,
        )
        yield _counter(
            "callbridge_rtp_handler_errors",
            "Inbound RTP packets whose handling raised (a bug: the log has the first)",
            packets.handler_errors,
        )
        yield _counter("callbridge_media_ticks", "20 ms media clock ticks run", media.ticks)
        yield _counter(
            "callbridge_media_ticks_late",
            "Media clock ticks (mixers, players) that started over 10 ms late",
            media.late_ticks,
        )
        if hasattr(media, "worker_health"):  # --media-workers N > 1: one series per worker
            yield from _per_worker(media.worker_health())
        stats = rt.outbox.stats
        yield _counter("callbridge_webhook_deliveries", "Webhooks delivered", stats.delivered)
        yield _counter(
            "callbridge_webhook_attempts_failed",
            "Webhook attempts that failed",
            stats.attempts_failed,
        )
        yield _counter(
            "callbridge_webhook_failures",
            "Webhooks given up (attempts or age exhausted)",
            stats.given_up,
        )
        depth, oldest = self.metrics._backlog
        yield _gauge("callbridge_webhook_outbox_depth", "Webhooks pending (all servers)", depth)
        age = (datetime.now(UTC) - oldest).total_seconds() if oldest is not None else 0.0
        yield _gauge(
            "callbridge_webhook_outbox_oldest_age_seconds",
            "Age of the oldest pending webhook (0: none pending)",
            max(0.0, age),
        )
        info = GaugeMetricFamily(
            "callbridge_build_info", "The server's version", labels=["version"]
        )
        info.add_metric([__version__], 1)
        yield info


def _by_state(
    name: str, documentation: str, every: Iterable[StrEnum], states: Iterable[StrEnum]
) -> Metric:
    """One sample per state of the enum (0 included, so that graphs start at 0), but the
    terminal one (nothing live is in it for long)."""
    family = GaugeMetricFamily(name, documentation, labels=["state"])
    tally = Tally(states)
    for state in every:
        if state.value != "ended":
            family.add_metric([state.value], tally[state])
    return family


def _per_worker(workers: list[dict[str, Any]]) -> Iterator[Metric]:
    """Each media worker process: up, restarts, media objects, late ticks, SRTP packets
    rejected, handler errors (label ``worker``; the counts are the running process's, from 0
    at each restart: the server totals keep a dead worker's)."""
    series = (
        ("callbridge_media_worker_up", "A media worker process is running", "alive"),
        ("callbridge_media_worker_restarts", "Restarts of a media worker slot", "restarts"),
        ("callbridge_media_worker_objects", "Live media objects of a worker", "media_objects"),
        ("callbridge_media_worker_late_ticks", "Late 20 ms ticks of a worker", "late_ticks"),
        (
            "callbridge_media_worker_srtp_rejected",
            "SRTP packets a worker dropped (not authentic, or replayed)",
            "srtp_rejected",
        ),
        (
            "callbridge_media_worker_handler_errors",
            "Inbound RTP packets whose handling raised in a worker",
            "handler_errors",
        ),
    )
    for name, documentation, key in series:
        family = GaugeMetricFamily(name, documentation, labels=["worker"])
        for w in workers:
            family.add_metric([str(w["index"])], float(w[key]))
        yield family


def _gauge(name: str, documentation: str, value: float) -> Metric:
    return GaugeMetricFamily(name, documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> Metric:
    return CounterMetricFamily(name, documentation, value=value)


def _engine_of(runtime: Runtime) -> AsyncEngine:
    return runtime.store.engine


def install_metrics(app: FastAPI) -> None:
    """Add ``GET /metrics``; the lifespan sets ``app.state.metrics`` (a :class:`Metrics`)."""

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request, principal: Principal) -> Response:
        if not principal.admin:
            raise forbidden(
                "/metrics needs an admin API key (the metrics cover every account): create "
                "one with `callbridge apikey create --admin --read-only`"
            )
        current: Metrics = request.app.state.metrics
        return Response(await current.scrape(), media_type=CONTENT_TYPE_LATEST)
