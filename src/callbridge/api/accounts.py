"""``/v2/accounts``: accounts (tenants), the numbers they own and their API keys, for admin keys.

Only an admin key (``callbridge apikey create --admin``) may use these endpoints; any other
key is answered as for a path that does not exist (404, the same body), so that it does not
learn they are there (:mod:`callbridge.api.context`). A read-only admin key may list and
retrieve.

- ``POST /v2/accounts`` ``{"name": ..., "recording_notice": true}``; ``GET`` lists them
  (oldest first, the ``default`` account first), ``GET``/``PATCH``/``DELETE /v2/accounts/{id}``.
  ``PATCH`` changes ``recording_notice`` (recording a 1:1 call tells both parties). ``DELETE``
  deletes everything the account owns (users, keys, applications, routes, numbers, media and
  recording files, queues); its CDRs are kept. First, what it has live on this server ends as
  a hangup would (its conferences, calls, queue waits and users' sessions:
  :mod:`callbridge.api.revocation`). The default account cannot be deleted.
- ``/v2/accounts/{id}/numbers``: the E.164 numbers the account owns (its users and
  applications may show them as caller ID); a number is owned by one account at most.
- ``POST /v2/accounts/{id}/api_keys`` ``{"name": ..., "scope": "write"|"read", "admin":
  false}``: a new key of the account, in ``api_key``, shown only this once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from callbridge.api.context import ADMIN_TAG, ApiContext, Ctx
from callbridge.api.errors import invalid, not_found
from callbridge.api.pagination import PageQuery, slice_page
from callbridge.api.revocation import end_account
from callbridge.api.schemas import Data, ListOf, Params, iso
from callbridge.store.accounts import (
    DEFAULT_ACCOUNT_ID,
    Account,
    AccountExists,
    AccountNotFound,
    ApiKeyScope,
    NumberNotFound,
    NumberTaken,
    OwnedNumber,
    validate_account_name,
)

__all__ = ["router"]

router = APIRouter(tags=[ADMIN_TAG])


class AccountOut(BaseModel):
    record_type: Literal["account"] = "account"
    id: str
    name: str
    recording_notice: bool = Field(
        description="Recording a 1:1 call tells both parties (call.recording on /ws)"
    )
    created_at: str


def _account_out(account: Account) -> AccountOut:
    return AccountOut(
        id=account.id,
        name=account.name,
        recording_notice=account.recording_notice,
        created_at=iso(account.created_at) or "",
    )


class NumberOut(BaseModel):
    record_type: Literal["number"] = "number"
    number: str = Field(description="E.164")
    account_id: str
    created_at: str


def _number_out(number: OwnedNumber) -> NumberOut:
    return NumberOut(
        number=number.number,
        account_id=number.account_id,
        created_at=iso(number.created_at) or "",
    )


class ApiKeyOut(BaseModel):
    record_type: Literal["api_key"] = "api_key"
    api_key: str = Field(description="The key: shown only this once; keep it secret")
    name: str | None
    account_id: str
    scope: ApiKeyScope
    admin: bool


async def _account(ctx: ApiContext, account_id: str) -> Account:
    account = await ctx.store.get_account(account_id)
    if account is None:
        raise not_found(f"no account with id {account_id!r}", "id")
    return account


# accounts -------------------------------------------------------------------------------------
class CreateParams(Params):
    name: str = Field(min_length=1, max_length=128, description="Unique among accounts")
    recording_notice: bool = True


@router.post("/accounts", summary="Create an account", response_model=Data[AccountOut])
async def create_account(params: CreateParams, ctx: Ctx) -> Data[AccountOut]:
    try:
        name = validate_account_name(params.name)
        account = await ctx.store.create_account(name, recording_notice=params.recording_notice)
    except ValueError as exc:
        raise invalid(str(exc), pointer="/name") from None
    except AccountExists as exc:
        raise invalid(f"{exc}: choose another name", pointer="/name") from None
    return Data[AccountOut](data=_account_out(account))


@router.get("/accounts", summary="List accounts", response_model=ListOf[AccountOut])
async def list_accounts(ctx: Ctx, page: PageQuery) -> ListOf[AccountOut]:
    accounts = [_account_out(a) for a in await ctx.store.list_accounts()]
    items, meta = slice_page(accounts, page)
    return ListOf[AccountOut](data=items, meta=meta)


@router.get("/accounts/{id}", summary="Retrieve an account", response_model=Data[AccountOut])
async def retrieve_account(id: str, ctx: Ctx) -> Data[AccountOut]:
    return Data[AccountOut](data=_account_out(await _account(ctx, id)))


class UpdateParams(Params):
    recording_notice: bool


@router.patch(
    "/accounts/{id}",
    summary="Change whether recording a call tells its parties",
    response_model=Data[AccountOut],
)
async def update_account(id: str, params: UpdateParams, ctx: Ctx) -> Data[AccountOut]:
    try:
        account = await ctx.store.set_recording_notice(id, params.recording_notice)
    except AccountNotFound:
        raise not_found(f"no account with id {id!r}", "id") from None
    return Data[AccountOut](data=_account_out(account))


@router.delete(
    "/accounts/{id}",
    summary="Delete an account and everything it owns (its CDRs are kept)",
    response_model=Data[AccountOut],
)
async def delete_account(id: str, ctx: Ctx, request: Request) -> Data[AccountOut]:
    if id == DEFAULT_ACCOUNT_ID:
        raise invalid("the default account cannot be deleted", parameter="id")
    await _account(ctx, id)  # a 404 ends nothing
    # Its live calls end first, while its rows (applications, recordings) are still there
    # for their end events, webhooks and CDRs.
    await end_account(request, ctx.control, id)
    try:
        deleted = await ctx.store.delete_account(id)
    except AccountNotFound:
        raise not_found(f"no account with id {id!r}", "id") from None
    except ValueError as exc:  # the default account
        raise invalid(str(exc), parameter="id") from None
    ctx.forget_keys()  # its keys stop working now, not when the cache runs out
    for path in deleted.files:
        await asyncio.to_thread(Path(path).unlink, missing_ok=True)
    return Data[AccountOut](data=_account_out(deleted.account))


# numbers --------------------------------------------------------------------------------------
class NumberParams(Params):
    number: str = Field(description="E.164, e.g. +14155550100")


@router.post(
    "/accounts/{id}/numbers",
    summary="The account owns a number",
    response_model=Data[NumberOut],
)
async def add_number(id: str, params: NumberParams, ctx: Ctx) -> Data[NumberOut]:
    await _account(ctx, id)
    try:
        number = await ctx.store.add_number(params.number, id)
    except ValueError as exc:
        raise invalid(str(exc), pointer="/number") from None
    except NumberTaken as exc:
        raise invalid(f"{exc}: remove it there first", pointer="/number") from None
    except AccountNotFound:  # deleted meanwhile
        raise not_found(f"no account with id {id!r}", "id") from None
    return Data[NumberOut](data=_number_out(number))


@router.get(
    "/accounts/{id}/numbers",
    summary="List the numbers an account owns",
    response_model=ListOf[NumberOut],
)
async def list_numbers(id: str, ctx: Ctx, page: PageQuery) -> ListOf[NumberOut]:
    await _account(ctx, id)
    numbers = [_number_out(n) for n in await ctx.store.list_numbers(id)]
    items, meta = slice_page(numbers, page)
    return ListOf[NumberOut](data=items, meta=meta)


@router.delete(
    "/accounts/{id}/numbers/{number}",
    summary="The account no longer owns a number",
    response_model=Data[NumberOut],
)
async def remove_number(id: str, number: str, ctx: Ctx) -> Data[NumberOut]:
    await _account(ctx, id)
    try:
        removed = await ctx.store.remove_number(number, id)
    except NumberNotFound:
        raise not_found(f"account {id} owns no number {number!r}", "number") from None
    return Data[NumberOut](data=_number_out(removed))


# API keys -------------------------------------------------------------------------------------
class ApiKeyParams(Params):
    name: str | None = Field(None, max_length=128, description="A label, e.g. the app using it")
    scope: ApiKeyScope = Field("write", description="'read': the key may only read (GET)")
    admin: bool = Field(False, description="The key also manages accounts (/v2/accounts)")


@router.post(
    "/accounts/{id}/api_keys",
    summary="Create an API key of the account (shown only this once)",
    response_model=Data[ApiKeyOut],
)
async def create_api_key(id: str, params: ApiKeyParams, ctx: Ctx) -> Data[ApiKeyOut]:
    await _account(ctx, id)
    try:
        key = await ctx.store.create_api_key(
            params.name, account_id=id, scope=params.scope, admin=params.admin
        )
    except ValueError as exc:
        raise invalid(str(exc), pointer="/name") from None
    except AccountNotFound:
        raise not_found(f"no account with id {id!r}", "id") from None
    out = ApiKeyOut(
        api_key=key,
        name=params.name,
        account_id=id,
        scope=params.scope,
        admin=params.admin,
    )
    return Data[ApiKeyOut](data=out)
