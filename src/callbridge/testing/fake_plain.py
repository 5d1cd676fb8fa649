"""The plain RTP endpoints (SIP legs) of :class:`~callbridge.testing.fake_media.FakeMediaServer`.

The offer/answer is the engine's own (:mod:`callbridge.media.plain`'s pure part and
:mod:`callbridge.media.sdp_plain`), without sockets: the same codec, payload types, direction
and hold as the engine would settle, and the same :class:`MediaDirectionChanged` events.
:meth:`FakePlainEndpoints.rtp_timeout` injects a dead leg.
"""

from __future__ import annotations

from dataclasses import dataclass

from callbridge.errors import ErrorCode, MediaError
from callbridge.media import plain, sdp_plain
from callbridge.media.interface import (
    EndpointInfo,
    EndpointState,
    MediaDirection,
    MediaDirectionChanged,
    MediaEvent,
    RtpTimeout,
)
from callbridge.testing.fake_endpoints import FakeEndpoints
from callbridge.testing.fake_sdp import Negotiated
from callbridge.testing.staging import staged

__all__ = ["FakePlainEndpoints", "PlainState"]


@dataclass
class PlainState:
    """A plain RTP endpoint of the fake (no sockets): what its offers and answers settled."""

    srtp: bool
    pts: sdp_plain.PtTable
    session_id: int
    version: int = 0
    local_direction: MediaDirection = "sendrecv"
    remote_direction: MediaDirection = "sendrecv"
    held: bool = False
    pending: bool = False


