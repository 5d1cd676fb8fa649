"""One state-machine kit for every stateful object, in the server and in the SDK.

An object that has states mixes in :class:`StateMachine` and declares three things:

- an ``Enum`` of its states, with the machine drawn in the enum's docstring and a one-line
  comment on each member;
- ``TRANSITIONS``: a class-level table ``state -> frozenset of the states it may become``;
- a ``state`` attribute holding the initial state.

Then :meth:`StateMachine.transition` is the one place its state changes. It

1. does nothing and returns ``None`` when the object is already in that state (so a repeated
   fact, such as two hangups, is harmless);
2. raises :class:`InvalidTransition` for a move the table does not allow. That is a bug in
   callbridge, never the peer's fault: adapters report it as ``internal_error`` and log it with
   its traceback. Code that must refuse a peer's request checks :meth:`StateMachine.can` (or
   the state) first and raises its own ``ProtocolError``;
3. logs ``old -> new`` at DEBUG, with the object's ``kind`` and ``id``;
4. emits a typed :class:`StateChanged` to the object's ``state_observer`` (if set) and
   returns it.

Example::

    class Door(StateMachine["DoorState"]):
        TRANSITIONS = {DoorState.OPEN: frozenset({DoorState.SHUT}), DoorState.SHUT: frozenset()}

        def __init__(self) -> None:
            self.id = "front"
            self.state = DoorState.OPEN

    door = Door()
    door.state_observer = seen.append
    door.transition(DoorState.SHUT, cause="wind")  # StateChanged(door, OPEN, SHUT, "wind")
    door.transition(DoorState.OPEN)  # InvalidTransition: a bug
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, Generic, TypeVar

from callbridge.errors import CallbridgeError

__all__ = ["InvalidTransition", "StateChanged", "StateMachine", "StateObserver", "check_table"]

log = logging.getLogger(__name__)

S = TypeVar("S", bound=Enum)


class InvalidTransition(CallbridgeError):
    """A state change that the object's table does not allow: an internal bug."""

    def __init__(self, subject: object, old: Enum, new: Enum) -> None:
        kind = getattr(subject, "kind", type(subject).__name__)
        ident = getattr(subject, "id", "?")
        super().__init__(f"{kind} {ident}: {old.value} cannot become {new.value}")
        self.subject = subject
        self.old = old
        self.new = new


@dataclass(frozen=True, slots=True)
class StateChanged(Generic[S]):
    """``subject`` went from ``old`` to ``new``; ``cause`` says why (free text, for logs)."""

    subject: Any
    old: S
    new: S
    cause: str = ""


StateObserver = Callable[[StateChanged[Any]], None]


class StateMachine(Generic[S]):
    """Mixin: the ``TRANSITIONS`` table, :meth:`transition` and an optional observer."""

    TRANSITIONS: ClassVar[Mapping[Any, frozenset[Any]]]
    state: S
    # Called with every change (set it on the instance); a failing observer is logged and
    # does not undo the change.
    state_observer: StateObserver | None = None

    @property
    def kind(self) -> str:
        """What the object is, for logs and errors (its class name unless overridden)."""
        return type(self).__name__

    def can(self, new: S) -> bool:
        """True if :meth:`transition` to ``new`` would succeed (or is a no-op)."""
        return new is self.state or new in self.TRANSITIONS[self.state]

    def transition(self, new: S, *, cause: str = "") -> StateChanged[S] | None:
        """Change to ``new``; ``None`` if already there. :class:`InvalidTransition` if the
        table forbids it (a bug: callers check :meth:`can` when a peer's request decides)."""
        old = self.state
        if new is old:
            return None
        if new not in self.TRANSITIONS[old]:
            raise InvalidTransition(self, old, new)
        self.state = new
        log.debug(
            "%s %s: %s -> %s%s",
            self.kind,
            getattr(self, "id", "?"),
            old.value,
            new.value,
            f" ({cause})" if cause else "",
        )
        change = StateChanged(self, old, new, cause)
        observer = self.state_observer
        if observer is not None:
            try:
                observer(change)
            except Exception:
                log.exception("state observer failed for %s", self.kind)
        return change


def check_table(states: type[Enum], table: Mapping[Any, frozenset[Any]]) -> None:
    """Raise ``ValueError`` unless ``table`` has a row for every state and names only states
    (used by the kit's tests on every machine in callbridge)."""
    missing = [s for s in states if s not in table]
    if missing:
        raise ValueError(f"{states.__name__}: no transitions row for {missing}")
    for row, targets in table.items():
        stray = [t for t in targets if not isinstance(t, states)]
        if stray:
            raise ValueError(f"{states.__name__}.{row.name}: unknown targets {stray}")
