"""The payload of a call's ``bridged`` event: an application connected this call to another.

The server says ``call.bridged`` (docs/protocol.md, "Calls driven by applications") when an
application bridges the call to another one, for instance an agent's call to the caller that
waited longest in a queue: the agent learns who it got, from which queue, after how long.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Bridged"]


@dataclass(frozen=True, slots=True)
class Bridged:
    """Who this call is connected to now (``call.on("bridged", handler)``; ``Call.bridged``).

    ``queue`` and ``wait_time_secs`` are set when the other call was taken from a queue
    (how long that caller waited there); ``None`` otherwise."""

    peer: str  # the other call's caller id: its number, else its extension
    peer_name: str
    queue: str | None = None
    wait_time_secs: int | None = None

    @classmethod
    def from_message(cls, msg: dict[str, Any]) -> Bridged:
        """From the ``call.bridged`` wire message (fields a newer server adds are ignored)."""
        queue = msg.get("queue")
        wait = msg.get("wait_time_secs")
        return cls(
            peer=str(msg.get("peer", "")),
            peer_name=str(msg.get("peer_name", "")),
            queue=queue if isinstance(queue, str) else None,
            wait_time_secs=wait if isinstance(wait, int) and not isinstance(wait, bool) else None,
        )
