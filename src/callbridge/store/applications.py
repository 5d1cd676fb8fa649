"""Call-control applications and the routes (the dial plan) that send calls to them.

An application is where a call's webhooks go (``webhook_event_url``, with an optional failover
URL) and how they are signed (the server's ed25519 key always; the application's Standard
Webhooks ``signing_secret`` too, when it has one). Its fields and their names are Telnyx's
call-control application's, so that the REST layer maps them one to one.

A route sends calls dialled to a destination — an extension or an E.164 number — to an
application (which then gets ``call.initiated`` and drives the call). Routes go with their
application when it is deleted. Whether a route or a user wins when both claim a destination is
the call controller's rule, not the store's.

Both belong to an account. Every method that names an application takes ``account_id``: a row
of another account is "not found" (``None`` means any account, for the core, which got the id
from a route of the account already). A route belongs to its application's account.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, TypedDict, Unpack

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from callbridge.store.accounts import AccountNotFound
from callbridge.store.errors import ApplicationNotFound, RouteNotFound
from callbridge.store.readcache import bump
from callbridge.store.records import (
    Application,
    Route,
    normalize_number,
    validate_application_name,
    validate_destination,
    validate_signing_secret,
    validate_webhook_timeout,
    validate_webhook_url,
)
from callbridge.store.repository import Repository, new_id, now, page
from callbridge.store.schema import DEFAULT_ACCOUNT_ID, AccountRow, ApplicationRow, RouteRow

__all__ = ["APPLICATION_SORTS", "ApplicationChanges", "ApplicationRepository"]

# sort= values for list_applications: a field, or "-" and a field for descending order.
APPLICATION_SORTS = ("created_at", "application_name", "active")


class ApplicationChanges(TypedDict, total=False):
    """The fields ``update_application`` may change (the ones given are changed)."""

    application_name: str
    webhook_event_url: str
    webhook_event_failover_url: str | None
    webhook_api_version: str
    webhook_timeout_secs: int | None
    active: bool
    signing_secret: str | None


def _api_version(version: str) -> str:
    if version != "2":
        raise ValueError(
            f"invalid webhook_api_version {version!r}: callbridge sends API v2 webhooks only "
            "(use '2')"
        )
    return version


def _active(active: bool) -> bool:
    if not isinstance(active, bool):
        raise ValueError(f"invalid active {active!r}: use true or false")
    return active


def _failover_url(url: str | None) -> str | None:
    return None if url is None else validate_webhook_url(url, "webhook failover URL")


_VALIDATE: dict[str, Callable[[Any], Any]] = {
    "application_name": validate_application_name,
    "webhook_event_url": validate_webhook_url,
    "webhook_event_failover_url": _failover_url,
    "webhook_api_version": _api_version,
    "webhook_timeout_secs": validate_webhook_timeout,
    "active": _active,
    "signing_secret": validate_signing_secret,
}
assert set(_VALIDATE) == set(ApplicationChanges.__annotations__)


class ApplicationRepository(Repository):
    # applications ---------------------------------------------------------------------------
    async def create_application(
        self,
        *,
        application_name: str,
        webhook_event_url: str,
        webhook_event_failover_url: str | None = None,
        webhook_api_version: str = "2",
        webhook_timeout_secs: int | None = None,
        active: bool = True,
        signing_secret: str | None = None,
        account_id: str = DEFAULT_ACCOUNT_ID,
    ) -> Application:
        """A new application of the account, with a new id. ``ValueError`` says which field
        is malformed; ``AccountNotFound`` if there is no such account."""
        fields = _validated(
            {
                "application_name": application_name,
                "webhook_event_url": webhook_event_url,
                "webhook_event_failover_url": webhook_event_failover_url,
                "webhook_api_version": webhook_api_version,
                "webhook_timeout_secs": webhook_timeout_secs,
                "active": active,
                "signing_secret": signing_secret,
            }
        )
        at = now()
        row = ApplicationRow(
            id=new_id(), account_id=account_id, created_at=at, updated_at=at, **fields
        )
        async with self._write.begin() as session:
            if await session.get(AccountRow, account_id) is None:
                raise AccountNotFound(account_id)
            session.add(row)
        return _application(row)

    async def get_application(
        self, application_id: str, account_id: str | None = None
    ) -> Application | None:
        """The application, if it exists (and belongs to the account, when one is given)."""
        async with self._read() as session:
            row = await _owned(session, application_id, account_id)
        return None if row is None else _application(row)

    async def application_account(self, application_id: str) -> str | None:
        """The id of the account the application belongs to (``None``: no such application)."""
        async with self._read() as session:
            return await session.scalar(
                select(ApplicationRow.account_id).where(ApplicationRow.id == application_id)
            )

    async def list_applications(
        self,
        page_number: int = 1,
        page_size: int = 20,
        *,
        name_contains: str | None = None,
        sort: str = "created_at",
        account_id: str | None = None,
    ) -> tuple[list[Application], int]:
        """One page of applications (of the account, when one is given) and how many match in
        all.

        ``name_contains`` keeps those whose name contains it, ignoring case (as Telnyx's
        ``filter[application_name][contains]``). ``sort`` is one of ``APPLICATION_SORTS``,
        prefixed with "-" for descending order; ties are broken by id (creation order).
        """
        field = sort.removeprefix("-")
        if field not in APPLICATION_SORTS:
            raise ValueError(
                f"invalid sort {sort!r}: use one of {', '.join(APPLICATION_SORTS)}, "
                "with a leading '-' for descending order"
            )
        column = getattr(ApplicationRow, field)
        descending = sort.startswith("-")
        statement = select(ApplicationRow).order_by(
            column.desc() if descending else column.asc(),
            ApplicationRow.id.desc() if descending else ApplicationRow.id.asc(),
        )
        if account_id is not None:
            statement = statement.where(ApplicationRow.account_id == account_id)
        if name_contains:
            statement = statement.where(
                ApplicationRow.application_name.icontains(name_contains, autoescape=True)
            )
        async with self._read() as session:
            rows, total = await page(session, statement, page_number, page_size)
            return [_application(row) for row in rows], total

    async def update_application(
        self,
        application_id: str,
        *,
        account_id: str | None = None,
        **changes: Unpack[ApplicationChanges],
    ) -> Application:
        """Change the given fields; ``ApplicationNotFound`` if there is no such application
        (in the account, when one is given).

        A field given as ``None`` is cleared (where it may be). ``updated_at`` moves even when
        nothing else changes: the update happened.
        """
        unknown = set(changes) - set(_VALIDATE)
        if unknown:
            raise TypeError(f"unknown application fields: {', '.join(sorted(unknown))}")
        fields = _validated(dict(changes))
        async with self._write.begin() as session:
            row = await _owned(session, application_id, account_id)
            if row is None:
                raise ApplicationNotFound(application_id)
            for name, value in fields.items():
                setattr(row, name, value)
            row.updated_at = max(now(), row.updated_at)
        return _application(row)

    async def delete_application(
        self, application_id: str, account_id: str | None = None
    ) -> Application:
        """Delete an application and its routes; returns what was deleted."""
        async with self._write.begin() as session:
            row = await _owned(session, application_id, account_id)
            if row is None:
                raise ApplicationNotFound(application_id)
            # Explicit, not only ON DELETE CASCADE: the ORM session must not keep the routes.
            await session.execute(delete(RouteRow).where(RouteRow.application_id == row.id))
            await session.delete(row)
            await bump(session)
        self._cache.clear()  # its routes are gone for the next call
        return _application(row)

    # routes ---------------------------------------------------------------------------------
    async def set_route(
        self, destination: str, application_id: str, account_id: str | None = None
    ) -> Route:
        """Send calls to ``destination`` to the application; replaces an existing route of its
        account. ``ApplicationNotFound`` if there is no such application (in the account, when
        one is given).

        ``destination`` is an extension (2 to 8 digits) or an E.164 number (separators are
        dropped: "+1 (415) 555-0100" is stored as "+14155550100").
        """
        key = validate_destination(destination)
        at = now()
        async with self._write.begin() as session:
            application = await _owned(session, application_id, account_id)
            if application is None:
                raise ApplicationNotFound(application_id)
            account_id = application.account_id  # a route belongs to its application's account
            # One statement, so that two servers setting the same new route at once cannot
            # both insert it. Both dialects spell the upsert the same way.
            dialect = sqlite if session.get_bind().dialect.name == "sqlite" else postgresql
            upsert = dialect.insert(RouteRow).values(
                account_id=account_id,
                destination=key,
                application_id=application_id,
                created_at=at,
            )
            upsert = upsert.on_conflict_do_update(
                index_elements=[RouteRow.account_id, RouteRow.destination],
                set_={"application_id": upsert.excluded.application_id},
            )
            try:
                await session.execute(upsert)
            except IntegrityError as exc:  # the application was deleted meanwhile
                raise ApplicationNotFound(application_id) from exc
            row = await session.get(RouteRow, (account_id, key), populate_existing=True)
            assert row is not None
            await bump(session)
        self._cache.clear()  # the next call to this destination takes the new route
        return _route(row)

    async def delete_route(self, destination: str, account_id: str = DEFAULT_ACCOUNT_ID) -> Route:
        """Remove the account's route for ``destination``; returns it. ``RouteNotFound`` if
        none."""
        try:
            key = validate_destination(destination)
        except ValueError:
            raise RouteNotFound(destination) from None
        async with self._write.begin() as session:
            row = await session.get(RouteRow, (account_id, key))
            if row is None:
                raise RouteNotFound(destination)
            await session.delete(row)
            await bump(session)
        self._cache.clear()
        return _route(row)

    async def find_route(
        self, destination: str, account_id: str = DEFAULT_ACCOUNT_ID
    ) -> str | None:
        """The id of the application that calls dialled to ``destination`` within the account
        go to, if any.

        As ``find_user``: an extension matches exactly, a number with or without its leading
        '+' and with separators; an exact extension wins over a number. Read through the
        routing cache (store.readcache): every call not taken by a dial rule asks.
        """
        dialled = destination.strip()
        if not dialled:
            return None
        candidates = [dialled]
        number = normalize_number(dialled)
        if number is not None:
            candidates.append(number)
        # The account's whole route table, one query for every destination (routes are few
        # and change rarely; a call to a destination without one is the common case).
        found = await self._cache.read(("routes", account_id), partial(self._routes, account_id))
        for candidate in candidates:
            if candidate in found:
                return found[candidate]
        return None

    async def _routes(self, account_id: str) -> dict[str, str]:
        async with self._read() as session:
            result = await session.execute(
                select(RouteRow.destination, RouteRow.application_id).where(
                    RouteRow.account_id == account_id
                )
            )
            return {destination: application_id for destination, application_id in result}

    async def list_routes(
        self, application_id: str | None = None, account_id: str | None = None
    ) -> list[Route]:
        """Every route (or the application's; of the account, when one is given), by
        destination."""
        statement = select(RouteRow).order_by(RouteRow.destination, RouteRow.account_id)
        if application_id is not None:
            statement = statement.where(RouteRow.application_id == application_id)
        if account_id is not None:
            statement = statement.where(RouteRow.account_id == account_id)
        async with self._read() as session:
            return [_route(row) for row in await session.scalars(statement)]


async def _owned(
    session: AsyncSession, application_id: str, account_id: str | None
) -> ApplicationRow | None:
    """The application's row; ``None`` also when it belongs to another account than the one
    given (so that the caller cannot tell the two apart)."""
    row = await session.get(ApplicationRow, application_id)
    if row is None or (account_id is not None and row.account_id != account_id):
        return None
    return row


def _validated(fields: dict[str, Any]) -> dict[str, Any]:
    return {name: _VALIDATE[name](value) for name, value in fields.items()}


def _application(row: ApplicationRow) -> Application:
    return Application(
        id=row.id,
        application_name=row.application_name,
        webhook_event_url=row.webhook_event_url,
        webhook_event_failover_url=row.webhook_event_failover_url,
        webhook_api_version=row.webhook_api_version,
        webhook_timeout_secs=row.webhook_timeout_secs,
        active=row.active,
        signing_secret=row.signing_secret,
        created_at=row.created_at,
        updated_at=row.updated_at,
        account_id=row.account_id,
    )


def _route(row: RouteRow) -> Route:
    return Route(row.destination, row.application_id, row.created_at)
