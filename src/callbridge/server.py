"""Assembling the server: store, media plane, call controller, application calls, webhook
outbox, HTTP/WebSocket app (``/ws``, ``/healthz`` and the REST API under ``/v2``)."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import FrameType

import uvicorn
from fastapi import FastAPI, WebSocket

from callbridge import __version__, logs, loops, recovery
from callbridge.api import ApiContext, WebhookEvents, install_api
from callbridge.api.limits import install_limits
from callbridge.apidocs import install_docs
from callbridge.config import ServerConfig
from callbridge.core.appcalls import AppCalls
from callbridge.core.control import CallControl
from callbridge.core.controller import CallController
from callbridge.core.dialplan import DialPlans
from callbridge.dashboard import install_dashboard
from callbridge.drain import Drain, DrainMiddleware
from callbridge.media.fetch import configure_outbound
from callbridge.media.workers import MediaPlane, WorkerMediaServer, start_media, stop_media
from callbridge.metrics import Metrics, install_metrics
from callbridge.pidfile import PidFile
from callbridge.signalling.protocol import MAX_MESSAGE_BYTES
from callbridge.signalling.sessions import SessionManager
from callbridge.signalling.ws import Connection
from callbridge.sip.calls import attach_sip
from callbridge.sip.stack import start_sip
from callbridge.sip.trunk_service import attach_trunks
from callbridge.sip.wsgate import install_sip_ws
from callbridge.store import Cdr, Store
from callbridge.webhooks import WebhookOutbox
from callbridge.webphone import install_phone
from callbridge.websdk import install_sdk

__all__ = ["Runtime", "create_app", "serve"]

log = logging.getLogger(__name__)
SHUTDOWN_GRACE = 5  # seconds requests still running get when the server stops


@dataclass
class Runtime:
    """The live parts of one server, built at start-up and torn down at shutdown."""

    config: ServerConfig
    store: Store
    media: MediaPlane  # in this process, or worker processes (--media-workers)
    controller: CallController
    sessions: SessionManager
    appcalls: AppCalls
    outbox: WebhookOutbox


def create_app(config: ServerConfig) -> FastAPI:
    """The ASGI app. The store and media plane start in its lifespan."""
    drain = Drain(config.drain_timeout)  # started by serve()'s signal handler

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # At start-up, not in create_app: an app made only for its OpenAPI document must not
        # change the process's outbound policy.
        configure_outbound(config)  # outbound: allow-lists, media fetch pool, playback limits
        store = await Store.open(config.effective_database_url)
        media = await start_media(config)  # --media-workers: in process, or N workers
        controller = CallController(
            media,
            store,
            config.ring_timeout,
            cdr_factory=Cdr,
            recordings_dir=config.data_dir / "recordings",
        )
        sessions = SessionManager(controller, config.session_grace)
        public_url = _public_url(config)
        appcalls = AppCalls(controller, store, recordings_dir=config.data_dir / "recordings")
        DialPlans(controller, store, appcalls).attach()  # issue 16: asked first on every call
        outbox = await WebhookOutbox.create(store)
        await outbox.start()
        events = WebhookEvents(controller.bus, outbox, public_url)
        journal = await recovery.start(config, store, controller, appcalls, outbox, events)
        app.state.runtime = Runtime(config, store, media, controller, sessions, appcalls, outbox)
        app.state.metrics = Metrics(app.state.runtime)  # GET /metrics (callbridge.metrics)
        call_log = logs.CallLog(controller)  # one INFO line per call event (callbridge.logs)
        app.state.api = ApiContext(
            store=store,
            control=CallControl(appcalls),
            media_dir=config.data_dir / "media",
            public_url=public_url,
            public_key=outbox.public_key,
            events=events,
        )
        drain.attach(  # refuses new calls while draining, or while a spool is full
            sessions=sessions,
            controller=controller,
            appcalls=appcalls,
            events=events,
            store=store,
            journal=journal,
        )
        app.state.sip = await start_sip(config, drain)  # None when --sip-port 0 (docs/sip.md)
        registrar = await attach_sip(app.state.sip, store, controller, app.state.abuse_guard)
        trunks = await attach_trunks(app.state.sip, store, controller)  # issue 12
        try:
            yield
        finally:
            if trunks is not None:  # un-REGISTER from carriers while SIP still runs
                await trunks.stop()
            if registrar is not None:
                await registrar.stop()
            if app.state.sip is not None:
                await app.state.sip.stop()
            await drain.cancel()  # stopped during a drain (a second Ctrl-C): end what is left
            await sessions.shutdown()
            await appcalls.shutdown()
            await controller.shutdown()
            await stop_media(media)
            await appcalls.close()  # recordings the last calls saved are stored
            await events.close()  # every event of the calls just ended is in the outbox
            await outbox.stop()
            call_log.close()
            app.state.metrics.close()
            await store.close()

    app = FastAPI(
        title="callbridge",
        version=__version__,
        lifespan=lifespan,
        description="Programmable voice: the REST call-control API under /v2 (compatible "
        "with the official telnyx SDKs; see docs/api.md) and WebSocket signalling at /ws "
        "(docs/protocol.md).",
        docs_url=None,  # /docs and /redoc come from install_docs, with local assets
        redoc_url=None,
    )
    install_api(app)
    install_docs(app)  # /docs (Swagger UI) and /redoc, working offline (callbridge.apidocs)
    install_phone(app)  # the softphone page at /phone (web/phone/)
    install_dashboard(app)  # the operator dashboard at /dashboard (web/dashboard/)
    install_sdk(app)  # the browser SDK at /sdk/callbridge.js (web/sdk/)
    install_sip_ws(app)  # SIP over WebSocket at /sip (RFC 7118; docs/sip.md)
    install_metrics(app)  # Prometheus at /metrics, admin API key (docs/operations.md)
    app.state.drain = drain
    app.add_middleware(DrainMiddleware, drain=drain)
    limits = install_limits(app, config)  # REST bounds; /ws bounds (docs/security.md)

    @app.get("/healthz")
    async def healthz() -> dict[str, object]:
        """Liveness plus what is live: legs (calls' sides) and media endpoints."""
        runtime: Runtime = app.state.runtime
        health: dict[str, object] = {
            "status": "draining" if drain.draining else "ok",
            "version": __version__,
            "sessions": len(runtime.sessions.sessions),
            "legs": len(runtime.controller.legs),
            "media_endpoints": runtime.media.endpoint_count,
            "event_loop": loops.running(),
        }
        if isinstance(runtime.media, WorkerMediaServer):  # per worker: pid, alive, restarts
            health["media_workers"] = runtime.media.worker_health()
            health["media_relays"] = runtime.media.relays.counts()  # links between workers
        if drain.draining:
            health["drain"] = drain.status()
        if (backlog := drain.backlog()) is not None:  # new calls are refused (docs/security.md)
            health["backlog"] = backlog
        return health

    @app.websocket("/ws")
    async def ws_endpoint(websocket: WebSocket) -> None:
        runtime: Runtime = websocket.app.state.runtime
        await Connection(
            websocket, runtime.controller, runtime.sessions, runtime.store, limits
        ).run()

    return app


def _public_url(config: ServerConfig) -> str:
    """How clients reach this server (recording download URLs in webhooks and answers)."""
    host = config.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    scheme = "https" if config.tls_cert else "http"
    return f"{scheme}://{host}:{config.port}"


async def serve(config: ServerConfig) -> None:
    """Run the server until interrupted."""
    app = create_app(config)
    # aioice logs every connectivity check at INFO; keep the server's log readable.
    logging.getLogger("aioice").setLevel(max(logging.WARNING, logging.getLogger().level))
    # httpx (the webhook outbox's client) logs every request at INFO: one line per delivery.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    drain: Drain = app.state.drain
    server = _Server(
        drain,
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_level="info",
            # Once callbridge.logs set up logging (the CLI), uvicorn's lines go through it: one
            # format (text or JSON) for every line.
            log_config=logs.uvicorn_log_config(),
            # Frames up to 1 MiB reach the protocol layer, which answers frames over
            # MAX_MESSAGE_BYTES with `message_too_large`; bigger ones close the socket (1009).
            ws_max_size=16 * MAX_MESSAGE_BYTES,
            ws_ping_interval=20,
            ws_ping_timeout=20,
            lifespan="on",
            # Once drained, requests still running (a slow upload) get this long before the
            # lifespan's teardown; without a bound one stuck request kept the process alive.
            timeout_graceful_shutdown=SHUTDOWN_GRACE,
            # HTTPS and WSS on the same port (issue 13): browsers give the microphone only
            # to secure pages (or localhost). PEM files; `callbridge dev-cert` makes them.
            ssl_certfile=str(config.tls_cert) if config.tls_cert else None,
            ssl_keyfile=str(config.tls_key) if config.tls_key else None,
        ),
    )
    drain.on_done = server.drained
    ws_scheme = "wss" if config.tls_cert else "ws"
    log.info(
        "callbridge %s listening on %s://%s:%d/ws", __version__, ws_scheme, config.host, config.port
    )
    pid_file = PidFile(config.data_dir, _public_url(config))
    pid_file.acquire()
    try:
        await server.serve()
    finally:
        pid_file.release()


