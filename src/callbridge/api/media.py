"""``/v2/media`` (uploaded audio, played by ``media_name``) and ``/v2/recordings``.

Media: ``POST /v2/media`` with a ``media_url`` (as the telnyx SDK's ``media.upload`` sends it):
the server fetches the file (http/https, within the outbound policy and the fetch limits, at
most ``max_upload_bytes``: docs/security.md), checks that it decodes as audio, keeps
it under ``<data-dir>/media/`` and records it in the store, for ``ttl_secs`` (default 48 hours).
``media_name`` then works wherever an ``audio_url`` does (call playback, conference play and
hold audio).

Recordings: every finished call or conference recording is in the store; ``download_urls``
point at ``GET /v2/recordings/{id}/download``, which needs the API key like every endpoint.

Both belong to the API key's account: names of media are unique within an account (another
account's file of the same name is another file, kept in its own directory), and another
account's media or recording is not found (404), as one that does not exist.
"""

from __future__ import annotations

import asyncio
import mimetypes
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from callbridge.api.context import ApiContext, Ctx, Principal
from callbridge.api.errors import invalid, not_found, wrong_state
from callbridge.api.pagination import PageQuery, meta
from callbridge.api.schemas import Data, ListOf, Params, iso
from callbridge.errors import MediaError
from callbridge.media.fetch import BUSY, fetcher
from callbridge.media.interface import AudioSpec
from callbridge.store import Media, MediaExists, MediaNotFound, Recording
from callbridge.store.accounts import DEFAULT_ACCOUNT_ID
from callbridge.store.records import validate_media_name

__all__ = ["router"]

router = APIRouter()
DEFAULT_TTL = 48 * 3600


class MediaOut(BaseModel):
    record_type: Literal["media"] = "media"
    media_name: str
    content_type: str
    size: int
    created_at: str
    updated_at: str
    expires_at: str | None


def _media_out(media: Media) -> MediaOut:
    return MediaOut(
        media_name=media.media_name,
        content_type=media.content_type,
        size=media.size,
        created_at=iso(media.created_at) or "",
        updated_at=iso(media.updated_at) or "",
        expires_at=iso(media.expires_at),
    )


class UploadParams(Params):
    media_url: str = Field(description="Where the server fetches the file (http or https).")
    media_name: str | None = Field(None, description="Default: the URL's file name.")
    ttl_secs: int | None = Field(None, ge=1, le=630720000)


async def _download(url: str, owner: str | None = None) -> tuple[bytes, str]:
    """Fetch ``url`` through the server's media fetcher (outbound policy, one deadline, the
    upload size cap, ``max_fetches``/``max_fetches_per_user``; ``owner`` names whom the fetch
    counts for): its bytes and content type. A 422 on ``/media_url`` says why not."""
    if not url.lower().startswith(("http://", "https://")):
        raise invalid("media_url must be an http:// or https:// URL", pointer="/media_url")
    try:
        async with fetcher().fetched(url, owner) as got:
            data = await asyncio.to_thread(got.path.read_bytes)
            kind = got.content_type
    except MediaError as exc:
        if exc.code is BUSY:
            raise wrong_state(exc.message, pointer="/media_url") from None
        raise invalid(exc.message, pointer="/media_url") from None
    if kind is None or not kind.startswith("audio/"):
        kind = mimetypes.guess_type(urlsplit(url).path)[0] or "audio/mpeg"
    return data, kind


def _media_dir(ctx: ApiContext, account_id: str) -> Path:
    """Where an account's media files are: the default account's directly in the media
    directory (as before accounts), every other account's in a directory of its own."""
    if account_id == DEFAULT_ACCOUNT_ID:
        return ctx.media_dir
    return ctx.media_dir / "accounts" / account_id


async def _store_file(ctx: ApiContext, account_id: str, name: str, data: bytes) -> Path:
    """Write the upload and check that it decodes as audio (422 if not)."""
    folder = _media_dir(ctx, account_id)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.upload"
    await asyncio.to_thread(path.write_bytes, data)
    try:
        await ctx.control.probe_audio(AudioSpec("file", str(path)))
    except MediaError:
        path.unlink(missing_ok=True)
        raise invalid(
            "the file at media_url is not audio that can be played (WAV, MP3, Ogg, ...)",
            pointer="/media_url",
        ) from None
    final = folder / name
    path.replace(final)
    return final


async def _unlink(path: str) -> None:
    await asyncio.to_thread(Path(path).unlink, missing_ok=True)


def _name_from(url: str) -> str:
    base = Path(urlsplit(url).path).name
    clean = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".")
    return clean[:255] or "media-" + datetime.now(UTC).strftime("%Y%m%d%H%M%S%f")


