"""The control process's MediaServer when media runs in worker processes.

Every interface call is routed to the worker that owns its endpoint, mixer, playback or
recording (one message there, one back, :mod:`.wire`); events come back the same way and are
delivered to the subscribers in the control loop, with relay endpoints' ids mapped back to the
legs they stand for (:mod:`.relays`) and their own events dropped.

Placement. The interface does not say which endpoints belong to one call, so the proxy uses
what a call's creation looks like: the caller's endpoint and every leg rung for it are created
by the same command (one asyncio task: ``answer`` then ``offer`` for each rung device; likewise
an application's dial, a SIP INVITE, a conference join that creates its room). The first
endpoint (or mixer) created in a task goes to the least loaded worker and the task remembers it
(a context variable, for :data:`AFFINITY_SECS`); later ones in that task go to the same worker.
A bridge or membership that still spans two workers is relayed.

A worker that dies is restarted in its slot; every endpoint it owned is reported
:class:`~callbridge.media.interface.EndpointLost` with the cause (its calls end ``failed``),
its playbacks end ``failed``, its recordings end with a failure, and each of its mixers is
built again on a live worker with the members that survived (:mod:`.rooms`).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from callbridge.config import ServerConfig
from callbridge.errors import ErrorCode, MediaError
from callbridge.media.counters import PacketCounts
from callbridge.media.interface import (
    AudioSpec,
    EndpointInfo,
    EndpointLost,
    FloorChanged,
    MediaDirection,
    MediaEvent,
    PlaybackStateChanged,
    PlayerName,
    RecordingFormat,
    RecordingSaved,
)
from callbridge.media.recording import RecordingFailed
from callbridge.media.workers.process import WorkerProcess
from callbridge.media.workers.relays import RELAY_PREFIX, Relays
from callbridge.media.workers.rooms import Rooms
from callbridge.media.workers.slots import Slots
from callbridge.vocabulary import SupervisorRole

__all__ = ["AFFINITY_SECS", "WorkerMediaServer"]

log = logging.getLogger(__name__)
# How long a task's first placement guides its later ones. CALLBRIDGE_MEDIA_AFFINITY_SECS=0
# turns co-location off (every endpoint to the least loaded worker: every bridge relayed), for
# the tests and benchmarks of the relays.
AFFINITY_SECS = float(os.environ.get("CALLBRIDGE_MEDIA_AFFINITY_SECS", "30"))
_affinity: contextvars.ContextVar[tuple[int, int, float] | None] = contextvars.ContextVar(
    "media_worker_affinity", default=None
)


class WorkerMediaServer:
    """A :class:`~callbridge.media.interface.MediaServer` over ``count`` worker processes."""

    def __init__(self, config: ServerConfig, count: int, log_level: str = "info") -> None:
        if count < 2:
            raise ValueError("media workers: 2 or more (1 runs the media in this process)")
        self.config = config
        self.count = count
        self.log_level = log_level
        self.workers: list[WorkerProcess] = []
        self.restarts = 0
        self._handlers: list[Callable[[MediaEvent], None]] = []
        self._endpoints: dict[str, WorkerProcess] = {}
        self._mixers: dict[str, WorkerProcess] = {}
        self._playbacks: dict[str, WorkerProcess] = {}
        self._played_to: dict[str, str] = {}  # play_to playback id -> its endpoint
        self._recordings: dict[str, tuple[WorkerProcess, str]] = {}  # id -> worker, path
        self.rooms = Rooms()  # what each mixer holds, to build it again (rooms.py)
        self.slots = Slots()  # playback and fetch limits across the workers (slots.py)
        self._dead_counts = PacketCounts()  # packets of workers that died or were replaced
        self._dead_ticks = [0, 0]
        self.relays = Relays()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = False

    async def start(self) -> None:
        self.workers = [self._new_worker(i, 0) for i in range(self.count)]
        await asyncio.gather(*(w.start(self.config, self.log_level) for w in self.workers))

    def _new_worker(self, index: int, generation: int) -> WorkerProcess:
        return WorkerProcess(index, generation, self._worker_event, self._worker_exited)

    async def stop(self) -> None:
        """Stop every worker (after :meth:`shutdown`); the server's last step."""
        self._stopped = True
        await asyncio.gather(*(w.stop() for w in self.workers))

    # counters (/healthz, /metrics) ------------------------------------------------------------
    @property
    def endpoint_count(self) -> int:
        """Media objects alive in all workers (relay endpoints included), as last reported."""
        return sum(w.objects for w in self.workers if w.alive)

    def packet_counts(self) -> PacketCounts:
        total = PacketCounts()
        total.add(self._dead_counts)
        for w in self.workers:
            total.add(w.packets)
        return total

    @property
    def ticks(self) -> int:
        return self._dead_ticks[0] + sum(w.ticks for w in self.workers)

    @property
    def late_ticks(self) -> int:
        return self._dead_ticks[1] + sum(w.late_ticks for w in self.workers)

    def worker_health(self) -> list[dict[str, Any]]:
        mixers = [0] * len(self.workers)
        for w in self._mixers.values():
            mixers[w.index] += 1
        return [{**w.health(), "mixers": mixers[w.index]} for w in self.workers]

    # events and deaths ---------------------------------------------------------------------
    def subscribe(self, handler: Callable[[MediaEvent], None]) -> None:
        self._handlers.append(handler)

    def _emit(self, event: MediaEvent) -> None:
        for handler in self._handlers:
            try:
                handler(event)
            except Exception:
                log.exception("media event handler failed for %r", event)

    def _worker_event(self, worker: WorkerProcess, event: MediaEvent) -> None:
        if isinstance(event, FloorChanged):
            if event.endpoint_id is not None:
                event = FloorChanged(event.mixer_id, self.relays.alias(event.endpoint_id))
        elif isinstance(event, PlaybackStateChanged):
            if event.state == "ended":
                self._playbacks.pop(event.playback_id, None)
                self._played_to.pop(event.playback_id, None)
                self.slots.ended(event.playback_id)
        elif isinstance(event, RecordingSaved):
            self._recordings.pop(event.recording_id, None)
        elif event.endpoint_id.startswith(RELAY_PREFIX):
            return  # a relay's own DTMF, state or direction: the real legs report theirs
        self._emit(event)

    def _worker_exited(self, worker: WorkerProcess, cause: str) -> None:
        self._dead_counts.add(worker.packets)
        self._dead_ticks[0] += worker.ticks
        self._dead_ticks[1] += worker.late_ticks
        for link in self.relays.forget_worker(worker):  # close the survivors' relay ends
            for w, relay, real in ((link.wa, link.ra, link.a), (link.wb, link.rb, link.b)):
                if w is not worker:
                    self._spawn(_quiet_close(w, relay, real if link.kind == "bridge" else None))
        lost = [e for e, w in self._endpoints.items() if w is worker]
        for endpoint_id in lost:
            del self._endpoints[endpoint_id]
        rooms = [m for m, w in self._mixers.items() if w is worker]
        for mixer_id in rooms:
            del self._mixers[mixer_id]
        recordings = [(r, path) for r, (w, path) in self._recordings.items() if w is worker]
        for recording_id, _ in recordings:
            del self._recordings[recording_id]
        ended = [p for p, w in self._playbacks.items() if w is worker]
        for playback_id in ended:
            del self._playbacks[playback_id]
            self._played_to.pop(playback_id, None)
            self.slots.ended(playback_id)
            self._emit(PlaybackStateChanged(playback_id, "ended", "failed", cause))
        for recording_id, path in recordings:
            error = f"the recording stopped: {cause}"
            self._emit(RecordingFailed(recording_id, path, 0.0, error=error))
        for endpoint_id in lost:
            self.rooms.left(endpoint_id)
            self._emit(EndpointLost(endpoint_id, cause))
        if not self._stopped:
            for mixer_id in rooms:
                self._rebuild_room(mixer_id, cause)
            self._spawn(self._restart(worker))

    def _rebuild_room(self, mixer_id: str, cause: str) -> None:
        """Build a dead worker's mixer again on a live worker, with its surviving members."""
        if mixer_id not in self.rooms.members:
            return
        try:
            worker = self._place()
        except MediaError:
            log.error(
                "conference mixer %s is lost with its worker (%s): none is left", mixer_id, cause
            )
            return
        self._mixers[mixer_id] = worker  # at once: later calls find it (and wait, rooms.py)
        task = asyncio.get_running_loop().create_task(self._rebuild(mixer_id, worker, cause))
        self.rooms.rebuilding[mixer_id] = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _rebuild(self, mixer_id: str, worker: WorkerProcess, cause: str) -> None:
        try:
            members = self.rooms.members.get(mixer_id, {})
            await worker.call("create_mixer", mixer_id)
            kept = [e for e in members if e in self._endpoints]
            for endpoint_id in kept:
                await self._join(mixer_id, endpoint_id)
            for endpoint_id in kept:  # after every join: whisper_to names other members
                if flags := members.get(endpoint_id):
                    await self._update(endpoint_id, **flags)
            log.warning(
                "conference mixer %s built again on media worker %d with %d member(s) after "
                "its worker was lost (%s)", mixer_id, worker.index, len(kept), cause,
            )  # fmt: skip
        except MediaError as exc:
            log.error("conference mixer %s could not be built again: %s", mixer_id, exc)
        finally:  # unless a newer rebuild took over (its worker died too)
            if self.rooms.rebuilding.get(mixer_id) is asyncio.current_task():
                del self.rooms.rebuilding[mixer_id]

    async def _restart(self, dead: WorkerProcess) -> None:
        self.restarts += 1
        worker = self._new_worker(dead.index, dead.generation + 1)
        self.workers[dead.index] = worker
        try:
            await worker.start(self.config, self.log_level)
        except MediaError:
            log.exception("media worker %d could not be restarted", dead.index)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # placement ------------------------------------------------------------------------------
    def _place(self) -> WorkerProcess:
        """The worker for a new endpoint or mixer: this task's, else the least loaded."""
        now = time.monotonic()
        hint = _affinity.get()
        if hint is not None and now - hint[2] < AFFINITY_SECS:
            worker = self.workers[hint[0]]
            if worker.alive and worker.generation == hint[1]:
                return worker
        alive = [w for w in self.workers if w.alive]
        if not alive:
            raise MediaError(ErrorCode.INVALID_STATE, "no media worker is running")
        load: dict[int, int] = {w.index: 0 for w in alive}
        for w in self._endpoints.values():
            if w.index in load:
                load[w.index] += 1
        worker = min(alive, key=lambda w: (load[w.index], w.index))
        if AFFINITY_SECS > 0:
            _affinity.set((worker.index, worker.generation, now))
        return worker

    def _of(self, endpoint_id: str) -> WorkerProcess:
        worker = self._endpoints.get(endpoint_id)
        if worker is None:
            raise MediaError(ErrorCode.CALL_NOT_FOUND, f"no media endpoint {endpoint_id}")
        return worker

    def _mixer(self, mixer_id: str) -> WorkerProcess:
        worker = self._mixers.get(mixer_id)
        if worker is None:
            raise MediaError(
                ErrorCode.CONFERENCE_NOT_FOUND,
                f"no mixer {mixer_id} (create it with create_mixer)",
            )
        return worker

    async def _create(self, endpoint_id: str, method: str, *args: Any) -> str:
        if endpoint_id in self._endpoints:
            raise MediaError(ErrorCode.INVALID_STATE, f"media endpoint {endpoint_id} exists")
        worker = self._place()
        self._endpoints[endpoint_id] = worker
        try:
            sdp: str = await worker.call(method, endpoint_id, *args)
        except BaseException:
            if self._endpoints.get(endpoint_id) is worker:
                del self._endpoints[endpoint_id]
            raise
        return sdp

    async def _on(self, endpoint_id: str, method: str, *args: Any, **kwargs: Any) -> Any:
        return await self._of(endpoint_id).call(method, endpoint_id, *args, **kwargs)

    # endpoints ------------------------------------------------------------------------------
    async def answer(self, endpoint_id: str, offer_sdp: str, video: bool = True) -> str:
        return await self._create(endpoint_id, "answer", offer_sdp, video)

    async def offer(
        self, endpoint_id: str, prefer_codec: str | None = None, video: bool = False
    ) -> str:
        return await self._create(endpoint_id, "offer", prefer_codec, video)

    async def answer_rtp(
        self,
        endpoint_id: str,
        offer_sdp: str,
        prefer_codec: str | None = None,
        rtp_timeout: float | None = None,
    ) -> str:
        return await self._create(endpoint_id, "answer_rtp", offer_sdp, prefer_codec, rtp_timeout)

    async def offer_rtp(
        self,
        endpoint_id: str,
        prefer_codec: str | None = None,
        srtp: bool = False,
        rtp_timeout: float | None = None,
    ) -> str:
        return await self._create(endpoint_id, "offer_rtp", prefer_codec, srtp, rtp_timeout)

    async def reconnect(self, endpoint_id: str, offer_sdp: str) -> str:
        result: str = await self._on(endpoint_id, "reconnect", offer_sdp)
        return result

    async def accept_answer(self, endpoint_id: str, answer_sdp: str) -> None:
        await self._on(endpoint_id, "accept_answer", answer_sdp)

    async def renegotiate(self, endpoint_id: str, offer_sdp: str, send_video: bool) -> str:
        result: str = await self._on(endpoint_id, "renegotiate", offer_sdp, send_video)
        return result

    async def reoffer(self, endpoint_id: str, send_video: bool, recv_video: bool) -> str:
        result: str = await self._on(endpoint_id, "reoffer", send_video, recv_video)
        return result

    async def renegotiate_rtp(self, endpoint_id: str, offer_sdp: str) -> str:
        result: str = await self._on(endpoint_id, "renegotiate_rtp", offer_sdp)
        return result

    async def reoffer_rtp(self, endpoint_id: str, direction: MediaDirection = "sendrecv") -> str:
        result: str = await self._on(endpoint_id, "reoffer_rtp", direction)
        return result

    async def add_candidate(
        self, endpoint_id: str, candidate: str | None, sdp_mid: str | None, mline: int | None
    ) -> None:
        await self._on(endpoint_id, "add_candidate", candidate, sdp_mid, mline)

    async def endpoint_info(self, endpoint_id: str) -> EndpointInfo:
        info: EndpointInfo = await self._on(endpoint_id, "endpoint_info")
        return info

    async def bridge(self, a_id: str, b_id: str) -> None:
        wa, wb = self._of(a_id), self._of(b_id)
        await self.relays.drop(a_id)
        await self.relays.drop(b_id)
        if wa is wb:
            await wa.call("bridge", a_id, b_id)
            return
        link = await self.relays.link("bridge", a_id, wa, b_id, wb)  # audio and video
        await wa.call("bridge", a_id, link.ra)
        await wb.call("bridge", link.rb, b_id)

    async def unbridge(self, endpoint_id: str) -> None:
        worker = self._of(endpoint_id)
        link = self.relays.of.get(endpoint_id)
        if link is not None and link.kind == "bridge":
            await self.relays.drop(endpoint_id)
        else:
            await worker.call("unbridge", endpoint_id)

    async def set_muted(self, endpoint_id: str, muted: bool) -> None:
        await self._on(endpoint_id, "set_muted", muted)

    async def play(self, endpoint_id: str, player: PlayerName) -> None:
        await self._on(endpoint_id, "play", player)

    async def stop_playing(self, endpoint_id: str) -> None:
        await self._on(endpoint_id, "stop_playing")

    async def close(self, endpoint_id: str) -> None:
        worker = self._endpoints.get(endpoint_id)
        if worker is None:
            return
        self.rooms.left(endpoint_id)
        await self.relays.drop(endpoint_id)
        self._endpoints.pop(endpoint_id, None)
        try:
            await worker.call("close", endpoint_id)
        except MediaError:
            if worker.alive:
                raise  # a dead worker's endpoints are gone already

    # mixers ---------------------------------------------------------------------------------
    async def create_mixer(self, mixer_id: str) -> None:
        if mixer_id in self._mixers:
            raise MediaError(ErrorCode.INVALID_STATE, f"mixer {mixer_id} exists already")
        worker = self._place()
        self._mixers[mixer_id] = worker
        try:
            await worker.call("create_mixer", mixer_id)
        except BaseException:
            self._mixers.pop(mixer_id, None)
            raise
        self.rooms.created(mixer_id)

    async def destroy_mixer(self, mixer_id: str) -> None:
        await self.rooms.settled(mixer_id)
        self.rooms.destroyed(mixer_id)
        worker = self._mixers.get(mixer_id)
        if worker is None:
            return
        for link in self.relays.mixer_links(mixer_id):
            await self.relays.drop(link.a)
        self._mixers.pop(mixer_id, None)
        await worker.call("destroy_mixer", mixer_id)

    async def mixer_add(self, mixer_id: str, endpoint_id: str) -> None:
        await self.rooms.settled(mixer_id)
        await self._join(mixer_id, endpoint_id)
        self.rooms.added(mixer_id, endpoint_id)

    async def _join(self, mixer_id: str, endpoint_id: str) -> None:
        wm, we = self._mixer(mixer_id), self._of(endpoint_id)
        await self.relays.drop(endpoint_id)
        if wm is we:
            await wm.call("mixer_add", mixer_id, endpoint_id)
            return
        link = await self.relays.link("mixer", endpoint_id, we, mixer_id, wm)
        await we.call("bridge", endpoint_id, link.ra)  # leaves any mixer on its own worker
        await we.call("stop_playing", endpoint_id)  # a new member's player stops (interface)
        await wm.call("mixer_add", mixer_id, link.rb)

    async def mixer_remove(self, endpoint_id: str) -> None:
        await self.rooms.settled(self.rooms.room_of(endpoint_id))
        self.rooms.left(endpoint_id)
        link = self.relays.of.get(endpoint_id)
        if link is not None and link.kind == "mixer":
            await self.relays.drop(endpoint_id)
            return
        worker = self._endpoints.get(endpoint_id)
        if worker is not None:
            await worker.call("mixer_remove", endpoint_id)

    async def mixer_update(
        self,
        endpoint_id: str,
        *,
        deaf: bool | None = None,
        held: bool | None = None,
        role: SupervisorRole | None = None,
        whisper_to: tuple[str, ...] | None = None,
    ) -> None:
        await self.rooms.settled(self.rooms.room_of(endpoint_id))
        flags = {"deaf": deaf, "held": held, "role": role, "whisper_to": whisper_to}
        await self._update(endpoint_id, **flags)
        self.rooms.updated(endpoint_id, flags)

    async def _update(self, endpoint_id: str, **flags: Any) -> None:
        whisper_to: tuple[str, ...] | None = flags.pop("whisper_to", None)
        link = self.relays.of.get(endpoint_id)
        worker = link.wb if link is not None and link.kind == "mixer" else self._of(endpoint_id)
        whisper = None if whisper_to is None else tuple(map(self.relays.member_id, whisper_to))
        await worker.call(
            "mixer_update", self.relays.member_id(endpoint_id), whisper_to=whisper, **flags
        )

    async def mixer_members(self, mixer_id: str) -> tuple[str, ...]:
        await self.rooms.settled(mixer_id)
        members: tuple[str, ...] = await self._mixer(mixer_id).call("mixer_members", mixer_id)
        return tuple(map(self.relays.alias, members))

    # playback -------------------------------------------------------------------------------
    async def mixer_play(
        self, mixer_id: str, playback_id: str, audio: AudioSpec, targets: tuple[str, ...] = ()
    ) -> None:
        await self.rooms.settled(mixer_id)
        worker = self._mixer(mixer_id)
        self._new_playback(playback_id)
        self._playbacks[playback_id] = worker
        mapped = tuple(map(self.relays.member_id, targets))
        try:
            await self.slots.play(
                playback_id,
                audio,
                lambda: worker.call("mixer_play", mixer_id, playback_id, audio, mapped),
            )
        except BaseException:
            self._playbacks.pop(playback_id, None)
            raise

    async def play_to(self, endpoint_id: str, playback_id: str, audio: AudioSpec) -> None:
        worker = self._of(endpoint_id)
        self._new_playback(playback_id)
        self._playbacks[playback_id] = worker
        self._played_to[playback_id] = endpoint_id
        try:
            await self.slots.play(
                playback_id, audio, lambda: worker.call("play_to", endpoint_id, playback_id, audio)
            )
        except BaseException:
            self._playbacks.pop(playback_id, None)
            self._played_to.pop(playback_id, None)
            raise

    def _new_playback(self, playback_id: str) -> None:
        """A running playback's id is refused here, as the engine refuses it: its failure
        would otherwise drop the running one's route (and its slot)."""
        if playback_id in self._playbacks:
            raise MediaError(ErrorCode.INVALID_STATE, f"playback {playback_id} exists already")

    async def stop_playback(self, playback_id: str) -> None:
        worker = self._playbacks.get(playback_id)
        if worker is not None:
            await worker.call("stop_playback", playback_id)

    async def probe_audio(self, audio: AudioSpec) -> float:
        alive = [w for w in self.workers if w.alive]
        if not alive:
            raise MediaError(ErrorCode.INVALID_STATE, "no media worker is running")
        worker = min(alive, key=lambda w: w.objects)
        seconds: float = await self.slots.probe(audio, lambda: worker.call("probe_audio", audio))
        return seconds

    async def stop_all(self, mixer_id: str, targets: tuple[str, ...] = ()) -> None:
        await self.rooms.settled(mixer_id)
        worker = self._mixer(mixer_id)
        mapped = tuple(map(self.relays.member_id, targets))
        await worker.call("stop_all", mixer_id, mapped)
        # Members relayed from another worker have their play_to playbacks there.
        remote = {k.a for k in self.relays.mixer_links(mixer_id)}
        if targets:
            remote &= set(targets)
        for playback_id, endpoint_id in list(self._played_to.items()):
            if endpoint_id in remote:
                await self.stop_playback(playback_id)

    async def send_dtmf(self, endpoint_id: str, digits: str, duration_ms: int = 250) -> None:
        await self._on(endpoint_id, "send_dtmf", digits, duration_ms)

    # recording ------------------------------------------------------------------------------
    async def record_start(
        self, recording_id: str, source_id: str, path: str, fmt: RecordingFormat = "wav"
    ) -> None:
        await self.rooms.settled(source_id)
        worker = self._mixers.get(source_id) or self._of(source_id)
        self._recordings[recording_id] = worker, path
        try:
            await worker.call("record_start", recording_id, source_id, path, fmt)
        except BaseException:
            self._recordings.pop(recording_id, None)
            raise

    async def _recording(self, method: str, recording_id: str) -> None:
        held = self._recordings.get(recording_id)
        if held is None:
            raise MediaError(ErrorCode.INVALID_STATE, f"no recording {recording_id}")
        await held[0].call(method, recording_id)

    async def record_pause(self, recording_id: str) -> None:
        await self._recording("record_pause", recording_id)

    async def record_resume(self, recording_id: str) -> None:
        await self._recording("record_resume", recording_id)

    async def record_stop(self, recording_id: str) -> None:
        await self._recording("record_stop", recording_id)

    async def shutdown(self) -> None:
        await asyncio.gather(
            *(w.call("shutdown") for w in self.workers if w.alive), return_exceptions=True
        )
        self._endpoints.clear()
        self._mixers.clear()
        self._playbacks.clear()
        self._played_to.clear()
        self._recordings.clear()
        self.slots.release_all()
        self.relays = Relays()


async def _quiet_close(worker: WorkerProcess, relay_id: str, real_id: str | None) -> None:
    """The surviving end of a link to a dead worker: its leg hears nothing, the relay goes."""
    try:
        if real_id is not None:
            await worker.call("unbridge", real_id)
        await worker.call("close", relay_id)
    except MediaError as exc:
        log.debug("closing relay %s after a worker died: %s", relay_id, exc)
