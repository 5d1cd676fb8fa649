"""Offer/answer of plain RTP endpoints (SIP phones): the counterpart of
:mod:`callbridge.media.negotiation` for :class:`~callbridge.media.rtp_plain.PlainEndpoint`.

The SDP is :mod:`callbridge.media.sdp_plain`; this module applies it to an endpoint: which
codec it sends and receives (one per answer of ours; the answerer's first when we offered,
RFC 3264 section 6.1), telephone-event at that codec's clock rate, the SRTP keys, where to
send, and the device's direction and hold (reported as
:class:`~callbridge.media.interface.MediaDirectionChanged` when they change).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from callbridge.errors import ErrorCode, MediaError
from callbridge.media.interface import MediaDirection, MediaDirectionChanged
from callbridge.media.rtp_plain import PlainEndpoint
from callbridge.media.sdp_plain import (
    CARRIED,
    DEFAULT_ORDER,
    SUITES,
    Crypto,
    MediaLine,
    Plan,
    PtTable,
    SessionSdp,
    answer_direction,
    build,
    new_crypto,
    parse,
    remote_hold,
)
from callbridge.rtp.codecs import CodecSpec
from callbridge.rtp.offer_answer import NegotiatedAudio
from callbridge.rtp.webrtc import OutboundClock

__all__ = [
    "AnswerChoice",
    "Pending",
    "accept_answer",
    "answer",
    "answer_sdp",
    "choose_answer",
    "offer",
    "offered_codecs",
    "pick_line",
    "renegotiate",
    "reoffer",
]

_PLAIN = ("RTP/AVP", "RTP/AVPF")
_SECURE = ("RTP/SAVP", "RTP/SAVPF")
_CARRIED_NAMES = "PCMU, PCMA, G722, opus"


@dataclass
class Pending:
    """Our offer, until the device's answer."""

    codecs: list[CodecSpec]
    te_rates: list[int]
    secure: bool
    direction: str


def _direction(session: SessionSdp, m: MediaLine) -> MediaDirection:
    return cast(MediaDirection, session.media_direction(m))


def offered_codecs(m: MediaLine) -> list[tuple[int, CodecSpec]]:
    out = []
    for fmt in m.fmts:
        if fmt.isdigit() and (codec := m.codec_of(int(fmt))) is not None:
            spec = CARRIED.get(codec[0])
            if spec is not None and codec[1] == spec.clock_rate:
                out.append((int(fmt), spec))
    return out


def _te(m: MediaLine, rate: int) -> int | None:
    for fmt in m.fmts:
        if fmt.isdigit() and (codec := m.codec_of(int(fmt))) == ("telephone-event", rate, 1):
            return int(fmt)
        if fmt.isdigit() and codec is not None and codec[:2] == ("telephone-event", rate):
            return int(fmt)
    return None


def pick_line(session: SessionSdp) -> MediaLine:
    """The first audio m-line we can take, or an error naming why none is."""
    why = "the offer has no audio m-line"
    for m in session.media:
        if m.kind != "audio" or m.port == 0:
            continue
        if m.proto not in _PLAIN + _SECURE:
            why = f"the audio m-line's transport {m.proto} is not RTP/AVP or RTP/SAVP" + (
                " (DTLS-SRTP is WebRTC's: use answer())" if "TLS" in m.proto else ""
            )
            continue
        if m.proto in _SECURE and not m.crypto:
            why = (
                f"{m.proto} without a usable a=crypto line (RFC 4568: inline key, suite "
                f"{' or '.join(SUITES)}, no MKI)"
            )
            continue
        if not offered_codecs(m):
            raise MediaError(
                ErrorCode.UNSUPPORTED_CODEC,
                f"the offer has no audio codec callbridge carries ({_CARRIED_NAMES})",
            )
        return m
    raise MediaError(ErrorCode.INVALID_SDP, why)


def _remote_address(session: SessionSdp, m: MediaLine) -> tuple[str, int] | None:
    address = session.media_address(m)
    if address in ("0.0.0.0", "::") or m.port == 0:
        return None
    return address, m.port


def _apply_remote(ep: PlainEndpoint, session: SessionSdp, m: MediaLine, direction: str) -> None:
    """Where to send, what may flow (``direction`` is ours as negotiated), and the device's
    hold, reported when it changed."""
    remote = _remote_address(session, m)
    rtcp = None
    if remote is not None:
        rtcp_port = m.rtcp_port or remote[1] + 1
        rtcp = (m.rtcp_address or remote[0], rtcp_port)
    ep.rtp.set_remote(remote, rtcp, m.rtcp_mux)
    ep.rtp.send_ok = direction in ("sendrecv", "sendonly")
    ep.rtp.recv_ok = direction in ("sendrecv", "recvonly")
    remote_direction, held = _direction(session, m), remote_hold(session, m)
    changed = (remote_direction, held) != (ep.remote_direction, ep.remote_hold)
    ep.remote_direction, ep.remote_hold = remote_direction, held
    if changed:
        ep.server.emit(MediaDirectionChanged(ep.id, remote_direction, held))


