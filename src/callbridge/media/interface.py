"""The MediaServer interface: how the control plane drives the media plane.

Every call takes and returns plain data (strings, bools, frozen dataclasses of those), so an
implementation can live in this process (:class:`callbridge.media.engine.InProcessMediaServer`),
in worker processes, or in an external media engine, without the control plane noticing.

An *endpoint* is one leg's media: a WebRTC peer connection ending at the server. Endpoints are
*bridged* in pairs; each endpoint has an *output*: what its device hears. By default that is
the audio of the endpoint it is bridged to; a *player* (hold music, silence) replaces it until
stopped.

An endpoint may also carry one video stream (VP8), relayed to the bridged endpoint without
decoding. Video is set up by the first offer/answer or added, changed and removed later by
renegotiation (:meth:`MediaServer.renegotiate` for a device's new offer,
:meth:`MediaServer.reoffer` + :meth:`MediaServer.accept_answer` for the server's).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = [
    "DtmfReceived",
    "EndpointState",
    "EndpointStateChanged",
    "MediaEvent",
    "MediaServer",
    "PlayerName",
]

EndpointState = Literal["connecting", "connected", "failed", "closed"]
PlayerName = Literal["hold-music", "ringback", "silence"]


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    endpoint_id: str
    digit: str


@dataclass(frozen=True, slots=True)
class EndpointStateChanged:
    endpoint_id: str
    state: EndpointState


MediaEvent = DtmfReceived | EndpointStateChanged


class MediaServer(Protocol):
    """What the control plane may ask of the media plane (errors: ``MediaError``)."""

    def subscribe(self, handler: Callable[[MediaEvent], None]) -> None:
        """Deliver media events (DTMF, connection state) to ``handler`` in the control loop."""

    async def answer(self, endpoint_id: str, offer_sdp: str, video: bool = True) -> str:
        """Create an endpoint from a device's offer; return the server's answer SDP.

        A video m-line with VP8 is answered ``sendrecv`` when ``video``, else ``inactive``.
        """

    async def offer(
        self, endpoint_id: str, prefer_codec: str | None = None, video: bool = False
    ) -> str:
        """Create an endpoint and return the server's offer SDP (``prefer_codec`` first;
        audio and, when ``video``, a VP8 video m-line)."""

    async def reconnect(self, endpoint_id: str, offer_sdp: str) -> str:
        """Replace the endpoint's peer connection from the device's new offer (its bridge,
        mute and player carry over); return the server's answer."""

    async def accept_answer(self, endpoint_id: str, answer_sdp: str) -> None:
        """Complete an endpoint's pending offer (:meth:`offer` or :meth:`reoffer`)."""

    async def renegotiate(self, endpoint_id: str, offer_sdp: str, send_video: bool) -> str:
        """Apply a device's new offer on a live endpoint and return the server's answer.

        The server receives whatever video the device offers to send, and sends video only
        when ``send_video`` (and the device offers to receive it).
        """

    async def reoffer(self, endpoint_id: str, send_video: bool, recv_video: bool) -> str:
        """A new offer of the server to a live endpoint's device, with the video direction
        set from the server's side (a video m-line is added if needed); complete it with
        :meth:`accept_answer`."""

    def video_state(self, endpoint_id: str) -> tuple[bool, bool]:
        """(the device sends video, the device receives video) as last negotiated."""

    async def add_candidate(
        self, endpoint_id: str, candidate: str | None, sdp_mid: str | None, mline: int | None
    ) -> None:
        """Add a trickled remote ICE candidate; ``None`` means end-of-candidates."""

    def local_candidates(self, endpoint_id: str) -> list[tuple[str, str | None, int]]:
        """The server's candidates for an endpoint: (candidate line, sdp_mid, m-line index)."""

    def codec(self, endpoint_id: str) -> str | None:
        """The negotiated audio codec name (``opus``, ``PCMU``, ``PCMA``), once known."""

    async def bridge(self, a_id: str, b_id: str) -> None:
        """Connect two endpoints: each hears the other. Replaces any earlier bridge of either."""

    async def unbridge(self, endpoint_id: str) -> None:
        """Disconnect an endpoint from its bridge partner (both then hear nothing)."""

    async def set_muted(self, endpoint_id: str, muted: bool) -> None:
        """Stop (or restart) forwarding the endpoint's inbound audio to anyone."""

    async def play(self, endpoint_id: str, player: PlayerName) -> None:
        """Replace what the endpoint hears with a player until :meth:`stop_playing`."""

    async def stop_playing(self, endpoint_id: str) -> None:
        """Return the endpoint's output to its bridge partner."""

    async def close(self, endpoint_id: str) -> None:
        """Tear the endpoint down. Unknown ids are ignored."""

    async def shutdown(self) -> None:
        """Close every endpoint."""
