"""What every call command endpoint shares: finding the call a request names, running a
command with Telnyx's rules (``command_id`` duplicate protection, ``client_state``), turning the
control plane's refusals into API errors, and the audio a request names.

Shared rules: ``client_state`` (base64) given with a command goes with every later webhook of
the call; a ``command_id`` already used on the call makes the command a no-op that answers ok
(Telnyx's duplicate protection). An unknown call is 404; a call that has ended, or whose state
does not allow the command, is 422 with the reason. A call of another account than the API
key's is unknown (404, or 422 when a body field names it), whatever its state: a key learns
nothing of another account's calls.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from callbridge.api.context import ApiContext
from callbridge.api.errors import (
    ApiError,
    call_ended,
    from_protocol_error,
    invalid,
    not_found,
    wrong_state,
)
from callbridge.api.schemas import CommandResult, Data, Params, check_client_state, ok
from callbridge.core.callerid import CallerIdNotAllowed
from callbridge.core.control import AppCall, CallHasEnded, ConferenceFull, UnknownCall
from callbridge.errors import ProtocolError
from callbridge.media.interface import AudioSpec

__all__ = [
    "StateParams",
    "audio_for",
    "command",
    "find_call",
    "loop_count",
    "protocol_errors",
    "resolve_call",
    "speech",
    "unknown_call",
]

T = TypeVar("T")


class StateParams(Params):
    client_state: str | None = None


def unknown_call(call_control_id: str, pointer: str | None = None) -> ApiError:
    """What a call that does not exist (or is another account's) is answered with."""
    if pointer is not None:
        return invalid(f"no call {call_control_id!r}", pointer=pointer)
    return not_found(f"no call with call_control_id {call_control_id!r}", "call_control_id")


async def find_call(ctx: ApiContext, account_id: str, call_control_id: str) -> AppCall | None:
    """A live or recently ended call of the account, for status queries."""
    call = ctx.control.find_call(call_control_id)
    if call is None or await ctx.account_of(call) != account_id:
        return None
    return call


async def resolve_call(
    ctx: ApiContext, account_id: str, call_control_id: str, pointer: str | None = None
) -> AppCall:
    """The live call of the account a path (or, with ``pointer``, a body field) names: 404 /
    422 if none (also when it is another account's)."""
    if await find_call(ctx, account_id, call_control_id) is None:
        raise unknown_call(call_control_id, pointer)
    try:
        return ctx.control.call(call_control_id)
    except CallHasEnded as exc:
        if pointer is not None:
            raise invalid(exc.message, pointer=pointer) from None
        raise call_ended(call_control_id, exc.reason) from None
    except UnknownCall:
        raise unknown_call(call_control_id, pointer) from None


async def protocol_errors(action: Awaitable[T], pointer: str | None = None) -> T:
    """Run a control-plane action; its refusals become API errors (``pointer``: the field
    the refusal is about, e.g. the audio of a playback)."""
    try:
        return await action
    except CallHasEnded as exc:
        raise call_ended(exc.call_control_id, exc.reason) from None
    except ConferenceFull as exc:  # the state of the conference in the path, not of a field
        raise wrong_state(exc.message) from None
    except ApiError:
        raise
    except CallerIdNotAllowed as exc:  # about the request's caller ID, whatever the action
        raise from_protocol_error(exc, f"/{exc.field}") from None
    except ProtocolError as exc:
        raise from_protocol_error(exc, pointer) from None


async def command(
    ctx: ApiContext,
    account_id: str,
    call_control_id: str,
    params: Params,
    run: Callable[[AppCall], Awaitable[Any]],
    pointer: str | None = None,
) -> Data[CommandResult]:
    """Run ``run`` on the account's call the path names, once per ``command_id``;
    ``{"result": "ok"}``."""
    call = await resolve_call(ctx, account_id, call_control_id)
    if call.seen(params.command_id):
        return ok()
    state = check_client_state(getattr(params, "client_state", None))
    if state is not None:
        ctx.control.set_client_state(call, state)
    await protocol_errors(run(call), pointer)
    call.remember(params.command_id)
    return ok()


async def audio_for(
    ctx: ApiContext,
    account_id: str,
    *,
    audio_url: str | None,
    media_name: str | None,
    loops: int,
    required: bool = True,
) -> AudioSpec | None:
    """The sound an ``audio_url`` or a ``media_name`` (uploaded with /v2/media by the
    account) names."""
    if audio_url and media_name:
        raise invalid("give audio_url or media_name, not both", pointer="/media_name")
    if media_name:
        media = await ctx.store.get_media(media_name, account_id)
        if media is None:
            raise invalid(
                f"no media named {media_name!r}: upload it with POST /v2/media first",
                pointer="/media_name",
            )
        return AudioSpec("file", media.path, loops=loops)
    if audio_url:
        if not audio_url.lower().startswith(("http://", "https://")):
            raise invalid("audio_url must be an http:// or https:// URL", pointer="/audio_url")
        return AudioSpec("url", audio_url, loops=loops)
    if required:
        raise invalid("give audio_url or media_name", pointer="/audio_url")
    return None


def speech(text: str, voice: str, language: str, payload_type: str) -> AudioSpec:
    """What a ``speak`` says (text to speech): plain text in a ``female`` or ``male`` voice."""
    if payload_type == "ssml":
        raise invalid("payload_type 'ssml' is not supported: send plain text", "/payload_type")
    if voice not in ("female", "male"):
        raise invalid(f"voice {voice!r} is not available: use 'female' or 'male'", "/voice")
    return AudioSpec("tts", text, voice=voice, language=language)


def loop_count(loop: int | str | None) -> int:
    """Telnyx's ``loop``: a count, or "infinity" (0 here: until stopped)."""
    if loop is None:
        return 1
    if loop == "infinity":
        return 0
    try:
        count = int(loop)
    except (TypeError, ValueError):
        raise invalid("loop must be a number of times or 'infinity'", pointer="/loop") from None
    if count < 1:
        raise invalid("loop must be 1 or more (or 'infinity')", pointer="/loop")
    return count
