"""The playback and fetch limits across media workers (``--max-playbacks``, ``--max-fetches``
and their ``-per-user`` variants hold for the whole server, not per worker).

Each worker counts its own streams and fetches in its own :class:`~callbridge.media.fetch.Limit`
(one process's view), so with N workers the totals could reach N times the setting. Here the
control process takes the slots first, in its own limits (:func:`~callbridge.media.fetch.
playback_limit` and the fetcher's, which its own ``POST /v2/media`` fetches already use), for
the owner it names (:func:`~callbridge.media.fetch.current_owner`), and only then asks a
worker to start the work; a refusal is the limit's own error, exactly as in one process.

- A playback slot (any sound but a tone: a file, URL or speech streams from disk) is held from
  the request until the playback's ``ended`` event comes back, the request fails, or its worker
  dies (the proxy reports its playbacks ``ended``/``failed`` then).
- A fetch slot (a URL playback or probe) is held for the request only: a worker fetches while
  it answers the request (the sound is open before the reply), never after.

The workers keep counting at the same settings; since every stream and fetch they start was
admitted here first, and they give a slot back before they report its end, their counts stay at
or under the control process's and never refuse on their own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from callbridge.media.checks import check_audio
from callbridge.media.fetch import Claim, fetcher, playback_limit
from callbridge.media.interface import AudioSpec

__all__ = ["Slots"]

T = TypeVar("T")


class Slots:
    """The control process's playback slots, by playback id, for the work on its workers."""

    def __init__(self) -> None:
        self._held: dict[str, Claim] = {}

    def __len__(self) -> int:
        return len(self._held)

    async def play(
        self, playback_id: str, audio: AudioSpec, start: Callable[[], Awaitable[T]]
    ) -> T:
        """Run ``start`` (the worker's ``mixer_play`` or ``play_to``) holding the slots
        ``audio`` needs; the playback slot stays held once it started.

        :raises MediaError: ``invalid_audio`` (as :func:`check_audio`: before any slot, as in
            one process), ``invalid_state`` (a limit is reached: which one, and its setting).
        """
        check_audio(audio)
        slot = playback_limit().claim() if audio.kind != "tone" else None
        if slot is not None:
            # Kept before the worker answers: its end then finds it whatever comes first. A
            # second start of a running id (refused by the worker) must not replace the first.
            mine = self._held.setdefault(playback_id, slot) is slot
        try:
            with self._fetching(audio):
                result = await start()
        except BaseException:
            if slot is not None:
                # Its worker's death may have given it back already (a slot is released once).
                if mine and self._held.get(playback_id) is slot:
                    del self._held[playback_id]
                slot.release()
            raise
        if slot is not None and not mine:  # cannot be told apart from the first: not held
            slot.release()
        return result

    async def probe(self, audio: AudioSpec, probe: Callable[[], Awaitable[T]]) -> T:
        """Run ``probe`` (a worker's ``probe_audio``) holding a fetch slot for a URL."""
        check_audio(audio)
        with self._fetching(audio):
            return await probe()

    @contextlib.contextmanager
    def _fetching(self, audio: AudioSpec) -> Iterator[None]:
        if audio.kind != "url":
            yield
            return
        with fetcher().limit.claim():
            yield

    def ended(self, playback_id: str) -> None:
        """The playback ended (its event, or its worker died): its slot comes back."""
        slot = self._held.pop(playback_id, None)
        if slot is not None:
            slot.release()

    def release_all(self) -> None:
        """The media plane shut down: every playback is over."""
        for playback_id in list(self._held):
            self.ended(playback_id)
