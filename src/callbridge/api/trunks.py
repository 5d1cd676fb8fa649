"""``/v2/uac_connections``: SIP trunks, shaped as Telnyx's UAC connections (issue 12).

A Telnyx UAC connection is Telnyx acting as a user agent client towards an external SIP peer:
registering to it and sending it calls; that is what a callbridge trunk is. The mapping (also in
docs/api.md):

- ``id``; ``connection_name`` (the trunk's name, unique in the account); ``record_type``
  ``"uac_connection"``; ``active`` (always true: ``false`` is a 422, delete the trunk instead);
  ``created_at``, ``updated_at``;
- ``external_uac_settings``: ``proxy`` the carrier's ``host[:port]`` (required on create),
  ``transport`` ``UDP``/``TCP``/``TLS``, ``outbound_proxy``, ``username``, ``auth_username``,
  ``password`` (write-only: answered as null), ``expiration_sec`` (the REGISTER expiry);
  ``from_user`` and ``user_agent`` are 422 (the From user is the caller ID, see
  ``docs/security.md``);
- ``registration_status`` (``Not Applicable`` when the trunk does not register, ``Not
  Registered``, ``Registered``, ``Failed``) and ``registration_status_updated_at``: what the
  server's registration client last wrote;
- ``inbound.codecs`` (Telnyx names: ``G711U``, ``G711A``, ``G722``, ``OPUS``) and
  ``inbound.channel_limit`` / ``outbound.channel_limit`` (both the trunk's ``max_calls``; two
  different values are a 422);
- callbridge's own fields: ``register`` (bool), ``inbound_ip_acl`` (CIDRs),
  ``inbound_user_name`` and write-only ``inbound_password``, ``calls_per_minute``,
  ``options_interval_secs``, ``send_pai``, ``privacy`` (``none``/``id``), ``health``
  (``unknown``/``up``/``down``);
- every other Telnyx field (webhooks, anchorsite, jitter buffer, noise suppression, tags, …) is
  accepted and ignored; ``outbound.outbound_voice_profile_id`` is a 422 (routes name their
  trunks: ``/v2/outbound_voice_profiles``).

``GET /v2/sip_registration_status?credential_type=uac_external_credential&connection_id=ID``
and ``POST /v2/uac_connections/{id}/actions/check_registration_status`` read the same state.
Another account's trunk is a 404, as a missing one; read-only keys get 403 on writes
(``api.context``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from callbridge.api.context import Ctx, Principal
from callbridge.api.errors import invalid, not_found
from callbridge.api.pagination import PageQuery, slice_page
from callbridge.api.schemas import Data, ListOf, Params, iso
from callbridge.store.trunks import TrunkExists, TrunkNotFound
from callbridge.trunks import DEFAULT_PORTS, Trunk

__all__ = ["TELNYX_CODECS", "router"]

router = APIRouter(tags=["Trunks (UAC connections)"])

TELNYX_CODECS = {"G711U": "PCMU", "G711A": "PCMA", "G722": "G722", "OPUS": "opus"}
_CODEC_NAMES = {ours: theirs for theirs, ours in TELNYX_CODECS.items()}
_STATUS = {
    "off": "Not Applicable",
    "registering": "Not Registered",
    "registered": "Registered",
    "failed": "Failed",
}
_LIVE_STATUS = {"off": "standby", "registering": "trying", "registered": "registered"}


class ExternalSettings(BaseModel):
    proxy: str | None = Field(None, description="The carrier's host[:port]")
    transport: Literal["UDP", "TCP", "TLS"] | None = None
    outbound_proxy: str | None = None
    username: str | None = None
    auth_username: str | None = None
    password: None = Field(None, description="Write-only: never returned")
    expiration_sec: int | None = None


class ChannelSettings(BaseModel):
    channel_limit: int | None = None
    codecs: list[str] | None = None


class TrunkOut(BaseModel):
    record_type: Literal["uac_connection"] = "uac_connection"
    id: str
    connection_name: str
    active: bool = True
    external_uac_settings: ExternalSettings
    inbound: ChannelSettings
    outbound: ChannelSettings
    registration_status: str
    registration_status_updated_at: str | None
    register_: bool = Field(alias="register")  # "register" would shadow BaseModel's
    inbound_ip_acl: list[str]
    inbound_user_name: str | None
    inbound_password: None = Field(None, description="Write-only: never returned")
    calls_per_minute: int | None
    options_interval_secs: int
    send_pai: bool
    privacy: str
    health: str
    created_at: str
    updated_at: str


def _hostport(trunk: Trunk) -> str:
    host = f"[{trunk.host}]" if ":" in trunk.host else trunk.host
    return host if trunk.port == DEFAULT_PORTS[trunk.transport] else f"{host}:{trunk.port}"


def trunk_out(trunk: Trunk) -> TrunkOut:
    return TrunkOut(
        id=trunk.id,
        connection_name=trunk.name,
        external_uac_settings=ExternalSettings(
            proxy=_hostport(trunk),
            transport=trunk.transport.upper(),  # type: ignore[arg-type]
            outbound_proxy=trunk.outbound_proxy,
            username=trunk.username,
            auth_username=trunk.auth_username,
            password=None,
            expiration_sec=trunk.register_expires,
        ),
        inbound=ChannelSettings(
            channel_limit=trunk.max_calls,
            codecs=[_CODEC_NAMES.get(c, c.upper()) for c in trunk.codecs],
        ),
        outbound=ChannelSettings(channel_limit=trunk.max_calls),
        registration_status=_STATUS.get(trunk.registration_state, "Not Registered"),
        registration_status_updated_at=iso(trunk.registration_updated_at),
        register=trunk.register,  # the alias
        inbound_ip_acl=list(trunk.inbound_acl),
        inbound_user_name=trunk.inbound_username,
        inbound_password=None,
        calls_per_minute=trunk.calls_per_minute,
        options_interval_secs=trunk.options_interval,
        send_pai=trunk.send_pai,
        privacy=trunk.privacy,
        health=trunk.health,
        created_at=iso(trunk.created_at) or "",
        updated_at=iso(trunk.updated_at) or "",
    )


class ExternalIn(BaseModel):
    model_config = {"extra": "allow"}

    proxy: str | None = None
    transport: str | None = None
    outbound_proxy: str | None = None
    username: str | None = None
    auth_username: str | None = None
    password: str | None = None
    expiration_sec: int | None = None
    from_user: str | None = None
    user_agent: str | None = None


class ChannelIn(BaseModel):
    model_config = {"extra": "allow"}

    channel_limit: int | None = None
    codecs: list[str] | None = None
    outbound_voice_profile_id: str | None = None


class TrunkParams(Params):
    connection_name: str | None = None
    active: bool | None = None
    external_uac_settings: ExternalIn | None = None
    inbound: ChannelIn | None = None
    outbound: ChannelIn | None = None
    register_: bool | None = Field(None, alias="register")
    inbound_ip_acl: list[str] | None = None
    inbound_user_name: str | None = None
    inbound_password: str | None = None
    calls_per_minute: int | None = None
    options_interval_secs: int | None = None
    send_pai: bool | None = None
    privacy: str | None = None


def _split_hostport(text: str) -> tuple[str, int | None]:
    value = text.strip()
    if value.lower().startswith("sip:"):
        value = value[4:]
    if value.startswith("["):  # [v6]:port
        host, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        host, _, port = value.partition(":")
    else:
        host, port = value, ""
    if port and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise invalid(
            f"external_uac_settings.proxy {text!r}: the port must be 1 to 65535",
            pointer="/external_uac_settings/proxy",
        )
    return host, int(port) if port else None


def _values(params: TrunkParams) -> dict[str, Any]:
    """The store's trunk fields a create or update body sets; 422 for what cannot apply."""
    given = params.model_fields_set
    values: dict[str, Any] = {}
    if params.active is False:
        raise invalid(
            "active: a trunk cannot be disabled here; delete it, or remove it from the "
            "outbound voice profiles to stop calls going out through it",
            pointer="/active",
        )
    if params.connection_name is not None:
        values["name"] = params.connection_name
    ext = params.external_uac_settings
    if ext is not None:
        for name in ("from_user", "user_agent"):
            if getattr(ext, name):
                raise invalid(
                    f"external_uac_settings.{name} is not supported by callbridge: the From "
                    "user is the call's caller ID; leave it out",
                    pointer=f"/external_uac_settings/{name}",
                )
        ext_given = ext.model_fields_set
        if ext.proxy is not None:
            values["host"], port = _split_hostport(ext.proxy)
            if port is not None:
                values["port"] = port
        if ext.transport is not None:
            values["transport"] = ext.transport.lower()
        for ours, theirs in (
            ("outbound_proxy", "outbound_proxy"),
            ("username", "username"),
            ("auth_username", "auth_username"),
            ("password", "password"),
        ):
            if theirs in ext_given:
                values[ours] = getattr(ext, theirs)
        if ext.expiration_sec is not None:
            values["register_expires"] = ext.expiration_sec
    limits = {
        side: channel.channel_limit
        for side, channel in (("inbound", params.inbound), ("outbound", params.outbound))
        if channel is not None and "channel_limit" in channel.model_fields_set
    }
    if len(set(limits.values())) > 1:
        raise invalid(
            "inbound.channel_limit and outbound.channel_limit differ: a trunk has one limit "
            "(max_calls) for both directions; give the same value or only one",
            pointer="/outbound/channel_limit",
        )
    if limits:
        values["max_calls"] = next(iter(limits.values()))
    if params.outbound is not None and params.outbound.outbound_voice_profile_id:
        raise invalid(
            "outbound.outbound_voice_profile_id is not supported: an outbound voice profile "
            "names its trunks (connection_ids); leave it out",
            pointer="/outbound/outbound_voice_profile_id",
        )
    if params.inbound is not None and params.inbound.codecs is not None:
        codecs: list[str] = []
        for codec in params.inbound.codecs:
            known = TELNYX_CODECS.get(codec.upper())
            if known is None:
                raise invalid(
                    f"inbound.codecs: {codec!r} is not supported; use some of "
                    f"{', '.join(TELNYX_CODECS)}",
                    pointer="/inbound/codecs",
                )
            codecs.append(known)
        values["codecs"] = codecs
    simple = {
        "register_": "register",
        "inbound_ip_acl": "inbound_acl",
        "inbound_user_name": "inbound_username",
        "inbound_password": "inbound_password",
        "calls_per_minute": "calls_per_minute",
        "options_interval_secs": "options_interval",
        "send_pai": "send_pai",
        "privacy": "privacy",
    }
    for theirs, ours in simple.items():
        if theirs in given and (getattr(params, theirs) is not None or ours in _NULLABLE):
            values[ours] = getattr(params, theirs)
    return values


