"""``/v2/phone_numbers`` and ``/v2/outbound_voice_profiles``: numbers and outbound routes
(issue 12), shaped for the ``telnyx`` SDK.

**Phone numbers** are the numbers an account owns (``callbridge numbers add``; Telnyx buys them
with number orders, which callbridge does not have). List (``filter[phone_number]``,
``filter[connection_id]``), retrieve, update and delete (the account no longer owns it). ``id``
is the number's digits (``+14155550100`` is ``14155550100``; the E.164 form works too).
Routing, on update:

- ``connection_id``: an application of the account (as Telnyx's call-control connection): its
  inbound calls go there (webhooks and REST). ``null`` or ``""`` removes that routing. A trunk
  id is a 422 (a number routes to a local target);
- callbridge's own ``target_kind`` (``user``, ``application``, ``conference``, ``queue``, or
  null for none) and ``target_id``; ``allow_outbound``: a call arriving on the number may be
  sent on through a trunk (toll-fraud safety: false unless set);
- Telnyx's other fields (``tags``, ``customer_reference``, ``billing_group_id``,
  ``external_pin``, ``hd_voice_enabled``, ``address_id``) are accepted and ignored.

**Outbound voice profiles** are outbound routes: ``name``; callbridge's ``prefix`` (``+`` and
up to 15 digits; default ``+``, every E.164 destination; the longest matching prefix wins) and
``connection_ids`` (the trunks' ids, in failover order; required on create). ``enabled: false``,
``concurrent_call_limit`` (a trunk's ``channel_limit`` limits calls), ``whitelisted_destinations``
(the account's dial policy, ``callbridge outbound policy --allow``), ``max_destination_rate``,
``daily_spend_limit`` / ``daily_spend_limit_enabled`` and ``call_recording`` are 422 rather
than silently ignored: each would promise a protection callbridge does not give. The rest
(``traffic_type``, ``service_plan``, ``usage_payment_method``, ``billing_group_id``, ``tags``,
``calling_window``) is accepted and ignored.

Another account's number or profile is a 404, as a missing one; read-only keys get 403 on
writes.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel

from callbridge.api.context import Ctx, Principal
from callbridge.api.errors import invalid, not_found
from callbridge.api.pagination import PageQuery, slice_page
from callbridge.api.schemas import Data, ListOf, Params, iso
from callbridge.store.accounts import NumberNotFound
from callbridge.store.records import normalize_number
from callbridge.store.trunks import OutboundRouteNotFound, TrunkExists, TrunkNotFound
from callbridge.trunks import NUMBER_TARGETS, NumberRoute, OutboundRoute

__all__ = ["router"]

router = APIRouter(tags=["Numbers and outbound routes"])


# phone numbers ----------------------------------------------------------------------------------
class PhoneNumberOut(BaseModel):
    record_type: Literal["phone_number"] = "phone_number"
    id: str
    phone_number: str
    status: Literal["active"] = "active"
    connection_id: str | None
    connection_name: str | None
    target_kind: str | None
    target_id: str | None
    allow_outbound: bool
    tags: list[str] = []
    created_at: str | None
    updated_at: str | None
    purchased_at: str | None


def _number_out(route: NumberRoute, app_names: dict[str, str]) -> PhoneNumberOut:
    app = route.target_id if route.target_kind == "application" else None
    created = iso(route.created_at)
    return PhoneNumberOut(
        id=route.e164.lstrip("+"),
        phone_number=route.e164,
        connection_id=app,
        connection_name=app_names.get(app) if app else None,
        target_kind=route.target_kind,
        target_id=route.target_id,
        allow_outbound=route.allow_outbound,
        created_at=created,
        updated_at=created,
        purchased_at=created,
    )


async def _app_names(ctx: Ctx, account_id: str) -> dict[str, str]:
    apps, _ = await ctx.store.list_applications(account_id=account_id, page_size=250)
    return {a.id: a.application_name for a in apps}


async def _number(ctx: Ctx, account_id: str, id: str) -> NumberRoute:
    e164 = normalize_number(id)
    route = None if e164 is None else await ctx.store.number_route(e164)
    if route is None or route.account_id != account_id:
        raise not_found(f"no phone number {id!r} in this account", "id")
    return route


@router.get(
    "/phone_numbers", summary="List the account's numbers", response_model=ListOf[PhoneNumberOut]
)
async def list_numbers(
    ctx: Ctx,
    principal: Principal,
    page: PageQuery,
    phone_number: str | None = Query(None, alias="filter[phone_number]"),
    connection_id: str | None = Query(None, alias="filter[connection_id]"),
) -> ListOf[PhoneNumberOut]:
    routes = await ctx.store.list_number_routes(principal.account_id)
    if phone_number:
        wanted = phone_number.lstrip("+")
        routes = [r for r in routes if wanted in r.e164]
    if connection_id:
        routes = [
            r for r in routes if r.target_kind == "application" and r.target_id == connection_id
        ]
    items, page_meta = slice_page(routes, page)
    names = await _app_names(ctx, principal.account_id) if items else {}
    return ListOf[PhoneNumberOut](data=[_number_out(r, names) for r in items], meta=page_meta)


@router.get("/phone_numbers/{id}", summary="Retrieve a number", response_model=Data[PhoneNumberOut])
async def retrieve_number(id: str, ctx: Ctx, principal: Principal) -> Data[PhoneNumberOut]:
    route = await _number(ctx, principal.account_id, id)
    return Data[PhoneNumberOut](
        data=_number_out(route, await _app_names(ctx, principal.account_id))
    )


class NumberParams(Params):
    connection_id: str | None = None
    target_kind: str | None = None
    target_id: str | None = None
    allow_outbound: bool | None = None


@router.patch(
    "/phone_numbers/{id}",
    summary="Route a number's inbound calls",
    response_model=Data[PhoneNumberOut],
)
async def update_number(
    id: str, params: NumberParams, ctx: Ctx, principal: Principal
) -> Data[PhoneNumberOut]:
    account = principal.account_id
    route = await _number(ctx, account, id)
    given = params.model_fields_set
    kind, target = route.target_kind, route.target_id
    if "connection_id" in given and ("target_kind" in given or "target_id" in given):
        raise invalid(
            "give connection_id or target_kind/target_id, not both", pointer="/connection_id"
        )
    if "connection_id" in given:
        if params.connection_id:
            if await ctx.store.find_trunk(params.connection_id, account) is not None:
                raise invalid(
                    f"connection_id {params.connection_id!r} is a trunk: a number routes "
                    "inbound calls to an application, user, conference or queue here",
                    pointer="/connection_id",
                )
            kind, target = "application", params.connection_id
        elif kind == "application":
            kind, target = None, None
    if "target_kind" in given or "target_id" in given:
        kind = params.target_kind if "target_kind" in given else kind
        target = params.target_id if "target_id" in given else target
        if kind is None:
            target = None
        elif kind not in NUMBER_TARGETS:
            raise invalid(
                f"target_kind {kind!r}: use one of {', '.join(NUMBER_TARGETS)}, or null",
                pointer="/target_kind",
            )
        elif not target:
            raise invalid(f"target_id is required with target_kind {kind}", pointer="/target_id")
    if kind is not None and target is not None:
        try:
            await ctx.store.check_number_target(account, kind, target)
        except ValueError as exc:
            pointer = "/connection_id" if "connection_id" in given else "/target_id"
            raise invalid(str(exc), pointer=pointer) from None
    try:
        updated = await ctx.store.route_number(
            route.e164, account, kind, target, params.allow_outbound
        )
    except NumberNotFound:
        raise not_found(f"no phone number {id!r} in this account", "id") from None
    return Data[PhoneNumberOut](data=_number_out(updated, await _app_names(ctx, account)))


@router.delete(
    "/phone_numbers/{id}",
    summary="Release a number: the account no longer owns it",
    response_model=Data[PhoneNumberOut],
)
async def delete_number(id: str, ctx: Ctx, principal: Principal) -> Data[PhoneNumberOut]:
    route = await _number(ctx, principal.account_id, id)
    try:
        await ctx.store.remove_number(route.e164, principal.account_id)
    except NumberNotFound:
        raise not_found(f"no phone number {id!r} in this account", "id") from None
    return Data[PhoneNumberOut](data=_number_out(route, {}))


# outbound voice profiles ------------------------------------------------------------------------
class ProfileOut(BaseModel):
    record_type: Literal["outbound_voice_profile"] = "outbound_voice_profile"
    id: str
    name: str
    enabled: bool = True
    prefix: str
    connection_ids: list[str]
    connections_count: int
    traffic_type: str = "conversational"
    service_plan: str = "global"
    usage_payment_method: str = "rate-deck"
    whitelisted_destinations: list[str] = []
    tags: list[str] = []
    created_at: str | None
    updated_at: str | None


def _profile_out(route: OutboundRoute) -> ProfileOut:
    return ProfileOut(
        id=route.id,
        name=route.name or route.prefix,
        prefix=route.prefix,
        connection_ids=list(route.trunk_ids),
        connections_count=len(route.trunk_ids),
        created_at=iso(route.created_at),
        updated_at=iso(route.created_at),
    )


_PROMISES = (
    "concurrent_call_limit",
    "whitelisted_destinations",
    "max_destination_rate",
    "daily_spend_limit",
    "daily_spend_limit_enabled",
    "call_recording",
)


class ProfileParams(Params):
    name: str | None = None
    enabled: bool | None = None
    prefix: str | None = None
    connection_ids: list[str] | None = None


_WHY = {
    "concurrent_call_limit": "limit calls with the trunks' channel_limit",
    "whitelisted_destinations": "use the account's dial policy "
    "(callbridge outbound policy --allow +1,+44)",
}


def _refuse(params: ProfileParams) -> None:
    """422 for the fields that would promise a protection callbridge does not give."""
    if params.enabled is False:
        raise invalid(
            "enabled: a profile cannot be disabled here; delete it to stop its calls",
            pointer="/enabled",
        )
    extra = params.model_extra or {}
    for name in _PROMISES:
        if extra.get(name) not in (None, False, "", [], {}):
            why = _WHY.get(name, "callbridge does not rate or bill calls")
            raise invalid(f"{name} is not supported by callbridge: {why}", pointer=f"/{name}")


async def _profile(ctx: Ctx, account_id: str, id: str) -> OutboundRoute:
    for route in await ctx.store.list_outbound_routes(account_id):
        if route.id == id:
            return route
    raise not_found(f"no outbound voice profile with id {id!r}", "id")


async def _save(
    ctx: Ctx, account_id: str, prefix: str, trunks: list[str], name: str, route_id: str | None
) -> OutboundRoute:
    try:
        route: OutboundRoute = await ctx.store.set_outbound_route(
            prefix, trunks, account_id, name, route_id=route_id
        )
    except TrunkNotFound as exc:
        raise invalid(
            f"connection_ids: no trunk {exc.key!r} in this account (see GET /v2/uac_connections)",
            pointer="/connection_ids",
        ) from None
    except OutboundRouteNotFound:
        raise not_found(f"no outbound voice profile with id {route_id!r}", "id") from None
    except TrunkExists as exc:
        raise invalid(f"{exc}: update that profile instead", pointer="/prefix") from None
    except ValueError as exc:
        text = str(exc)
        pointer = "/prefix" if "prefix" in text else "/connection_ids"
        raise invalid(text, pointer="/name" if "name" in text else pointer) from None
    return route


@router.get(
    "/outbound_voice_profiles",
    summary="List outbound routes (outbound voice profiles)",
    response_model=ListOf[ProfileOut],
)
async def list_profiles(
    ctx: Ctx,
    principal: Principal,
    page: PageQuery,
    name: str | None = Query(None, alias="filter[name][contains]"),
) -> ListOf[ProfileOut]:
    routes = await ctx.store.list_outbound_routes(principal.account_id)
    if name:
        routes = [r for r in routes if name.lower() in (r.name or r.prefix).lower()]
    items, page_meta = slice_page(routes, page)
    return ListOf[ProfileOut](data=[_profile_out(r) for r in items], meta=page_meta)


@router.post(
    "/outbound_voice_profiles",
    summary="Create an outbound route",
    response_model=Data[ProfileOut],
)
async def create_profile(params: ProfileParams, ctx: Ctx, principal: Principal) -> Data[ProfileOut]:
    _refuse(params)
    if not params.connection_ids:
        raise invalid(
            "connection_ids is required: the trunks' ids (GET /v2/uac_connections), in "
            "failover order",
            pointer="/connection_ids",
        )
    route = await _save(
        ctx,
        principal.account_id,
        params.prefix or "+",
        params.connection_ids,
        params.name or "",
        None,
    )
    return Data[ProfileOut](data=_profile_out(route))


@router.get(
    "/outbound_voice_profiles/{id}",
    summary="Retrieve an outbound route",
    response_model=Data[ProfileOut],
)
async def retrieve_profile(id: str, ctx: Ctx, principal: Principal) -> Data[ProfileOut]:
    return Data[ProfileOut](data=_profile_out(await _profile(ctx, principal.account_id, id)))


@router.patch(
    "/outbound_voice_profiles/{id}",
    summary="Update an outbound route",
    response_model=Data[ProfileOut],
)
async def update_profile(
    id: str, params: ProfileParams, ctx: Ctx, principal: Principal
) -> Data[ProfileOut]:
    _refuse(params)
    current = await _profile(ctx, principal.account_id, id)
    given: dict[str, Any] = {k: getattr(params, k) for k in params.model_fields_set}
    trunks = given.get("connection_ids")
    route = await _save(
        ctx,
        principal.account_id,
        given.get("prefix") or current.prefix,
        list(trunks) if trunks else list(current.trunk_ids),
        given["name"] if given.get("name") is not None else current.name,
        current.id,
    )
    return Data[ProfileOut](data=_profile_out(route))


@router.delete(
    "/outbound_voice_profiles/{id}",
    summary="Delete an outbound route",
    response_model=Data[ProfileOut],
)
async def delete_profile(id: str, ctx: Ctx, principal: Principal) -> Data[ProfileOut]:
    current = await _profile(ctx, principal.account_id, id)
    try:
        await ctx.store.remove_outbound_route(current.id, principal.account_id)
    except OutboundRouteNotFound:
        raise not_found(f"no outbound voice profile with id {id!r}", "id") from None
    return Data[ProfileOut](data=_profile_out(current))
