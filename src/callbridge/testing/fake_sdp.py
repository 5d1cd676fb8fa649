"""The little SDP that :class:`~callbridge.testing.fake_media.FakeMediaServer` reads and writes.

Enough of RFC 8866 (and RFC 3264 offer/answer) to decide what a real media server would: the
audio codec (the first of opus, PCMU, PCMA in the m-line's order; static payload types 0 and
8 count without an ``a=rtpmap``), whether telephone-event (RFC 4733) is there, and the VP8
video m-line's direction. What it writes looks like a WebRTC description (one audio m-line, an
optional video m-line, a ``mid`` each) but carries no ICE or DTLS attributes: nothing connects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from callbridge.errors import ErrorCode, MediaError

__all__ = ["CODECS", "Negotiated", "Offered", "VideoOffer", "parse_answer", "parse_offer", "sdp"]

CODECS = ("opus", "PCMU", "PCMA")  # what callbridge carries, by canonical name
_CANONICAL = {c.lower(): c for c in CODECS}
_STATIC = {"0": "PCMU", "8": "PCMA"}  # RFC 3551 static payload types
_PAYLOAD = {"opus": ("111", "opus/48000/2"), "PCMU": ("0", "PCMU/8000"), "PCMA": ("8", "PCMA/8000")}
_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


@dataclass(frozen=True, slots=True)
class Negotiated:
    """What the last completed offer/answer of an endpoint settled."""

    codec: str | None
    telephone_event: bool = False
    video_line: bool = False  # a VP8 video m-line is part of the session
    device_sends_video: bool = False
    device_receives_video: bool = False

    @classmethod
    def offered(cls, prefer_codec: str | None) -> Negotiated:
        """Before the answer to the server's offer: its preferred codec (or opus)."""
        codec = _CANONICAL.get((prefer_codec or "").lower(), "opus")
        return cls(codec, telephone_event=True)


@dataclass(frozen=True, slots=True)
class VideoOffer:
    """A video m-line to write, its direction from the server's side."""

    send: bool
    recv: bool
    rejected: bool = False  # port 0: refused

    @classmethod
    def of(cls, send: bool, recv: bool) -> VideoOffer:
        return cls(send, recv)

    @property
    def direction(self) -> str:
        return _direction(self.send, self.recv)


@dataclass(frozen=True, slots=True)
class Offered:
    """A device's offer as the fake answers it."""

    negotiated: Negotiated
    answer_video: VideoOffer | None  # None: the offer had no video m-line


@dataclass
class _MLine:
    kind: str
    port: int
    formats: list[str]
    names: dict[str, str] = field(default_factory=dict)  # payload type -> encoding name
    direction: str = "sendrecv"

    @property
    def codecs(self) -> list[str]:
        """Encoding names in the m-line's order."""
        return [self.names.get(f) or _STATIC.get(f, "") for f in self.formats]

    def first_carried(self) -> str | None:
        return next((_CANONICAL[c.lower()] for c in self.codecs if c.lower() in _CANONICAL), None)


def _direction(send: bool, recv: bool) -> str:
    return _DIRECTIONS[
        [(True, True), (True, False), (False, True), (False, False)].index((send, recv))
    ]


def _parse(text: str, what: str) -> list[_MLine]:
    lines = [line.strip() for line in text.strip().splitlines()]
    if not lines or lines[0] != "v=0":
        raise MediaError(
            ErrorCode.INVALID_SDP, f"the {what} could not be used: it is not SDP (no v=0 line)"
        )
    mlines: list[_MLine] = []
    for line in lines[1:]:
        if line.startswith("m="):
            parts = line[2:].split()
            if len(parts) < 3 or not parts[1].isdigit():
                raise MediaError(
                    ErrorCode.INVALID_SDP, f"the {what} could not be used: bad m-line {line!r}"
                )
            mlines.append(_MLine(parts[0], int(parts[1]), parts[3:]))
        elif mlines and line.startswith("a=rtpmap:"):
            pt, _, rest = line[len("a=rtpmap:") :].partition(" ")
            mlines[-1].names[pt] = rest.partition("/")[0]
        elif mlines and line[2:] in _DIRECTIONS and line.startswith("a="):
            mlines[-1].direction = line[2:]
    return mlines