class _Server(uvicorn.Server):
    """uvicorn's server, whose SIGTERM and first Ctrl-C start a drain (callbridge.drain)
    instead of stopping at once.

    uvicorn catches SIGINT and SIGTERM with ``signal.signal`` (``capture_signals``) and calls
    :meth:`handle_exit`, which sets ``should_exit``: its main loop then closes the listening
    sockets and every connection (WebSockets with 1012) and runs the lifespan's shutdown.
    Here the signal starts the drain instead, and the drain's end sets ``should_exit``. A
    signal uvicorn recorded is raised again once it has stopped (so Ctrl-C still ends the
    process with KeyboardInterrupt, exit 130); SIGTERM is not recorded: a drained server
    exits 0.
    """

    def __init__(self, drain: Drain, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.drain = drain
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def drained(self) -> None:
        self.should_exit = True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A signal handler: it runs between two bytecodes of the loop's thread, so it only
        # schedules the drain (call_soon_threadsafe also wakes the loop's selector).
        if sig not in (signal.SIGTERM, signal.SIGINT) or self.should_exit or self._loop is None:
            super().handle_exit(sig, frame)
            return
        if self.drain.draining:
            if sig == signal.SIGINT:  # a second Ctrl-C: stop now (the lifespan ends calls)
                super().handle_exit(sig, frame)
            else:
                log.warning("already draining; Ctrl-C (SIGINT) stops at once")
            return
        if sig == signal.SIGINT:
            self._captured_signals.append(sig)  # raised again at the end: exit 130
        why, timeout = ("SIGTERM", None) if sig == signal.SIGTERM else ("Ctrl-C", 0.0)
        self._loop.call_soon_threadsafe(self._start_drain, why, timeout)

    def _start_drain(self, why: str, timeout: float | None) -> None:
        if not self.drain.start(why, timeout):  # not running yet: nothing to drain
            self.should_exit = True
