"""SDP offer/answer for plain RTP legs (SIP phones): ``RTP/AVP`` and SDES-keyed ``RTP/SAVP``.

WebRTC legs negotiate through aiortc (:mod:`callbridge.media.negotiation`); a SIP phone speaks
RFC 3264 offer/answer over RFC 8866 SDP with no ICE and no DTLS, which this module reads and
writes itself:

- codecs PCMU (static 0), PCMA (8), G.722 (9; an 8000 Hz RTP clock for a 16 kHz codec,
  RFC 3551 section 4.5.2) and Opus (``opus/48000/2``, RFC 7587), plus ``telephone-event``
  (RFC 4733) at 8000 Hz and 48000 Hz;
- SRTP keyed by SDES (RFC 4568): ``a=crypto`` with ``AES_CM_128_HMAC_SHA1_80`` or ``_32``;
- the direction attributes (RFC 3264 section 6.1) and the old hold form ``c=0.0.0.0``
  (section 8.4), read as "the device does not want our media";
- ``a=rtcp`` (RFC 3605) and ``a=rtcp-mux`` (RFC 5761).

A :class:`PtTable` keeps one endpoint's payload-type numbers for its whole life, so a re-offer
never renumbers a codec (RFC 3264 section 8.3.2). Pure functions, no sockets: the fake media
server uses them too.
"""

from __future__ import annotations

import base64
import ipaddress
import secrets
from dataclasses import dataclass, field

from callbridge.errors import ErrorCode, MediaError
from callbridge.rtp.codecs import CODECS, G722, CodecSpec

__all__ = [
    "CARRIED",
    "DEFAULT_ORDER",
    "SUITES",
    "Crypto",
    "MediaLine",
    "Plan",
    "PtTable",
    "SessionSdp",
    "answer_direction",
    "build",
    "new_crypto",
    "parse",
    "remote_hold",
]

# What plain legs carry, by lower-case encoding name.
CARRIED: dict[str, CodecSpec] = {
    "pcmu": CODECS["pcmu"],
    "pcma": CODECS["pcma"],
    "g722": G722,
    "opus": CODECS["opus"],
}
DEFAULT_ORDER = ("PCMU", "PCMA", "G722", "opus")  # our offers, unless told a codec to prefer
# RFC 3551 table 4: static payload types that need no a=rtpmap.
_STATIC = {0: ("pcmu", 8000, 1), 8: ("pcma", 8000, 1), 9: ("g722", 8000, 1)}
# Our numbers for what has no static one (the remote's numbers win when it offers first).
_DYNAMIC = {("opus", 48000): 111, ("telephone-event", 8000): 101, ("telephone-event", 48000): 102}
_RTPMAP = {"pcmu": "PCMU/8000", "pcma": "PCMA/8000", "g722": "G722/8000", "opus": "opus/48000/2"}
# RFC 4568 section 6.2: crypto-suite -> (libsrtp profile name, master key + salt length).
SUITES = {"AES_CM_128_HMAC_SHA1_80": 30, "AES_CM_128_HMAC_SHA1_32": 30}
_PROTOS = ("RTP/AVP", "RTP/SAVP", "RTP/AVPF", "RTP/SAVPF")
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_MAX_SDP = 16384  # bytes: a phone's SDP is well under 2 kB
_MAX_MEDIA = 8  # m-lines (as the WebRTC side's max_sdp_media)


@dataclass(frozen=True, slots=True)
class Crypto:
    """One ``a=crypto`` line (RFC 4568 section 9.1), inline key only."""

    tag: int
    suite: str
    key: bytes  # master key + master salt (30 bytes for the AES-CM-128 suites)

    def line(self) -> str:
        inline = base64.b64encode(self.key).decode()
        return f"a=crypto:{self.tag} {self.suite} inline:{inline}"


def new_crypto(tag: int, suite: str) -> Crypto:
    """A fresh random key for ``suite`` (RFC 4568 section 6.1: keys are never reused across
    suites or endpoints)."""
    return Crypto(tag, suite, secrets.token_bytes(SUITES[suite]))


@dataclass
class MediaLine:
    """One m= section as read."""

    kind: str
    port: int
    proto: str
    fmts: list[str]
    rtpmap: dict[int, tuple[str, int, int]] = field(default_factory=dict)  # pt -> name, rate, ch
    address: str | None = None  # its own c= line
    direction: str | None = None
    crypto: list[Crypto] = field(default_factory=list)
    rtcp_port: int | None = None
    rtcp_address: str | None = None
    rtcp_mux: bool = False

    def codec_of(self, pt: int) -> tuple[str, int, int] | None:
        return self.rtpmap.get(pt) or _STATIC.get(pt)


@dataclass
class SessionSdp:
    """A parsed session description (what plain RTP needs of it)."""

    address: str | None  # the session-level c= address
    direction: str | None  # session-level direction attribute
    media: list[MediaLine]

    def media_address(self, m: MediaLine) -> str:
        address = m.address or self.address
        if address is None:
            raise MediaError(ErrorCode.INVALID_SDP, "an m-line has no c= line (RFC 8866 5.7)")
        return address

    def media_direction(self, m: MediaLine) -> str:
        return m.direction or self.direction or "sendrecv"