_NULLABLE = frozenset({"inbound_username", "inbound_password", "calls_per_minute"})

# Which body field a store ValueError is about: its message starts "invalid <field>" (or so).
_POINTERS = (
    ("invalid trunk name", "/connection_name"),
    ("invalid host", "/external_uac_settings/proxy"),
    ("invalid port", "/external_uac_settings/proxy"),
    ("invalid outbound_proxy", "/external_uac_settings/outbound_proxy"),
    ("invalid transport", "/external_uac_settings/transport"),
    ("invalid register_expires", "/external_uac_settings/expiration_sec"),
    ("a trunk that registers", "/external_uac_settings/username"),
    ("invalid username", "/external_uac_settings/username"),
    ("invalid auth_username", "/external_uac_settings/auth_username"),
    ("invalid password", "/external_uac_settings/password"),
    ("invalid inbound_username", "/inbound_user_name"),
    ("invalid inbound_password", "/inbound_password"),
    ("invalid inbound acl", "/inbound_ip_acl"),
    ("unknown codec", "/inbound/codecs"),
    ("no codecs", "/inbound/codecs"),
    ("invalid options_interval", "/options_interval_secs"),
    ("invalid max_calls", "/outbound/channel_limit"),
    ("invalid calls_per_minute", "/calls_per_minute"),
    ("invalid privacy", "/privacy"),
    ("invalid register", "/register"),
    ("invalid send_pai", "/send_pai"),
)


