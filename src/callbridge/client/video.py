"""Video in and out of a call: sources (the "camera") and sinks (the "screen").

The SDK moves video as RGB pictures: ``numpy`` arrays of shape (height, width, 3), dtype
uint8. The call's media encodes what a source gives (VP8, aiortc's encoder) at the source's
frame rate and hands every decoded picture it receives to the sink.

Sources: :class:`TestPatternSource` (a solid colour with a bar that moves every frame, so each
frame differs and the colour tells whose video arrived), or anything with ``width``,
``height``, ``fps``, ``read()`` and ``close()`` (:class:`VideoSource`). Sinks:
:class:`FrameSink` (counts frames, keeps the last one), or anything with ``write()`` and
``close()`` (:class:`VideoSink`).

``read()`` and ``write()`` run on the event loop thread once per frame: keep them quick.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

__all__ = ["FrameSink", "Picture", "TestPatternSource", "VideoSink", "VideoSource"]

Picture = npt.NDArray[np.uint8]
"""One video frame: RGB, shape (height, width, 3), dtype uint8."""


@runtime_checkable
class VideoSource(Protocol):
    """Produces the video a call sends."""

    width: int
    height: int
    fps: int

    def read(self) -> Picture:
        """The next picture, ``(height, width, 3)`` RGB uint8."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class VideoSink(Protocol):
    """Receives the video a call gets, one decoded picture at a time."""

    def write(self, picture: Picture) -> None: ...

    def close(self) -> None: ...


class TestPatternSource:
    """A solid ``color`` (RGB) with a white vertical bar that moves one step every frame.

    Small (320x240 by default) and 15 frames/s: cheap to encode, easy to recognise.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(
        self,
        color: tuple[int, int, int] = (128, 128, 128),
        width: int = 320,
        height: int = 240,
        fps: int = 15,
    ) -> None:
        if width % 2 or height % 2 or width < 16 or height < 16:
            raise ValueError("width and height must be even and at least 16")
        self.color = color
        self.width = width
        self.height = height
        self.fps = fps
        self.frames = 0
        self._base = np.empty((height, width, 3), dtype=np.uint8)
        self._base[:, :] = color

    def read(self) -> Picture:
        picture = self._base.copy()
        bar = max(2, self.width // 40)
        x = (self.frames * bar) % self.width
        picture[:, x : x + bar] = 255
        self.frames += 1
        return picture

    def close(self) -> None:
        pass


class FrameSink:
    """Counts the pictures received and keeps the last one."""

    def __init__(self) -> None:
        self.frames = 0
        self.last: Picture | None = None

    def write(self, picture: Picture) -> None:
        self.frames += 1
        self.last = picture

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) of the last picture."""
        return None if self.last is None else (self.last.shape[1], self.last.shape[0])

    def dominant_color(self) -> tuple[int, int, int] | None:
        """The median RGB of the last picture (the background of a test pattern)."""
        if self.last is None:
            return None
        median = np.median(self.last.reshape(-1, 3), axis=0)
        return int(median[0]), int(median[1]), int(median[2])

    def clear(self) -> None:
        self.frames = 0
        self.last = None

    def close(self) -> None:
        pass
