"""The signed-in user's own forwarding rules and do-not-disturb from the Python SDK (issue 16):
``phone.get_forwarding()``, ``phone.set_forwarding(...)``, ``phone.set_dnd(on)``.

They send ``forwarding.get`` / ``forwarding.set`` / ``forwarding.dnd`` on ``/ws`` and return
the server's rules as a :class:`~callbridge.forwarding.Forwarding` (docs/routing.md). A rule
the server refuses raises ``RemoteError`` (``invalid_message``, naming the field).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from callbridge.forwarding import Forwarding, parse_forwarding

__all__ = ["forwarding_message", "parse_forwarding_state"]

_UNSET: Any = object()


def forwarding_message(
    *,
    ring_seconds: int | None = _UNSET,
    dnd: bool | None = None,
    steps: Sequence[Mapping[str, Any]] | None = None,
    on_busy: str | None = None,
    on_no_answer: str | None = None,
    on_offline: str | None = None,
    on_dnd: str | None = None,
) -> dict[str, Any]:
    """The ``forwarding.set`` message for the given changes (None: left as it is;
    ``ring_seconds=None`` given: the server's ring timeout)."""
    message: dict[str, Any] = {"type": "forwarding.set"}
    if ring_seconds is not _UNSET:
        message["ring_seconds"] = ring_seconds
    if steps is not None:
        message["steps"] = [_step(s) for s in steps]
    values = {"dnd": dnd, "on_busy": on_busy, "on_no_answer": on_no_answer,
              "on_offline": on_offline, "on_dnd": on_dnd}  # fmt: skip
    message.update({k: v for k, v in values.items() if v is not None})
    return message


def _step(step: Mapping[str, Any]) -> dict[str, Any]:
    targets = []
    for target in step.get("targets", []):
        if isinstance(target, str):  # "devices", "user:bob", "number:+1555..."
            kind, _, value = target.partition(":")
            target = {"type": kind, **({"value": value} if value else {})}
        targets.append(dict(target))
    return {**step, "targets": targets}


def parse_forwarding_state(message: Mapping[str, Any]) -> Forwarding:
    """The rules a ``forwarding.state`` carries."""
    return parse_forwarding(message.get("forwarding") or {})
