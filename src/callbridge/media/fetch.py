"""Media fetches and the limits on media work: every URL the server downloads audio from goes
through one :class:`MediaFetcher`, and every playback that streams a file holds a slot of one
:class:`Limit`.

A fetch (``POST /v2/media`` with a ``media_url``, a URL playback, hold audio from a URL):

- obeys the outbound policy (:mod:`callbridge.outbound`: http/https only, no internal address
  unless the operator allows it, redirects followed here and checked);
- is async I/O on the event loop: it holds no thread while it waits, so a slow server delays
  nothing else (another user's ``speak``, signalling, the 20 ms media clock);
- has one deadline for all of it, connect to last byte (``fetch_timeout``): a server that
  drips a byte every few seconds fails at the deadline, not after one timeout per read;
- stops at ``max_upload_bytes`` (counted after decompression);
- goes to a file on disk (``spool_dir``, else the system's temporary directory), never into
  memory; the caller plays or keeps the file and deletes it;
- holds one of ``max_fetches`` slots in all and ``max_fetches_per_user`` per owner while it
  runs. Over a limit it is refused at once with an error naming the limit: waiting in line
  would let one user's slow URLs hold up everyone else's.

Every failure to get the file (no such host, connection refused, reset, timeout, TLS, a status
other than 2xx) gives the same text, so that error messages do not tell which ports answer;
the cause is logged at DEBUG. A refusal by the policy says what was refused and why.

*Owners.* Limits per user count by an owner key, ``user:<name>`` for a ``/ws`` user and
``account:<id>`` for the REST API. The media plane's interface carries no owner, so the
control plane names it for the calls it makes: ``with acting_for(owner): await
media.mixer_play(...)`` (a :class:`~contextvars.ContextVar`, which follows the awaits into
the media plane). Work with no owner counts only in the totals.

*Media workers.* Each process has its own :class:`Limit` objects. With ``--media-workers N``
the control process's are the server's: it takes the slots before a worker starts a playback
or a fetch (:mod:`callbridge.media.workers.slots`), so the limits hold across the workers.

Settings come from :func:`configure_outbound` (the server calls it once at start-up with its
:class:`~callbridge.config.ServerConfig`); until then the defaults apply, strict policy
included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import httpx

from callbridge import outbound
from callbridge.config import ServerConfig
from callbridge.errors import ErrorCode, MediaError
from callbridge.outbound import OutboundPolicy, OutboundRefused

__all__ = [
    "BUSY",
    "Claim",
    "Fetched",
    "Limit",
    "MediaFetcher",
    "acting_for",
    "configure_outbound",
    "current_owner",
    "fetcher",
    "playback_limit",
    "remove",
]

log = logging.getLogger(__name__)

BUSY = ErrorCode.INVALID_STATE  # the code of "too many … in progress" (no code of its own)
_CHUNK = 64 * 1024  # bytes written to disk at a time

_owner: ContextVar[str] = ContextVar("callbridge_media_owner", default="")


@contextlib.contextmanager
def acting_for(owner: str) -> Iterator[None]:
    """Media work started inside counts for ``owner`` (``user:alice``, ``account:default``)."""
    token = _owner.set(owner)
    try:
        yield
    finally:
        _owner.reset(token)


def current_owner() -> str:
    """Whom the media work started now counts for ("" when nobody was named)."""
    return _owner.get()


# ------------------------------------------------------------------------------------- limits
class Claim:
    """One slot of a :class:`Limit`; :meth:`release` (or leaving ``with``) gives it back."""

    def __init__(self, limit: Limit, owner: str) -> None:
        self._limit: Limit | None = limit
        self.owner = owner

    def release(self) -> None:
        """Give the slot back; later calls do nothing."""
        limit, self._limit = self._limit, None
        if limit is not None:
            limit.give_back(self.owner)

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


class Limit:
    """How many of one kind of work may run at once: ``total`` in all, ``per_owner`` for one
    owner. :meth:`claim` refuses at once when either is reached (no queue)."""

    def __init__(self, noun: str, total: int, per_owner: int, settings: tuple[str, str]) -> None:
        if total < 1 or per_owner < 1:
            raise ValueError(f"limits on {noun} must be at least 1")
        self.noun = noun
        self.total = total
        self.per_owner = per_owner
        self._settings = settings  # (total, per owner): named in errors for operators
        self._running: Counter[str] = Counter()
        self._count = 0

    @property
    def running(self) -> int:
        """How many slots are taken now."""
        return self._count

    def of(self, owner: str) -> int:
        return self._running[owner]

    def claim(self, owner: str | None = None) -> Claim:
        """A slot for ``owner`` (default: :func:`current_owner`).

        :raises MediaError: (:data:`BUSY`) the owner or the server is at its limit.
        """
        owner = current_owner() if owner is None else owner
        if owner and self._running[owner] >= self.per_owner:
            raise MediaError(
                BUSY,
                f"too many {self.noun} in progress: at most {self.per_owner} per user; wait "
                f"for one to end (an operator sets the limit with {self._settings[1]})",
            )
        if self._count >= self.total:
            raise MediaError(
                BUSY,
                f"too many {self.noun} in progress on this server: at most {self.total} at "
                f"once; try again shortly (an operator sets the limit with {self._settings[0]})",
            )
        self._count += 1
        if owner:
            self._running[owner] += 1
        return Claim(self, owner)

    def give_back(self, owner: str) -> None:
        self._count -= 1
        if owner:
            self._running[owner] -= 1
            if self._running[owner] <= 0:
                del self._running[owner]


# ------------------------------------------------------------------------------------ fetches
@dataclass(frozen=True, slots=True)
class Fetched:
    """A fetched file on disk (the caller's to delete), its size and declared content type."""

    path: Path
    size: int
    content_type: str | None


class _Unfetchable(Exception):
    """Why a fetch failed, for the log only (the user sees one text for every cause)."""


class _TooLarge(Exception):
    pass


class MediaFetcher:
    """Downloads media files within the policy, the deadline, the size cap and the limits."""

    def __init__(
        self,
        policy: OutboundPolicy | None = None,
        *,
        max_fetches: int = 8,
        max_fetches_per_user: int = 2,
        timeout: float = 30.0,
        max_bytes: int = 20 * 1024 * 1024,
        spool_dir: Path | None = None,
    ) -> None:
        if timeout <= 0 or max_bytes < 1:
            raise ValueError("fetch_timeout and max_upload_bytes must be more than 0")
        self.policy = policy or OutboundPolicy.for_media()
        self.limit = Limit(
            "media fetches",
            max_fetches,
            max_fetches_per_user,
            ("--max-fetches", "--max-fetches-per-user"),
        )
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.spool_dir = spool_dir

    @classmethod
    def from_config(cls, config: ServerConfig) -> MediaFetcher:
        return cls(
            OutboundPolicy.for_media(config.allow_fetch_from),
            max_fetches=config.max_fetches,
            max_fetches_per_user=config.max_fetches_per_user,
            timeout=config.fetch_timeout,
            max_bytes=config.max_upload_bytes,
            spool_dir=config.data_dir / "fetching",
        )

    def failure(self, url: str) -> MediaError:
        """The one error of every fetch that did not bring the file back."""
        return MediaError(
            ErrorCode.INVALID_AUDIO,
            f"could not fetch {_shown(url)}: the file could not be read from it (give an "
            f"http(s) URL that answers with the file within {self.timeout:g} s)",
        )

    async def fetch(self, url: str, owner: str | None = None) -> Fetched:
        """Download ``url`` to a new file (the caller deletes it).

        :raises MediaError: (``invalid_audio``) refused by the policy, larger than the cap, or
            could not be fetched; (:data:`BUSY`) too many fetches in progress.
        """
        with self.limit.claim(owner):
            fd, name = tempfile.mkstemp(prefix="fetch-", suffix=".part", dir=self.spool())
            path = Path(name)
            try:
                with os.fdopen(fd, "wb") as file:
                    size, kind = await self._download(url, file)
            except BaseException:
                remove(path)
                raise
            return Fetched(path, size, kind)

    @contextlib.asynccontextmanager
    async def fetched(self, url: str, owner: str | None = None) -> AsyncIterator[Fetched]:
        """``async with fetcher.fetched(url) as f:`` the file, deleted on the way out."""
        got = await self.fetch(url, owner)
        try:
            yield got
        finally:
            remove(got.path)

    def spool(self) -> str | None:
        """The directory for fetched files and speech (None: the system's temporary one)."""
        if self.spool_dir is None:
            return None
        self.spool_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return str(self.spool_dir)

    async def _download(self, url: str, file: BinaryIO) -> tuple[int, str | None]:
        policy = self.policy
        try:
            async with (
                asyncio.timeout(self.timeout),  # the whole fetch, redirects and body included
                outbound.guarded_client(policy, timeout=self.timeout) as client,
                outbound.get_following_redirects(client, policy, url) as response,
            ):
                if not response.is_success:
                    raise _Unfetchable(f"HTTP {response.status_code}")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > self.max_bytes:
                    raise _TooLarge
                size = 0
                async for chunk in response.aiter_bytes(_CHUNK):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise _TooLarge
                    # A local file, at most max_bytes: writes land in the page cache and take
                    # microseconds, so they stay on the loop (no thread to hold up).
                    file.write(chunk)
                if size == 0:
                    raise _Unfetchable("an empty body")
                kind = response.headers.get("content-type")
        except OutboundRefused as exc:
            raise MediaError(ErrorCode.INVALID_AUDIO, exc.message) from None
        except _TooLarge:
            raise MediaError(
                ErrorCode.INVALID_AUDIO,
                f"the file at {_shown(url)} is larger than {_size(self.max_bytes)}",
            ) from None
        except (_Unfetchable, TimeoutError, httpx.HTTPError, OSError) as exc:
            log.debug("fetching %s failed: %s", url, _describe(exc))
            raise self.failure(url) from None
        return size, kind.partition(";")[0].strip().lower() if kind else None


def remove(path: Path) -> None:
    """Delete a fetched file (a metadata update: quick enough to do on the event loop)."""
    path.unlink(missing_ok=True)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "the deadline passed"
    return f"{type(exc).__name__}: {exc}"


def _shown(url: str) -> str:
    return url if len(url) <= 200 else url[:200] + "…"


def _size(n: int) -> str:
    mb = n / (1024 * 1024)
    return f"{mb:g} MB" if mb >= 1 else f"{n} bytes"


# ---------------------------------------------------------------------- the process's settings
_fetcher = MediaFetcher()
_playbacks = Limit("playbacks", 64, 4, ("--max-playbacks", "--max-playbacks-per-user"))


def fetcher() -> MediaFetcher:
    """The process's media fetcher (:func:`configure_outbound` sets it)."""
    return _fetcher


def playback_limit() -> Limit:
    """The process's limit on streamed playbacks (files, URLs, speech)."""
    return _playbacks


def configure_outbound(config: ServerConfig) -> None:
    """Apply a server's settings: the outbound policies (media and webhooks), the fetcher and
    the playback limits. Called once at start-up, before any request."""
    global _fetcher, _playbacks
    outbound.configure(config.allow_fetch_from, config.allow_webhooks_to)
    _fetcher = MediaFetcher.from_config(config)
    _playbacks = Limit(
        "playbacks",
        config.max_playbacks,
        config.max_playbacks_per_user,
        ("--max-playbacks", "--max-playbacks-per-user"),
    )
