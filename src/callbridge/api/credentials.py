"""``/v2/telephony_credentials``: callbridge users as Telnyx telephony credentials, and the
login tokens a backend mints for its browser (issue 14).

A Telnyx telephony credential is what a WebRTC or SIP client signs in with; in callbridge that
is a user. The mapping (also in docs/api.md):

- ``id``: the user's id (a decimal string); ``name`` and ``sip_username``: the login name
  (also the SIP digest username); ``user_id``: the owning account; ``tag``, ``expires_at``
  and ``expired`` as Telnyx's (after ``expires_at`` the user cannot sign in);
  ``resource_id`` is null (callbridge has no credential connections; a ``connection_id`` given
  on create is accepted and not used).
- callbridge's own fields: ``extension`` (required on create), ``number``, ``display_name``;
  ``sip_password`` is write-only (8-128 characters; never returned, ``sip_password_set`` says
  whether there is one).

``POST /v2/telephony_credentials/{id}/token`` answers the token as ``text/plain``, as Telnyx
does and as the SDK's ``create_token`` expects (``cast_to=str``); ``{"ttl_seconds": N}`` in the
body sets its lifetime (default :data:`DEFAULT_TOKEN_TTL`, at most :data:`MAX_TOKEN_TTL`).
``POST .../token/revoke`` revokes one token (``{"token": ...}``) or, without one, all of the
user's tokens, and ends the sessions signed in with what it revoked on this server (one
token: the sessions that signed in, resumed or refreshed with it; all: every session of the
user). ``DELETE`` of a credential removes the user, and ends their sessions too
(:mod:`callbridge.api.revocation`).

Every lookup is within the key's account: another account's user is a 404, as a missing one.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import IntegrityError

from callbridge.api.context import Ctx, Principal
from callbridge.api.errors import invalid, not_found
from callbridge.api.pagination import PageQuery, meta
from callbridge.api.revocation import end_sessions
from callbridge.api.schemas import Data, ListOf, Params, iso
from callbridge.signalling.sessions import token_digest
from callbridge.store import Store, UserExists, UserNotFound
from callbridge.store.identities import UNSET, Credential
from callbridge.store.sip import validate_sip_password

__all__ = ["DEFAULT_TOKEN_TTL", "MAX_TOKEN_TTL", "router"]

router = APIRouter(tags=["Telephony credentials"])

DEFAULT_TOKEN_TTL = timedelta(hours=24)
MAX_TOKEN_TTL = timedelta(days=30)
_MAX_TAG = 255


class CredentialOut(BaseModel):
    record_type: Literal["credential"] = "credential"
    id: str
    name: str = Field(description="The login name (session.login's user)")
    sip_username: str = Field(description="The SIP digest username: the login name")
    sip_password: None = Field(None, description="Write-only: never returned")
    sip_password_set: bool
    user_id: str = Field(description="The account the user belongs to")
    resource_id: str | None = None
    tag: str | None
    extension: str
    number: str | None
    display_name: str | None
    expired: bool
    expires_at: str | None
    created_at: str
    updated_at: str


def _out(c: Credential) -> CredentialOut:
    return CredentialOut(
        id=str(c.user.id),
        name=c.user.name,
        sip_username=c.user.name,
        sip_password=None,
        sip_password_set=c.sip_password_set,
        user_id=c.user.account_id,
        tag=c.tag,
        extension=c.user.extension,
        number=c.user.number,
        display_name=c.user.display_name,
        expired=c.expired,
        expires_at=iso(c.expires_at),
        created_at=iso(c.created_at) or "",
        updated_at=iso(c.updated_at) or "",
    )


def _user_id(id: str) -> int:
    # Ids are decimal; anything else cannot name a credential (404 rather than 422: the same
    # answer as for an id that does not exist).
    if not id.isdigit() or len(id) > 18:
        raise not_found(f"no telephony credential with id {id!r}", "id")
    return int(id)


async def _credential(ctx: Ctx, account_id: str, id: str) -> Credential:
    try:
        return await ctx.store.get_credential(account_id, _user_id(id))
    except UserNotFound:
        raise not_found(f"no telephony credential with id {id!r}", "id") from None


def _expires_at(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise invalid(
            "expires_at needs a time zone, e.g. 2027-01-31T12:00:00Z", pointer="/expires_at"
        )
    return value


def _tag(value: str | None) -> str | None:
    if value is not None and (len(value) > _MAX_TAG or not value.isprintable()):
        raise invalid(f"tag must be up to {_MAX_TAG} printable characters", pointer="/tag")
    return value or None


def _sip_password(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return validate_sip_password(value)
    except ValueError as exc:
        raise invalid(str(exc), pointer="/sip_password") from None


def _realm(request: Request) -> str:
    """The server's SIP domain, the digest realm the password is hashed in (``cli_sip``)."""
    config = request.app.state.runtime.config
    realm: str = config.sip_domain or config.host
    return realm


