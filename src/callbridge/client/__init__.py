"""callbridge's Python calling SDK: seed 001's ``Phone`` and ``Call``, over docs/protocol.md.

::

    from callbridge.client import BufferSink, Phone, ToneSource

    async with Phone("ws://127.0.0.1:8080/ws", token) as phone:
        phone.on("incoming", lambda call: print("ringing:", call.from_))
        call = await phone.call("105", source=ToneSource(440), sink=BufferSink())
        await call.wait_for("answered", timeout=30)
        await call.send_dtmf("1234#")
        await call.hangup()

Modules, each importing only those listed before it (tests/test_client_structure.py checks
it): :mod:`~callbridge.client.errors`; :mod:`~callbridge.client.audio` and
:mod:`~callbridge.client.video` (sources and sinks); :mod:`~callbridge.client.media` (the
call's WebRTC peer connection, with :mod:`~callbridge.client.dtmf`, the RFC 4733 sender);
:mod:`~callbridge.client.settings` (ICE servers, transport policy, IPv6);
:mod:`~callbridge.client.numbers` (phone numbers and caller URIs);
:mod:`~callbridge.client.transport` (the WebSocket, ``req_id`` matching, reconnecting);
:mod:`~callbridge.client.call` (a call, its states and events, on
:mod:`~callbridge.client.callbase`); :mod:`~callbridge.client.calllist` (the phone's calls,
several at once); :mod:`~callbridge.client.callhistory` (the user's call records from the
server); :mod:`~callbridge.client.callgroup` (seed 000's call group);
:mod:`~callbridge.client.conference` (seed 002's conferences);
:mod:`~callbridge.client.session` and :mod:`~callbridge.client.phone` (the phone: its session,
and the facade over the rest). :mod:`~callbridge.client.events` documents the event names,
payloads and how handlers run. Audio analysis for tests is in :mod:`callbridge.testing`.
"""

from callbridge.client.audio import (
    FRAME_SAMPLES,
    SAMPLE_RATE,
    AudioSink,
    AudioSource,
    BufferSink,
    CallbackSink,
    SilenceSource,
    ToneSource,
    WavRecorder,
    WavSource,
)
from callbridge.client.call import Call, CallDirection, CallState, MediaType
from callbridge.client.callhistory import HistoryEntry, HistoryPage
from callbridge.client.conference import (
    BeepMode,
    CallGroup,
    Conference,
    ConferenceRole,
    ConferenceState,
    GroupState,
    SupervisorRole,
)
from callbridge.client.errors import CallEndedError, CallStateError, ClientError, NotConnectedError
from callbridge.client.events import (
    Bridged,
    CallEventName,
    ConferenceEventName,
    EndReason,
    Event,
    EventName,
    GroupEventName,
    HeldBy,
    PhoneEventName,
)
from callbridge.client.media import CallMedia, MediaStats
from callbridge.client.numbers import (
    CallerInfo,
    clean_phone_number,
    format_number,
    get_caller_info,
)
from callbridge.client.phone import (
    CallSummary,
    DrainNotice,
    EventStream,
    Phone,
    PhoneState,
    SessionInfo,
)
from callbridge.client.settings import IceTransport, InvalidArgumentError, PeerConnectionSettings
from callbridge.client.video import FrameSink, TestPatternSource, VideoSink, VideoSource

__all__ = [
    "FRAME_SAMPLES",
    "SAMPLE_RATE",
    "AudioSink",
    "AudioSource",
    "BeepMode",
    "Bridged",
    "BufferSink",
    "Call",
    "CallDirection",
    "CallEndedError",
    "CallEventName",
    "CallGroup",
    "CallMedia",
    "CallState",
    "CallStateError",
    "CallSummary",
    "CallbackSink",
    "CallerInfo",
    "ClientError",
    "Conference",
    "ConferenceEventName",
    "ConferenceRole",
    "ConferenceState",
    "DrainNotice",
    "EndReason",
    "Event",
    "EventName",
    "EventStream",
    "FrameSink",
    "GroupEventName",
    "GroupState",
    "HeldBy",
    "HistoryEntry",
    "HistoryPage",
    "IceTransport",
    "InvalidArgumentError",
    "MediaStats",
    "MediaType",
    "NotConnectedError",
    "PeerConnectionSettings",
    "Phone",
    "PhoneEventName",
    "PhoneState",
    "SessionInfo",
    "SilenceSource",
    "SupervisorRole",
    "TestPatternSource",
    "ToneSource",
    "VideoSink",
    "VideoSource",
    "WavRecorder",
    "WavSource",
    "clean_phone_number",
    "format_number",
    "get_caller_info",
]