def _set_audio(
    ep: PlainEndpoint, send: tuple[int, CodecSpec], te: int | None, recv: dict[int, CodecSpec]
) -> None:
    pt, spec = send
    audio = NegotiatedAudio(spec, pt, te, dict(recv))
    if te is not None:
        audio.recv[te] = None
    old = ep.rtp.audio
    ep.rtp.audio = audio
    if old is None or old.codec.clock_rate != spec.clock_rate or ep.clock is None:
        ep.clock = OutboundClock(spec.clock_rate, spec.timestamp_step)
    if ep.player is not None and old is not None and old.codec is not spec:
        ep.start_player(ep.player.name)  # type: ignore[arg-type]  # re-encoded for the codec
    ep.rtp.ready.set()
    if ep.pending_player is not None:
        name, ep.pending_player = ep.pending_player, None
        ep.start_player(name)


async def answer(ep: PlainEndpoint, offer_sdp: str, prefer_codec: str | None, host: str) -> str:
    """A new endpoint's answer to the device's first offer."""
    session = parse(offer_sdp, "offer")
    pick_line(session)  # refuse before any socket is bound
    await ep.rtp.open(host)
    return _answer(ep, session, prefer_codec)


async def renegotiate(ep: PlainEndpoint, offer_sdp: str) -> str:
    """The device's new offer on a live endpoint (re-INVITE)."""
    session = parse(offer_sdp, "offer")
    current = ep.spec
    return _answer(ep, session, current.name if current else None)


@dataclass
class AnswerChoice:
    """What we answer to an offer (decided by :func:`choose_answer`, before anything is
    applied; the fake media server uses it too)."""

    session: SessionSdp
    line: MediaLine  # the audio m-line we take
    pt: int
    spec: CodecSpec
    te: int | None  # telephone-event at the codec's rate, the offer's number
    theirs: Crypto | None  # the device's key (RTP/SAVP)
    direction: str  # ours, in the answer
    remote_direction: MediaDirection
    held: bool


def choose_answer(session: SessionSdp, prefer: str | None, local: str) -> AnswerChoice:
    """One codec (``prefer`` when offered, else the offerer's first we carry), its
    telephone-event, the device's first usable key, and the direction (RFC 3264 6.1)."""
    m = pick_line(session)
    offered = offered_codecs(m)
    wanted = (prefer or "").lower()
    pt, spec = next(((p, s) for p, s in offered if s.name.lower() == wanted), offered[0])
    held = remote_hold(session, m)
    remote = _direction(session, m)
    # c=0.0.0.0 with no direction attribute: the device sends but wants nothing back.
    effective = "sendonly" if held and remote == "sendrecv" else remote
    return AnswerChoice(
        session,
        m,
        pt,
        spec,
        _te(m, spec.clock_rate),
        m.crypto[0] if m.proto in _SECURE else None,
        answer_direction(effective, local),
        remote,
        held,
    )


def answer_sdp(
    choice: AnswerChoice,
    address: str,
    port: int,
    ours: Crypto | None,
    pts: PtTable,
    session_id: int,
    version: int,
) -> str:
    """Our answer for ``choice``, listening on ``address``:``port`` with key ``ours``; the
    offerer's payload-type numbers go into ``pts`` (RFC 3264 section 6.1)."""
    spec, te = choice.spec, choice.te
    pts.numbers[(spec.name.lower(), spec.clock_rate)] = choice.pt
    if te is not None:
        pts.numbers[("telephone-event", spec.clock_rate)] = te
    m = choice.line
    plan = Plan(
        address,
        port,
        m.proto,
        [spec],
        [spec.clock_rate] if te is not None else [],
        choice.direction,
        [ours] if ours is not None else [],
        m.rtcp_mux,
    )
    layout = [None if line is m else line for line in choice.session.media]
    return build(plan, pts, session_id, version, layout)


