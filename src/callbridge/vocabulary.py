"""The names that the wire, the SDKs, the core and the docs share, defined once.

Every module that speaks of an end reason, a media type, a conference role or a beep mode
imports it from here: the ``/ws`` protocol (:mod:`callbridge.signalling.protocol`), the core
(:mod:`callbridge.core`), the media plane, the webhook adapter and the Python SDK
(:mod:`callbridge.client`). docs/protocol.md documents each value once.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, get_args

__all__ = [
    "BEEP_MODES",
    "END_REASONS",
    "MEDIA_TYPES",
    "SUPERVISOR_ROLES",
    "BeepMode",
    "EndReason",
    "EndReasonName",
    "HeldBy",
    "MediaType",
    "SupervisorRole",
]


class EndReason(StrEnum):
    """Why a call (leg) ended: ``call.ended {reason}`` on ``/ws`` (docs/protocol.md, "Call end
    reasons"); the first seven are seed 001's."""

    HANGUP = "hangup"  # this side or the far side hung up
    BUSY = "busy"  # the callee rejected as busy
    NO_ANSWER = "no-answer"  # nobody answered within the ring timeout
    FAILED = "failed"  # routing or media failed
    TRANSFERRED = "transferred"  # this leg was transferred away (blind or attended)
    REJECTED = "rejected"  # the callee rejected
    CANCELED = "canceled"  # the caller hung up before anyone answered
    ANSWERED_ELSEWHERE = "answered-elsewhere"  # another device of the user answered
    DISCONNECTED = "disconnected"  # the device's connection was lost for good
    MOVED = "moved"  # the call moved to another device of the user (seed 002 ``move``)
    REMOVED = "removed"  # the conference host removed this participant


EndReasonName = Literal[
    "hangup",
    "busy",
    "no-answer",
    "failed",
    "transferred",
    "rejected",
    "canceled",
    "answered-elsewhere",
    "disconnected",
    "moved",
    "removed",
]
"""The values of :class:`EndReason` as a ``Literal`` (for SDK type hints); a newer server may
send others."""

MediaType = Literal["audio", "video"]
"""What a call carries (seed 002 ``mediaType``)."""

HeldBy = Literal["local", "remote"]
"""Who put a call on hold, seen from the leg that is told (``call.held {by}``)."""

SupervisorRole = Literal["none", "barge", "monitor", "whisper"]
"""A conference participant's supervisor role (seed 003 ``supervisor_role``)."""

BeepMode = Literal["always", "never", "on_enter", "on_exit"]
"""When a conference beeps as participants come and go (seed 003 ``beep_enabled``)."""

END_REASONS: frozenset[str] = frozenset(r.value for r in EndReason)
MEDIA_TYPES: tuple[str, ...] = get_args(MediaType)
SUPERVISOR_ROLES: tuple[str, ...] = get_args(SupervisorRole)
BEEP_MODES: tuple[str, ...] = get_args(BeepMode)

assert frozenset(get_args(EndReasonName)) == END_REASONS  # the two spellings stay in step
