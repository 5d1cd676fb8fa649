"""Media worker processes (issue 15): ``callbridge serve --media-workers N``.

With N > 1 each worker process runs its own
:class:`~callbridge.media.engine.InProcessMediaServer` (endpoints, bridges, mixers, playbacks,
recordings); the control process drives them through :class:`WorkerMediaServer`, a
:class:`~callbridge.media.interface.MediaServer` that sends one compact message per interface
call over a Unix socket pair (:mod:`.wire`). RTP, ICE and DTLS go straight between the devices
and the worker's own sockets: nothing per packet crosses the socket.

Placement (:mod:`.proxy`): an endpoint created while handling a command goes to the worker of
the first endpoint that command created (the caller's leg and every leg rung for it meet on one
worker); a first endpoint goes to the least loaded worker. A bridge or mixer membership that
still spans two workers (a transfer or a move that joins legs of two calls, a member of a room
that lives elsewhere) is *relayed* (:mod:`.relays`): a pair of plain RTP endpoints on loopback
joins the two workers, so nothing is renegotiated with the devices.
"""

from __future__ import annotations

import logging

from callbridge.config import ServerConfig
from callbridge.media.engine import InProcessMediaServer
from callbridge.media.workers.proxy import WorkerMediaServer

__all__ = ["MediaPlane", "WorkerMediaServer", "start_media", "stop_media"]

MediaPlane = InProcessMediaServer | WorkerMediaServer


async def start_media(config: ServerConfig) -> MediaPlane:
    """The server's media plane: in this process for ``media_workers`` 1 (exactly as before,
    nothing in between), else ``media_workers`` started worker processes behind a proxy."""
    if config.media_workers <= 1:
        return InProcessMediaServer(
            config.effective_media_addresses, config.ice_servers, rtp_ports=config.rtp_ports
        )
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()
    media = WorkerMediaServer(config, config.media_workers, level)
    await media.start()
    return media


async def stop_media(media: MediaPlane) -> None:
    """After the controller's shutdown: stop the worker processes, if any."""
    if isinstance(media, WorkerMediaServer):
        await media.stop()