class FakePlainEndpoints(FakeEndpoints):
    """The fake's plain RTP endpoints (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.plain: dict[str, PlainState] = {}
        """The plain RTP endpoints (SIP legs) by id."""

    def _emit(self, event: MediaEvent) -> None:
        raise NotImplementedError  # FakeMediaServer's

    def _set_state(self, endpoint_id: str, state: EndpointState) -> None:
        raise NotImplementedError  # FakeMediaServer's

    def rtp_timeout(self, endpoint_id: str, seconds: float = 60.0) -> None:
        """The plain RTP device of ``endpoint_id`` went silent: :class:`RtpTimeout`, then
        the state ``failed``, as the engine reports it."""
        self._emit(RtpTimeout(endpoint_id, seconds))
        self._set_state(endpoint_id, "failed")

    def _plain_answer(
        self, endpoint_id: str, st: PlainState, offer_sdp: str, prefer: str | None
    ) -> str:
        session = sdp_plain.parse(offer_sdp, "offer")
        choice = plain.choose_answer(session, prefer, st.local_direction)
        st.srtp = choice.theirs is not None
        ours = (
            sdp_plain.new_crypto(choice.theirs.tag, choice.theirs.suite) if choice.theirs else None
        )
        st.version += 1
        port = 40000 + sum(map(ord, endpoint_id)) % 20000 // 2 * 2
        answer = plain.answer_sdp(
            choice, "127.0.0.1", port, ours, st.pts, st.session_id, st.version
        )
        self._settled(endpoint_id, st, choice.spec.name, choice.te is not None)
        self._direction(endpoint_id, st, choice.remote_direction, choice.held)
        return answer

    def _settled(self, endpoint_id: str, st: PlainState, codec: str, te: bool) -> None:
        ep = self._ep(endpoint_id)
        ep.negotiated = Negotiated(codec, telephone_event=te)
        st.pending = False
        if ep.state == "connecting":
            self._set_state(endpoint_id, "connected")

    def _direction(
        self, endpoint_id: str, st: PlainState, direction: MediaDirection, held: bool
    ) -> None:
        if (direction, held) != (st.remote_direction, st.held):
            st.remote_direction, st.held = direction, held
            self._emit(MediaDirectionChanged(endpoint_id, direction, held))

    def _plain_offer(self, st: PlainState, codecs: list[str]) -> str:
        st.pending = True
        st.version += 1
        specs = [sdp_plain.CARRIED[c.lower()] for c in codecs]
        keys = [sdp_plain.new_crypto(t, s) for t, s in enumerate(sdp_plain.SUITES, 1)]
        plan = sdp_plain.Plan(
            "127.0.0.1", 40000, "RTP/SAVP" if st.srtp else "RTP/AVP", specs,
            sorted({s.clock_rate for s in specs}), st.local_direction,
            keys if st.srtp else [], rtcp_mux=True,
        )  # fmt: skip
        return sdp_plain.build(plan, st.pts, st.session_id, st.version)

    def _plain_state(self, endpoint_id: str) -> PlainState:
        self._ep(endpoint_id)
        st = self.plain.get(endpoint_id)
        if st is None:
            raise MediaError(
                ErrorCode.INVALID_STATE, f"endpoint {endpoint_id} is WebRTC, not plain RTP"
            )
        return st

    @staged
    async def answer_rtp(
        self,
        endpoint_id: str,
        offer_sdp: str,
        prefer_codec: str | None = None,
        rtp_timeout: float | None = None,
    ) -> str:
        if not offer_sdp.strip():  # a delayed offer: the engine offers (RFC 3264 section 5)
            offer = FakePlainEndpoints.offer_rtp.__wrapped__  # type: ignore[attr-defined]
            sdp: str = await offer(self, endpoint_id, prefer_codec, False, rtp_timeout)
            return sdp
        choice = plain.choose_answer(sdp_plain.parse(offer_sdp, "offer"), prefer_codec, "sendrecv")
        self._new(endpoint_id, Negotiated(choice.spec.name))
        st = self.plain[endpoint_id] = PlainState(False, sdp_plain.PtTable(), len(self.plain) + 1)
        return self._plain_answer(endpoint_id, st, offer_sdp, prefer_codec)

    @staged
    async def offer_rtp(
        self,
        endpoint_id: str,
        prefer_codec: str | None = None,
        srtp: bool = False,
        rtp_timeout: float | None = None,
    ) -> str:
        first = (prefer_codec or "").lower()
        order = sorted(sdp_plain.DEFAULT_ORDER, key=lambda n: n.lower() != first)
        self._new(endpoint_id, Negotiated(order[0], telephone_event=True))
        st = self.plain[endpoint_id] = PlainState(srtp, sdp_plain.PtTable(), len(self.plain) + 1)
        return self._plain_offer(st, order)

    @staged
    async def renegotiate_rtp(self, endpoint_id: str, offer_sdp: str) -> str:
        st = self._plain_state(endpoint_id)
        return self._plain_answer(
            endpoint_id, st, offer_sdp, self._ep(endpoint_id).negotiated.codec
        )

    @staged
    async def reoffer_rtp(self, endpoint_id: str, direction: MediaDirection = "sendrecv") -> str:
        st = self._plain_state(endpoint_id)
        st.local_direction = direction
        current = self._ep(endpoint_id).negotiated.codec or "PCMU"
        order = sorted(sdp_plain.DEFAULT_ORDER, key=lambda n: n.lower() != current.lower())
        return self._plain_offer(st, order)

    @staged
    async def accept_answer(self, endpoint_id: str, answer_sdp: str) -> None:
        st = self.plain.get(endpoint_id)
        if st is None:  # WebRTC: the base class's, unwrapped (this call is staged already)
            base = FakeEndpoints.accept_answer.__wrapped__  # type: ignore[attr-defined]
            await base(self, endpoint_id, answer_sdp)
            return
        if not st.pending:
            raise MediaError(
                ErrorCode.INVALID_SDP,
                f"the answer could not be used: no offer of endpoint {endpoint_id} is pending",
            )
        session = sdp_plain.parse(answer_sdp, "answer")
        m = next((x for x in session.media if x.kind == "audio" and x.port), None)
        codecs = plain.offered_codecs(m) if m is not None else []
        if m is None or not codecs:
            raise MediaError(
                ErrorCode.UNSUPPORTED_CODEC, "the answer has none of the offered codecs"
            )
        spec = codecs[0][1]
        te = any(
            (m.codec_of(int(f)) or ("",))[0] == "telephone-event" for f in m.fmts if f.isdigit()
        )
        self._settled(endpoint_id, st, spec.name, te)
        self._direction(
            endpoint_id,
            st,
            session.media_direction(m),  # type: ignore[arg-type]
            sdp_plain.remote_hold(session, m),
        )

    @staged
    async def endpoint_info(self, endpoint_id: str) -> EndpointInfo:
        base = FakeEndpoints.endpoint_info.__wrapped__  # type: ignore[attr-defined]
        info: EndpointInfo = await base(self, endpoint_id)
        st = self.plain.get(endpoint_id)
        if st is None:
            return info
        te = self._ep(endpoint_id).negotiated.telephone_event
        return EndpointInfo(
            info.codec,
            False,
            False,
            (),
            "srtp" if st.srtp else "rtp",
            st.remote_direction,
            st.held,
            te,
        )
