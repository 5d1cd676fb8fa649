"""The framing between the control process and a media worker: a 4-byte big-endian length,
then one pickled tuple. Only control messages travel here (one per MediaServer call, one per
media event, a stats line each second), never packets, so pickle's cost does not matter and it
carries the interface's frozen dataclasses as they are. Both ends are this program's own
processes over a socket pair, so the data is trusted."""

from __future__ import annotations

import asyncio
import pickle
import struct
from typing import Any

__all__ = ["MAX_FRAME", "read_frame", "write_frame"]

_HEADER = struct.Struct(">I")
MAX_FRAME = 16 * 1024 * 1024  # an SDP is at most 32 KiB; a frame this large is a bug


def write_frame(writer: asyncio.StreamWriter, message: tuple[Any, ...]) -> None:
    """Queue one message (the caller drains when it wants back-pressure)."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    writer.write(_HEADER.pack(len(data)) + data)


async def read_frame(reader: asyncio.StreamReader) -> tuple[Any, ...]:
    """The next message; ``asyncio.IncompleteReadError`` when the other end went away."""
    (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    if size > MAX_FRAME:
        raise ValueError(f"media worker frame of {size} bytes (at most {MAX_FRAME})")
    message = pickle.loads(await reader.readexactly(size))
    if not isinstance(message, tuple):
        raise ValueError(f"media worker frame is a {type(message).__name__}, not a tuple")
    return message
