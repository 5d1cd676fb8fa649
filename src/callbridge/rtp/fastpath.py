"""The per-packet RTP path on bytes: header parse and write, SRTP straight through libsrtp.

Relaying a packet used to cost two :class:`aiortc.rtp.RtpPacket` objects (parse, then a new
one to serialize, each with its extensions object and CSRC list), a serialize that builds the
header extension block piece by piece, and pylibsrtp's wrapper (type checks and a fresh
``int *`` per call). Here:

- :class:`RtpView` is the inbound packet: one ``struct`` unpack of the fixed header (RFC 3550
  section 5.1), the payload without CSRC list, extension block and padding, and the RFC 6464
  audio level when the one-byte extension (RFC 8285 section 4.2) carries it. It has the
  attributes of ``RtpPacket`` that the media code reads (``extensions.audio_level`` too).
- :class:`RtpWriter` holds one stream's outgoing header: the fixed header and the extension
  block (MID, RFC 8843; audio level) are written with ``struct.pack_into`` into a
  preallocated ``bytearray``, byte for byte what ``RtpPacket.serialize`` writes for the same
  values (tests/test_packet_path.py compares them).
- :func:`run_now` runs a packet handler (a coroutine) to its end inside a datagram callback.
- :class:`Srtp` calls ``srtp_protect`` / ``srtp_unprotect`` of the libsrtp inside a
  ``pylibsrtp.Session`` with the session's own buffer and one reused length cell; the packet
  is assembled in that buffer, and what ``sendto`` gets is a view of it (asyncio's datagram
  transport sends at once or copies what it must queue).
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
import types
from collections.abc import Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any

import pylibsrtp
from aiortc.rtp import HeaderExtensionsMap
from pylibsrtp._binding import ffi, lib

if TYPE_CHECKING:
    from aiortc import RTCRtpSender
    from aiortc.rtcdtlstransport import RTCDtlsTransport

__all__ = ["RtpView", "RtpWriter", "Srtp", "parse_rtp", "run_now"]

_FIXED = struct.Struct("!BBHII")  # V P X CC, M PT, sequence number, timestamp, SSRC
_EXT_HEAD = struct.Struct("!HH")  # profile, length in 32-bit words (RFC 3550 5.3.1)
_ONE_BYTE = 0xBEDE  # RFC 8285 section 4.2


class _Extensions:
    """What ``packet.extensions`` is to the media code: the audio level only."""

    __slots__ = ("audio_level",)

    def __init__(self, audio_level: tuple[bool, int] | None) -> None:
        self.audio_level = audio_level


class RtpView:
    """One inbound RTP packet's header fields and payload (module docstring)."""

    __slots__ = (
        "audio_level",
        "marker",
        "payload",
        "payload_type",
        "sequence_number",
        "ssrc",
        "timestamp",
    )

    def __init__(
        self,
        marker: int,
        payload_type: int,
        sequence_number: int,
        timestamp: int,
        ssrc: int,
        payload: bytes,
        audio_level: tuple[bool, int] | None,
    ) -> None:
        self.marker = marker
        self.payload_type = payload_type
        self.sequence_number = sequence_number
        self.timestamp = timestamp
        self.ssrc = ssrc
        self.payload = payload
        self.audio_level = audio_level

    @property
    def extensions(self) -> _Extensions:
        return _Extensions(self.audio_level)


def _level(data: bytes, pos: int, end: int, level_id: int) -> tuple[bool, int] | None:
    """The RFC 6464 level in a one-byte-header extension block ``data[pos:end]``."""
    while pos < end:
        b = data[pos]
        if b == 0:  # padding between elements
            pos += 1
            continue
        x_id, x_len = b >> 4, (b & 0x0F) + 1
        if x_id == 15:
            return None  # RFC 8285 4.2: stop parsing
        if x_id == level_id and pos + 1 < end:
            v = data[pos + 1]
            return (v & 0x80 == 0x80, v & 0x7F)
        pos += 1 + x_len
    return None


