"""RTP glue that the media plane and the Python SDK share.

:mod:`~callbridge.rtp.webrtc` (the aiortc glue: our RTP port in place of aiortc's RTP path),
:mod:`~callbridge.rtp.ice` (ICE address restriction and policy),
:mod:`~callbridge.rtp.offer_answer` (codec preferences, telephone-event, aiortc fixes),
:mod:`~callbridge.rtp.codecs` (Opus, PCMU, PCMA encoders and decoders, resampling),
:mod:`~callbridge.rtp.opus` (an Opus encoder whose state can be handed over) and
:mod:`~callbridge.rtp.rfc4733` (DTMF events). The server's media plane (:mod:`callbridge.media`)
and the SDK (:mod:`callbridge.client`) both import from here; the SDK never imports the
server's media plane. This package and :mod:`callbridge.media` are the only ones that touch
aiortc.
"""

__all__: list[str] = []