def _bad(what: str) -> MediaError:
    return MediaError(ErrorCode.INVALID_SDP, what)


def _parse_crypto(value: str) -> Crypto | None:
    """``tag suite inline:KEY[|lifetime][|MKI:len] [params]``; ``None`` for what we cannot
    use (another suite, an MKI, several keys, session parameters): RFC 4568 section 7.1.2
    has the answerer skip those and take the next line."""
    parts = value.split()
    if len(parts) < 3 or not parts[0].isdigit():
        raise _bad(f"a=crypto:{value} is not 'tag suite key-params' (RFC 4568 section 9.1)")
    tag, suite, keyparams = int(parts[0]), parts[1], parts[2]
    if suite not in SUITES or len(parts) > 3 or ";" in keyparams:
        return None
    if not keyparams.startswith("inline:"):
        return None
    fields = keyparams[len("inline:") :].split("|")
    if len(fields) > 2 or (len(fields) == 2 and ":" in fields[1]):
        return None  # an MKI (libsrtp takes none here)
    try:
        key = base64.b64decode(fields[0], validate=True)
    except ValueError:
        raise _bad(f"a=crypto:{tag}: the inline key is not base64 (RFC 4568 section 6.1)") from None
    if len(key) != SUITES[suite]:
        raise _bad(f"a=crypto:{tag}: a {suite} key and salt are {SUITES[suite]} bytes")
    return Crypto(tag, suite, key)


def parse(sdp: str, what: str = "offer") -> SessionSdp:
    """Read an SDP; :raises MediaError: ``invalid_sdp`` naming the fault."""
    if len(sdp) > _MAX_SDP:
        raise _bad(f"the {what} is {len(sdp)} bytes; at most {_MAX_SDP} are accepted")
    lines = [ln.strip() for ln in sdp.replace("\r\n", "\n").split("\n") if ln.strip()]
    if not lines or lines[0] != "v=0":
        raise _bad(f"the {what} is not SDP: it must start with v=0 (RFC 8866 section 5.1)")
    session = SessionSdp(None, None, [])
    current: MediaLine | None = None
    for line in lines:
        if len(line) < 2 or line[1] != "=":
            raise _bad(f"SDP line {line[:40]!r} is not type=value (RFC 8866 section 5)")
        kind, value = line[0], line[2:]
        if kind == "m":
            current = _parse_m(value)
            session.media.append(current)
            if len(session.media) > _MAX_MEDIA:
                raise _bad(f"the {what} has more than {_MAX_MEDIA} m-lines")
        elif kind == "c":
            address = _parse_c(value)
            if current is None:
                session.address = address
            else:
                current.address = address
        elif kind == "a":
            _attribute(session, current, value)
    if not session.media:
        raise _bad(f"the {what} has no m-line")
    return session


def _parse_m(value: str) -> MediaLine:
    parts = value.split()
    if len(parts) < 4:
        raise _bad(f"m={value} is not 'media port proto fmt ...' (RFC 8866 section 5.14)")
    port_text = parts[1].partition("/")[0]
    if not port_text.isdigit() or int(port_text) > 65535:
        raise _bad(f"m={value}: the port {parts[1]!r} is not a port number")
    return MediaLine(parts[0], int(port_text), parts[2], parts[3:])


def _parse_c(value: str) -> str:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise _bad(f"c={value} is not 'IN IP4|IP6 address' (RFC 8866 section 5.7)")
    address = parts[2].partition("/")[0]  # a multicast TTL suffix is not ours to keep
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise _bad(f"c={value}: {address!r} is not an IP address (no name lookups)") from None
    return address


def _attribute(session: SessionSdp, m: MediaLine | None, value: str) -> None:
    name, _, rest = value.partition(":")
    if name in DIRECTIONS:
        if m is None:
            session.direction = name
        else:
            m.direction = name
    elif m is None:
        return
    elif name == "rtpmap":
        pt_text, _, encoding = rest.partition(" ")
        fields = encoding.strip().split("/")
        if not pt_text.isdigit() or len(fields) < 2 or not fields[1].isdigit():
            raise _bad(f"a=rtpmap:{rest} is not 'pt name/rate[/channels]' (RFC 8866 6.6)")
        channels = int(fields[2]) if len(fields) > 2 and fields[2].isdigit() else 1
        m.rtpmap[int(pt_text)] = (fields[0].lower(), int(fields[1]), channels)
    elif name == "crypto":
        crypto = _parse_crypto(rest)
        if crypto is not None:
            m.crypto.append(crypto)
    elif name == "rtcp":
        parts = rest.split()
        if not parts or not parts[0].isdigit():
            raise _bad(f"a=rtcp:{rest} is not 'port [IN IP4 address]' (RFC 3605 section 2.1)")
        m.rtcp_port = int(parts[0])
        if len(parts) == 4:
            m.rtcp_address = _parse_c(" ".join(parts[1:]))
    elif name == "rtcp-mux":
        m.rtcp_mux = True


