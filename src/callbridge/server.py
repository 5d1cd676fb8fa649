"""Assembling the server: store, media plane, call controller, application calls, webhook
outbox, HTTP/WebSocket app (``/ws``, ``/healthz`` and the REST API under ``/v2``)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI, WebSocket

from callbridge import __version__
from callbridge.api import ApiContext, WebhookEvents, install_api
from callbridge.config import ServerConfig
from callbridge.core.appcalls import AppCalls
from callbridge.core.control import CallControl
from callbridge.core.controller import CallController
from callbridge.media.engine import InProcessMediaServer
from callbridge.signalling.protocol import MAX_MESSAGE_BYTES
from callbridge.signalling.sessions import SessionManager
from callbridge.signalling.ws import Connection, ConnectionLimits
from callbridge.store import Cdr, Store
from callbridge.webhooks import WebhookOutbox

__all__ = ["Runtime", "create_app", "serve"]

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """The live parts of one server, built at start-up and torn down at shutdown."""

    config: ServerConfig
    store: Store
    media: InProcessMediaServer
    controller: CallController
    sessions: SessionManager
    appcalls: AppCalls
    outbox: WebhookOutbox


def create_app(config: ServerConfig) -> FastAPI:
    """The ASGI app. The store and media plane start in its lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await Store.open(config.effective_database_url)
        media = InProcessMediaServer(config.effective_media_addresses, config.ice_servers)
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
        outbox = await WebhookOutbox.create(store)
        await outbox.start()
        events = WebhookEvents(controller.bus, outbox, public_url)
        app.state.runtime = Runtime(config, store, media, controller, sessions, appcalls, outbox)
        app.state.api = ApiContext(
            store=store,
            control=CallControl(appcalls),
            media_dir=config.data_dir / "media",
            public_url=public_url,
            public_key=outbox.public_key,
            events=events,
        )
        try:
            yield
        finally:
            await sessions.shutdown()
            await appcalls.shutdown()
            await controller.shutdown()
            await appcalls.close()  # recordings the last calls saved are stored
            await events.close()  # every event of the calls just ended is in the outbox
            await outbox.stop()
            await store.close()

    app = FastAPI(
        title="callbridge",
        version=__version__,
        lifespan=lifespan,
        description="Programmable voice: the REST call-control API under /v2 (compatible "
        "with the official telnyx SDKs; see docs/api.md) and WebSocket signalling at /ws "
        "(docs/protocol.md).",
    )
    install_api(app)
    limits = ConnectionLimits(
        max_send_queue=config.max_send_queue,
        max_send_queue_bytes=config.max_send_queue_bytes,
        login_timeout=config.login_timeout,
    )

    @app.get("/healthz")
    async def healthz() -> dict[str, object]:
        """Liveness plus what is live: legs (calls' sides) and media endpoints."""
        runtime: Runtime = app.state.runtime
        return {
            "status": "ok",
            "version": __version__,
            "sessions": len(runtime.sessions.sessions),
            "legs": len(runtime.controller.legs),
            "media_endpoints": runtime.media.endpoint_count,
        }

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
    return f"http://{host}:{config.port}"


async def serve(config: ServerConfig) -> None:
    """Run the server until interrupted."""
    app = create_app(config)
    # aioice logs every connectivity check at INFO; keep the server's log readable.
    logging.getLogger("aioice").setLevel(max(logging.WARNING, logging.getLogger().level))
    # httpx (the webhook outbox's client) logs every request at INFO: one line per delivery.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_level="info",
            # Frames up to 1 MiB reach the protocol layer, which answers frames over
            # MAX_MESSAGE_BYTES with `message_too_large`; bigger ones close the socket (1009).
            ws_max_size=16 * MAX_MESSAGE_BYTES,
            ws_ping_interval=20,
            ws_ping_timeout=20,
            lifespan="on",
        )
    )
    log.info("callbridge %s listening on ws://%s:%d/ws", __version__, config.host, config.port)
    await server.serve()
