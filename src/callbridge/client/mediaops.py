"""The media work of one call, off the message reader and in message order.

Applying the server's SDP answer, trickled ICE candidates (``ice.candidate`` / ``ice.done``)
and closing the peer connection can each take a while. The phone's reader must not wait for
them (other calls' messages would queue behind a slow peer connection), yet they must happen in
the order the messages came. So each call chains its operations: every one runs in a task the
phone owns and starts when the one before it has finished.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from callbridge.client.emitter import TaskOwner
from callbridge.client.media import CallMedia
from callbridge.errors import CallbridgeError

__all__ = ["MediaOp", "MediaOps"]

log = logging.getLogger(__name__)

MediaOp = Callable[[CallMedia, Any], Awaitable[object]]
"""One operation: called with the call's current media and the operation's argument."""


class MediaOps:
    """The chain of media operations of call ``call_id``; ``media()`` is its current media."""

    def __init__(
        self, call_id: str, tasks: TaskOwner, media: Callable[[], CallMedia | None]
    ) -> None:
        self._call_id = call_id
        self._tasks = tasks
        self._media = media
        self._last: asyncio.Task[Any] | None = None
        self._early: list[dict[str, Any]] = []  # candidates of an incoming call, before answer

    def run(self, op: MediaOp, arg: Any, *, closing: bool = False) -> None:
        """Run ``op(media, arg)`` after the operations before it; skipped when the call has no
        media, or its media is closed (unless this is the ``closing`` operation). A
        :class:`~callbridge.errors.CallbridgeError` it raises is logged."""
        previous = self._last

        async def run() -> None:
            if previous is not None:
                await asyncio.wait([previous])
            media = self._media()
            if media is None or (media.closed and not closing):
                return
            try:
                await op(media, arg)
            except CallbridgeError as exc:
                log.warning("call %s: %s", self._call_id, exc)

        self._last = self._tasks.spawn(run(), name=f"call {self._call_id} media")

    def candidate(self, msg: dict[str, Any]) -> None:
        """An ``ice.candidate`` or ``ice.done``: applied, or kept until the call has media (an
        incoming call before it is answered)."""
        if self._media() is None:
            self._early.append(msg)
        else:
            self.run(apply_candidate, msg)

    def flush_early(self) -> None:
        """The call has media now: apply the candidates that came before it."""
        early, self._early = self._early, []
        for msg in early:
            self.run(apply_candidate, msg)

    def close(self) -> None:
        """Close the media once the operations before have run."""
        self.run(_close, None, closing=True)


async def apply_candidate(media: CallMedia, msg: dict[str, Any]) -> None:
    """Apply one ``ice.candidate`` / ``ice.done`` message (docs/protocol.md, "ICE")."""
    if msg.get("type") == "ice.done":
        await media.end_of_candidates()
        return
    index = msg.get("sdp_m_line_index")
    await media.add_remote_candidate(
        str(msg.get("candidate", "")),
        msg.get("sdp_mid"),
        index if isinstance(index, int) else None,
    )


async def _close(media: CallMedia, _: object) -> None:
    await media.close()
