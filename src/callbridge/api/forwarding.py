"""``/v2/telephony_credentials/{id}/forwarding``: a user's forwarding rules (issue 16).

Telnyx has no per-user find-me/follow-me resource; its nearest is ``call_forwarding`` on a
phone number's voice settings (``PATCH /v2/phone_numbers/{id}/voice``:
``{"call_forwarding": {"call_forwarding_enabled", "forwards_to", "forwarding_type":
"always" | "on-failure"}}``). A callbridge user is a telephony credential, so the rules hang
under the credential, and the PATCH also takes that Telnyx object as a shorthand:

- ``always``: one step, the outside number ``forwards_to`` (the user's devices never ring);
- ``on-failure``: the user's devices, then ``forwards_to`` (on busy, no answer, offline);
- ``call_forwarding_enabled: false``: no steps (ring-all, as without rules).

The full model (``ring_seconds``, ``dnd``, ``steps``, ``on_busy``/``on_no_answer``/
``on_offline``/``on_dnd``) is :mod:`callbridge.forwarding`; docs/routing.md shows examples.
``DELETE`` removes the rules. Another account's credential is a 404, as a missing one.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Body

from callbridge.api.context import Ctx, Principal
from callbridge.api.errors import invalid, not_found
from callbridge.forwarding import Forwarding
from callbridge.store import UserNotFound

__all__ = ["from_call_forwarding", "router"]

router = APIRouter(tags=["Forwarding"])

_FIELD = re.compile(r"(?:invalid |unknown forwarding field\(s\): )?([a-z_]+)")
_STEP = re.compile(r"step (\d+)(?: target (\d+))?")


def _out(rules: Forwarding) -> dict[str, Any]:
    return {"record_type": "forwarding", **rules.as_dict()}


async def _user_name(ctx: Ctx, account_id: str, id: str) -> str:
    if not id.isdigit() or len(id) > 18:
        raise not_found(f"no telephony credential with id {id!r}", "id")
    try:
        return (await ctx.store.get_credential(account_id, int(id))).user.name
    except UserNotFound:
        raise not_found(f"no telephony credential with id {id!r}", "id") from None


def _pointer(message: str) -> str:
    step = _STEP.match(message)
    if step:
        pointer = f"/steps/{int(step[1]) - 1}"
        return pointer + (f"/targets/{int(step[2]) - 1}" if step[2] else "")
    field = _FIELD.match(message)
    return f"/{field[1]}" if field else ""


def from_call_forwarding(raw: Any) -> dict[str, Any]:
    """Telnyx's ``call_forwarding`` object as forwarding fields; ValueError when malformed."""
    if not isinstance(raw, dict):
        raise ValueError("call_forwarding is an object {call_forwarding_enabled, forwards_to, "
                         "forwarding_type}")  # fmt: skip
    unknown = set(raw) - {"call_forwarding_enabled", "forwards_to", "forwarding_type"}
    if unknown:
        raise ValueError(f"call_forwarding: unknown field(s) {', '.join(sorted(unknown))}")
    enabled = raw.get("call_forwarding_enabled", True)
    if not isinstance(enabled, bool):
        raise ValueError("call_forwarding_enabled is true or false")
    if not enabled:
        return {"steps": []}
    to = raw.get("forwards_to")
    if not isinstance(to, str) or not to:
        raise ValueError("call_forwarding: forwards_to (an E.164 number) is required when enabled")
    kind = raw.get("forwarding_type", "always")
    number = {"type": "number", "value": to}
    if kind == "always":
        return {"steps": [{"targets": [number]}]}
    if kind == "on-failure":
        return {
            "steps": [{"targets": ["devices"]}, {"targets": [number]}],
            "on_busy": "next",
            "on_no_answer": "next",
            "on_offline": "next",
        }
    raise ValueError(f"call_forwarding: forwarding_type {kind!r}: use 'always' or 'on-failure'")


@router.get(
    "/telephony_credentials/{id}/forwarding",
    summary="Retrieve a user's forwarding rules (find-me/follow-me, do-not-disturb)",
)
async def get_forwarding(id: str, ctx: Ctx, principal: Principal) -> dict[str, Any]:
    name = await _user_name(ctx, principal.account_id, id)
    return {"data": _out(await ctx.store.get_forwarding(name))}


@router.patch(
    "/telephony_credentials/{id}/forwarding",
    summary="Change a user's forwarding rules (fields left out are kept)",
)
async def update_forwarding(
    id: str, ctx: Ctx, principal: Principal, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    name = await _user_name(ctx, principal.account_id, id)
    changes = dict(body)
    try:
        if "call_forwarding" in changes:
            changes.update(from_call_forwarding(changes.pop("call_forwarding")))
        rules = await ctx.store.update_forwarding(name, changes)
    except ValueError as exc:
        raise invalid(str(exc), pointer=_pointer(str(exc))) from None
    except UserNotFound:
        raise not_found(f"no telephony credential with id {id!r}", "id") from None
    return {"data": _out(rules)}


@router.delete(
    "/telephony_credentials/{id}/forwarding",
    summary="Remove a user's forwarding rules: calls ring all their devices again",
)
async def delete_forwarding(id: str, ctx: Ctx, principal: Principal) -> dict[str, Any]:
    name = await _user_name(ctx, principal.account_id, id)
    await ctx.store.clear_forwarding(name)
    return {"data": _out(Forwarding())}
