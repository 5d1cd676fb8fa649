"""The names of the SDK's events, as ``Literal`` types (a typo fails type-checking).

:mod:`callbridge.client.events` documents what each event means and what its handlers get.
The end reasons and hold sides come from :mod:`callbridge.vocabulary`, shared with the server.
"""

from __future__ import annotations

from typing import Literal

from callbridge.vocabulary import EndReasonName, HeldBy

__all__ = [
    "CallEventName",
    "ConferenceEventName",
    "EndReason",
    "EventName",
    "GroupEventName",
    "HeldBy",
    "PhoneEventName",
]

PhoneEventName = Literal[
    "incoming",
    "error",
    "warning",  # a request changed nothing (e.g. muting a muted call); argument: the message
    "notification",  # news about a call from the server (e.g. the far party's link dropped)
    "dialing",  # call() started; argument: the destination (seed 002 event:dialing)
    "disconnected",
    "call-switched",
    "connectivity-off",  # the socket dropped; the phone is resuming the session, calls go on
    "connectivity-on",  # the session was resumed
    "gateway-unreachable",  # the session could not be resumed in time; the phone closes
    "session-expired",  # the token expired; the phone closes
    "address-updated",  # associate_e911_id() took effect (argument: the E911 id)
    "session-draining",  # the server drains: no new calls there (argument: a DrainNotice)
    "server-changed",  # after a drain, logged in at a fallback URL (argument: the URL)
]
ConferenceEventName = Literal[
    # seed 002 (the handler gets the Conference)
    "conference:canceled",  # an invitation to us was withdrawn (or rang out) before we joined
    "conference:connected",  # we are in the conference (host: started; participant: joined)
    "conference:connecting",  # start_conference() / join_conference() is under way
    "conference:disconnecting",  # end_conference() started
    "conference:ended",  # the conference ended for us (ended by the host, left, removed)
    "conference:held",  # we hold our own membership
    "conference:resumed",
    "conference:invitation-received",  # an invitation rings this device
    "conference:invitation-sending",  # host: add_participant() started
    "conference:invitation-sent",  # host: the invitee's devices ring
    "conference:invitation-accepted",  # host: the invitee joined
    "conference:invitation-rejected",  # host: declined, rang out or failed (data: reason)
    "conference:joining",  # join_conference() started
    "conference:participant-removed",  # host: remove_participant() done
    # callbridge additions
    "conference:participant-left",  # host: a participant left by itself
    "conference:participant-updated",  # host: a participant's mute / hold / role changed
    "conference:floor-changed",  # the active talker changed (Conference.floor)
    "conference:playback-started",
    "conference:playback-ended",
    "conference:speak-started",
    "conference:speak-ended",
    "conference:recording-saved",  # Conference.recordings has the new file
]
GroupEventName = Literal[
    # seed 000 TelephonyCallGroup events
    "callschanged",
    "statechange",
    "connected",
    "holding",
    "held",
    "resuming",
    "error",
]
CallEventName = Literal[
    "trying",
    "ringing",
    "answered",
    "held",
    "resumed",
    "muted",
    "unmuted",
    "dtmf",
    "recording",  # the call is recorded (True) or no longer is (False): call.recording
    "transferred",
    "bridged",  # an application bridged the call to another (argument: a Bridged)
    "moved",
    "move-failed",
    "modification-in-progress",
    "media-modification",
    "state-changed",
    "answering",  # answer() started (seed 002 event:answering)
    "disconnecting",  # hangup() started (seed 002 call:disconnecting)
    "transferring",  # transfer() / complete_transfer() started (seed 002 call:transferring)
    "ringback-provided",  # the server plays ringback to us (seed 002 call:ringback-provided)
    "media-established",  # the call's media connected (seed 002 media:established)
    "dtmf-tone-sending",  # send_dtmf() started; argument: the digits (seed 002 dtmf:tone-sending)
    "dtmf-tone-sent",  # send_dtmf() finished; argument: the digits (seed 002 dtmf:tone-sent)
    "ended",
]
EventName = PhoneEventName | CallEventName | ConferenceEventName | GroupEventName
EndReason = EndReasonName
"""The reasons of docs/protocol.md ("Call end reasons"); a newer server may send others."""
