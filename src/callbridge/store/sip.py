"""SIP in the store (issue 11): users' digest credentials, registered contacts, SIP secrets.

**Credentials.** A user's SIP password is kept only as its two HA1s (MD5 and SHA-256, RFC
7616 §3.4.2) for one realm, the SIP domain. The SIP username is the user's name. Changing the
server's SIP domain makes the stored HA1s useless: the passwords must be set again.

**Bindings** (RFC 3261 §10.3). :meth:`SipRepository.register_bindings` applies one REGISTER's
contacts in one transaction, all or nothing (§10.3 step 8): a contact whose binding has the same
Call-ID and a CSeq at least as high aborts the whole update (step 7), ``expires`` 0 removes, and
a user may hold at most ``max_bindings`` live ones. Expired bindings are never returned; they are
deleted as the user registers again and by :meth:`SipRepository.prune_bindings`. Bindings are
rows, so a restart keeps them (the connection a stream-transport binding came over does not
survive it: see :attr:`Binding.connection_id`).

    StoreError
    ├── RegistrationOutOfOrder   a REGISTER's CSeq is not above its binding's (§10.3 step 7)
    └── TooManyBindings          the user would have more than ``max_bindings`` contacts
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from callbridge.sip.digest import ha1
from callbridge.store.errors import StoreError, UserNotFound
from callbridge.store.records import User
from callbridge.store.repository import Repository, now
from callbridge.store.schema import SipBindingRow, SipCredentialRow, SipSecretRow, UserRow

__all__ = [
    "MAX_SIP_PASSWORD",
    "Binding",
    "BindingUpdate",
    "Origin",
    "RegistrationOutOfOrder",
    "SipCredentials",
    "SipRepository",
    "TooManyBindings",
    "validate_sip_password",
]

MAX_SIP_PASSWORD = 128
MIN_SIP_PASSWORD = 8


class RegistrationOutOfOrder(StoreError):
    def __init__(self, contact: str, stored: int, received: int) -> None:
        super().__init__(
            f"REGISTER CSeq {received} is not above {stored}, the last one for {contact}"
        )
        self.stored = stored
        self.received = received


class TooManyBindings(StoreError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} registered contacts per user")
        self.limit = limit


@dataclass(frozen=True, slots=True)
class SipCredentials:
    """A user and the HA1s of their SIP password in ``realm``."""

    user: User
    realm: str
    ha1_md5: str
    ha1_sha256: str


@dataclass(frozen=True, slots=True)
class Binding:
    """A registered contact of a user, and how to reach it.

    To send a request to it: over the connection ``connection_id`` while it is open on node
    ``node_id`` (always for ``ws``/``wss``, whose contacts have ``.invalid`` hosts, RFC 7118
    §5; preferably for ``tcp``/``tls``, RFC 5626); otherwise, for ``udp``, to
    ``source_host``:``source_port`` (where the REGISTER came from: the NAT's mapping, RFC
    3581), falling back to the contact URI itself.
    """

    id: int
    user_id: int
    user_name: str
    account_id: str
    contact: str
    expires_at: datetime
    call_id: str
    cseq: int
    q: float | None
    source_host: str
    source_port: int
    transport: str
    connection_id: str | None
    instance_id: str | None
    reg_id: int | None
    user_agent: str | None
    node_id: str | None
    created_at: datetime
    updated_at: datetime

    def expires_in(self, at: datetime | None = None) -> int:
        """Whole seconds left (0 once expired)."""
        left = (self.expires_at - (at or now())).total_seconds()
        return max(int(left), 0)


@dataclass(frozen=True, slots=True)
class BindingUpdate:
    """One Contact of a REGISTER: ``expires`` seconds (0 removes the binding)."""

    binding_key: str
    contact: str
    expires: int
    q: float | None = None
    instance_id: str | None = None
    reg_id: int | None = None


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a REGISTER came from (kept with each binding it makes)."""

    source_host: str
    source_port: int
    transport: str
    connection_id: str | None = None
    user_agent: str | None = None
    node_id: str | None = None


def validate_sip_password(password: str) -> str:
    """A SIP password: 8 to 128 printable characters (it is typed into phones)."""
    if not MIN_SIP_PASSWORD <= len(password) <= MAX_SIP_PASSWORD:
        raise ValueError(
            f"SIP password must be {MIN_SIP_PASSWORD} to {MAX_SIP_PASSWORD} characters"
        )
    if not password.isprintable():
        raise ValueError("SIP password contains control characters")
    return password