def _conflict(exc: UserExists) -> Exception:
    field = exc.fields[0] if exc.fields else "name"
    return invalid(f"{exc}: choose another {field}", pointer=f"/{field}")


# list, create, retrieve, update, delete ---------------------------------------------------------
@router.get(
    "/telephony_credentials",
    summary="List telephony credentials (the account's users)",
    response_model=ListOf[CredentialOut],
)
async def list_credentials(
    ctx: Ctx,
    principal: Principal,
    page: PageQuery,
    name: str | None = Query(None, alias="filter[name]"),
    tag: str | None = Query(None, alias="filter[tag]"),
    sip_username: str | None = Query(None, alias="filter[sip_username]"),
    status: Literal["active", "expired"] | None = Query(None, alias="filter[status]"),
) -> ListOf[CredentialOut]:
    if name is not None and sip_username is not None and name != sip_username:
        return ListOf[CredentialOut](data=[], meta=meta(page, 0))  # both name the login name
    items, total = await ctx.store.list_credentials(
        principal.account_id,
        page.number,
        page.size,
        name=name if name is not None else sip_username,
        tag=tag,
        expired=None if status is None else status == "expired",
    )
    return ListOf[CredentialOut](data=[_out(c) for c in items], meta=meta(page, total))


class CreateParams(Params):
    name: str = Field(description="The login name: 1-64 letters, digits, '.', '_' or '-'")
    extension: str = Field(description="2-8 digits, dialled to reach the user")
    number: str | None = Field(None, description="E.164, e.g. +14155550100")
    display_name: str | None = Field(None, max_length=128)
    sip_password: str | None = Field(None, description="Write-only; 8-128 characters")
    tag: str | None = None
    expires_at: datetime | None = Field(None, description="After it the user cannot sign in")
    connection_id: str | None = Field(None, description="Accepted for Telnyx; not used")


@router.post(
    "/telephony_credentials",
    summary="Create a telephony credential (a user)",
    response_model=Data[CredentialOut],
)
async def create_credential(
    params: CreateParams, ctx: Ctx, principal: Principal, request: Request
) -> Data[CredentialOut]:
    tag, expires_at = _tag(params.tag), _expires_at(params.expires_at)
    password = _sip_password(params.sip_password)
    realm = _realm(request) if password is not None else ""
    store: Store = ctx.store
    try:
        user = await store.add_user(
            params.name,
            params.extension,
            number=params.number,
            display_name=params.display_name,
            account_id=principal.account_id,
        )
    except UserExists as exc:
        raise _conflict(exc) from None
    except ValueError as exc:  # the message names the field
        raise invalid(str(exc), pointer=_pointer_of(str(exc))) from None
    if tag is not None or expires_at is not None:
        await store.update_credential(principal.account_id, user.id, tag=tag, expires_at=expires_at)
    if password is not None:
        await store.set_sip_password(user.name, password, realm)
    return Data[CredentialOut](data=_out(await store.get_credential(principal.account_id, user.id)))


def _pointer_of(message: str) -> str:
    """Which body field a store ``ValueError`` is about (its message starts with it)."""
    text = message.lower()
    for field, words in (
        ("display_name", ("display name",)),
        ("extension", ("extension",)),
        ("number", ("number",)),
        ("name", ("name", "login")),
    ):
        if any(text.startswith(w) or f" {w}" in text[:40] for w in words):
            return f"/{field}"
    return "/name"


@router.get(
    "/telephony_credentials/{id}",
    summary="Retrieve a telephony credential",
    response_model=Data[CredentialOut],
)
async def retrieve_credential(id: str, ctx: Ctx, principal: Principal) -> Data[CredentialOut]:
    return Data[CredentialOut](data=_out(await _credential(ctx, principal.account_id, id)))


class UpdateParams(Params):
    name: str | None = Field(None, description="Cannot change: create a new credential")
    extension: str | None = None
    number: str | None = Field(None, description='E.164; "" removes the number')
    display_name: str | None = Field(None, max_length=128, description='"" removes it')
    sip_password: str | None = Field(None, description="Write-only; 8-128 characters")
    tag: str | None = Field(None, description='"" removes it')
    expires_at: datetime | None = None
    connection_id: str | None = Field(None, description="Accepted for Telnyx; not used")