def _refused(exc: ValueError) -> Exception:
    text = str(exc)
    lowered = text.lower()
    pointer = next((p for start, p in _POINTERS if lowered.startswith(start)), None)
    return invalid(text, pointer=pointer)


async def _trunk(ctx: Ctx, account_id: str, id: str) -> Trunk:
    trunk = await ctx.store.find_trunk(id)
    if trunk is None or trunk.account_id != account_id:
        raise not_found(f"no uac_connection (trunk) with id {id!r}", "id")
    return trunk


@router.get(
    "/uac_connections", summary="List trunks (UAC connections)", response_model=ListOf[TrunkOut]
)
async def list_trunks(
    ctx: Ctx,
    principal: Principal,
    page: PageQuery,
    name: str | None = Query(None, alias="filter[connection_name][contains]"),
    sort: str = Query("-created_at"),
) -> ListOf[TrunkOut]:
    trunks = await ctx.store.list_trunks(principal.account_id)
    if name:
        trunks = [t for t in trunks if name.lower() in t.name.lower()]
    key = sort.lstrip("-")
    if key not in ("created_at", "connection_name", "active"):
        raise invalid(
            f"sort {sort!r}: use created_at, connection_name or active (- for descending)",
            parameter="sort",
        )
    trunks.sort(
        key=lambda t: t.name if key == "connection_name" else (t.created_at or datetime.min, t.id),
        reverse=sort.startswith("-"),
    )
    items, page_meta = slice_page(trunks, page)
    return ListOf[TrunkOut](data=[trunk_out(t) for t in items], meta=page_meta)


