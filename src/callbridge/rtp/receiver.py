"""aiortc's ``RTCRtpReceiver.receive`` without the decoder thread for receivers we hook.

aiortc starts one decoder thread per receiver in ``receive`` and joins it in ``stop``, that is
synchronously inside ``RTCPeerConnection.close``, on the event loop: a hang-up waited for a
thread to be scheduled, take the GIL and exit (issue 15 measured it as over half of a media
worker's busy samples in a burst of hang-ups). The thread is fed by one line only, in
``RTCRtpReceiver._handle_rtp_packet``; :class:`~callbridge.rtp.webrtc.RtpPort` and
:class:`~callbridge.rtp.webrtc.VideoPort` replace that method on the receiver instance, so for
their receivers the thread never gets a frame and is pure cost (a thread per leg, its start at
setup, its join at hang-up).

:func:`install` replaces ``RTCRtpReceiver.receive`` on the class with one that, for a receiver
whose ``_handle_rtp_packet`` was replaced on the instance, does what aiortc 1.16's ``receive``
does (codecs, RTX map, registration with the DTLS transport, the RTCP task) except starting
the thread. aiortc's ``stop``, ``_handle_disconnect`` and the RTCP BYE handling already skip
the join when there is no thread. Any other receiver (the client SDK's decoded video, say) is
aiortc's as before. Hooks capture ``receiver.receive`` when they are made, so this is
installed at import, before any of them exists. aiortc's minor version is pinned in
``pyproject.toml``; tests/test_packet_path.py checks that no decoder thread runs for a
server leg and that a hang-up's close joins none.

:func:`reports_in_sender_reports` makes an audio transceiver's receiver reports cheaper: aiortc
runs two RTCP loops per transceiver, the sender's (SR + SDES) and the receiver's (RR), each
every 0.5-1.5 s, so each leg sent two SRTCP packets a second and the device answered with two
(the load of issue 15's benchmark measured 12 % of the server's CPU at 8 calls for the RRs
alone). RFC 3550 6.4.1: an active sender's SR carries the reception report blocks, so the
sender's loop (same interval, same SR and SDES) now adds the receiver's blocks, and the
receiver's own RR loop runs only while the sender's does not (a leg that does not send, e.g.
recvonly; before the sender starts): every interval still has its report (RFC 3550 6.2, 6.4),
and a leg has one RTCP timer instead of two (at low N each timer is a wake-up of the loop).
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from aiortc.rtcrtpparameters import RTCRtpReceiveParameters
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import (
    RtcpByePacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
)

__all__ = ["decodes", "install", "reports_in_sender_reports"]

_P = "_RTCRtpReceiver__"  # aiortc's private (name-mangled) receiver attributes
_S = "_RTCRtpSender__"  # and the sender's
_COVERED = "_callbridge_reports_sent"  # on a receiver: time.monotonic() of the last SR's blocks
_COVERED_FOR = 2.0  # an SR's blocks stand in for the RR this long (interval at most 1.5 s)
_aiortc_receive = RTCRtpReceiver.receive


def decodes(receiver: RTCRtpReceiver) -> bool:
    """False when callbridge replaced the receiver's RTP handler: nothing feeds a decoder."""
    return "_handle_rtp_packet" not in vars(receiver)


async def _receive(self: RTCRtpReceiver, parameters: RTCRtpReceiveParameters) -> None:
    if decodes(self):
        await _aiortc_receive(self, parameters)
        return
    attrs: dict[str, Any] = vars(self)
    if attrs[_P + "started"]:
        return
    codecs = attrs[_P + "codecs"]
    for codec in parameters.codecs:
        codecs[codec.payloadType] = codec
    rtx = attrs[_P + "rtx_ssrc"]
    for encoding in parameters.encodings:
        if encoding.rtx:
            rtx[encoding.rtx.ssrc] = encoding.ssrc
    attrs[_P + "transport"]._register_rtp_receiver(self, parameters)
    attrs[_P + "rtcp_task"] = asyncio.ensure_future(self._run_rtcp())
    attrs[_P + "started"] = True


def install() -> None:
    """Idempotent; called when :mod:`callbridge.rtp.webrtc` is imported."""
    RTCRtpReceiver.receive = _receive  # type: ignore[method-assign]


def _interval() -> float:
    """aiortc's RTCP interval: 1 s, varied over [0.5, 1.5] (RFC 3550 6.3.1)."""
    return 0.5 + random.random()