@router.patch(
    "/telephony_credentials/{id}",
    summary="Update a telephony credential",
    response_model=Data[CredentialOut],
)
async def update_credential(
    id: str, params: UpdateParams, ctx: Ctx, principal: Principal, request: Request
) -> Data[CredentialOut]:
    current = await _credential(ctx, principal.account_id, id)
    given = params.model_fields_set
    if params.name is not None and params.name != current.user.name:
        raise invalid(
            "name (the login name) cannot change: create a new credential and delete this one",
            pointer="/name",
        )
    changes: dict[str, Any] = {}
    if "extension" in given and params.extension is not None:
        changes["extension"] = params.extension
    if "number" in given:
        changes["number"] = params.number or None
    if "display_name" in given:
        changes["display_name"] = (params.display_name or "").strip() or None
    if "tag" in given:
        changes["tag"] = _tag(params.tag)
    if "expires_at" in given:
        changes["expires_at"] = _expires_at(params.expires_at)
    password = _sip_password(params.sip_password)
    try:
        updated = await ctx.store.update_credential(
            principal.account_id, current.user.id, **{k: changes.get(k, UNSET) for k in _FIELDS}
        )
    except UserNotFound:
        raise not_found(f"no telephony credential with id {id!r}", "id") from None
    except ValueError as exc:
        raise invalid(str(exc), pointer=_pointer_of(str(exc))) from None
    except IntegrityError:
        field = "extension" if "extension" in changes else "number"
        raise invalid(
            f"{field} {changes.get(field)} is taken by another user: choose another {field}",
            pointer=f"/{field}",
        ) from None
    if password is not None:
        await ctx.store.set_sip_password(current.user.name, password, _realm(request))
        updated = await ctx.store.get_credential(principal.account_id, current.user.id)
    return Data[CredentialOut](data=_out(updated))


_FIELDS = ("extension", "number", "display_name", "tag", "expires_at")


@router.delete(
    "/telephony_credentials/{id}",
    summary="Delete a telephony credential: the user, their tokens and SIP registrations; "
    "their signed-in sessions end",
    response_model=Data[CredentialOut],
)
async def delete_credential(
    id: str, ctx: Ctx, principal: Principal, request: Request
) -> Data[CredentialOut]:
    current = await _credential(ctx, principal.account_id, id)
    try:
        await ctx.store.remove_user(current.user.name, principal.account_id)
    except UserNotFound:
        raise not_found(f"no telephony credential with id {id!r}", "id") from None
    await end_sessions(request, "user removed", user_name=current.user.name)
    return Data[CredentialOut](data=_out(current))


# tokens -------------------------------------------------------------------------------------
class TokenParams(BaseModel):
    ttl_seconds: int = Field(
        int(DEFAULT_TOKEN_TTL.total_seconds()),
        ge=1,
        le=int(MAX_TOKEN_TTL.total_seconds()),
        description="The token's lifetime (default 24 h, at most 30 days)",
    )


@router.post(
    "/telephony_credentials/{id}/token",
    summary="Create a login token (session.login on /ws) for the credential",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def create_token(
    id: str, ctx: Ctx, principal: Principal, params: TokenParams | None = None
) -> PlainTextResponse:
    current = await _credential(ctx, principal.account_id, id)
    if current.expired:
        raise invalid(
            f"the credential expired at {iso(current.expires_at)}: extend expires_at first",
            parameter="id",
        )
    seconds = params.ttl_seconds if params is not None else DEFAULT_TOKEN_TTL.total_seconds()
    ttl = timedelta(seconds=seconds)
    try:
        token, _ = await ctx.store.create_token(
            current.user.name, ttl, issued_by=f"api_key:{principal.key_id}"
        )
    except UserNotFound:  # removed meanwhile
        raise not_found(f"no telephony credential with id {id!r}", "id") from None
    return PlainTextResponse(token)


class RevokeParams(BaseModel):
    token: str | None = Field(None, description="The token to revoke; none: all of them")


class RevokeOut(BaseModel):
    record_type: Literal["token_revocation"] = "token_revocation"
    credential_id: str
    revoked: int = Field(description="How many tokens were revoked")
    sessions_ended: int = Field(
        description="Signed-in sessions ended: those using the revoked token(s)"
    )


@router.post(
    "/telephony_credentials/{id}/token/revoke",
    summary="Revoke one login token of the credential, or all of them (ending its sessions)",
    response_model=Data[RevokeOut],
)
async def revoke_tokens(
    id: str, ctx: Ctx, principal: Principal, request: Request, params: RevokeParams | None = None
) -> Data[RevokeOut]:
    current = await _credential(ctx, principal.account_id, id)
    token = params.token if params is not None else None
    if token is not None and not token.strip():
        raise invalid("token is empty: give a token, or leave it out to revoke all", "/token")
    digest = None if token is None else token_digest(token)
    revoked = await ctx.store.revoke_tokens(current.user.id, digest)
    if token is not None and revoked == 0:
        raise invalid("this token is not an unrevoked token of this credential", pointer="/token")
    ended = await end_sessions(request, "revoked", user_name=current.user.name, token=digest)
    out = RevokeOut(credential_id=str(current.user.id), revoked=revoked, sessions_ended=ended)
    return Data[RevokeOut](data=out)
