"""What a media plane refuses before it does anything, and how it says so.

The in-process engine (:mod:`callbridge.media.engine`, :mod:`callbridge.media.playback`) and
:class:`callbridge.testing.fake_media.FakeMediaServer` both call these, so the fake refuses
exactly what the engine refuses, with the same error: tests of the control plane on the fake
see the errors the real media plane would give.
"""

from __future__ import annotations

from typing import get_args

from callbridge.errors import ErrorCode, MediaError
from callbridge.media.interface import AudioKind, AudioSpec, SupervisorRole
from callbridge.media.players import TONES

__all__ = ["NOT_FOUND", "check_audio", "check_role", "not_in_mixer"]

NOT_FOUND = ErrorCode.CALL_NOT_FOUND
"""The code for "no such mixer / playback / recording": errors.py has none of its own, and
CALL_NOT_FOUND ("no call with this id exists") is the closest. One name, so the code changes
in one place."""

_KINDS: tuple[str, ...] = get_args(AudioKind)
_ROLES: tuple[str, ...] = get_args(SupervisorRole)


def check_audio(audio: AudioSpec) -> None:
    """Refuse what no media plane can play, whatever it points at: a negative loop count, an
    unknown tone or kind of audio, a URL that is not http(s). Whether a file, URL or voice
    can be used is only known by trying."""
    bad = ErrorCode.INVALID_AUDIO
    if audio.loops < 0:
        raise MediaError(bad, f"loops must be 0 (until stopped) or more, not {audio.loops}")
    if audio.kind not in _KINDS:
        raise MediaError(bad, f"unknown audio kind {audio.kind!r}: use file, url, tts or tone")
    if audio.kind == "tone" and audio.location not in TONES:
        raise MediaError(bad, f"unknown tone {audio.location!r}: use one of {', '.join(TONES)}")
    if audio.kind == "url" and not audio.location.lower().startswith(("http://", "https://")):
        raise MediaError(bad, f"audio URL {audio.location!r} is not an http:// or https:// URL")


def not_in_mixer(endpoint_id: str) -> MediaError:
    """The error of a mixer operation on an endpoint that is in no mixer."""
    return MediaError(
        ErrorCode.INVALID_STATE,
        f"endpoint {endpoint_id} is in no mixer: add it with mixer_add first",
    )


def check_role(role: str | None) -> None:
    """Refuse an unknown supervisor role (``None``: unchanged)."""
    if role is not None and role not in _ROLES:
        raise MediaError(
            ErrorCode.INVALID_MESSAGE,
            f"unknown supervisor role {role!r}: use one of {', '.join(_ROLES)}",
        )
