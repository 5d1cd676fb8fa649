"""Identities managed from a backend (issue 14): users as credentials, token revoke, API keys.

``Store`` creates users, tokens and keys (``store.store``); this mixin adds what REST and the
CLI need to manage them afterwards, always within one account, so that a key of one account
cannot see, change or mint for another account's users:

- a user's credential fields (Telnyx ``telephony_credentials``): ``tag``, ``expires_at`` (after
  it the user cannot sign in) and ``updated_at``; change and remove users;
- revoke a user's login tokens (one, by its value, or all of them);
- list and revoke API keys; a key's ``last_used_at`` is written at most once a minute per key
  (:data:`LAST_USED_RESOLUTION`), so a busy app does not turn every request into a write.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update

from callbridge.store.accounts import ApiKeyScope, validate_scope
from callbridge.store.errors import NotFound, UserNotFound
from callbridge.store.records import User, validate_extension, validate_number
from callbridge.store.repository import Repository, check_aware, now, page
from callbridge.store.schema import ApiKeyRow, SipCredentialRow, TokenRow, UserRow

__all__ = [
    "LAST_USED_RESOLUTION",
    "UNSET",
    "ApiKeyInfo",
    "ApiKeyNotFound",
    "Credential",
    "IdentityRepository",
]

LAST_USED_RESOLUTION = timedelta(minutes=1)
UNSET: Any = object()  # "leave this field as it is" in updates (None clears a field)


class ApiKeyNotFound(NotFound):
    what = "API key with id"


@dataclass(frozen=True, slots=True)
class Credential:
    """A user seen as a Telnyx telephony credential."""

    user: User
    tag: str | None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    sip_password_set: bool

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= now()


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """An API key without its secret: what a listing shows."""

    id: int
    account_id: str
    name: str | None
    prefix: str
    scope: ApiKeyScope
    admin: bool
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    revoked: bool


def _user_of(row: UserRow) -> User:
    return User(row.id, row.name, row.extension, row.number, row.display_name, row.account_id)


def _credential(row: UserRow, sip: bool) -> Credential:
    return Credential(
        _user_of(row),
        row.tag,
        row.created_at,
        row.updated_at or row.created_at,
        row.expires_at,
        sip,
    )


def _key_info(row: ApiKeyRow) -> ApiKeyInfo:
    return ApiKeyInfo(
        row.id,
        row.account_id,
        row.name,
        row.prefix,
        validate_scope(row.scope),
        row.admin,
        row.created_at,
        row.last_used_at,
        row.revoked_at,
        row.revoked,
    )


class IdentityRepository(Repository):
    # credentials ----------------------------------------------------------------------------
    async def list_credentials(
        self,
        account_id: str,
        page_number: int,
        page_size: int,
        *,
        name: str | None = None,
        tag: str | None = None,
        expired: bool | None = None,
    ) -> tuple[list[Credential], int]:
        """One page of the account's users (oldest first) and how many match."""
        statement = select(UserRow).where(UserRow.account_id == account_id)
        if name is not None:
            statement = statement.where(UserRow.name == name)
        if tag is not None:
            statement = statement.where(UserRow.tag == tag)
        if expired is not None:
            is_expired = UserRow.expires_at.is_not(None) & (UserRow.expires_at <= now())
            statement = statement.where(is_expired if expired else ~is_expired)
        statement = statement.order_by(UserRow.id)
        async with self._read() as session:
            rows, total = await page(session, statement, page_number, page_size)
            ids = [r.id for r in rows]
            with_sip = set(
                await session.scalars(
                    select(SipCredentialRow.user_id).where(SipCredentialRow.user_id.in_(ids))
                )
            )
        return [_credential(r, r.id in with_sip) for r in rows], total

    async def get_credential(self, account_id: str, user_id: int) -> Credential:
        """The account's user ``user_id``; ``UserNotFound`` (also for another account's)."""
        async with self._read() as session:
            row = await session.get(UserRow, user_id)
            if row is None or row.account_id != account_id:
                raise UserNotFound(str(user_id))
            sip = await session.get(SipCredentialRow, user_id) is not None
        return _credential(row, sip)

    async def update_credential(
        self,
        account_id: str,
        user_id: int,
        *,
        extension: Any = UNSET,
        number: Any = UNSET,
        display_name: Any = UNSET,
        tag: Any = UNSET,
        expires_at: Any = UNSET,
    ) -> Credential:
        """Change the fields given (``None`` clears an optional one). ``ValueError`` for a
        malformed value; ``UserNotFound``; an ``IntegrityError`` from the database for a taken
        extension or number (the caller says which, see ``Store._user_conflict``)."""
        if expires_at is not UNSET:
            check_aware("expires_at", expires_at)
        async with self._write.begin() as session:
            row = await session.get(UserRow, user_id)
            if row is None or row.account_id != account_id:
                raise UserNotFound(str(user_id))
            if extension is not UNSET:
                row.extension = validate_extension(extension)
            if number is not UNSET:
                row.number = None if number is None else validate_number(number)
            if display_name is not UNSET:
                row.display_name = display_name
            if tag is not UNSET:
                row.tag = tag
            if expires_at is not UNSET:
                row.expires_at = expires_at
            row.updated_at = now()
        return await self.get_credential(account_id, user_id)

    async def remove_user(self, name: str, account_id: str | None = None) -> User:
        """Delete user ``name`` (of the account, if one is given) with their tokens, SIP
        credentials and registrations (foreign keys cascade); ``UserNotFound``."""
        async with self._write.begin() as session:
            statement = select(UserRow).where(UserRow.name == name)
            if account_id is not None:
                statement = statement.where(UserRow.account_id == account_id)
            row = await session.scalar(statement)
            if row is None:
                raise UserNotFound(name)
            user = _user_of(row)
            # Explicit deletes as well: SQLite enforces ON DELETE CASCADE only with its
            # foreign_keys pragma on, and this must not depend on a connection setting.
            await session.execute(delete(TokenRow).where(TokenRow.user_id == row.id))
            await session.delete(row)
        return user

    # tokens ---------------------------------------------------------------------------------
    async def revoke_tokens(self, user_id: int, token_hash: str | None = None) -> int:
        """Revoke the user's unrevoked tokens (only the one with ``token_hash`` if given);
        how many were revoked."""
        statement = update(TokenRow).where(
            TokenRow.user_id == user_id,
            TokenRow.revoked == False,  # noqa: E712 (SQL)
        )
        if token_hash is not None:
            statement = statement.where(TokenRow.token_hash == token_hash)
        async with self._write.begin() as session:
            result = await session.execute(statement.values(revoked=True, revoked_at=now()))
        return int(getattr(result, "rowcount", 0) or 0)

    # API keys -------------------------------------------------------------------------------
    async def list_api_keys(
        self, account_id: str | None, page_number: int = 1, page_size: int = 250
    ) -> tuple[list[ApiKeyInfo], int]:
        """One page of the API keys (of the account, if given), oldest first, revoked ones
        included (they say so), and how many there are."""
        statement = select(ApiKeyRow).order_by(ApiKeyRow.id)
        if account_id is not None:
            statement = statement.where(ApiKeyRow.account_id == account_id)
        async with self._read() as session:
            rows, total = await page(session, statement, page_number, page_size)
        return [_key_info(r) for r in rows], total

    async def describe_api_key(self, secret: str) -> ApiKeyInfo:
        """The listing entry of the key ``secret`` (just created); ``ApiKeyNotFound``."""
        digest = hashlib.sha256(secret.encode()).hexdigest()
        async with self._read() as session:
            row = await session.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == digest))
        if row is None:
            raise ApiKeyNotFound(secret[:8] + "...")
        return _key_info(row)

    async def revoke_api_key(self, key_id: int, account_id: str | None = None) -> ApiKeyInfo:
        """Revoke key ``key_id`` (of the account, if given); ``ApiKeyNotFound``. Revoking a
        revoked key changes nothing (its first ``revoked_at`` stays)."""
        async with self._write.begin() as session:
            row = await session.get(ApiKeyRow, key_id)
            if row is None or (account_id is not None and row.account_id != account_id):
                raise ApiKeyNotFound(str(key_id))
            if not row.revoked:
                row.revoked = True
                row.revoked_at = now()
        return _key_info(row)

    async def key_used(self, key_id: int, last_used_at: datetime | None) -> datetime | None:
        """Note that key ``key_id`` was used now, if its ``last_used_at`` is older than
        :data:`LAST_USED_RESOLUTION`; the value it has afterwards."""
        at = now()
        if last_used_at is not None and at - last_used_at < LAST_USED_RESOLUTION:
            return last_used_at
        async with self._write.begin() as session:
            await session.execute(
                update(ApiKeyRow).where(ApiKeyRow.id == key_id).values(last_used_at=at)
            )
        return at
