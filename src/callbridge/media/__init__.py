"""The media plane: the MediaServer interface and its in-process engine on aiortc.

Import from the modules: :mod:`~callbridge.media.interface` (what the control plane may ask),
:mod:`~callbridge.media.engine` (the embedded implementation: registry, ticker, mixers,
playbacks), :mod:`~callbridge.media.endpoint` (one endpoint's RTP path),
:mod:`~callbridge.media.negotiation` (its offer/answer and ICE),
:mod:`~callbridge.media.dtmf` (DTMF the server sends: RFC 4733 events or in-band tones),
:mod:`~callbridge.media.players` (hold music, ringback, tones), :mod:`~callbridge.media.mixer`
(conferences), :mod:`~callbridge.media.playback` (files, URLs, text to speech),
:mod:`~callbridge.media.recording` (writing a recording's file),
:mod:`~callbridge.media.recordings` (the recordings in progress),
:mod:`~callbridge.media.checks` (what a media plane refuses). The RTP glue it shares with the
SDK (aiortc glue, ICE settings, codecs, Opus, RFC 4733) is :mod:`callbridge.rtp`. An in-memory
stand-in for tests of the control plane is :class:`callbridge.testing.fake_media.FakeMediaServer`.
"""

__all__: list[str] = []
