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
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiortc.rtcrtpparameters import RTCRtpReceiveParameters
from aiortc.rtcrtpreceiver import RTCRtpReceiver

_P = "_RTCRtpReceiver__"  # aiortc's private (name-mangled) receiver attributes
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