def _report_blocks(receiver: RTCRtpReceiver) -> list[RtcpReceiverInfo]:
    """The reception report blocks aiortc's RR carries (RFC 3550 6.4.1), at most 31."""
    attrs: dict[str, Any] = vars(receiver)
    lsr, lsr_time = attrs[_P + "lsr"], attrs[_P + "lsr_time"]
    now = time.time()
    reports = []
    for ssrc, stream in list(attrs[_P + "remote_streams"].items())[:31]:
        last, dlsr = lsr.get(ssrc, 0), 0
        if ssrc in lsr:
            delay = now - lsr_time[ssrc]
            if 0 < delay < 65536:
                dlsr = int(delay * 65536)
        reports.append(
            RtcpReceiverInfo(
                ssrc=ssrc,
                fraction_lost=stream.fraction_lost,
                packets_lost=stream.packets_lost,
                highest_sequence=stream.max_seq,
                jitter=stream.jitter,
                lsr=last,
                dlsr=dlsr,
            )
        )
    return reports


async def _sender_rtcp(sender: RTCRtpSender, receiver: RTCRtpReceiver) -> None:
    """aiortc's ``RTCRtpSender._run_rtcp`` (SR, SDES; BYE at the end) with the receiver's
    report blocks in the SR."""
    attrs: dict[str, Any] = vars(sender)
    attrs[_S + "rtcp_started"].set()
    try:
        while True:
            await asyncio.sleep(_interval())
            ntp = attrs[_S + "ntp_timestamp"]
            packets: list[Any] = [
                RtcpSrPacket(
                    ssrc=sender._ssrc,
                    sender_info=RtcpSenderInfo(
                        ntp_timestamp=ntp,
                        rtp_timestamp=attrs[_S + "rtp_timestamp"],
                        packet_count=attrs[_S + "packet_count"] & 0xFFFFFFFF,
                        octet_count=attrs[_S + "octet_count"] & 0xFFFFFFFF,
                    ),
                    reports=_report_blocks(receiver),
                )
            ]
            attrs[_S + "lsr"] = (ntp >> 16) & 0xFFFFFFFF
            attrs[_S + "lsr_time"] = time.time()
            cname = attrs[_S + "cname"]
            if cname is not None:
                item = RtcpSourceInfo(ssrc=sender._ssrc, items=[(1, cname.encode("utf8"))])
                packets.append(RtcpSdesPacket(chunks=[item]))
            vars(receiver)[_COVERED] = time.monotonic()
            await sender._send_rtcp(packets)
    except asyncio.CancelledError:
        pass
    await sender._send_rtcp([RtcpByePacket(sources=[sender._ssrc])])
    attrs[_S + "rtcp_exited"].set()


async def _receiver_rtcp(receiver: RTCRtpReceiver, sender: RTCRtpSender) -> None:
    """aiortc's ``RTCRtpReceiver._run_rtcp`` (an RR every 0.5-1.5 s) for as long as the
    sender's loop, which carries the blocks, does not run: before it starts, after it ended,
    or never (a leg that does not send). No timer of its own meanwhile."""
    attrs: dict[str, Any] = vars(receiver)
    started, exited = vars(sender)[_S + "rtcp_started"], vars(sender)[_S + "rtcp_exited"]
    attrs[_P + "rtcp_started"].set()
    try:
        while True:
            if started.is_set() and not exited.is_set():
                await exited.wait()
                continue
            await asyncio.sleep(_interval())
            if time.monotonic() - attrs.get(_COVERED, -_COVERED_FOR) < _COVERED_FOR:
                continue  # the sender's loop started meanwhile and sent them
            ssrc = attrs[_P + "rtcp_ssrc"]
            reports = _report_blocks(receiver)
            if ssrc is not None and reports:
                await receiver._send_rtcp(RtcpRrPacket(ssrc=ssrc, reports=reports))
    except asyncio.CancelledError:
        pass
    attrs[_P + "rtcp_exited"].set()


def reports_in_sender_reports(sender: RTCRtpSender, receiver: RTCRtpReceiver) -> None:
    """One transceiver's RTCP as in the module docstring; before its offer/answer completes
    (aiortc starts both loops then, through these instance attributes)."""
    sender._run_rtcp = lambda: _sender_rtcp(sender, receiver)  # type: ignore[method-assign]
    receiver._run_rtcp = lambda: _receiver_rtcp(receiver, sender)  # type: ignore[method-assign]