async def _sweep(ctx: ApiContext) -> None:
    for gone in await ctx.store.delete_expired_media():
        await _unlink(gone.path)


@router.post("/media", tags=["Media"], summary="Upload a media file", response_model=Data[MediaOut])
async def upload_media(params: UploadParams, ctx: Ctx, principal: Principal) -> Data[MediaOut]:
    account = principal.account_id
    name = params.media_name or _name_from(params.media_url)
    try:
        validate_media_name(name)
    except ValueError as exc:
        raise invalid(str(exc), pointer="/media_name") from None
    await _sweep(ctx)
    if await ctx.store.get_media(name, account) is not None:
        raise invalid(
            f"media named {name!r} exists already: delete it or update it (PUT)", "/media_name"
        )
    data, kind = await _download(params.media_url)
    path = await _store_file(ctx, account, name, data)
    ttl = params.ttl_secs or DEFAULT_TTL
    try:
        media = await ctx.store.add_media(
            name,
            content_type=kind,
            path=str(path),
            size=len(data),
            expires_at=datetime.now(UTC) + timedelta(seconds=ttl),
            account_id=account,
        )
    except MediaExists:
        raise invalid(f"media named {name!r} exists already", pointer="/media_name") from None
    return Data[MediaOut](data=_media_out(media))


@router.get("/media", tags=["Media"], summary="List media", response_model=ListOf[MediaOut])
async def list_media(
    ctx: Ctx,
    principal: Principal,
    page: PageQuery,
    content_type: Annotated[str | None, Query(alias="filter[content_type][]")] = None,
) -> ListOf[MediaOut]:
    items, total = await ctx.store.list_media(
        page.number, page.size, content_type=content_type, account_id=principal.account_id
    )
    return ListOf[MediaOut](data=[_media_out(m) for m in items], meta=meta(page, total))


async def _media(ctx: ApiContext, principal: Principal, name: str) -> Media:
    media = await ctx.store.get_media(name, principal.account_id)
    if media is None:
        raise not_found(f"no media named {name!r}", "media_name")
    return media


@router.get(
    "/media/{media_name}", tags=["Media"], summary="Retrieve media", response_model=Data[MediaOut]
)
async def retrieve_media(media_name: str, ctx: Ctx, principal: Principal) -> Data[MediaOut]:
    return Data[MediaOut](data=_media_out(await _media(ctx, principal, media_name)))


class UpdateParams(Params):
    media_url: str | None = None
    ttl_secs: int | None = Field(None, ge=1, le=630720000)


@router.put(
    "/media/{media_name}",
    tags=["Media"],
    summary="Replace a media's file or change its lifetime",
    response_model=Data[MediaOut],
)
async def update_media(
    media_name: str, params: UpdateParams, ctx: Ctx, principal: Principal
) -> Data[MediaOut]:
    account = principal.account_id
    await _media(ctx, principal, media_name)
    if params.media_url is not None:
        data, kind = await _download(params.media_url)
        path = await _store_file(ctx, account, media_name, data)
        await ctx.store.update_media(
            media_name, account_id=account, content_type=kind, path=str(path), size=len(data)
        )
    if params.ttl_secs is not None:
        expires = datetime.now(UTC) + timedelta(seconds=params.ttl_secs)
        await ctx.store.update_media(media_name, account_id=account, expires_at=expires)
    return Data[MediaOut](data=_media_out(await _media(ctx, principal, media_name)))


@router.delete("/media/{media_name}", tags=["Media"], summary="Delete media", status_code=204)
async def delete_media(media_name: str, ctx: Ctx, principal: Principal) -> Response:
    try:
        media = await ctx.store.delete_media(media_name, principal.account_id)
    except MediaNotFound:
        raise not_found(f"no media named {media_name!r}", "media_name") from None
    await _unlink(media.path)
    return Response(status_code=204)


@router.get(
    "/media/{media_name}/download",
    tags=["Media"],
    summary="Download a media file",
    response_class=FileResponse,
)
async def download_media(media_name: str, ctx: Ctx, principal: Principal) -> FileResponse:
    media = await _media(ctx, principal, media_name)
    return FileResponse(media.path, media_type=media.content_type)


# recordings -----------------------------------------------------------------------------------
class DownloadUrls(BaseModel):
    wav: str | None = None
    mp3: str | None = None


