"""The recordings in progress of the in-process media server (``MediaServer.record_*``).

A recording is of a mixer (its mix, written by the mixer's own tick: ``Mixer.recorders``) or of
a 1:1 leg (:class:`~callbridge.media.endpoint.LegRecording`: the endpoint and its bridge
partner, mixed on the server's tick by :meth:`Recordings.tick`). A leg's inbound audio is
decoded only while a recording of it runs and is not paused (:attr:`Recordings.tapped`, which
the endpoints read). Writing the file is :mod:`callbridge.media.recording`.
"""

from __future__ import annotations

from collections.abc import Container
from contextlib import AbstractContextManager
from typing import Protocol

from callbridge.errors import ErrorCode, MediaError
from callbridge.media.checks import NOT_FOUND
from callbridge.media.endpoint import Endpoint, LegRecording
from callbridge.media.interface import MediaEvent, RecordingFormat
from callbridge.media.mixer import Mixer
from callbridge.media.recording import Recorder

__all__ = ["RecordingHost", "Recordings"]

_Source = Mixer | LegRecording


class RecordingHost(Protocol):
    """What the recordings need of the server that holds them."""

    def current(self, endpoint_id: str) -> Endpoint | None:
        """The live endpoint of that id."""

    def find_mixer(self, mixer_id: str) -> Mixer | None:
        """The mixer of that id."""

    def reserving(
        self, kind: str, ident: str, taken: Container[str]
    ) -> AbstractContextManager[None]:
        """Hold ``ident`` while the recording's file opens (see the engine)."""

    def ensure_ticker(self) -> None:
        """Start the 20 ms clock if it does not run yet."""

    def emit(self, event: MediaEvent) -> None:
        """Deliver a media event to the subscribers."""


class Recordings:
    """The recordings in progress, by recording id (see the module docstring)."""

    def __init__(self, host: RecordingHost) -> None:
        self._host = host
        self._running: dict[str, tuple[Recorder, _Source]] = {}
        self.tapped: dict[str, int] = {}
        """Endpoint id -> running (unpaused) recordings of its 1:1 leg."""

    def __len__(self) -> int:
        return len(self._running)

    async def start(
        self, recording_id: str, source_id: str, path: str, fmt: RecordingFormat
    ) -> None:
        self._source(source_id)  # fail before creating a file
        with self._host.reserving("recording", recording_id, self._running):
            recorder = await Recorder.open(recording_id, path, fmt)
        try:
            found = self._source(source_id)
        except MediaError:
            await recorder.finish()  # the source went away while the file was created
            raise
        source: _Source
        if isinstance(found, Mixer):
            source = found
            found.recorders.append(recorder)
        else:
            self._tap(source_id, +1)
            source = LegRecording(recorder, source_id)
        self._running[recording_id] = (recorder, source)
        self._host.ensure_ticker()

    def _source(self, source_id: str) -> Mixer | Endpoint:
        mixer = self._host.find_mixer(source_id)
        if mixer is not None:
            return mixer
        ep = self._host.current(source_id)
        if ep is None:
            raise MediaError(NOT_FOUND, f"no mixer or media endpoint {source_id} to record")
        if ep.mixer is not None:
            raise MediaError(
                ErrorCode.INVALID_STATE,
                f"endpoint {source_id} is in mixer {ep.mixer.id}: record the mixer instead",
            )
        return ep

    def _tap(self, endpoint_id: str, delta: int) -> None:
        """Start (+1) or stop (-1) decoding a 1:1 leg's audio for a recording of it."""
        count = self.tapped.get(endpoint_id, 0) + delta
        if count > 0:
            self.tapped[endpoint_id] = count
        else:
            self.tapped.pop(endpoint_id, None)
        ep = self._host.current(endpoint_id)
        for side in (ep, ep.peer if ep is not None else None):
            if side is not None and side.tap is not None:
                side.tap.clear()  # nothing stale when it starts (again)

    def _get(self, recording_id: str) -> tuple[Recorder, _Source]:
        entry = self._running.get(recording_id)
        if entry is None:
            raise MediaError(NOT_FOUND, f"no recording {recording_id} in progress")
        return entry

    def pause(self, recording_id: str) -> None:
        recorder, source = self._get(recording_id)
        if not recorder.paused and isinstance(source, LegRecording):
            self._tap(source.endpoint_id, -1)
        recorder.paused = True

    def resume(self, recording_id: str) -> None:
        recorder, source = self._get(recording_id)
        if recorder.paused and isinstance(source, LegRecording):
            self._tap(source.endpoint_id, +1)
        recorder.paused = False

    async def stop(self, recording_id: str) -> None:
        recorder, source = self._get(recording_id)
        del self._running[recording_id]
        if isinstance(source, Mixer):
            source.recorders.remove(recorder)
        elif not recorder.paused:
            self._tap(source.endpoint_id, -1)
        self._host.emit(await recorder.finish())

    async def stop_of(self, source: Mixer | str) -> None:
        """Stop the recordings of a mixer, or of the 1:1 leg of an endpoint id."""
        for recording_id, (_, recorded) in list(self._running.items()):
            key = recorded.endpoint_id if isinstance(recorded, LegRecording) else recorded
            if key == source:  # a Mixer compares by identity
                await self.stop(recording_id)

    async def stop_all(self) -> None:
        for recording_id in list(self._running):
            await self.stop(recording_id)

    def tick(self) -> None:
        """Write one 20 ms frame of every 1:1 leg recording (a mixer writes its own)."""
        for _, source in list(self._running.values()):
            if isinstance(source, LegRecording):
                source.tick(self._host.current(source.endpoint_id))