def _video(mlines: list[_MLine]) -> _MLine | None:
    return next((m for m in mlines if m.kind == "video"), None)


def parse_offer(text: str, allow_video: bool, send_video: bool = True) -> Offered:
    """Decide the answer to a device's offer (``allow_video``: video may be negotiated;
    ``send_video``: the server sends video when the device offers to receive it).

    :raises MediaError: ``invalid_sdp`` (not SDP, no audio m-line), ``unsupported_codec``.
    """
    mlines = _parse(text, "offer")
    audio = next((m for m in mlines if m.kind == "audio" and m.port != 0), None)
    if audio is None:
        raise MediaError(ErrorCode.INVALID_SDP, "the offer has no audio m-line")
    codec = audio.first_carried()
    if codec is None:
        raise MediaError(
            ErrorCode.UNSUPPORTED_CODEC,
            "the offer has no audio codec callbridge carries (opus, PCMU, PCMA)",
        )
    te = any(c.lower() == "telephone-event" for c in audio.codecs)
    video = _video(mlines)
    if video is None:
        return Offered(Negotiated(codec, te), None)
    if not (allow_video and video.port != 0 and "vp8" in (c.lower() for c in video.codecs)):
        return Offered(Negotiated(codec, te), VideoOffer(False, False, rejected=True))
    sends = video.direction in ("sendrecv", "sendonly")
    receives = send_video and video.direction in ("sendrecv", "recvonly")
    return Offered(Negotiated(codec, te, True, sends, receives), VideoOffer(receives, sends))


def parse_answer(text: str, current: Negotiated, send: bool, recv: bool) -> Negotiated:
    """What a device's answer to the server's offer (video ``send``/``recv`` offered)
    settles.

    :raises MediaError: ``invalid_sdp`` when it is not SDP.
    """
    mlines = _parse(text, "answer")
    audio = next((m for m in mlines if m.kind == "audio"), None)
    codec = (audio.first_carried() if audio else None) or current.codec
    te = current.telephone_event
    if audio is not None:
        te = any(c.lower() == "telephone-event" for c in audio.codecs)
    video = _video(mlines)
    if video is None or video.port == 0 or "vp8" not in (c.lower() for c in video.codecs):
        return Negotiated(codec, te, current.video_line or send or recv)
    sends = recv and video.direction in ("sendrecv", "sendonly")
    receives = send and video.direction in ("sendrecv", "recvonly")
    return Negotiated(codec, te, True, sends, receives)


def sdp(
    session: int, codecs: Sequence[str], telephone_event: bool, video: VideoOffer | None
) -> str:
    """A small description: ``codecs`` in order, telephone-event at the first one's clock
    rate, and a VP8 m-line when ``video``."""
    payloads = [_PAYLOAD[c] for c in codecs]
    formats = [pt for pt, _ in payloads]
    rate = payloads[0][1].split("/")[1] if payloads else "8000"
    if telephone_event:
        formats.append("101")
    lines = [
        "v=0",
        f"o=- {session} 1 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        f"m=audio 9 UDP/TLS/RTP/SAVPF {' '.join(formats)}",
        "c=IN IP4 127.0.0.1",
        "a=mid:0",
        *(f"a=rtpmap:{pt} {name}" for pt, name in payloads),
        *([f"a=rtpmap:101 telephone-event/{rate}"] if telephone_event else []),
        "a=sendrecv",
    ]
    if video is not None:
        port = 0 if video.rejected else 9
        direction = "inactive" if video.rejected else video.direction
        lines += [
            f"m=video {port} UDP/TLS/RTP/SAVPF 96",
            "c=IN IP4 127.0.0.1",
            "a=mid:1",
            "a=rtpmap:96 VP8/90000",
            f"a={direction}",
        ]
    return "\r\n".join(lines) + "\r\n"
