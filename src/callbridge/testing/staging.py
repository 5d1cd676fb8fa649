"""Staged races for in-memory fakes: hold a call until the test releases it, or make it fail.

A fake's coroutine methods are wrapped with :func:`staged`; each call is logged
(:attr:`Stager.calls`) and checked against the rules a test set up with :meth:`Stager.hold`
(a :class:`Gate` the call waits at) and :meth:`Stager.raise_on` (an error it raises). A rule
matches a method by name and, optionally, one id among the call's string arguments (so a rule
about ``"leg-2"`` matches ``bridge("leg-1", "leg-2")``). Rules are used once, in the order they
were made. :class:`~callbridge.testing.fake_media.FakeMediaServer` is built on this.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Concatenate, Literal, ParamSpec, Protocol, TypeVar

from callbridge.errors import ErrorCode, MediaError

__all__ = ["Gate", "StagedCall", "Stager", "When", "staged"]

When = Literal["before", "after"]
P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class StagedCall:
    """One call as it was made: the method's name and its arguments."""

    method: str
    args: tuple[object, ...] = ()
    kwargs: tuple[tuple[str, object], ...] = ()


class Gate:
    """A call held until the test releases it (:meth:`Stager.hold`)."""

    def __init__(self, method: str, about: str | None, when: When) -> None:
        self.method = method
        self.about = about
        self.when = when
        self._reached = asyncio.Event()
        self._released = asyncio.Event()
        self._error: BaseException | None = None

    async def reached(self) -> None:
        """Wait until the held call has arrived (and waits)."""
        await self._reached.wait()

    @property
    def is_reached(self) -> bool:
        return self._reached.is_set()

    def release(self) -> None:
        """Let the held call go on."""
        self._released.set()

    def fail(self, error: BaseException | None = None) -> None:
        """Let the held call go on by raising ``error`` (default: a MediaError
        ``internal_error``)."""
        self._error = error or _staged_error(self.method)
        self._released.set()

    async def _pass(self) -> None:
        self._reached.set()
        await self._released.wait()
        if self._error is not None:
            raise self._error


def _staged_error(method: str) -> MediaError:
    return MediaError(ErrorCode.INTERNAL, f"{method} failed (staged by the test)")


@dataclass
class _Rule:
    method: str
    about: str | None
    when: When
    gate: Gate | None = None
    error: BaseException | None = None
    times: int = 1


class Stager:
    """The rules and the call log of one fake."""

    def __init__(self) -> None:
        self._rules: list[_Rule] = []
        self.calls: list[StagedCall] = []
        """Every call made, in order."""

    def hold(self, method: str, about: str | None = None, when: When = "before") -> Gate:
        """Hold the next call of ``method`` (about ``about``, if given) at a gate.

        ``before``: it waits before it has any effect (its checks run after the release, on
        the state of that moment); ``after``: it has had its effect, but its caller has not
        heard back yet.
        """
        gate = Gate(method, about, when)
        self._rules.append(_Rule(method, about, when, gate=gate))
        return gate

    def raise_on(
        self,
        method: str,
        about: str | None = None,
        error: BaseException | None = None,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` calls of ``method`` (about ``about``, if given) raise
        ``error`` before they have any effect (default: a MediaError ``internal_error``)."""
        rule = _Rule(method, about, "before", error=error or _staged_error(method), times=times)
        self._rules.append(rule)

    async def enter(self, call: StagedCall, ids: tuple[str, ...]) -> None:
        self.calls.append(call)
        rule = self._take(call.method, ids, "before")
        if rule is not None and rule.error is not None:
            raise rule.error
        if rule is not None and rule.gate is not None:
            await rule.gate._pass()

    async def leave(self, method: str, ids: tuple[str, ...]) -> None:
        rule = self._take(method, ids, "after")
        if rule is not None and rule.gate is not None:
            await rule.gate._pass()

    def _take(self, method: str, ids: tuple[str, ...], when: When) -> _Rule | None:
        for rule in self._rules:
            matches = rule.about is None or rule.about in ids
            if rule.method == method and rule.when == when and matches:
                rule.times -= 1
                if rule.times <= 0:
                    self._rules.remove(rule)
                return rule
        return None


class HasStager(Protocol):
    stager: Stager


S = TypeVar("S", bound=HasStager)


def _ids(args: tuple[object, ...], kwargs: dict[str, object]) -> tuple[str, ...]:
    """The string arguments, and the strings in tuple arguments (targets, whisper_to)."""
    found: list[str] = []
    for value in (*args, *kwargs.values()):
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, tuple):
            found.extend(v for v in value if isinstance(v, str))
    return tuple(found)


def staged(
    fn: Callable[Concatenate[S, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
    """Log the call and apply the stager's rules to it (the method's name is its name)."""

    @functools.wraps(fn)
    async def run(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        ids = _ids(args, kwargs)
        await self.stager.enter(StagedCall(fn.__name__, args, tuple(kwargs.items())), ids)
        result = await fn(self, *args, **kwargs)
        await self.stager.leave(fn.__name__, ids)
        return result

    return run
