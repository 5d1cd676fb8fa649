"""The media plane: the MediaServer interface and its in-process engine on aiortc.

Import from the modules: :mod:`~callbridge.media.interface` (what the control plane may ask),
:mod:`~callbridge.media.engine` (the embedded implementation), :mod:`~callbridge.media.webrtc`
(the aiortc glue), :mod:`~callbridge.media.codecs`, :mod:`~callbridge.media.opus` (an Opus
encoder whose state can be handed over), :mod:`~callbridge.media.rfc4733`,
:mod:`~callbridge.media.players` (hold music, ringback, tones), :mod:`~callbridge.media.mixer`
(conferences), :mod:`~callbridge.media.playback` (files, URLs, text to speech),
:mod:`~callbridge.media.recording`. Nothing outside this package touches aiortc internals.
"""

__all__: list[str] = []
