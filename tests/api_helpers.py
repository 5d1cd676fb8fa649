"""Helpers for the REST API tests: the official telnyx SDK as the client, a local webhook
receiver that verifies every delivery with the SDK's ``webhooks.unwrap``, an HTTP site serving
audio files, and application lines (a route from an extension to an application).

Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import wave
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import numpy as np
import pytest
from telnyx import AsyncTelnyx

from callbridge.client import BufferSink, Phone
from callbridge.store import Store
from callbridge.testing import rms_dbfs
from callbridge.testing.server import Server

_lines = itertools.count(100)

# The telnyx SDK's class for each event type callbridge sends: ``webhooks.unwrap`` must pick it
# (a payload field outside the SDK's literals would make it fall back to some other class).
TYPED = {
    "call.initiated": "CallInitiatedWebhookEvent",
    "call.answered": "CallAnsweredWebhookEvent",
    "call.hangup": "CallHangupWebhookEvent",
    "call.bridged": "CallBridgedWebhookEvent",
    "call.dtmf.received": "CallDtmfReceivedWebhookEvent",
    "call.gather.ended": "CallGatherEndedWebhookEvent",
    "call.playback.started": "CallPlaybackStartedWebhookEvent",
    "call.playback.ended": "CallPlaybackEndedWebhookEvent",
    "call.speak.started": "CallSpeakStartedWebhookEvent",
    "call.speak.ended": "CallSpeakEndedWebhookEvent",
    "call.recording.saved": "CallRecordingSavedWebhookEvent",
    # The SDK has no class for these two (conference.recording.error is callbridge's own).
    "call.recording.error": "*",
    "conference.recording.error": "*",
    "call.enqueued": "CallEnqueuedWebhookEvent",
    "call.dequeued": "CallLeftQueueWebhookEvent",
    # callbridge's own (issue 16): the SDK has no class for it, so an app reads event_type.
    "call.forwarded": "*",
    "conference.created": "ConferenceCreatedWebhookEvent",
    "conference.ended": "ConferenceEndedWebhookEvent",
    # The SDK's ConferenceFloorChanged has no {"data": ...} envelope (its OpenAPI spec says
    # so; Telnyx sends the envelope as for every event), so unwrap cannot pick it: an app reads
    # event.data.event_type instead. callbridge sends the envelope, as Telnyx does.
    "conference.floor.changed": "*",
    "conference.participant.joined": "ConferenceParticipantJoinedWebhookEvent",
    "conference.participant.left": "ConferenceParticipantLeftWebhookEvent",
    "conference.participant.playback.started": "ConferenceParticipantPlaybackStartedWebhookEvent",
    "conference.participant.playback.ended": "ConferenceParticipantPlaybackEndedWebhookEvent",
    "conference.participant.speak.started": "ConferenceParticipantSpeakStartedWebhookEvent",
    "conference.participant.speak.ended": "ConferenceParticipantSpeakEndedWebhookEvent",
    "conference.playback.started": "ConferencePlaybackStartedWebhookEvent",
    "conference.playback.ended": "ConferencePlaybackEndedWebhookEvent",
    "conference.speak.started": "ConferenceSpeakStartedWebhookEvent",
    "conference.speak.ended": "ConferenceSpeakEndedWebhookEvent",
    "conference.recording.saved": "ConferenceRecordingSavedWebhookEvent",
}


@dataclass
class Delivery:
    body: str
    headers: dict[str, str]

    @property
    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)["data"]
        return data

    @property
    def event_type(self) -> str:
        return str(self.data["event_type"])

    @property
    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = self.data["payload"]
        return payload


@dataclass
class WebhookSink:
    """A webhook receiver on 127.0.0.1: answers 200 and keeps every delivery in order."""

    deliveries: list[Delivery] = field(default_factory=list)
    status: int = 200
    url: str = ""
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self.url

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                headers: dict[str, str] = {}
                while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = header.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                status = self.status
                if status < 300:
                    self.deliveries.append(Delivery(body.decode(), headers))
                    self._changed.set()
                reason = "OK" if status < 300 else "Error"
                writer.write(f"HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\n\r\n".encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def of(self, call_control_id: str | None = None, **match: Any) -> list[Delivery]:
        """Deliveries (in arrival order) about a call, or whose payload matches ``match``."""
        found = []
        for d in self.deliveries:
            payload = d.payload
            if call_control_id is not None and payload.get("call_control_id") != call_control_id:
                continue
            if all(payload.get(k) == v for k, v in match.items()):
                found.append(d)
        return found

    def types(self, call_control_id: str | None = None, **match: Any) -> list[str]:
        return [d.event_type for d in self.of(call_control_id, **match)]

    async def wait(
        self, event_type: str, within: float = 8.0, count: int = 1, **match: Any
    ) -> Delivery:
        """The ``count``-th delivery of ``event_type`` whose payload matches ``match``."""
        async with asyncio.timeout(within):
            while True:
                found = [d for d in self.of(**match) if d.event_type == event_type]
                if len(found) >= count:
                    return found[count - 1]
                self._changed.clear()
                await self._changed.wait()


@dataclass
class Api:
    """A test's view of the REST API: an SDK client, an application and its webhook sink."""

    client: AsyncTelnyx
    sink: WebhookSink
    app_id: str
    public_key: str
    http: str

    # Any, not the SDK's UnwrapWebhookEvent: that is a union of every event class (some with
    # no payload), and tests check the class by name before they read its fields.
    def unwrap(self, delivery: Delivery) -> Any:
        """The SDK's typed event for a delivery; raises if the signature does not verify."""
        return self.client.webhooks.unwrap(
            delivery.body, headers=delivery.headers, key=self.public_key
        )

    def check_every_delivery(self) -> None:
        """Each delivery so far verifies and unwraps to the SDK's class for its type."""
        for delivery in self.sink.deliveries:
            event = self.unwrap(delivery)
            expected = TYPED.get(delivery.event_type)
            assert expected is not None, f"untested event type {delivery.event_type}"
            if expected == "*":
                assert event.data.event_type == delivery.event_type
                continue
            assert type(event).__name__ == expected, (delivery.event_type, delivery.payload)
            assert delivery.data["record_type"] == "event" and delivery.data["id"]

    async def line(self, app_id: str | None = None) -> str:
        """A new extension routed to the application (callers dialling it reach the app)."""
        ext = f"7{next(_lines):03d}"
        await self.client.post(
            "/routes",
            body={"destination": ext, "application_id": app_id or self.app_id},
            cast_to=object,
        )
        return ext