class RecordingOut(BaseModel):
    record_type: Literal["recording"] = "recording"
    id: str
    call_control_id: str | None
    call_leg_id: str | None
    call_session_id: str | None
    conference_id: str | None
    source: Literal["conference", "call"]
    channels: Literal["single", "dual"]
    duration_millis: int
    status: Literal["completed"] = "completed"
    download_urls: DownloadUrls
    recording_started_at: str
    recording_ended_at: str
    created_at: str
    updated_at: str


def _recording_out(ctx: ApiContext, rec: Recording) -> RecordingOut:
    url = f"{ctx.public_url}/v2/recordings/{rec.id}/download"
    return RecordingOut(
        id=rec.id,
        call_control_id=rec.call_control_id,
        call_leg_id=rec.call_leg_id,
        call_session_id=rec.call_session_id,
        conference_id=rec.conference_id,
        source="conference" if rec.conference_id else "call",
        channels=rec.channels,
        duration_millis=rec.duration_millis,
        download_urls=DownloadUrls(**{rec.format: url}),
        recording_started_at=iso(rec.recording_started_at) or "",
        recording_ended_at=iso(rec.recording_ended_at) or "",
        created_at=iso(rec.created_at) or "",
        updated_at=iso(rec.created_at) or "",
    )


def _instant(value: str | None, parameter: str) -> datetime | None:
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(
            f"{parameter} must be an ISO 8601 time, e.g. 2025-01-31T12:00:00Z", parameter=parameter
        ) from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


@router.get(
    "/recordings",
    tags=["Recordings"],
    summary="List recordings",
    response_model=ListOf[RecordingOut],
)
async def list_recordings(
    ctx: Ctx,
    principal: Principal,
    page: PageQuery,
    conference_id: Annotated[str | None, Query(alias="filter[conference_id]")] = None,
    call_control_id: Annotated[str | None, Query(alias="filter[call_control_id]")] = None,
    call_leg_id: Annotated[str | None, Query(alias="filter[call_leg_id]")] = None,
    call_session_id: Annotated[str | None, Query(alias="filter[call_session_id]")] = None,
    created_gte: Annotated[str | None, Query(alias="filter[created_at][gte]")] = None,
    created_lte: Annotated[str | None, Query(alias="filter[created_at][lte]")] = None,
) -> ListOf[RecordingOut]:
    await ctx.control.recordings_stored()  # recordings saved a moment ago are listed
    items, total = await ctx.store.list_recordings(
        page.number,
        page.size,
        conference_id=conference_id,
        call_control_id=call_control_id,
        call_leg_id=call_leg_id,
        call_session_id=call_session_id,
        created_at_gte=_instant(created_gte, "filter[created_at][gte]"),
        created_at_lte=_instant(created_lte, "filter[created_at][lte]"),
        account_id=principal.account_id,
    )
    return ListOf[RecordingOut](
        data=[_recording_out(ctx, r) for r in items], meta=meta(page, total)
    )


async def _recording(ctx: ApiContext, principal: Principal, recording_id: str) -> Recording:
    await ctx.control.recordings_stored()
    rec = await ctx.store.get_recording(recording_id, principal.account_id)
    if rec is None:
        raise not_found(f"no recording with id {recording_id!r}", "recording_id")
    return rec


@router.get(
    "/recordings/{recording_id}",
    tags=["Recordings"],
    summary="Retrieve a recording",
    response_model=Data[RecordingOut],
)
async def retrieve_recording(
    recording_id: str, ctx: Ctx, principal: Principal
) -> Data[RecordingOut]:
    rec = await _recording(ctx, principal, recording_id)
    return Data[RecordingOut](data=_recording_out(ctx, rec))


@router.delete(
    "/recordings/{recording_id}",
    tags=["Recordings"],
    summary="Delete a recording and its file",
    response_model=Data[RecordingOut],
)
async def delete_recording(recording_id: str, ctx: Ctx, principal: Principal) -> Data[RecordingOut]:
    await _recording(ctx, principal, recording_id)
    rec = await ctx.store.delete_recording(recording_id, principal.account_id)
    await _unlink(rec.path)
    return Data[RecordingOut](data=_recording_out(ctx, rec))


@router.get(
    "/recordings/{recording_id}/download",
    tags=["Recordings"],
    summary="Download a recording's file",
    response_class=FileResponse,
)
async def download_recording(recording_id: str, ctx: Ctx, principal: Principal) -> FileResponse:
    rec = await _recording(ctx, principal, recording_id)
    if not await asyncio.to_thread(Path(rec.path).exists):
        raise not_found(f"the file of recording {recording_id} is gone", "recording_id")
    kind = "audio/mpeg" if rec.format == "mp3" else "audio/wav"
    return FileResponse(rec.path, media_type=kind, filename=f"{rec.id}.{rec.format}")
