"""``/v2/dial_plan_rules``, ``/v2/ring_groups``, ``/v2/dial_plan_settings`` (issue 16).

Telnyx has no dial plan resource (its routing is per number and per connection), so these are
callbridge's own, shaped like the rest of the API: ``{"data": ...}``, ``record_type``, string
ids, page parameters on lists, errors as ``{"errors": [{"code", "title", "detail",
"source": {"pointer"}}]}``. The model is in :mod:`callbridge.dialplan_model` and
``docs/routing.md``.

Another account's rule or group is a 404, as a missing one; read-only keys get 403 on writes
(``api.context``); a bad value is a 422 whose pointer names the field and whose detail says
what is wrong.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from callbridge.api.context import Ctx, Principal
from callbridge.api.errors import invalid, not_found
from callbridge.api.pagination import PageQuery, slice_page
from callbridge.api.schemas import Data, ListOf, Params, iso
from callbridge.dialplan_model import DAYS, DialRule, DialSettings, RingGroupDef
from callbridge.store.dialplan import RingGroupExists, RingGroupNotFound

__all__ = ["router"]

router = APIRouter(tags=["Dial plan (callbridge)"])


class RuleOut(BaseModel):
    record_type: Literal["dial_plan_rule"] = "dial_plan_rule"
    id: str
    position: int
    pattern: str
    target_type: str
    target: str | None
    strip_digits: int
    prepend: str
    days: list[str]
    start_time: str | None
    end_time: str | None
    description: str
    created_at: str
    updated_at: str


class RuleParams(Params):
    pattern: str | None = Field(None, description="2000-2099, 9XXX, +44*, or an exact number")
    target_type: str | None = Field(
        None, description="user, ring_group, queue, conference, application or trunk"
    )
    target: str | None = None
    position: int | None = Field(None, description="Tried in ascending order; default: last")
    strip_digits: int = 0
    prepend: str = ""
    days: list[str] | None = Field(None, description="mon..sun or ranges such as mon-fri")
    start_time: str | None = Field(None, description="HH:MM in the account's time zone")
    end_time: str | None = None
    description: str = ""


class Member(BaseModel):
    user: str
    seconds: int


class NoAnswer(BaseModel):
    type: str = "hangup"
    target: str | None = None


class RingGroupOut(BaseModel):
    record_type: Literal["ring_group"] = "ring_group"
    id: str
    name: str
    strategy: str
    members: list[Member]
    no_answer: NoAnswer
    created_at: str
    updated_at: str


class RingGroupParams(Params):
    name: str | None = None
    strategy: str = "simultaneous"
    members: list[Any] | None = Field(
        None, description='Users in ring order: "alice" or {"user": "alice", "seconds": 15}'
    )
    no_answer: NoAnswer | None = None


class SettingsOut(BaseModel):
    record_type: Literal["dial_plan_settings"] = "dial_plan_settings"
    time_zone: str
    holidays: list[str]


class SettingsParams(Params):
    time_zone: str | None = None
    holidays: list[str] | None = None


def rule_out(rule: DialRule) -> RuleOut:
    return RuleOut(
        id=rule.id,
        position=rule.position,
        pattern=rule.pattern,
        target_type=rule.target_kind,
        target=rule.target,
        strip_digits=rule.strip,
        prepend=rule.prepend,
        days=[DAYS[d] for d in rule.days],
        start_time=rule.start.strftime("%H:%M") if rule.start else None,
        end_time=rule.end.strftime("%H:%M") if rule.end else None,
        description=rule.description,
        created_at=iso(rule.created_at) or "",
        updated_at=iso(rule.updated_at) or "",
    )


def group_out(group: RingGroupDef) -> RingGroupOut:
    return RingGroupOut(
        id=group.id,
        name=group.name,
        strategy=group.strategy,
        members=[Member(user=m.user, seconds=m.seconds) for m in group.members],
        no_answer=NoAnswer(type=group.no_answer_kind, target=group.no_answer_target),
        created_at=iso(group.created_at) or "",
        updated_at=iso(group.updated_at) or "",
    )


def settings_out(settings: DialSettings) -> SettingsOut:
    return SettingsOut(
        time_zone=settings.time_zone, holidays=[d.isoformat() for d in settings.holidays]
    )


# Which body field a store ValueError is about: the field it names first.
_FIELDS = (
    ("pattern", "/pattern"),
    ("no_answer kind", "/no_answer/type"),
    ("no_answer", "/no_answer/target"),
    ("target kind", "/target_type"),
    ("target", "/target"),
    ("strip", "/strip_digits"),
    ("prepend", "/prepend"),
    ("days", "/days"),
    ("start_time", "/start_time"),
    ("end_time", "/end_time"),
    ("position", "/position"),
    ("description", "/description"),
    ("members", "/members"),
    ("strategy", "/strategy"),
    ("time_zone", "/time_zone"),
    ("holidays", "/holidays"),
    ("name", "/name"),
)


def _refused(exc: ValueError) -> Exception:
    text = str(exc)
    head = text.removeprefix("invalid ")
    pointer = next((p for name, p in _FIELDS if head.startswith(name)), None)
    return invalid(text, pointer=pointer)


# rules -----------------------------------------------------------------------------------------
@router.get("/dial_plan_rules", summary="List the dial plan", response_model=ListOf[RuleOut])
async def list_rules(ctx: Ctx, principal: Principal, page: PageQuery) -> ListOf[RuleOut]:
    rules = await ctx.store.dial_rules(principal.account_id)
    items, meta = slice_page(rules, page)
    return ListOf[RuleOut](data=[rule_out(r) for r in items], meta=meta)


@router.post("/dial_plan_rules", summary="Add a dial plan rule", response_model=Data[RuleOut])
async def create_rule(params: RuleParams, ctx: Ctx, principal: Principal) -> Data[RuleOut]:
    if not params.pattern:
        raise invalid("pattern is required: e.g. 2000-2099, 9XXX or +44*", pointer="/pattern")
    if not params.target_type:
        raise invalid(
            "target_type is required: user, ring_group, queue, conference, application or trunk",
            pointer="/target_type",
        )
    try:
        rule = await ctx.store.add_dial_rule(
            principal.account_id,
            params.pattern,
            params.target_type,
            params.target,
            position=params.position,
            strip=params.strip_digits,
            prepend=params.prepend,
            days=params.days,
            start=params.start_time,
            end=params.end_time,
            description=params.description,
        )
    except ValueError as exc:
        raise _refused(exc) from None
    return Data[RuleOut](data=rule_out(rule))


@router.get("/dial_plan_rules/{id}", summary="Retrieve a rule", response_model=Data[RuleOut])
async def retrieve_rule(id: str, ctx: Ctx, principal: Principal) -> Data[RuleOut]:
    rule = await ctx.store.find_dial_rule(id, principal.account_id)
    if rule is None:
        raise not_found(f"no dial plan rule with id {id!r}", "id")
    return Data[RuleOut](data=rule_out(rule))


@router.delete("/dial_plan_rules/{id}", summary="Remove a rule", response_model=Data[RuleOut])
async def delete_rule(id: str, ctx: Ctx, principal: Principal) -> Data[RuleOut]:
    rule = await ctx.store.find_dial_rule(id, principal.account_id)
    if rule is None:
        raise not_found(f"no dial plan rule with id {id!r}", "id")
    await ctx.store.remove_dial_rule(id, principal.account_id)
    return Data[RuleOut](data=rule_out(rule))


# ring groups -----------------------------------------------------------------------------------
@router.get("/ring_groups", summary="List ring groups", response_model=ListOf[RingGroupOut])
async def list_groups(ctx: Ctx, principal: Principal, page: PageQuery) -> ListOf[RingGroupOut]:
    groups = await ctx.store.ring_groups(principal.account_id)
    items, meta = slice_page(groups, page)
    return ListOf[RingGroupOut](data=[group_out(g) for g in items], meta=meta)


@router.post("/ring_groups", summary="Create a ring group", response_model=Data[RingGroupOut])
async def create_group(
    params: RingGroupParams, ctx: Ctx, principal: Principal
) -> Data[RingGroupOut]:
    if not params.name:
        raise invalid("name is required: the group's name, e.g. sales", pointer="/name")
    if not params.members:
        raise invalid("members is required: the users to ring, in order", pointer="/members")
    no_answer = params.no_answer or NoAnswer()
    try:
        group = await ctx.store.add_ring_group(
            principal.account_id,
            params.name,
            params.members,
            strategy=params.strategy,
            no_answer_kind=no_answer.type,
            no_answer_target=no_answer.target,
        )
    except RingGroupExists as exc:
        raise invalid(str(exc), pointer="/name") from None
    except ValueError as exc:
        raise _refused(exc) from None
    return Data[RingGroupOut](data=group_out(group))


async def _group(ctx: Ctx, account: str, id: str) -> RingGroupDef:
    group = await ctx.store.find_ring_group(id, account)
    if group is None:
        raise not_found(f"no ring group with id or name {id!r}", "id")
    return group


@router.get("/ring_groups/{id}", summary="Retrieve a ring group", response_model=Data[RingGroupOut])
async def retrieve_group(id: str, ctx: Ctx, principal: Principal) -> Data[RingGroupOut]:
    return Data[RingGroupOut](data=group_out(await _group(ctx, principal.account_id, id)))


@router.delete(
    "/ring_groups/{id}", summary="Remove a ring group", response_model=Data[RingGroupOut]
)
async def delete_group(id: str, ctx: Ctx, principal: Principal) -> Data[RingGroupOut]:
    group = await _group(ctx, principal.account_id, id)
    try:
        await ctx.store.remove_ring_group(group.id, principal.account_id)
    except RingGroupNotFound:
        raise not_found(f"no ring group with id or name {id!r}", "id") from None
    return Data[RingGroupOut](data=group_out(group))


# settings --------------------------------------------------------------------------------------
@router.get(
    "/dial_plan_settings", summary="The dial plan's time zone and holidays",
    response_model=Data[SettingsOut],
)  # fmt: skip
async def get_settings(ctx: Ctx, principal: Principal) -> Data[SettingsOut]:
    return Data[SettingsOut](data=settings_out(await ctx.store.dial_settings(principal.account_id)))


@router.patch(
    "/dial_plan_settings", summary="Change the time zone or holidays",
    response_model=Data[SettingsOut],
)  # fmt: skip
async def set_settings(params: SettingsParams, ctx: Ctx, principal: Principal) -> Data[SettingsOut]:
    try:
        settings = await ctx.store.set_dial_settings(
            principal.account_id, time_zone=params.time_zone, holidays=params.holidays
        )
    except ValueError as exc:
        raise _refused(exc) from None
    return Data[SettingsOut](data=settings_out(settings))
