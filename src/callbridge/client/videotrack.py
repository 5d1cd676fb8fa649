"""A :class:`~callbridge.client.video.VideoSource` as an aiortc video track (what a call's
media hands aiortc's VP8 encoder), and the SDP direction of a video transceiver."""

from __future__ import annotations

import asyncio
import fractions
import logging

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from callbridge.client.video import VideoSource

__all__ = ["MAX_LAG", "SourceTrack", "direction"]

log = logging.getLogger(__name__)

MAX_LAG = 0.2  # seconds a sending loop may stall before it skips ahead instead of bursting
_VIDEO_CLOCK = 90000  # RTP clock of video (RFC 7741 §4.1 for VP8)


class SourceTrack(MediaStreamTrack):
    """A VideoSource as an aiortc video track, paced at the source's frame rate."""

    kind = "video"

    def __init__(self, source: VideoSource) -> None:
        super().__init__()
        self.source = source
        self._start: float | None = None
        self._count = 0
        self._failed = False

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        fps = max(1, int(self.source.fps))
        if self._start is None:
            self._start = loop.time()
        due = self._start + self._count / fps
        delay = due - loop.time()
        if delay < -MAX_LAG:  # stalled: start afresh instead of bursting
            self._start, delay = loop.time() - self._count / fps, 0.0
        await asyncio.sleep(max(0.0, delay))
        try:
            picture = self.source.read()
        except Exception:
            if not self._failed:
                log.exception("video source %r failed; sending black", self.source)
                self._failed = True
            picture = np.zeros((self.source.height, self.source.width, 3), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
        frame.pts = self._count * (_VIDEO_CLOCK // fps)
        frame.time_base = fractions.Fraction(1, _VIDEO_CLOCK)
        self._count += 1
        return frame


def direction(send: bool, receive: bool) -> str:
    """The SDP direction attribute (RFC 8866 §6.7) for sending and/or receiving."""
    return {
        (True, True): "sendrecv",
        (True, False): "sendonly",
        (False, True): "recvonly",
        (False, False): "inactive",
    }[(send, receive)]
