"""The media plane: the MediaServer interface and its in-process engine on aiortc.

Import from the modules: :mod:`~callbridge.media.interface` (what the control plane may ask),
:mod:`~callbridge.media.engine` (the embedded implementation),
:mod:`~callbridge.media.players` (hold music, ringback, tones), :mod:`~callbridge.media.mixer`
(conferences), :mod:`~callbridge.media.playback` (files, URLs, text to speech),
:mod:`~callbridge.media.recording`. The RTP glue it shares with the SDK (aiortc glue, codecs,
Opus, RFC 4733) is :mod:`callbridge.rtp`.
"""

__all__: list[str] = []
