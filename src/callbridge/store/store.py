"""``Store``: the database, over SQLAlchemy's asyncio engine.

Users, login tokens and API keys are here; accounts and their numbers, call-control
applications and routes, media, recordings, CDRs and live calls (``calls``), queues and the
webhook outbox come from the repository mixins in their own modules (see ``repository``).

Users and API keys belong to an account (``store.accounts``); a user's extension is unique
within its account, its login name and number on the whole server.

Secrets (login tokens, API keys) are random strings of at least 240 bits; only their
SHA-256 is stored, so a leaked database grants nothing. A plain (unsalted, fast) hash is
enough at that entropy, and it lets a secret be found by an indexed lookup of its hash.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from types import TracebackType

from sqlalchemy import false, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from callbridge.store.accounts import (
    AccountNotFound,
    AccountRepository,
    ApiKeyScope,
    ApiPrincipal,
    validate_scope,
)
from callbridge.store.applications import ApplicationRepository
from callbridge.store.calls import CallRepository
from callbridge.store.dialplan import DialPlanRepository
from callbridge.store.engine import create_engine, migrate, writer
from callbridge.store.errors import (
    CredentialExpired,
    TokenExpired,
    TokenInvalid,
    TokenRevoked,
    UserExists,
    UserNotFound,
)
from callbridge.store.followme import FollowMeRepository
from callbridge.store.identities import IdentityRepository
from callbridge.store.media import MediaRepository
from callbridge.store.outbox import OutboxRepository
from callbridge.store.queues import QueueRepository
from callbridge.store.readcache import ReadCache
from callbridge.store.recordings import RecordingRepository
from callbridge.store.records import (
    User,
    normalize_number,
    validate_extension,
    validate_name,
    validate_number,
)
from callbridge.store.repository import now as _now
from callbridge.store.schema import (
    DEFAULT_ACCOUNT_ID,
    AccountRow,
    ApiKeyRow,
    TokenRow,
    UserRow,
)
from callbridge.store.sip import SipRepository
from callbridge.store.tenancy import TenancyRepository
from callbridge.store.trunks import TrunkRepository

__all__ = ["API_KEY_PREFIX", "Store"]

API_KEY_PREFIX = "KEY"
_API_KEY_LENGTH = len(API_KEY_PREFIX) + 40  # token_urlsafe(30) is exactly 40 characters
_MAX_LABEL = 128  # display names, API key names


class Store(
    AccountRepository,
    ApplicationRepository,
    MediaRepository,
    RecordingRepository,
    OutboxRepository,
    CallRepository,
    QueueRepository,
    TenancyRepository,
    SipRepository,
    IdentityRepository,
    TrunkRepository,
    FollowMeRepository,
    DialPlanRepository,
):
    """The database. Make one with ``await Store.open(url)``; ``close()`` it when done.

    Safe to share between tasks: every method runs in its own short transaction.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        """Wrap an engine whose schema is current; ``open()`` is the usual way in."""
        self._engine = engine
        self._read = async_sessionmaker(engine, expire_on_commit=False)
        self._write = async_sessionmaker(writer(engine), expire_on_commit=False)
        self._cache = ReadCache(engine)

    async def check_routing(self) -> None:
        """Make the cached routing reads current (store.readcache): one small query, at the
        start of each call's routing."""
        await self._cache.check()

    @classmethod
    async def open(cls, database_url: str) -> Store:
        """Connect to ``database_url`` and migrate its schema to the newest revision.

        For SQLite the file's directory is created if needed.
        """
        engine = create_engine(database_url)
        try:
            await migrate(engine)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine)

    @property
    def engine(self) -> AsyncEngine:
        """The SQLAlchemy engine, for instrumentation (callbridge.metrics times statements)."""
        return self._engine

    async def close(self) -> None:
        await self._engine.dispose()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # users ----------------------------------------------------------------------------------
    async def add_user(
        self,
        name: str,
        extension: str,
        number: str | None = None,
        display_name: str | None = None,
        account_id: str = DEFAULT_ACCOUNT_ID,
    ) -> User:
        """Create a user of the account. ``ValueError`` for a malformed field, ``UserExists``
        if one is taken, ``AccountNotFound`` if there is no such account.

        ``number`` is stored in E.164 form: "+1 (415) 555-0100" becomes "+14155550100".
        """
        row = UserRow(
            account_id=account_id,
            name=validate_name(name),
            extension=validate_extension(extension),
            number=None if number is None else validate_number(number),
            display_name=_label(display_name, "display name"),
            created_at=_now(),
        )
        try:
            async with self._write.begin() as session:
                if await session.get(AccountRow, account_id) is None:
                    raise AccountNotFound(account_id)
                session.add(row)
        except IntegrityError as exc:
            conflict = await self._user_conflict(row.name, row.extension, row.number, account_id)
            if conflict is None:
                raise
            raise conflict from exc
        return _user(row)

    async def _user_conflict(
        self, name: str, extension: str, number: str | None, account_id: str
    ) -> UserExists | None:
        """What makes a new user collide with existing ones, if anything does."""
        async with self._read() as session:
            rows = await session.scalars(
                select(UserRow).where(
                    or_(
                        UserRow.name == name,
                        (UserRow.extension == extension) & (UserRow.account_id == account_id),
                        UserRow.number == number if number is not None else false(),
                    )
                )
            )
            taken = list(rows)
        problems: list[str] = []
        fields: list[str] = []
        for field, value in (("name", name), ("extension", extension), ("number", number)):
            owner = next(
                (
                    u
                    for u in taken
                    if getattr(u, field) == value
                    and (field != "extension" or u.account_id == account_id)
                ),
                None,
            )
            if value is None or owner is None:
                continue
            fields.append(field)
            if field == "name":
                problems.append(f"a user named {name!r} already exists")
            else:
                problems.append(f"{field} {value} is taken by user {owner.name!r}")
        if not problems:
            return None
        return UserExists("; ".join(problems), tuple(fields))

    async def get_user(self, name: str) -> User | None:
        async with self._read() as session:
            row = await session.scalar(select(UserRow).where(UserRow.name == name))
        return None if row is None else _user(row)

    async def list_users(self, account_id: str | None = None) -> list[User]:
        """All users (of the account, when one is given), by name."""
        statement = select(UserRow).order_by(UserRow.name)
        if account_id is not None:
            statement = statement.where(UserRow.account_id == account_id)
        async with self._read() as session:
            rows = await session.scalars(statement)
            return [_user(row) for row in rows]

    async def find_user(
        self, destination: str, account_id: str = DEFAULT_ACCOUNT_ID
    ) -> User | None:
        """The user of the account a dialled ``destination`` means: an extension, else a
        number, else a name.

        A number matches with or without its leading '+' and with spaces, dashes, dots or
        parentheses in it. A user of another account is never found (extensions repeat across
        accounts; names and numbers are global but still not reachable from another account).
        """
        dialled = destination.strip()
        if not dialled:
            return None
        number = normalize_number(dialled)
        async with self._read() as session:
            rows = list(
                await session.scalars(
                    select(UserRow).where(
                        UserRow.account_id == account_id,
                        or_(
                            UserRow.extension == dialled,
                            UserRow.number == number if number is not None else false(),
                            UserRow.name == dialled,
                        ),
                    )
                )
            )

        # One query; several users may match, each on a different field.
        def precedence(row: UserRow) -> int:
            if row.extension == dialled:
                return 0
            if number is not None and row.number == number:
                return 1
            return 2

        return _user(min(rows, key=precedence)) if rows else None

    # login tokens ---------------------------------------------------------------------------
    async def create_token(
        self,
        user_name: str,
        ttl: timedelta = timedelta(hours=24),
        *,
        issued_by: str | None = None,
    ) -> tuple[str, datetime]:
        """A new login token for ``user_name`` and when it expires (aware UTC).

        Only the token's hash is kept: the token cannot be shown again. A ``ttl`` of zero or
        less makes a token that is already expired. ``issued_by`` says who minted it
        (``cli``, ``api_key:<id>``), for the audit trail.
        """
        token = secrets.token_urlsafe(32)
        now = _now()
        expires_at = now + ttl
        async with self._write.begin() as session:
            user_id = await session.scalar(select(UserRow.id).where(UserRow.name == user_name))
            if user_id is None:
                raise UserNotFound(user_name)
            session.add(
                TokenRow(
                    user_id=user_id,
                    token_hash=_digest(token),
                    created_at=now,
                    expires_at=expires_at,
                    revoked=False,
                    issued_by=issued_by,
                )
            )
        return token, expires_at

    async def check_token(self, token: str) -> User:
        """The user a login token belongs to; ``TokenInvalid`` or ``TokenExpired`` if none."""
        user, _ = await self.check_token_expiry(token)
        return user

    async def check_token_expiry(self, token: str) -> tuple[User, datetime]:
        """Like :meth:`check_token`, also returning when the token expires (UTC)."""
        async with self._read() as session:
            found = (
                await session.execute(
                    select(TokenRow, UserRow)
                    .join(UserRow, TokenRow.user_id == UserRow.id)
                    .where(TokenRow.token_hash == _digest(token))
                )
            ).one_or_none()
        if found is None:
            raise TokenInvalid()
        row, user = found
        if row.revoked:
            raise TokenRevoked(row.revoked_at)
        at = _now()
        if user.expires_at is not None and user.expires_at <= at:
            raise CredentialExpired(user.name, user.expires_at)
        if row.expires_at <= at:
            raise TokenExpired(row.expires_at)
        # A session lasts as long as its token, and no longer than its user's credential.
        ends = row.expires_at if user.expires_at is None else min(row.expires_at, user.expires_at)
        return _user(user), ends

    # API keys -------------------------------------------------------------------------------
    async def create_api_key(
        self,
        name: str | None = None,
        *,
        account_id: str = DEFAULT_ACCOUNT_ID,
        scope: ApiKeyScope = "write",
        admin: bool = False,
    ) -> str:
        """A new REST API key of the account, ``"KEY"`` and 40 URL-safe characters. Shown
        only this once.

        ``scope`` "read" makes a read-only key (it may only read); ``admin`` a key that also
        manages accounts. ``AccountNotFound`` if there is no such account.
        """
        key = API_KEY_PREFIX + secrets.token_urlsafe(30)
        assert len(key) == _API_KEY_LENGTH
        row = ApiKeyRow(
            account_id=account_id,
            name=_label(name, "API key name"),
            prefix=key[:8],
            key_hash=_digest(key),
            created_at=_now(),
            revoked=False,
            scope=validate_scope(scope),
            admin=bool(admin),
        )
        async with self._write.begin() as session:
            if await session.get(AccountRow, account_id) is None:
                raise AccountNotFound(account_id)
            session.add(row)
        return key

    async def check_api_key(self, key: str) -> ApiPrincipal | None:
        """Who ``key`` is (its account, scope, whether it is an admin key), or ``None`` if it
        is not a valid, unrevoked API key."""
        if len(key) != _API_KEY_LENGTH or not key.startswith(API_KEY_PREFIX):
            return None
        async with self._read() as session:
            row = await session.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == _digest(key)))
        if row is None or row.revoked:
            return None
        await self.key_used(row.id, row.last_used_at)
        return ApiPrincipal(row.id, row.account_id, validate_scope(row.scope), row.admin)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _label(value: str | None, what: str) -> str | None:
    """A free-text label, trimmed; blank means none."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if len(value) > _MAX_LABEL:
        raise ValueError(f"{what} is longer than {_MAX_LABEL} characters")
    if not value.isprintable():
        raise ValueError(f"{what} contains control characters")
    return value


def _user(row: UserRow) -> User:
    return User(row.id, row.name, row.extension, row.number, row.display_name, row.account_id)
