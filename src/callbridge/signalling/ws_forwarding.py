"""``forwarding.get`` / ``forwarding.set`` / ``forwarding.dnd`` on ``/ws``: the signed-in
user reads and changes their own forwarding rules and do-not-disturb (issue 16,
docs/protocol.md "Forwarding").

Each is answered with ``forwarding.state`` (``req_id`` and the rules, as REST's
``/v2/telephony_credentials/{id}/forwarding``). A session can only reach its own user's rules:
no message names a user. A malformed rule is an ``invalid_message`` error naming the field.
"""

from __future__ import annotations

from typing import Any

from callbridge.errors import ErrorCode, ProtocolError
from callbridge.signalling import protocol as p

__all__ = ["forwarding_message"]

_FIELDS = ("ring_seconds", "dnd", "steps", "on_busy", "on_no_answer", "on_offline", "on_dnd")


async def forwarding_message(
    store: Any, user_name: str, msg: p.ForwardingGet | p.ForwardingSet | p.ForwardingDnd
) -> dict[str, Any]:
    """The ``forwarding.state`` answering ``msg`` for ``user_name``."""
    if not hasattr(store, "get_forwarding"):
        raise ProtocolError(ErrorCode.INTERNAL, f"{msg.type}: this server keeps no rules")
    if isinstance(msg, p.ForwardingGet):
        rules = await store.get_forwarding(user_name)
    else:
        if isinstance(msg, p.ForwardingDnd):
            changes: dict[str, Any] = {"dnd": msg.dnd}
        else:
            given = msg.model_fields_set
            changes = {
                name: _plain(getattr(msg, name))
                for name in _FIELDS
                if name in given and (getattr(msg, name) is not None or name == "ring_seconds")
            }
        try:
            rules = await store.update_forwarding(user_name, changes)
        except ValueError as exc:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"{msg.type}: {exc}") from None
    return {"type": "forwarding.state", "req_id": msg.req_id, "forwarding": rules.as_dict()}


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if hasattr(value, "model_dump"):
        return value.model_dump(exclude_unset=False)
    return value
