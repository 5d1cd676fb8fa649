"""``/v2/call_control_applications``: where an application's webhooks go; and callbridge's
``/v2/routes`` (which destinations ring an application) and ``/v2/public_key``.

An application is the store's record (``callbridge.store.applications``); each field is
validated here with the store's own rules so that a 422 can point at the field. Telnyx fields
that mean nothing on callbridge (anchorsite, DTMF type, tags, inbound/outbound settings) are
accepted and ignored. ``signing_secret`` (a Standard Webhooks ``whsec_…`` secret; callbridge's
addition) adds a ``v1`` HMAC to every delivery's ``webhook-signature``; it is write-only.

Applications and routes belong to the API key's account: another account's are not found (404,
as a missing one), and a route may only send calls to an application of the same account.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from callbridge.api.context import Ctx, Principal
from callbridge.api.errors import invalid, not_found
from callbridge.api.pagination import PageQuery, meta
from callbridge.api.schemas import Data, ListOf, Params, iso
from callbridge.store import Application, ApplicationChanges, Route
from callbridge.store.records import (
    validate_application_name,
    validate_destination,
    validate_signing_secret,
    validate_webhook_timeout,
    validate_webhook_url,
)

__all__ = ["router"]

router = APIRouter(tags=["Call Control Applications"])


class ApplicationOut(BaseModel):
    record_type: Literal["call_control_application"] = "call_control_application"
    id: str
    application_name: str
    active: bool
    webhook_event_url: str
    webhook_event_failover_url: str | None
    webhook_api_version: Literal["2"] = "2"
    webhook_timeout_secs: int | None
    dtmf_type: Literal["RFC 2833"] = "RFC 2833"
    has_signing_secret: bool = Field(
        description="callbridge: deliveries carry a v1 HMAC made with the application's secret"
    )
    created_at: str
    updated_at: str


def application_out(app: Application) -> ApplicationOut:
    return ApplicationOut(
        id=app.id,
        application_name=app.application_name,
        active=app.active,
        webhook_event_url=app.webhook_event_url,
        webhook_event_failover_url=app.webhook_event_failover_url,
        webhook_timeout_secs=app.webhook_timeout_secs,
        has_signing_secret=app.signing_secret is not None,
        created_at=iso(app.created_at) or "",
        updated_at=iso(app.updated_at) or "",
    )


class ApplicationParams(Params):
    application_name: str | None = None
    webhook_event_url: str | None = None
    webhook_event_failover_url: str | None = None
    webhook_api_version: str | None = None
    webhook_timeout_secs: int | None = None
    active: bool | None = None
    signing_secret: str | None = Field(
        None, description="callbridge: a Standard Webhooks secret ('whsec_' + base64 key)"
    )


def _checked(name: str, value: Any, check: Callable[[Any], Any]) -> Any:
    try:
        return check(value)
    except ValueError as exc:
        raise invalid(str(exc), pointer=f"/{name}") from None


def _api_version(version: str) -> str:
    if version != "2":
        raise ValueError(
            f"webhook_api_version {version!r}: callbridge sends API v2 webhooks only (use '2')"
        )
    return version


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "application_name": validate_application_name,
    "webhook_event_url": validate_webhook_url,
    "webhook_event_failover_url": lambda url: validate_webhook_url(url, "webhook failover URL"),
    "webhook_api_version": _api_version,
    "webhook_timeout_secs": validate_webhook_timeout,
    "signing_secret": validate_signing_secret,
}


def _changes(params: ApplicationParams) -> ApplicationChanges:
    """The fields the request set, each validated (a 422 points at the first bad one)."""
    changes: dict[str, Any] = {}
    for name in params.model_fields_set & set(ApplicationChanges.__annotations__):
        value = getattr(params, name)
        if value is None and name in (
            "application_name",
            "webhook_event_url",
            "webhook_api_version",
            "active",
        ):
            raise invalid(f"{name} cannot be null", pointer=f"/{name}")
        check = _CHECKS.get(name)
        changes[name] = _checked(name, value, check) if check and value is not None else value
    return cast(ApplicationChanges, changes)


@router.post(
    "/call_control_applications",
    summary="Create a call control application",
    response_model=Data[ApplicationOut],
)
async def create_application(
    params: ApplicationParams, ctx: Ctx, principal: Principal
) -> Data[ApplicationOut]:
    for name in ("application_name", "webhook_event_url"):
        if getattr(params, name) is None:
            raise invalid(f"{name} is required", pointer=f"/{name}")
    changes = _changes(params)
    app = await ctx.store.create_application(**changes, account_id=principal.account_id)
    return Data[ApplicationOut](data=application_out(app))


@router.get(
    "/call_control_applications",
    summary="List call control applications",
    response_model=ListOf[ApplicationOut],
)
async def list_applications(
    ctx: Ctx,
    principal: Principal,
    page: PageQuery,
    name_contains: Annotated[
        str | None,
        Query(
            alias="filter[application_name][contains]",
            description="Applications whose name contains this (case-insensitive).",
        ),
    ] = None,
    sort: Annotated[
        str,
        Query(
            description="created_at, application_name (or connection_name), active; "
            "'-' first for descending order"
        ),
    ] = "created_at",
) -> ListOf[ApplicationOut]:
    descending = sort.startswith("-")
    field = sort.removeprefix("-")
    if field == "connection_name":  # Telnyx's name for it
        field = "application_name"
    if field not in ("created_at", "application_name", "active"):
        raise invalid(
            f"sort {sort!r}: use created_at, application_name (connection_name) or active, "
            "with a leading '-' for descending order",
            parameter="sort",
        )
    apps, total = await ctx.store.list_applications(
        page.number,
        page.size,
        name_contains=name_contains,
        sort=("-" if descending else "") + field,
        account_id=principal.account_id,
    )
    return ListOf[ApplicationOut](data=[application_out(a) for a in apps], meta=meta(page, total))


async def _application(ctx: Ctx, principal: Principal, application_id: str) -> Application:
    app = await ctx.store.get_application(application_id, principal.account_id)
    if app is None:
        raise not_found(f"no call control application with id {application_id!r}", "id")
    return app


@router.get(
    "/call_control_applications/{id}",
    summary="Retrieve a call control application",
    response_model=Data[ApplicationOut],
)
async def retrieve_application(id: str, ctx: Ctx, principal: Principal) -> Data[ApplicationOut]:
    return Data[ApplicationOut](data=application_out(await _application(ctx, principal, id)))


@router.patch(
    "/call_control_applications/{id}",
    summary="Update a call control application",
    response_model=Data[ApplicationOut],
)
async def update_application(
    id: str, params: ApplicationParams, ctx: Ctx, principal: Principal
) -> Data[ApplicationOut]:
    await _application(ctx, principal, id)
    app = await ctx.store.update_application(
        id, account_id=principal.account_id, **_changes(params)
    )
    return Data[ApplicationOut](data=application_out(app))


@router.delete(
    "/call_control_applications/{id}",
    summary="Delete a call control application (and its routes)",
    response_model=Data[ApplicationOut],
)
async def delete_application(id: str, ctx: Ctx, principal: Principal) -> Data[ApplicationOut]:
    await _application(ctx, principal, id)
    app = await ctx.store.delete_application(id, principal.account_id)
    return Data[ApplicationOut](data=application_out(app))


# routes (callbridge) ------------------------------------------------------------------------
class RouteOut(BaseModel):
    record_type: Literal["route"] = "route"
    destination: str
    application_id: str
    created_at: str


def _route_out(route: Route) -> RouteOut:
    return RouteOut(
        destination=route.destination,
        application_id=route.application_id,
        created_at=iso(route.created_at) or "",
    )


class RouteParams(Params):
    destination: str = Field(description="An extension (2 to 8 digits) or an E.164 number.")
    application_id: str = Field(description="The call control application that takes the calls.")


@router.post(
    "/routes",
    tags=["Routes (callbridge)"],
    summary="Send calls to a destination to an application (replaces an existing route)",
    response_model=Data[RouteOut],
)
async def set_route(params: RouteParams, ctx: Ctx, principal: Principal) -> Data[RouteOut]:
    destination = _checked("destination", params.destination, validate_destination)
    if await ctx.store.get_application(params.application_id, principal.account_id) is None:
        raise invalid(
            f"no call control application with id {params.application_id!r}",
            pointer="/application_id",
        )
    try:
        route = await ctx.store.set_route(destination, params.application_id, principal.account_id)
    except LookupError:  # deleted meanwhile
        raise invalid(
            f"no call control application with id {params.application_id!r}",
            pointer="/application_id",
        ) from None
    return Data[RouteOut](data=_route_out(route))


@router.get(
    "/routes",
    tags=["Routes (callbridge)"],
    summary="List routes",
    response_model=ListOf[RouteOut],
)
async def list_routes(
    ctx: Ctx,
    principal: Principal,
    page: PageQuery,
    application_id: Annotated[str | None, Query(alias="filter[application_id]")] = None,
) -> ListOf[RouteOut]:
    routes = await ctx.store.list_routes(application_id, principal.account_id)
    start = (page.number - 1) * page.size
    return ListOf[RouteOut](
        data=[_route_out(r) for r in routes[start : start + page.size]],
        meta=meta(page, len(routes)),
    )


@router.delete(
    "/routes/{destination}",
    tags=["Routes (callbridge)"],
    summary="Remove the route of a destination",
    response_model=Data[RouteOut],
)
async def delete_route(destination: str, ctx: Ctx, principal: Principal) -> Data[RouteOut]:
    try:
        route = await ctx.store.delete_route(destination, principal.account_id)
    except LookupError:
        raise not_found(f"no route for destination {destination!r}", "destination") from None
    return Data[RouteOut](data=_route_out(route))


# the webhook signing key ----------------------------------------------------------------------
class PublicKeyOut(BaseModel):
    record_type: Literal["public_key"] = "public_key"
    public_key: str = Field(
        description="base64 of the raw 32-byte ed25519 key: pass it to "
        "client.webhooks.unwrap(..., key=...) or Telnyx(public_key=...)"
    )


@router.get(
    "/public_key",
    tags=["Webhooks (callbridge)"],
    summary="The key webhook signatures verify with",
    response_model=Data[PublicKeyOut],
)
async def public_key(ctx: Ctx) -> Data[PublicKeyOut]:
    return Data[PublicKeyOut](data=PublicKeyOut(public_key=ctx.public_key))