def _answer(ep: PlainEndpoint, session: SessionSdp, prefer: str | None) -> str:
    choice = choose_answer(session, prefer, ep.local_direction)
    theirs = choice.theirs
    ours: Crypto | None = None
    if theirs is not None:
        ours = ep.keys.get(theirs.tag)
        if ours is None or ours.suite != theirs.suite:
            ours = ep.keys[theirs.tag] = new_crypto(theirs.tag, theirs.suite)
    ep.srtp = theirs is not None
    sdp = answer_sdp(
        choice, ep.rtp.address, ep.rtp.port, ours, ep.pts, ep.session_id, ep.next_version()
    )
    ep.rtp.set_keys(ours, theirs)
    _set_audio(ep, (choice.pt, choice.spec), choice.te, {choice.pt: choice.spec})
    _apply_remote(ep, session, choice.line, choice.direction)
    ep.pending = None
    ep.negotiation_done()
    return sdp


async def offer(ep: PlainEndpoint, prefer_codec: str | None, srtp: bool, host: str) -> str:
    """A new endpoint's offer (every carried codec, ``prefer_codec`` first)."""
    await ep.rtp.open(host)
    if srtp:
        for tag, suite in enumerate(SUITES, start=1):
            ep.keys[tag] = new_crypto(tag, suite)
    ep.srtp = srtp
    order = sorted(DEFAULT_ORDER, key=lambda n: n.lower() != (prefer_codec or "").lower())
    return _offer(ep, [CARRIED[n.lower()] for n in order])


async def reoffer(ep: PlainEndpoint, direction: MediaDirection) -> str:
    """A new offer on a live endpoint: same codecs (the current one first), payload types and
    keys; ``direction`` from the server's side."""
    ep.local_direction = direction
    current = ep.spec
    codecs = [CARRIED[n.lower()] for n in DEFAULT_ORDER]
    if current is not None:
        codecs.sort(key=lambda s: s is not current)
    return _offer(ep, codecs)


def _offer(ep: PlainEndpoint, codecs: list[CodecSpec]) -> str:
    rates = sorted({s.clock_rate for s in codecs})
    ep.pending = Pending(codecs, rates, ep.srtp, ep.local_direction)
    plan = Plan(
        ep.rtp.address,
        ep.rtp.port,
        "RTP/SAVP" if ep.srtp else "RTP/AVP",
        codecs,
        rates,
        ep.local_direction,
        list(ep.keys.values()) if ep.srtp else [],
        rtcp_mux=True,
    )
    return build(plan, ep.pts, ep.session_id, ep.next_version())


async def accept_answer(ep: PlainEndpoint, answer_sdp: str) -> None:
    """Complete our pending offer with the device's answer."""
    pending = ep.pending
    if not isinstance(pending, Pending):
        raise MediaError(
            ErrorCode.INVALID_SDP,
            f"the answer could not be used: no offer of endpoint {ep.id} is pending",
        )
    session = parse(answer_sdp, "answer")
    m = next((x for x in session.media if x.kind == "audio"), None)
    if m is None or m.port == 0:
        raise MediaError(ErrorCode.UNSUPPORTED_CODEC, "the device refused the audio m-line")
    ours = {s.name.lower(): s for s in pending.codecs}
    common = [(pt, s) for pt, s in offered_codecs(m) if s.name.lower() in ours]
    if not common:
        raise MediaError(
            ErrorCode.UNSUPPORTED_CODEC,
            "the answer has none of the offered codecs (" + _CARRIED_NAMES + ")",
        )
    theirs: Crypto | None = None
    mine: Crypto | None = None
    if pending.secure:
        theirs = next((c for c in m.crypto if c.tag in ep.keys), None)
        if theirs is None or m.proto not in _SECURE:
            raise MediaError(
                ErrorCode.INVALID_SDP,
                "the answer to an RTP/SAVP offer needs an a=crypto line with an offered tag "
                "(RFC 4568 section 5.1.2)",
            )
        mine = ep.keys[theirs.tag]
        if mine.suite != theirs.suite:
            raise MediaError(
                ErrorCode.INVALID_SDP,
                f"a=crypto:{theirs.tag} answers {theirs.suite} to an offer of {mine.suite}",
            )
    send = common[0]  # the answerer's preference (RFC 3264 section 6.1)
    spec = send[1]
    te_ours = ep.pts.numbers.get(("telephone-event", spec.clock_rate))
    te_send = _te(m, spec.clock_rate)
    recv = {ep.pts.number(s.name, s.clock_rate): s for _, s in common}
    ep.rtp.set_keys(mine, theirs)
    _set_audio(ep, send, te_send, recv)
    if te_ours is not None and te_send is not None and ep.rtp.audio is not None:
        ep.rtp.audio.recv[te_ours] = None
    device = session.media_direction(m)
    direction = answer_direction(device, pending.direction)
    _apply_remote(ep, session, m, direction)
    ep.pending = None
    ep.negotiation_done()
