"""Uploaded media: audio that calls and conferences play by ``media_name``.

The server writes the file under its data directory; the store keeps only what it needs to find
and describe it (content type, path, size, times). A media with an ``expires_at`` in the past
is gone for every lookup (get, list, update, delete) but its row keeps the name until
``delete_expired_media`` removes it and hands it back, so that the server deletes the file too:
no file is ever forgotten by the database while still on disk. The server runs that sweep
(periodically, and before taking an upload whose name is held by an expired media).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypedDict, Unpack

from sqlalchemy import ColumnElement, delete, or_, select
from sqlalchemy.exc import IntegrityError

from callbridge.store.errors import MediaExists, MediaNotFound
from callbridge.store.records import Media, validate_content_type, validate_media_name
from callbridge.store.repository import Repository, check_aware, now, page
from callbridge.store.schema import MediaRow

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
    ) -> Media:
        """Record an uploaded file. ``MediaExists`` if the name is taken (see the module doc
        for a name held by an expired media)."""
        at = now()
        row = MediaRow(
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

    async def get_media(self, media_name: str) -> Media | None:
        """The media named so, unless there is none or it has expired."""
        async with self._read() as session:
            row = await session.scalar(
                select(MediaRow).where(MediaRow.media_name == media_name, _unexpired())
            )
        return None if row is None else _media(row)

    async def list_media(
        self, page_number: int = 1, page_size: int = 20, *, content_type: str | None = None
    ) -> tuple[list[Media], int]:
        """One page of unexpired media, by name, and how many there are in all."""
        statement = select(MediaRow).where(_unexpired()).order_by(MediaRow.media_name)
        if content_type is not None:
            statement = statement.where(MediaRow.content_type == content_type)
        async with self._read() as session:
            rows, total = await page(session, statement, page_number, page_size)
            return [_media(row) for row in rows], total

    async def update_media(self, media_name: str, **changes: Unpack[MediaChanges]) -> Media:
        """Change the given fields (a replaced file, a new expiry); ``MediaNotFound`` if none."""
        unknown = set(changes) - set(MediaChanges.__annotations__)
        if unknown:
            raise TypeError(f"unknown media fields: {', '.join(sorted(unknown))}")
        fields = _validated(dict(changes))
        async with self._write.begin() as session:
            row = await session.scalar(
                select(MediaRow).where(MediaRow.media_name == media_name, _unexpired())
            )
            if row is None:
                raise MediaNotFound(media_name)
            for name, value in fields.items():
                setattr(row, name, value)
            row.updated_at = max(now(), row.updated_at)
        return _media(row)

    async def delete_media(self, media_name: str) -> Media:
        """Forget a media; returns it (its file is the caller's to delete)."""
        async with self._write.begin() as session:
            row = await session.scalar(
                select(MediaRow).where(MediaRow.media_name == media_name, _unexpired())
            )
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
    )
