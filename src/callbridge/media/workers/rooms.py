"""Conference rooms that outlive their media worker.

A mixer lives on one worker; its members' legs may live on others (relayed, :mod:`.relays`).
When the mixer's worker dies, the legs it owned are lost (their calls end ``failed``), but
the members on the other workers are still in their calls and their conference. So the
control process keeps what a mixer holds that it would need to build it again (its members
and the flags last set for each: ``deaf``, ``held``, ``role``, ``whisper_to``) and, on the
worker's death, :class:`~callbridge.media.workers.proxy.WorkerMediaServer` creates the mixer
on a live worker under the same id and joins the surviving members to it again (relayed where
they live elsewhere). The room is back within a few control round trips; what was in the dead
worker itself is not: its playbacks end ``failed`` and its recordings end with a failure.

While a room is rebuilt, calls about it (a join, a leave, an update, a playback, its end) wait
for the rebuild first (:meth:`Rooms.settled`), so none of them reaches the new mixer before it
exists or is undone by the rebuild.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["Rooms"]


class Rooms:
    """Members and flags by mixer, and the rebuilds under way (module docstring)."""

    def __init__(self) -> None:
        self.members: dict[str, dict[str, dict[str, Any]]] = {}  # mixer -> member -> flags
        self._room_of: dict[str, str] = {}  # member endpoint id -> its mixer
        self.rebuilding: dict[str, asyncio.Task[None]] = {}

    def created(self, mixer_id: str) -> None:
        self.members[mixer_id] = {}

    def destroyed(self, mixer_id: str) -> None:
        for endpoint_id in self.members.pop(mixer_id, {}):
            self._room_of.pop(endpoint_id, None)

    def added(self, mixer_id: str, endpoint_id: str) -> None:
        self.left(endpoint_id)  # a member is in one room at a time
        self.members.setdefault(mixer_id, {})[endpoint_id] = {}
        self._room_of[endpoint_id] = mixer_id

    def left(self, endpoint_id: str) -> None:
        mixer_id = self._room_of.pop(endpoint_id, None)
        if mixer_id is not None:
            self.members.get(mixer_id, {}).pop(endpoint_id, None)

    def updated(self, endpoint_id: str, flags: dict[str, Any]) -> None:
        """The flags a ``mixer_update`` set (``None`` leaves a flag as it was)."""
        mixer_id = self._room_of.get(endpoint_id)
        if mixer_id is not None:
            member = self.members[mixer_id][endpoint_id]
            member.update((k, v) for k, v in flags.items() if v is not None)

    def room_of(self, endpoint_id: str) -> str | None:
        return self._room_of.get(endpoint_id)

    async def settled(self, mixer_id: str | None) -> None:
        """Wait for ``mixer_id``'s rebuild, if one is under way (it logs its own failure)."""
        task = self.rebuilding.get(mixer_id) if mixer_id is not None else None
        if task is not None:
            await asyncio.shield(task)
