"""Accounts (tenants), the numbers they own, and who an API key is.

Every user, application, route, number, media file, recording, CDR and API key belongs to one
account (``account_id``). A key of one account never sees another account's rows: the
repositories take the account and answer "not found" for a row of another, so that an API
layer cannot tell (and cannot leak) whether it exists. A single-account install uses only
:data:`DEFAULT_ACCOUNT_ID` (made by migration 0003) and never names an account.

A number (E.164) is owned by at most one account: its users and applications may show it as
caller ID. An API key is write or read-only (``scope``) and may be an *admin* key, which manages
accounts (:class:`ApiPrincipal` is what a key check answers).

    StoreError
    ├── AccountExists           an account name is taken
    ├── NumberTaken             the number is owned by an account already
    └── NotFound
        ├── AccountNotFound     no account has this id
        └── NumberNotFound      no account (or not this one) owns this number
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from callbridge.store.errors import NotFound, StoreError
from callbridge.store.readcache import bump
from callbridge.store.records import normalize_number
from callbridge.store.repository import Repository, new_id, now
from callbridge.store.schema import (
    DEFAULT_ACCOUNT_ID,
    AccountRow,
    ApiKeyRow,
    ApplicationRow,
    MediaRow,
    NumberRow,
    QueueRow,
    RecordingRow,
    RouteRow,
    UserRow,
)

__all__ = [
    "API_KEY_SCOPES",
    "DEFAULT_ACCOUNT_ID",
    "Account",
    "AccountExists",
    "AccountNotFound",
    "AccountRepository",
    "ApiKeyScope",
    "ApiPrincipal",
    "DeletedAccount",
    "NumberNotFound",
    "NumberTaken",
    "OwnedNumber",
    "validate_account_name",
]

ApiKeyScope = Literal["write", "read"]
API_KEY_SCOPES: tuple[ApiKeyScope, ...] = ("write", "read")
_MAX_ACCOUNT_NAME = 128


@dataclass(frozen=True, slots=True)
class Account:
    """A tenant. ``recording_notice``: recording a 1:1 call tells both parties."""

    id: str
    name: str
    recording_notice: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DeletedAccount:
    """An account just deleted, with the files of its media and recordings (the caller's to
    delete: the store only forgot them)."""

    account: Account
    files: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class OwnedNumber:
    """An E.164 number and the account that owns it."""

    number: str
    account_id: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ApiPrincipal:
    """Who a valid API key is: its id, its account, what it may do."""

    key_id: int
    account_id: str
    scope: ApiKeyScope
    admin: bool

    @property
    def read_only(self) -> bool:
        return self.scope == "read"


class AccountExists(StoreError):
    def __init__(self, name: str) -> None:
        super().__init__(f"an account named {name!r} already exists")
        self.name = name


class AccountNotFound(NotFound):
    what = "account with id"


class NumberNotFound(NotFound):
    what = "owned number"


class NumberTaken(StoreError):
    def __init__(self, number: str, account_id: str) -> None:
        super().__init__(f"number {number} is owned by account {account_id} already")
        self.number = number
        self.account_id = account_id


def validate_account_name(name: str) -> str:
    """An account's name, trimmed: 1 to 128 printable characters."""
    trimmed = name.strip() if isinstance(name, str) else ""
    if not trimmed or len(trimmed) > _MAX_ACCOUNT_NAME or not trimmed.isprintable():
        raise ValueError(
            f"invalid account name {name!r}: use 1 to {_MAX_ACCOUNT_NAME} printable characters"
        )
    return trimmed


def validate_scope(scope: str) -> ApiKeyScope:
    if scope == "write":
        return "write"
    if scope == "read":
        return "read"
    raise ValueError(f"invalid API key scope {scope!r}: use 'write' or 'read' (read-only)")