@router.post("/uac_connections", summary="Create a trunk", response_model=Data[TrunkOut])
async def create_trunk(params: TrunkParams, ctx: Ctx, principal: Principal) -> Data[TrunkOut]:
    if not params.connection_name:
        raise invalid("connection_name is required: name the trunk", pointer="/connection_name")
    values = _values(params)
    if "host" not in values:
        raise invalid(
            "external_uac_settings.proxy is required: the carrier's host[:port], e.g. "
            "sip.telnyx.com",
            pointer="/external_uac_settings/proxy",
        )
    try:
        trunk = await ctx.store.add_trunk(principal.account_id, **values)
    except TrunkExists as exc:
        raise invalid(str(exc), pointer="/connection_name") from None
    except ValueError as exc:
        raise _refused(exc) from None
    return Data[TrunkOut](data=trunk_out(trunk))


@router.get("/uac_connections/{id}", summary="Retrieve a trunk", response_model=Data[TrunkOut])
async def retrieve_trunk(id: str, ctx: Ctx, principal: Principal) -> Data[TrunkOut]:
    return Data[TrunkOut](data=trunk_out(await _trunk(ctx, principal.account_id, id)))


@router.patch("/uac_connections/{id}", summary="Update a trunk", response_model=Data[TrunkOut])
async def update_trunk(
    id: str, params: TrunkParams, ctx: Ctx, principal: Principal
) -> Data[TrunkOut]:
    current = await _trunk(ctx, principal.account_id, id)
    values = _values(params)
    try:
        trunk = await ctx.store.update_trunk(current.id, principal.account_id, **values)
    except TrunkNotFound:
        raise not_found(f"no uac_connection (trunk) with id {id!r}", "id") from None
    except TrunkExists as exc:
        raise invalid(str(exc), pointer="/connection_name") from None
    except ValueError as exc:
        raise _refused(exc) from None
    return Data[TrunkOut](data=trunk_out(trunk))