@pytest.fixture(name="api")
async def api_fixture(server: Server, store: Store) -> AsyncIterator[Api]:
    """An API key, an SDK client, a webhook sink and an application sending its events there.

    Test modules import it (``from api_helpers import api_fixture``) to use ``api``."""
    key = await store.create_api_key("tests")
    client = AsyncTelnyx(api_key=key, base_url=f"{server.url}/v2", max_retries=0)
    sink = WebhookSink()
    url = await sink.start()
    app = await client.call_control_applications.create(
        application_name="test app", webhook_event_url=url
    )
    assert app.data is not None and app.data.id is not None
    public = await client.get("/public_key", cast_to=object)
    assert isinstance(public, dict)
    api = Api(client, sink, app.data.id, public["data"]["public_key"], server.url)
    yield api
    await sink.close()
    await client.close()
    api.check_every_delivery()


def tone_wav(path: Path, freq: float, seconds: float = 1.5, rate: int = 48000) -> None:
    t = np.arange(int(rate * seconds)) / rate
    pcm = (np.sin(2 * np.pi * freq * t) * 0.3 * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


PROMPT = 700.0  # prompt.wav
HOLD = 1700.0  # hold.wav


@pytest.fixture(scope="session", name="audio_site")
def audio_site_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """prompt.wav (700 Hz), hold.wav (1700 Hz) and a file that is not audio, over HTTP."""
    root = tmp_path_factory.mktemp("audio-site")
    tone_wav(root / "prompt.wav", PROMPT)
    tone_wav(root / "hold.wav", HOLD)
    (root / "not-audio.wav").write_text("this is no audio")

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *a: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def messages(phone: Phone) -> list[dict[str, Any]]:
    """Every /ws message ``phone`` receives from now on, in order, including those the SDK
    has no event for (``call.bridged``)."""
    seen: list[dict[str, Any]] = []
    phone.on_message(lambda msg: seen.append(dict(msg)))
    return seen


async def speech_heard(sink: BufferSink, seconds: float = 1.0) -> bool:
    """Whether what arrives next is speech (broadband energy, no single dominant tone)."""
    sink.clear()
    await asyncio.sleep(seconds + 0.3)  # the measurement: let ``seconds`` of audio arrive
    pcm = sink.samples(seconds)
    if len(pcm) < 48000 * seconds / 2 or rms_dbfs(pcm) < -40:
        return False
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    freqs = np.fft.rfftfreq(len(pcm), 1 / 48000)
    band = spectrum[(freqs > 100) & (freqs < 4000)].sum()
    return bool(band / spectrum.sum() > 0.6 and spectrum.max() / band < 0.2)