def remote_hold(session: SessionSdp, m: MediaLine) -> bool:
    """The device does not want our media: ``sendonly``/``inactive`` (RFC 3264 section 8.4),
    or the old ``c=0.0.0.0`` form (RFC 2543, still sent by some phones)."""
    direction = session.media_direction(m)
    address = m.address or session.address
    return direction in ("sendonly", "inactive") or address in ("0.0.0.0", "::")


def answer_direction(remote: str, local: str) -> str:
    """The direction of an answer to a ``remote`` offer when we want ``local`` (RFC 3264
    section 6.1: we send only what they receive, receive only what they send)."""
    they_send = remote in ("sendrecv", "sendonly")
    they_recv = remote in ("sendrecv", "recvonly")
    we_send = local in ("sendrecv", "sendonly") and they_recv
    we_recv = local in ("sendrecv", "recvonly") and they_send
    return {(True, True): "sendrecv", (True, False): "sendonly", (False, True): "recvonly"}.get(
        (we_send, we_recv), "inactive"
    )


class PtTable:
    """One endpoint's payload types: (name, clock rate) -> number, fixed once used.

    The first offer decides (ours or the remote's); later offers and answers reuse the same
    numbers, and a codec new to the session gets a number nobody uses yet.
    """

    def __init__(self) -> None:
        self.numbers: dict[tuple[str, int], int] = {}

    def number(self, name: str, rate: int) -> int:
        key = (name.lower(), rate)
        pt = self.numbers.get(key)
        if pt is None:
            static = next((p for p, (n, r, _) in _STATIC.items() if (n, r) == key), None)
            pt = static if static is not None else _DYNAMIC.get(key, 96)
            used = set(self.numbers.values())
            while pt in used:
                pt = 96 + (pt - 95) % 32  # next free dynamic number (RFC 3551 section 3)
            self.numbers[key] = pt
        return pt

    def learn(self, m: MediaLine) -> None:
        """Take the remote's numbers for codecs we have not numbered yet."""
        for fmt in m.fmts:
            if fmt.isdigit() and (codec := m.codec_of(int(fmt))) is not None:
                key = (codec[0], codec[1])
                if key not in self.numbers and int(fmt) not in self.numbers.values():
                    self.numbers[key] = int(fmt)


@dataclass
class Plan:
    """What one side's SDP says of its audio: what we write or what we read."""

    address: str
    port: int
    proto: str  # RTP/AVP or RTP/SAVP (or the AVPF forms, echoed)
    codecs: list[CodecSpec]  # in order; the first is what the sender of this SDP prefers
    te_rates: list[int]  # telephone-event clock rates
    direction: str
    crypto: list[Crypto] = field(default_factory=list)
    rtcp_mux: bool = False


def build(
    plan: Plan,
    pts: PtTable,
    session_id: int,
    version: int,
    layout: list[MediaLine | None] | None = None,
) -> str:
    """Write an SDP for ``plan`` (one audio m-line). An answer keeps the offer's m-lines in
    ``layout``: ``None`` is where the audio line goes, the others are refused with port 0
    (RFC 3264 section 6)."""
    family = "IP6" if ":" in plan.address else "IP4"
    out = [
        "v=0",
        f"o=callbridge {session_id} {version} IN {family} {plan.address}",
        "s=callbridge",
        f"c=IN {family} {plan.address}",
        "t=0 0",
    ]
    audio: list[str] = []
    fmts: list[int] = []
    for spec in plan.codecs:
        pt = pts.number(spec.name, spec.clock_rate)
        fmts.append(pt)
        audio.append(f"a=rtpmap:{pt} {_RTPMAP[spec.name.lower()]}")
        if spec.name == "opus":
            audio.append(f"a=fmtp:{pt} useinbandfec=1")
    for rate in plan.te_rates:
        pt = pts.number("telephone-event", rate)
        fmts.append(pt)
        audio += [f"a=rtpmap:{pt} telephone-event/{rate}", f"a=fmtp:{pt} 0-16"]
    audio += [c.line() for c in plan.crypto]
    audio.append(f"a=rtcp:{plan.port + 1}")
    if plan.rtcp_mux:
        audio.append("a=rtcp-mux")
    audio += ["a=ptime:20", f"a={plan.direction}"]
    m_audio = [f"m=audio {plan.port} {plan.proto} {' '.join(map(str, fmts))}", *audio]
    placed = False
    for m in layout or ():
        if m is None:  # the accepted line's place
            out += m_audio
            placed = True
        else:
            out.append(f"m={m.kind} 0 {m.proto} {m.fmts[0] if m.fmts else '0'}")
    if not placed:
        out += m_audio
    return "\r\n".join(out) + "\r\n"