@router.delete(
    "/uac_connections/{id}",
    summary="Delete a trunk (and drop it from the outbound voice profiles)",
    response_model=Data[TrunkOut],
)
async def delete_trunk(id: str, ctx: Ctx, principal: Principal) -> Data[TrunkOut]:
    current = await _trunk(ctx, principal.account_id, id)
    try:
        await ctx.store.remove_trunk(current.id, principal.account_id)
    except TrunkNotFound:
        raise not_found(f"no uac_connection (trunk) with id {id!r}", "id") from None
    return Data[TrunkOut](data=trunk_out(current))


class RegistrationCheck(BaseModel):
    record_type: Literal["registration_status"] = "registration_status"
    status: str
    sip_username: str | None
    ip_address: str | None
    port: int | None
    transport: str | None
    last_registration: str | None
    user_agent: str | None = None


@router.post(
    "/uac_connections/{id}/actions/check_registration_status",
    summary="A trunk's registration state, as the server last saw it",
    response_model=Data[RegistrationCheck],
)
async def check_registration_status(
    id: str, ctx: Ctx, principal: Principal
) -> Data[RegistrationCheck]:
    trunk = await _trunk(ctx, principal.account_id, id)
    return Data[RegistrationCheck](
        data=RegistrationCheck(
            status=_STATUS.get(trunk.registration_state, "Not Registered"),
            sip_username=trunk.username,
            ip_address=trunk.host,
            port=trunk.port,
            transport=trunk.transport.upper(),
            last_registration=iso(trunk.registration_updated_at),
        )
    )


class RegistrationDetails(BaseModel):
    expires: int | None
    transport: str
    sip_uri_user_host: str | None


class RegistrationStatus(BaseModel):
    connection_id: str
    connection_name: str
    credential_type: Literal["uac_external_credential"] = "uac_external_credential"
    credential_username: str | None
    registered: bool
    last_registration_response: str | None
    sip_registration_status: str
    sip_registration_details: RegistrationDetails


@router.get(
    "/sip_registration_status",
    summary="A trunk's live registration to its carrier",
    response_model=RegistrationStatus,
)
async def sip_registration_status(
    ctx: Ctx,
    principal: Principal,
    credential_type: str = Query(...),
    connection_id: str | None = Query(None),
    username: str | None = Query(None),
) -> RegistrationStatus:
    if credential_type != "uac_external_credential":
        raise invalid(
            f"credential_type {credential_type!r}: callbridge reports the registration of its "
            "trunks (uac_external_credential, by connection_id); a user's SIP phones are listed "
            "by 'callbridge registrations'",
            parameter="credential_type",
        )
    if not connection_id:
        raise invalid(
            "connection_id is required with credential_type uac_external_credential: the "
            "trunk's id",
            parameter="connection_id",
        )
    trunk = await _trunk(ctx, principal.account_id, connection_id)
    state = trunk.registration_state
    user_host = f"{trunk.username}@{trunk.host}" if trunk.username else None
    # Telnyx answers this object bare (no "data" wrapper): the SDK's model is the object.
    return RegistrationStatus(
        connection_id=trunk.id,
        connection_name=trunk.name,
        credential_username=trunk.digest_username,
        registered=state == "registered",
        last_registration_response=trunk.registration_detail or None,
        sip_registration_status=_LIVE_STATUS.get(state, "failed"),
        sip_registration_details=RegistrationDetails(
            expires=trunk.register_expires if trunk.register else None,
            transport=trunk.transport.upper(),
            sip_uri_user_host=user_host,
        ),
    )
