"""``/v2/api_keys``: the REST API keys of the calling key's account (issue 14).

- ``GET /v2/api_keys``: the account's keys, oldest first, revoked ones included; never their
  secret, only its first 8 characters (``prefix``), with ``created_at``, ``last_used_at``
  (to the minute: it is written at most once a minute per key) and ``revoked_at``.
- ``POST /v2/api_keys`` ``{"name": ..., "scope": "write"|"read", "admin": false}``: a new key
  of the account; the secret is in ``api_key``, shown only this once. Only an admin key may
  create an admin key.
- ``DELETE /v2/api_keys/{id}``: revoke the key (it is kept, marked revoked, so the listing
  still says what it was); it is refused (401) from the next request on, on this server. Other
  servers of a cluster cache a key's check up to ``KEY_CACHE_SECONDS`` (10 s).

A read-only key may list only (403 on the others, as everywhere). Another account's key is a
404, as a missing one.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from callbridge.api.context import Ctx, Principal
from callbridge.api.errors import forbidden, invalid, not_found
from callbridge.api.pagination import PageQuery, meta
from callbridge.api.schemas import Data, ListOf, Params, iso
from callbridge.store.accounts import AccountNotFound, ApiKeyScope
from callbridge.store.identities import ApiKeyInfo, ApiKeyNotFound

__all__ = ["router"]

router = APIRouter(tags=["API keys"])


class ApiKeyInfoOut(BaseModel):
    record_type: Literal["api_key"] = "api_key"
    id: str
    name: str | None
    prefix: str = Field(description="The key's first 8 characters: not a secret")
    account_id: str
    scope: ApiKeyScope
    admin: bool
    revoked: bool
    created_at: str
    last_used_at: str | None = Field(description="To the minute; null if never used")
    revoked_at: str | None


class NewApiKeyOut(ApiKeyInfoOut):
    api_key: str = Field(description="The key: shown only this once; keep it secret")


def _out(key: ApiKeyInfo) -> ApiKeyInfoOut:
    return ApiKeyInfoOut(
        id=str(key.id),
        name=key.name,
        prefix=key.prefix,
        account_id=key.account_id,
        scope=key.scope,
        admin=key.admin,
        revoked=key.revoked,
        created_at=iso(key.created_at) or "",
        last_used_at=iso(key.last_used_at),
        revoked_at=iso(key.revoked_at),
    )


@router.get(
    "/api_keys", summary="List the account's API keys", response_model=ListOf[ApiKeyInfoOut]
)
async def list_api_keys(ctx: Ctx, principal: Principal, page: PageQuery) -> ListOf[ApiKeyInfoOut]:
    keys, total = await ctx.store.list_api_keys(principal.account_id, page.number, page.size)
    return ListOf[ApiKeyInfoOut](data=[_out(k) for k in keys], meta=meta(page, total))


class CreateParams(Params):
    name: str | None = Field(None, max_length=128, description="A label, e.g. the app using it")
    scope: ApiKeyScope = Field("write", description="'read': the key may only read (GET)")
    admin: bool = Field(False, description="Also manages accounts; only an admin key may ask")


@router.post(
    "/api_keys",
    summary="Create an API key of the account (the secret is shown only this once)",
    response_model=Data[NewApiKeyOut],
)
async def create_api_key(
    params: CreateParams, ctx: Ctx, principal: Principal
) -> Data[NewApiKeyOut]:
    if params.admin and not principal.admin:
        raise forbidden("only an admin key may create an admin key", pointer="/admin")
    try:
        secret = await ctx.store.create_api_key(
            params.name, account_id=principal.account_id, scope=params.scope, admin=params.admin
        )
    except ValueError as exc:
        raise invalid(str(exc), pointer="/name") from None
    except AccountNotFound:  # the account went meanwhile
        raise not_found("the account of this key no longer exists") from None
    info = await ctx.store.describe_api_key(secret)
    return Data[NewApiKeyOut](data=NewApiKeyOut(**_out(info).model_dump(), api_key=secret))


@router.delete(
    "/api_keys/{id}",
    summary="Revoke an API key (it is refused from the next request on)",
    response_model=Data[ApiKeyInfoOut],
)
async def revoke_api_key(id: str, ctx: Ctx, principal: Principal) -> Data[ApiKeyInfoOut]:
    if not id.isdigit() or len(id) > 18:
        raise not_found(f"no API key with id {id!r}", "id")
    try:
        key = await ctx.store.revoke_api_key(int(id), principal.account_id)
    except ApiKeyNotFound:
        raise not_found(f"no API key with id {id!r}", "id") from None
    ctx.forget_keys()  # refused from the next request on, not when the cache runs out
    return Data[ApiKeyInfoOut](data=_out(key))