def parse_rtp(data: bytes, level_id: int = 0) -> RtpView | None:
    """``data`` as an :class:`RtpView`, or None when it is not a valid RTP packet (what
    ``RtpPacket.parse`` refuses with ValueError). ``level_id``: the negotiated id of the
    audio level extension (0: not negotiated)."""
    n = len(data)
    if n < 12:
        return None
    b0, b1, seq, ts, ssrc = _FIXED.unpack_from(data)
    if b0 >> 6 != 2:
        return None
    pos = 12 + 4 * (b0 & 0x0F)
    level = None
    if b0 & 0x10:
        if n < pos + 4:
            return None
        profile, words = _EXT_HEAD.unpack_from(data, pos)
        start, pos = pos + 4, pos + 4 + 4 * words
        if n < pos:
            return None
        if level_id and profile == _ONE_BYTE:
            level = _level(data, start, pos, level_id)
    if b0 & 0x20:
        pad = data[-1]
        if not pad or pad > n - pos:
            return None
        n -= pad
    elif pos > n:
        return None
    return RtpView(b1 >> 7, b1 & 0x7F, seq, ts, ssrc, data[pos:n], level)


class RtpWriter:
    """One outgoing stream's RTP header, written in place (module docstring).

    ``ext_map`` gives the negotiated extension ids; ``mid`` the stream's MID (None: none).
    """

    def __init__(self, ssrc: int, ext_map: HeaderExtensionsMap | None, mid: str | None) -> None:
        ids = _ids(ext_map)
        self._mid_id = ids.mid or 0
        self._level_id = ids.audio_level or 0
        self._mid = mid.encode() if mid is not None and self._mid_id else b""
        self.ssrc = ssrc
        # The headers without and with an audio level: MID first, then the level, as
        # HeaderExtensionsMap.set orders them.
        self._level_pos = 0
        self._plain = self._template(None)
        self._leveled = self._template((False, 0)) if self._level_id else self._plain

    def _template(self, level: tuple[bool, int] | None) -> bytearray:
        elements: list[tuple[int, bytes]] = []
        if self._mid:
            elements.append((self._mid_id, self._mid))
        if level is not None:
            elements.append((self._level_id, b"\x00"))
        if not elements:
            return bytearray(_FIXED.pack(0x80, 0, 0, 0, self.ssrc))
        one_byte = all(0 < i <= 14 and 0 < len(v) <= 16 for i, v in elements)
        parts = [
            (bytes([(i << 4) | (len(v) - 1)]) if one_byte else bytes([i, len(v)])) + v
            for i, v in elements
        ]
        block = b"".join(parts)
        block += b"\x00" * (-len(block) % 4)
        profile = _ONE_BYTE if one_byte else 0x1000
        head = _FIXED.pack(0x90, 0, 0, 0, self.ssrc) + _EXT_HEAD.pack(profile, len(block) // 4)
        header = bytearray(head + block)
        if level is not None:  # the level byte: the last element's last byte
            self._level_pos = len(head) + sum(len(p) for p in parts) - 1
        return header

    def header(
        self,
        payload_type: int,
        marker: int,
        seq: int,
        timestamp: int,
        audio_level: tuple[bool, int] | None = None,
    ) -> bytearray:
        """The header of one packet (a buffer reused by the next call)."""
        if audio_level is not None and self._level_id:
            buf = self._leveled
            buf[self._level_pos] = (0x80 if audio_level[0] else 0) | (audio_level[1] & 0x7F)
        else:
            buf = self._plain
        _FIXED.pack_into(buf, 0, buf[0], (marker << 7) | payload_type, seq, timestamp, self.ssrc)
        return buf


def _ids(ext_map: HeaderExtensionsMap | None) -> Any:
    """The negotiated ids of a HeaderExtensionsMap (aiortc keeps them private)."""
    name = "_HeaderExtensionsMap__ids"
    return getattr(ext_map if ext_map is not None else HeaderExtensionsMap(), name)


class Srtp:
    """``srtp_protect`` / ``srtp_unprotect`` on a pylibsrtp session, without its wrapper."""

    def __init__(self, session: pylibsrtp.Session) -> None:
        self.session = session  # keeps the libsrtp context alive
        self._ctx = session._srtp[0]
        self._cdata = session._cdata
        self._buffer: Any = session._buffer
        self._view = memoryview(session._buffer)
        self._size = len(self._view) - 16  # room for the authentication tag (RFC 3711 3.1)
        self._len = ffi.new("int *")

    def protect(self, header: bytes | bytearray, payload: bytes) -> memoryview:
        """The SRTP packet of ``header + payload``: a view valid until the next call on this
        session (send it right away)."""
        h = len(header)
        n = h + len(payload)
        if n > self._size:
            raise ValueError("packet is too long")
        buf = self._buffer
        buf[0:h] = header
        buf[h:n] = payload
        cell = self._len
        cell[0] = n
        rc = lib.srtp_protect(self._ctx, self._cdata, cell)
        if rc:
            raise pylibsrtp.Error(f"srtp_protect failed ({rc})")
        return self._view[0 : cell[0]]

    def unprotect(self, data: bytes) -> bytes:
        """The RTP packet in the SRTP packet ``data`` (pylibsrtp.Error: not authentic)."""
        n = len(data)
        if n > self._size + 16:
            raise ValueError("packet is too long")
        self._buffer[0:n] = data
        cell = self._len
        cell[0] = n
        rc = lib.srtp_unprotect(self._ctx, self._cdata, cell)
        if rc:
            raise pylibsrtp.Error(f"srtp_unprotect failed ({rc})")
        return bytes(self._buffer[0 : cell[0]])


_pending: set[asyncio.Task[Any]] = set()  # handlers that suspended (run_now), until done


def run_now(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` to its end right here, or, if it suspends, in a task from there on.

    The packet handlers are coroutines, but nothing on the relay path awaits a real future,
    so a datagram callback can run them without a task or a loop turn per packet. A handler
    that does suspend goes on in a task (kept in ``_pending``), resumed as a task would
    resume it: on its future's completion.
    """
    # Iterating the coroutine's awaitable ends without a StopIteration object when it returns
    # (C's iternext): ≈ 90 ns cheaper per packet than coro.send(None) and catching one.
    for future in coro.__await__():
        task = asyncio.get_running_loop().create_task(_resume(coro, future))
        _pending.add(task)
        task.add_done_callback(_pending.discard)
        return


@types.coroutine
def _resume(coro: Coroutine[Any, Any, None], future: Any) -> Generator[Any, None, None]:
    while True:
        try:
            yield future  # the task waits on it, then resumes the coroutine (send None)
        except BaseException as exc:  # cancelled: into the coroutine, as a task would
            try:
                future = coro.throw(exc)
            except StopIteration:
                return
            continue
        try:
            future = coro.send(None)
        except StopIteration:
            return


# The send side (webrtc.RtpPort.send_now): its resolved route, and the outbound clock.
_PACKETS = "_RTCRtpSender__packet_count"
_OCTETS = "_RTCRtpSender__octet_count"
_NTP = "_RTCRtpSender__ntp_timestamp"
_RTP_TS = "_RTCRtpSender__rtp_timestamp"
_TX_PACKETS = "_RTCDtlsTransport__tx_packets"
_TX_BYTES = "_RTCDtlsTransport__tx_bytes"


class _Route:
    """One RtpPort's resolved send path (:meth:`RtpPort._resolve_route`)."""

    __slots__ = (
        "dest",
        "dtls",
        "dtls_counts",
        "nominated",
        "pair",
        "protect",
        "sender_counts",
        "sendto",
    )

    def __init__(
        self,
        dtls: RTCDtlsTransport,
        nominated: dict[int, Any],
        pair: Any,
        protect: Callable[[bytes | bytearray, bytes], memoryview],
        sendto: Callable[[Any, tuple[str, int]], None],
        dest: tuple[str, int],
        sender: RTCRtpSender,
    ) -> None:
        self.dtls = dtls
        self.nominated = nominated
        self.pair = pair
        self.protect = protect
        self.sendto = sendto
        self.dest = dest
        self.sender_counts: dict[str, Any] = vars(sender)
        self.dtls_counts: dict[str, Any] = vars(dtls)


class OutboundClock:
    """RTP timestamps for one outgoing stream whose source can change (relay, music, …).

    Each source has its own timestamp base; when the source changes, the stream is re-anchored
    so the receiver sees time move on by the wall-clock gap (at least one frame), and the first
    packet of the new source carries the marker bit (RFC 3551 §4.1 talkspurt start).
    """

    def __init__(self, clock_rate: int, step: int) -> None:
        self.clock_rate = clock_rate
        self.step = step
        self._source: object = None
        self._offset = random.getrandbits(32)
        self._last_out: int | None = None
        self._last_wall = 0.0

    def map(self, source: object, source_ts: int, now: float = 0.0) -> tuple[int, int]:
        """Return (outgoing timestamp, marker) for a packet of ``source`` at ``source_ts``;
        ``now``: ``time.monotonic()`` if the caller has read it already (once per mixer tick
        for all its members), else it is read here."""
        if not now:
            now = time.monotonic()
        marker = 0
        if source is not self._source:
            if self._last_out is not None:
                gap = max(self.step, int((now - self._last_wall) * self.clock_rate))
                self._offset = self._last_out + gap - source_ts
            self._source = source
            marker = 1
        out = (source_ts + self._offset) & 0xFFFFFFFF
        self._last_out = out
        self._last_wall = now
        return out, marker