class AccountRepository(Repository):
    # accounts -------------------------------------------------------------------------------
    async def create_account(self, name: str, *, recording_notice: bool = True) -> Account:
        """A new account with a new id. ``AccountExists`` if the name is taken."""
        row = AccountRow(
            id=new_id(),
            name=validate_account_name(name),
            recording_notice=bool(recording_notice),
            created_at=now(),
        )
        try:
            async with self._write.begin() as session:
                session.add(row)
        except IntegrityError as exc:
            raise AccountExists(row.name) from exc
        return _account(row)

    async def get_account(self, account_id: str) -> Account | None:
        async with self._read() as session:
            row = await session.get(AccountRow, account_id)
        return None if row is None else _account(row)

    async def list_accounts(self) -> list[Account]:
        """Every account, oldest first (the default account first)."""
        async with self._read() as session:
            rows = await session.scalars(
                select(AccountRow).order_by(AccountRow.created_at, AccountRow.id)
            )
            return [_account(row) for row in rows]

    async def set_recording_notice(self, account_id: str, on: bool) -> Account:
        """Whether recording a 1:1 call of the account tells both parties."""
        async with self._write.begin() as session:
            row = await session.get(AccountRow, account_id)
            if row is None:
                raise AccountNotFound(account_id)
            row.recording_notice = bool(on)
        return _account(row)

    async def delete_account(self, account_id: str) -> DeletedAccount:
        """Delete an account and everything it owns (users and their tokens, API keys,
        applications and routes, numbers, media, recordings, queues); CDRs are kept.

        The default account cannot be deleted (``ValueError``): a single-account install
        and the rows migrated into it live there.
        """
        if account_id == DEFAULT_ACCOUNT_ID:
            raise ValueError("the default account cannot be deleted")
        async with self._write.begin() as session:
            row = await session.get(AccountRow, account_id)
            if row is None:
                raise AccountNotFound(account_id)
            files = [
                *await session.scalars(select(MediaRow.path).where(MediaRow.account_id == row.id)),
                *await session.scalars(
                    select(RecordingRow.path).where(RecordingRow.account_id == row.id)
                ),
            ]
            # Explicit, not only ON DELETE CASCADE: the ORM session must not keep the rows,
            # and routes reference applications.
            for table in (RouteRow, ApplicationRow, NumberRow, MediaRow, RecordingRow):
                await session.execute(delete(table).where(table.account_id == row.id))
            await session.execute(delete(QueueRow).where(QueueRow.account_id == row.id))
            await session.execute(delete(ApiKeyRow).where(ApiKeyRow.account_id == row.id))
            await session.execute(delete(UserRow).where(UserRow.account_id == row.id))
            await session.delete(row)
            await bump(session)
        self._cache.clear()  # its routes, rules and users' forwarding are gone
        return DeletedAccount(_account(row), tuple(files))

    async def _require_account(self, session: AsyncSession, account_id: str) -> None:
        if await session.get(AccountRow, account_id) is None:
            raise AccountNotFound(account_id)

    # numbers --------------------------------------------------------------------------------
    async def add_number(self, number: str, account_id: str = DEFAULT_ACCOUNT_ID) -> OwnedNumber:
        """The account owns ``number`` (E.164, with or without its '+'; separators are
        dropped). ``NumberTaken`` if an account owns it already."""
        e164 = _e164(number)
        row = NumberRow(number=e164, account_id=account_id, created_at=now())
        try:
            async with self._write.begin() as session:
                await self._require_account(session, account_id)
                owner = await session.get(NumberRow, e164)
                if owner is not None:
                    raise NumberTaken(e164, owner.account_id)
                session.add(row)
        except IntegrityError as exc:  # another writer took it meanwhile
            owner_id = await self.number_owner(e164)
            raise NumberTaken(e164, owner_id or "?") from exc
        return _number(row)

    async def number_owner(self, number: str) -> str | None:
        """The id of the account that owns ``number`` (any spelling of it), if one does."""
        e164 = normalize_number(number)
        if e164 is None:
            return None
        async with self._read() as session:
            row = await session.get(NumberRow, e164)
        return None if row is None else row.account_id

    async def list_numbers(self, account_id: str | None = None) -> list[OwnedNumber]:
        """The numbers an account owns (every account's when ``account_id`` is None)."""
        statement = select(NumberRow).order_by(NumberRow.number)
        if account_id is not None:
            statement = statement.where(NumberRow.account_id == account_id)
        async with self._read() as session:
            return [_number(row) for row in await session.scalars(statement)]

    async def remove_number(self, number: str, account_id: str | None = None) -> OwnedNumber:
        """The account (any, when None) no longer owns ``number``; ``NumberNotFound`` if it
        did not."""
        e164 = normalize_number(number)
        if e164 is None:
            raise NumberNotFound(number)
        async with self._write.begin() as session:
            row = await session.get(NumberRow, e164)
            if row is None or (account_id is not None and row.account_id != account_id):
                raise NumberNotFound(number)
            await session.delete(row)
        return _number(row)


def _e164(number: str) -> str:
    e164 = normalize_number(number) if isinstance(number, str) else None
    if e164 is None:
        raise ValueError(
            f"invalid number {number!r}: use E.164, '+' and 8 to 15 digits, e.g. +14155550100"
        )
    return e164


def _account(row: AccountRow) -> Account:
    return Account(row.id, row.name, row.recording_notice, row.created_at)


def _number(row: NumberRow) -> OwnedNumber:
    return OwnedNumber(row.number, row.account_id, row.created_at)
