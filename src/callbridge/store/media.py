"""Uploaded media: audio that calls and conferences play by ``media_name``.

The server writes the file under its data directory; the store keeps only what it needs to find
and describe it (content type, path, size, times). A media with an ``expires_at`` in the past
is gone for every lookup (get, list, update, delete) but its row keeps the name until
``delete_expired_media`` removes it and hands it back, so that the server deletes the file too:
no file is ever forgotten by the database while still on disk. The server runs that sweep
(periodically, and before taking an upload whose name is held by an expired media).

A media belongs to an account, and its name is unique within the account: every method that
names a media takes ``account_id`` (default: the default account), and another account's media
of the same name is a different one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypedDict, Unpack

from sqlalchemy import ColumnElement, Select, delete, or_, select
from sqlalchemy.exc import IntegrityError

from callbridge.store.errors import MediaExists, MediaNotFound
from callbridge.store.records import Media, validate_content_type, validate_media_name
from callbridge.store.repository import Repository, check_aware, now, page
from callbridge.store.schema import DEFAULT_ACCOUNT_ID, MediaRow

__all__ = ["MediaChanges", "MediaRepository"]


class MediaChanges(TypedDict, total=False):
    """The fields ``update_media`` may change (the ones given are changed)."""

    content_type: str
    path: str
    size: int
    expires_at: datetime | None


class MediaRepository(Repository):
    async def add_media(
        self,
        media_name: str,
        *,
        content_type: str,
        path: str,
        size: int,
        expires_at: datetime | None = None,
        account_id: str = DEFAULT_ACCOUNT_ID,
    ) -> Media:
        """Record an uploaded file of the account. ``MediaExists`` if the name is taken in the
        account (see the module doc for a name held by an expired media)."""
        at = now()
        row = MediaRow(
            account_id=account_id,
            media_name=validate_media_name(media_name),
            created_at=at,
            updated_at=at,
            **_validated(
                {"content_type": content_type, "path": path, "size": size, "expires_at": expires_at}
            ),
        )
        try:
            async with self._write.begin() as session:
                session.add(row)
        except IntegrityError as exc:
            raise MediaExists(media_name) from exc
        return _media(row)

    async def get_media(
        self, media_name: str, account_id: str = DEFAULT_ACCOUNT_ID
    ) -> Media | None:
        """The account's media named so, unless there is none or it has expired."""
        async with self._read() as session:
            row: MediaRow | None = await session.scalar(_named(media_name, account_id))
        return None if row is None else _media(row)

    async def list_media(
        self,
        page_number: int = 1,
        page_size: int = 20,
        *,
        content_type: str | None = None,
        account_id: str = DEFAULT_ACCOUNT_ID,
    ) -> tuple[list[Media], int]:
        """One page of the account's unexpired media, by name, and how many there are."""
        statement = (
            select(MediaRow)
            .where(MediaRow.account_id == account_id, _unexpired())
            .order_by(MediaRow.media_name)
        )
        if content_type is not None:
            statement = statement.where(MediaRow.content_type == content_type)
        async with self._read() as session:
            rows, total = await page(session, statement, page_number, page_size)
            return [_media(row) for row in rows], total

    async def update_media(
        self,
        media_name: str,
        *,
        account_id: str = DEFAULT_ACCOUNT_ID,
        **changes: Unpack[MediaChanges],
    ) -> Media:
        """Change the given fields (a replaced file, a new expiry); ``MediaNotFound`` if none."""
        unknown = set(changes) - set(MediaChanges.__annotations__)
        if unknown:
            raise TypeError(f"unknown media fields: {', '.join(sorted(unknown))}")
        fields = _validated(dict(changes))
        async with self._write.begin() as session:
            row: MediaRow | None = await session.scalar(_named(media_name, account_id))
            if row is None:
                raise MediaNotFound(media_name)
            for name, value in fields.items():
                setattr(row, name, value)
            row.updated_at = max(now(), row.updated_at)
        return _media(row)

    async def delete_media(self, media_name: str, account_id: str = DEFAULT_ACCOUNT_ID) -> Media:
        """Forget a media; returns it (its file is the caller's to delete)."""
        async with self._write.begin() as session:
            row: MediaRow | None = await session.scalar(_named(media_name, account_id))
            if row is None:
                raise MediaNotFound(media_name)
            await session.delete(row)
        return _media(row)

    async def delete_expired_media(self) -> list[Media]:
        """Forget every expired media; returns them, so that their files can be deleted."""
        async with self._write.begin() as session:
            rows = list(await session.scalars(select(MediaRow).where(~_unexpired())))
            if rows:
                await session.execute(delete(MediaRow).where(MediaRow.id.in_([r.id for r in rows])))
        return [_media(row) for row in rows]


def _named(media_name: str, account_id: str) -> Select[Any]:
    # Select[Any]: its type parameters differ between SQLAlchemy 2.0 and 2.1 (see repository)
    return select(MediaRow).where(
        MediaRow.account_id == account_id, MediaRow.media_name == media_name, _unexpired()
    )


def _unexpired() -> ColumnElement[bool]:
    return or_(MediaRow.expires_at.is_(None), MediaRow.expires_at > now())


def _validated(fields: dict[str, Any]) -> dict[str, Any]:
    if "content_type" in fields:
        validate_content_type(fields["content_type"])
    if "path" in fields and (not isinstance(fields["path"], str) or not fields["path"]):
        raise ValueError("a media path must be a non-empty string")
    if "size" in fields and (
        isinstance(fields["size"], bool)
        or not isinstance(fields["size"], int)
        or fields["size"] < 0
    ):
        raise ValueError(f"invalid media size {fields['size']!r}: use 0 or more bytes")
    check_aware("media expires_at", fields.get("expires_at"))
    return fields


def _media(row: MediaRow) -> Media:
    return Media(
        media_name=row.media_name,
        content_type=row.content_type,
        path=row.path,
        size=row.size,
        created_at=row.created_at,
        updated_at=row.updated_at,
        expires_at=row.expires_at,
        account_id=row.account_id,
    )
