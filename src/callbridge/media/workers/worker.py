"""A media worker process: ``python -m callbridge.media.workers.worker FD LOG_LEVEL [LOOP]``.

It runs one :class:`~callbridge.media.engine.InProcessMediaServer` and serves the control
process's MediaServer calls arriving on the inherited socket ``FD`` (:mod:`.wire`): each call
runs as its own task (the core issues calls for different legs concurrently, as it does in one
process), its reply carries the worker's counters, and media events go back as they happen. The
first frame is the server's configuration. The worker ends when the socket closes (the control
process stopped or died): it shuts its media down first, so devices see their calls' media end.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from typing import Any

from callbridge import loops
from callbridge.config import ServerConfig
from callbridge.errors import ErrorCode, ProtocolError
from callbridge.logs import LIBRARIES, JsonFormatter
from callbridge.loops import EVENT_LOOPS, EventLoop
from callbridge.media.engine import InProcessMediaServer
from callbridge.media.fetch import acting_for, configure_outbound
from callbridge.media.interface import MediaEvent
from callbridge.media.workers.wire import read_frame, write_frame

__all__ = ["STATS_INTERVAL", "main", "stats_of"]

log = logging.getLogger(__name__)
STATS_INTERVAL = 1.0  # seconds between unsolicited counter reports (playbacks end by themselves)
# The MediaServer methods the control process may call (nothing else is reachable).
METHODS = frozenset(
    (
        "answer", "offer", "reconnect", "accept_answer", "renegotiate", "reoffer",
        "answer_rtp", "offer_rtp", "renegotiate_rtp", "reoffer_rtp", "add_candidate",
        "endpoint_info", "bridge", "unbridge", "set_muted", "play", "stop_playing", "close",
        "create_mixer", "destroy_mixer", "mixer_add", "mixer_remove", "mixer_update",
        "mixer_members", "mixer_play", "play_to", "stop_playback", "probe_audio", "stop_all",
        "send_dtmf", "record_start", "record_pause", "record_resume", "record_stop", "shutdown",
        "relay_video",  # between workers only (media/workers/relays.py)
    )
)  # fmt: skip

Stats = tuple[int, int, int, int, int, int, int, int, int]


def stats_of(media: InProcessMediaServer) -> Stats:
    """(media objects, packets received, lost, late, relayed, ticks, late ticks, SRTP packets
    rejected, handler errors)."""
    p = media.packet_counts()
    return (
        media.endpoint_count,
        p.received,
        p.lost,
        p.late,
        p.relayed,
        media.ticks,
        media.late_ticks,
        p.srtp_rejected,
        p.handler_errors,
    )


def _error(exc: BaseException) -> tuple[str, str, str]:
    """What the control process needs to raise the same error: (kind, code, message)."""
    if isinstance(exc, ProtocolError):
        return (type(exc).__name__, exc.code.value, exc.message)
    return ("Exception", ErrorCode.INTERNAL.value, f"{type(exc).__name__}: {exc}")


def _log_as(fmt: str) -> None:
    """The server's ``--log-format``: in JSON each line carries the worker's pid as
    ``worker`` (callbridge.logs.JsonFormatter writes a record's extra attributes)."""
    if fmt != "json":
        return
    pid = os.getpid()

    def tag(record: logging.LogRecord) -> bool:
        record.worker = pid
        return True

    for handler in logging.getLogger().handlers:
        handler.setFormatter(JsonFormatter())
        handler.addFilter(tag)


async def serve(sock: socket.socket) -> None:
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    config = (await read_frame(reader))[0]
    assert isinstance(config, ServerConfig)
    _log_as(config.log_format)
    configure_outbound(config)  # fetch allow-list, pool and playback limits, as in one process
    media = InProcessMediaServer(
        config.effective_media_addresses, config.ice_servers, rtp_ports=config.rtp_ports
    )

    def on_event(event: MediaEvent) -> None:
        write_frame(writer, ("e", event))

    media.subscribe(on_event)
    tasks: set[asyncio.Task[None]] = set()

    async def call(
        req: int, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], owner: str
    ) -> None:
        try:
            if method not in METHODS:
                raise ProtocolError(ErrorCode.INTERNAL, f"no media method {method!r}")
            with acting_for(owner):  # the control process's owner: per-user limits hold here
                value = await getattr(media, method)(*args, **kwargs)
            reply: tuple[Any, ...] = ("r", req, True, value, stats_of(media))
        except Exception as exc:
            reply = ("r", req, False, _error(exc), stats_of(media))
        write_frame(writer, reply)

    async def report() -> None:
        while True:
            await asyncio.sleep(STATS_INTERVAL)
            write_frame(writer, ("s", stats_of(media)))

    reporter = asyncio.create_task(report())
    write_frame(writer, ("ready", os.getpid(), stats_of(media)))
    try:
        while True:
            try:
                message = await read_frame(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                break  # the control process is gone
            _, req, method, args, kwargs, owner = message
            task = asyncio.create_task(call(req, method, args, kwargs, owner))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    finally:
        reporter.cancel()
        for task in list(tasks):
            task.cancel()
        await media.shutdown()
        writer.close()


def main(argv: list[str]) -> int:
    fd, level = int(argv[0]), argv[1]
    loop: EventLoop = argv[2] if len(argv) > 2 and argv[2] in EVENT_LOOPS else "auto"
    # The control process stops its workers over the socket; a Ctrl-C meant for it must not
    # kill them first (they run in their own session, but a terminal may still signal them).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=level.upper(),
        format=f"%(asctime)s worker {os.getpid()} %(levelname)s %(name)s: %(message)s",
    )
    for name in LIBRARIES:  # as in the control process: their own plumbing stays out
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))
    sock = socket.socket(fileno=fd)
    loops.run(serve(sock), loop)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
