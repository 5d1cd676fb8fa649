"""Recordings: finished recordings of calls and conferences, as Telnyx's ``/v2/recordings``.

The media plane writes the file; the store keeps where it is and what it is (format, channels,
duration, times, and the call or conference it belongs to). Only finished recordings are kept,
so ``status`` is always "completed".

A recording belongs to an account (its call's or conference's): get, list and delete take
``account_id`` and treat another account's recording as missing (``None``: any account).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from callbridge.store.errors import RecordingExists, RecordingNotFound
from callbridge.store.records import (
    RECORDING_CHANNELS,
    RECORDING_FORMATS,
    Recording,
    RecordingChannels,
    RecordingFormat,
)
from callbridge.store.repository import Repository, check_aware, now, page
from callbridge.store.schema import DEFAULT_ACCOUNT_ID, ApplicationRow, LiveCallRow, RecordingRow

__all__ = ["RecordingRepository"]

_MAX_ID = 128


class RecordingRepository(Repository):
    async def add_recording(
        self,
        *,
        path: str,
        format: RecordingFormat,
        channels: RecordingChannels,
        duration_millis: int,
        recording_started_at: datetime,
        recording_ended_at: datetime,
        call_control_id: str | None = None,
        call_leg_id: str | None = None,
        call_session_id: str | None = None,
        conference_id: str | None = None,
        recording_id: str | None = None,
        account_id: str | None = None,
    ) -> Recording:
        """Record a finished recording; its id is a new UUID unless ``recording_id`` is given.

        ``account_id`` is the account it belongs to; when left out, the account of the live
        call ``call_control_id`` names (``live_calls``: its application's), else the default
        account. Callers that know the account should say it: a call may be gone from
        ``live_calls`` by the time its recording is saved.

        ``RecordingExists`` if that id is taken; ``ValueError`` for a malformed field.
        """
        if format not in RECORDING_FORMATS:
            raise ValueError(f"invalid recording format {format!r}: use wav or mp3")
        if channels not in RECORDING_CHANNELS:
            raise ValueError(f"invalid recording channels {channels!r}: use single or dual")
        if isinstance(duration_millis, bool) or not isinstance(duration_millis, int):
            raise ValueError(f"invalid duration_millis {duration_millis!r}: use an integer")
        if duration_millis < 0:
            raise ValueError(f"invalid duration_millis {duration_millis}: use 0 or more")
        if not path:
            raise ValueError("a recording path must be a non-empty string")
        check_aware("recording_started_at", recording_started_at)
        check_aware("recording_ended_at", recording_ended_at)
        if recording_ended_at < recording_started_at:
            raise ValueError("a recording cannot end before it starts")
        for what, value, limit in (
            ("recording id", recording_id, 64),
            ("call_control_id", call_control_id, _MAX_ID),
            ("call_leg_id", call_leg_id, _MAX_ID),
            ("call_session_id", call_session_id, _MAX_ID),
            ("conference_id", conference_id, 64),
        ):
            if value is not None and not 1 <= len(value) <= limit:
                raise ValueError(f"{what} must be 1 to {limit} characters")
        row = RecordingRow(
            id=recording_id or str(uuid.uuid4()),
            call_control_id=call_control_id,
            call_leg_id=call_leg_id,
            call_session_id=call_session_id,
            conference_id=conference_id,
            path=path,
            format=format,
            channels=channels,
            duration_millis=duration_millis,
            status="completed",
            recording_started_at=recording_started_at,
            recording_ended_at=recording_ended_at,
            created_at=now(),
        )
        try:
            async with self._write.begin() as session:
                if account_id is None and call_control_id is not None:
                    # The live call's application's account (the row's own account_id is
                    # what its writer knew, which may be less), else the live call's.
                    account_id = await session.scalar(
                        select(func.coalesce(ApplicationRow.account_id, LiveCallRow.account_id))
                        .select_from(LiveCallRow)
                        .outerjoin(ApplicationRow, ApplicationRow.id == LiveCallRow.application_id)
                        .where(LiveCallRow.call_control_id == call_control_id)
                    )
                row.account_id = account_id or DEFAULT_ACCOUNT_ID
                session.add(row)
        except IntegrityError as exc:
            raise RecordingExists(row.id) from exc
        return _recording(row)

    async def get_recording(
        self, recording_id: str, account_id: str | None = None
    ) -> Recording | None:
        """The recording, if it exists (and belongs to the account, when one is given)."""
        async with self._read() as session:
            row = await session.get(RecordingRow, recording_id)
        if row is None or (account_id is not None and row.account_id != account_id):
            return None
        return _recording(row)

    async def list_recordings(
        self,
        page_number: int = 1,
        page_size: int = 20,
        *,
        conference_id: str | None = None,
        call_control_id: str | None = None,
        call_leg_id: str | None = None,
        call_session_id: str | None = None,
        created_at_gte: datetime | None = None,
        created_at_lte: datetime | None = None,
        account_id: str | None = None,
    ) -> tuple[list[Recording], int]:
        """One page of recordings (of the account, when one is given), newest first, and how
        many match in all.

        The filters are Telnyx's ``filter[conference_id]``, ``filter[created_at][gte]`` and so
        on; the bounds are inclusive.
        """
        check_aware("created_at_gte", created_at_gte)
        check_aware("created_at_lte", created_at_lte)
        statement = select(RecordingRow).order_by(
            RecordingRow.created_at.desc(), RecordingRow.id.desc()
        )
        for column, value in (
            (RecordingRow.account_id, account_id),
            (RecordingRow.conference_id, conference_id),
            (RecordingRow.call_control_id, call_control_id),
            (RecordingRow.call_leg_id, call_leg_id),
            (RecordingRow.call_session_id, call_session_id),
        ):
            if value is not None:
                statement = statement.where(column == value)
        if created_at_gte is not None:
            statement = statement.where(RecordingRow.created_at >= created_at_gte)
        if created_at_lte is not None:
            statement = statement.where(RecordingRow.created_at <= created_at_lte)
        async with self._read() as session:
            rows, total = await page(session, statement, page_number, page_size)
            return [_recording(row) for row in rows], total

    async def delete_recording(self, recording_id: str, account_id: str | None = None) -> Recording:
        """Forget a recording; returns it (its file is the caller's to delete)."""
        async with self._write.begin() as session:
            row = await session.get(RecordingRow, recording_id)
            if row is None or (account_id is not None and row.account_id != account_id):
                raise RecordingNotFound(recording_id)
            await session.delete(row)
        return _recording(row)


def _recording(row: RecordingRow) -> Recording:
    format_: RecordingFormat = "mp3" if row.format == "mp3" else "wav"
    channels: RecordingChannels = "dual" if row.channels == "dual" else "single"
    return Recording(
        id=row.id,
        call_control_id=row.call_control_id,
        call_leg_id=row.call_leg_id,
        call_session_id=row.call_session_id,
        conference_id=row.conference_id,
        path=row.path,
        format=format_,
        channels=channels,
        duration_millis=row.duration_millis,
        status="completed",
        recording_started_at=row.recording_started_at,
        recording_ended_at=row.recording_ended_at,
        created_at=row.created_at,
        account_id=row.account_id,
    )