class SipRepository(Repository):
    # credentials ----------------------------------------------------------------------------
    async def set_sip_password(self, name: str, password: str, realm: str) -> User:
        """Give user ``name`` SIP credentials (or new ones) in ``realm``; ``UserNotFound``."""
        validate_sip_password(password)
        if not realm or len(realm) > 255 or not realm.isprintable():
            raise ValueError(f"invalid SIP domain {realm[:40]!r}")
        async with self._write.begin() as session:
            user = await session.scalar(select(UserRow).where(UserRow.name == name))
            if user is None:
                raise UserNotFound(name)
            row = await session.get(SipCredentialRow, user.id)
            if row is None:
                row = SipCredentialRow(user_id=user.id)
                session.add(row)
            row.realm = realm
            row.ha1_md5 = ha1(name, realm, password, "MD5")
            row.ha1_sha256 = ha1(name, realm, password, "SHA-256")
            row.updated_at = now()
        return _user(user)

    async def clear_sip_password(self, name: str) -> bool:
        """Remove user ``name``'s SIP credentials and bindings; whether there were any."""
        async with self._write.begin() as session:
            user = await session.scalar(select(UserRow).where(UserRow.name == name))
            if user is None:
                raise UserNotFound(name)
            await session.execute(delete(SipBindingRow).where(SipBindingRow.user_id == user.id))
            row = await session.get(SipCredentialRow, user.id)
            if row is None:
                return False
            await session.delete(row)
            return True

    async def sip_credentials(self, name: str) -> SipCredentials | None:
        """User ``name`` and their HA1s; ``None`` if no such user or no SIP password."""
        async with self._read() as session:
            found = (
                await session.execute(
                    select(UserRow, SipCredentialRow)
                    .join(SipCredentialRow, SipCredentialRow.user_id == UserRow.id)
                    .where(UserRow.name == name)
                )
            ).one_or_none()
        if found is None:
            return None
        user, row = found
        return SipCredentials(_user(user), row.realm, row.ha1_md5, row.ha1_sha256)

    async def sip_users(self) -> dict[str, str]:
        """Names of the users with SIP credentials, and the realm of each."""
        async with self._read() as session:
            rows = await session.execute(
                select(UserRow.name, SipCredentialRow.realm).join(
                    SipCredentialRow, SipCredentialRow.user_id == UserRow.id
                )
            )
            return {name: realm for name, realm in rows}

    # secrets --------------------------------------------------------------------------------
    async def sip_secret(self, purpose: str = "nonce") -> bytes:
        """The server secret for ``purpose`` (32 random bytes, made on first use and shared by
        every node of this database)."""
        async with self._read() as session:
            row = await session.get(SipSecretRow, purpose)
        if row is not None:
            return bytes.fromhex(row.secret)
        try:
            async with self._write.begin() as session:
                if await session.get(SipSecretRow, purpose) is None:
                    session.add(
                        SipSecretRow(
                            purpose=purpose, secret=secrets.token_hex(32), created_at=now()
                        )
                    )
        except IntegrityError:
            pass  # another node made it first: read theirs
        async with self._read() as session:
            made = await session.get(SipSecretRow, purpose)
        assert made is not None
        return bytes.fromhex(made.secret)

    # bindings -------------------------------------------------------------------------------
    async def register_bindings(
        self,
        user_id: int,
        *,
        call_id: str,
        cseq: int,
        origin: Origin,
        updates: Sequence[BindingUpdate] = (),
        remove_all: bool = False,
        max_bindings: int = 10,
        at: datetime | None = None,
    ) -> list[Binding]:
        """Apply a REGISTER (RFC 3261 §10.3 steps 6-8) and return the user's live bindings.

        ``remove_all`` is ``Contact: *`` with ``Expires: 0``. Raises
        :class:`RegistrationOutOfOrder` or :class:`TooManyBindings` with nothing changed.
        """
        at = at or now()
        for attempt in (1, 2):
            try:
                async with self._write.begin() as session:
                    await self._apply(
                        session, user_id, call_id, cseq, origin, updates, remove_all, at
                    )
                    live = await self._live(session, at, user_id=user_id)
                    if len(live) > max_bindings and any(u.expires for u in updates):
                        raise TooManyBindings(max_bindings)
                    return live
            except IntegrityError:
                # Two REGISTERs of one user raced to add the same contact (PostgreSQL, read
                # committed): the second sees the first's row on a new try.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _apply(
        self,
        session: AsyncSession,
        user_id: int,
        call_id: str,
        cseq: int,
        origin: Origin,
        updates: Sequence[BindingUpdate],
        remove_all: bool,
        at: datetime,
    ) -> None:
        await session.execute(
            delete(SipBindingRow).where(
                SipBindingRow.user_id == user_id, SipBindingRow.expires_at <= at
            )
        )
        rows = {
            row.binding_key: row
            for row in await session.scalars(
                select(SipBindingRow).where(SipBindingRow.user_id == user_id)
            )
        }
        if remove_all:
            for old in rows.values():
                _check_order(old, call_id, cseq)
                await session.delete(old)
            return
        for update in updates:
            found = rows.get(update.binding_key)
            if found is not None:
                _check_order(found, call_id, cseq)
            if update.expires == 0:
                if found is not None:
                    await session.delete(found)
                    del rows[update.binding_key]
                continue
            if found is None:
                row = rows[update.binding_key] = SipBindingRow(
                    user_id=user_id, binding_key=update.binding_key, created_at=at
                )
                session.add(row)
            else:
                row = found
            row.contact = update.contact
            row.expires_at = at + timedelta(seconds=update.expires)
            row.call_id = call_id
            row.cseq = cseq
            row.q = update.q
            row.instance_id = update.instance_id
            row.reg_id = update.reg_id
            row.source_host = origin.source_host
            row.source_port = origin.source_port
            row.transport = origin.transport
            row.connection_id = origin.connection_id
            row.user_agent = origin.user_agent
            row.node_id = origin.node_id
            row.updated_at = at
        await session.flush()

    async def _live(
        self,
        session: AsyncSession,
        at: datetime,
        *,
        user_id: int | None = None,
        name: str | None = None,
    ) -> list[Binding]:
        statement = (
            select(SipBindingRow, UserRow)
            .join(UserRow, SipBindingRow.user_id == UserRow.id)
            .where(SipBindingRow.expires_at > at)
            .order_by(UserRow.name, func.coalesce(SipBindingRow.q, 1.0).desc(), SipBindingRow.id)
        )
        if user_id is not None:
            statement = statement.where(SipBindingRow.user_id == user_id)
        if name is not None:
            statement = statement.where(UserRow.name == name)
        return [_binding(row, user) for row, user in await session.execute(statement)]

    async def bindings(
        self, name: str | None = None, *, at: datetime | None = None
    ) -> list[Binding]:
        """Live bindings, of user ``name`` or of everyone, by user then q (highest first)."""
        async with self._read() as session:
            return await self._live(session, at or now(), name=name)

    async def prune_bindings(self, at: datetime | None = None) -> int:
        """Delete expired bindings; how many went."""
        async with self._write.begin() as session:
            result = await session.execute(
                delete(SipBindingRow).where(SipBindingRow.expires_at <= (at or now()))
            )
        return int(getattr(result, "rowcount", 0) or 0)


def _check_order(row: SipBindingRow, call_id: str, cseq: int) -> None:
    # RFC 3261 §10.3 step 7: same Call-ID and a CSeq not above the stored one means this
    # REGISTER is older than (or a copy of) the one that made the binding.
    if row.call_id == call_id and cseq <= row.cseq:
        raise RegistrationOutOfOrder(row.contact, row.cseq, cseq)


def _user(row: UserRow) -> User:
    return User(row.id, row.name, row.extension, row.number, row.display_name, row.account_id)


def _binding(row: SipBindingRow, user: UserRow) -> Binding:
    return Binding(
        id=row.id,
        user_id=row.user_id,
        user_name=user.name,
        account_id=user.account_id,
        contact=row.contact,
        expires_at=row.expires_at,
        call_id=row.call_id,
        cseq=row.cseq,
        q=row.q,
        source_host=row.source_host,
        source_port=row.source_port,
        transport=row.transport,
        connection_id=row.connection_id,
        instance_id=row.instance_id,
        reg_id=row.reg_id,
        user_agent=row.user_agent,
        node_id=row.node_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
