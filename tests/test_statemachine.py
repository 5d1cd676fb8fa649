"""The state-machine kit (callbridge.statemachine), and every machine of the call core and the
/ws sessions checked against it."""

from __future__ import annotations

import logging
from enum import Enum, StrEnum
from typing import Any, ClassVar

import pytest

from callbridge.core.call_events import StateChangedEvent, state_publisher
from callbridge.core.calls import Call, CallState, Leg, LegState, Move, MoveState
from callbridge.core.events import EventBus
from callbridge.core.ringgroup import RingGroup, RingState
from callbridge.errors import CallbridgeError, ProtocolError
from callbridge.signalling.sessions import Session, SessionState
from callbridge.statemachine import InvalidTransition, StateChanged, StateMachine, check_table
from core_world import Phone, User


class DoorState(StrEnum):
    """open ──► shut ──► locked"""

    OPEN = "open"
    SHUT = "shut"
    LOCKED = "locked"


class Door(StateMachine[DoorState]):
    TRANSITIONS: ClassVar[dict[DoorState, frozenset[DoorState]]] = {
        DoorState.OPEN: frozenset({DoorState.SHUT}),
        DoorState.SHUT: frozenset({DoorState.OPEN, DoorState.LOCKED}),
        DoorState.LOCKED: frozenset(),
    }

    def __init__(self) -> None:
        self.id = "front"
        self.state = DoorState.OPEN


def state_of(door: Door) -> DoorState:
    return door.state


def test_a_valid_transition_changes_the_state_and_tells_the_observer() -> None:
    door, seen = Door(), list[StateChanged[Any]]()
    door.state_observer = seen.append
    change = door.transition(DoorState.SHUT, cause="wind")
    assert change == StateChanged(door, DoorState.OPEN, DoorState.SHUT, "wind")
    assert seen == [change] and state_of(door) is DoorState.SHUT


def test_a_transition_to_the_current_state_does_nothing() -> None:
    door, seen = Door(), list[StateChanged[Any]]()
    door.state_observer = seen.append
    assert door.transition(DoorState.OPEN) is None
    assert seen == [] and door.can(DoorState.OPEN)


def test_an_invalid_transition_is_a_bug_not_a_peer_error() -> None:
    door = Door()
    door.transition(DoorState.SHUT)
    door.transition(DoorState.LOCKED)
    assert not door.can(DoorState.OPEN)
    with pytest.raises(InvalidTransition) as bug:
        door.transition(DoorState.OPEN)
    assert isinstance(bug.value, CallbridgeError) and not isinstance(bug.value, ProtocolError)
    assert str(bug.value) == "Door front: locked cannot become open"
    assert state_of(door) is DoorState.LOCKED


def test_a_failing_observer_is_logged_and_the_change_stays(
    caplog: pytest.LogCaptureFixture,
) -> None:
    door = Door()

    def broken(change: StateChanged[Any]) -> None:
        raise RuntimeError("observer bug")

    door.state_observer = broken
    with caplog.at_level(logging.ERROR):
        door.transition(DoorState.SHUT)
    assert state_of(door) is DoorState.SHUT
    assert "state observer failed" in caplog.text


def test_check_table_finds_a_missing_row_and_a_stray_target() -> None:
    class Other(Enum):
        X = "x"

    with pytest.raises(ValueError, match="no transitions row"):
        check_table(DoorState, {DoorState.OPEN: frozenset()})
    stray: dict[Any, frozenset[Any]] = {s: frozenset() for s in DoorState}
    stray[DoorState.OPEN] = frozenset({Other.X})
    with pytest.raises(ValueError, match="unknown targets"):
        check_table(DoorState, stray)


MACHINES: list[tuple[type[Enum], Any, Enum]] = [
    (LegState, Leg.TRANSITIONS, LegState.ENDED),
    (CallState, Call.TRANSITIONS, CallState.ENDED),
    (MoveState, Move.TRANSITIONS, MoveState.MOVED),
    (RingState, RingGroup.TRANSITIONS, RingState.ANSWERED),
    (SessionState, Session.TRANSITIONS, SessionState.ENDED),
]


@pytest.mark.parametrize(
    ("states", "table", "final"), MACHINES, ids=[m[0].__name__ for m in MACHINES]
)
def test_every_call_machine_has_a_complete_table_and_a_terminal_state(
    states: type[Enum], table: Any, final: Enum
) -> None:
    check_table(states, table)
    assert table[final] == frozenset()
    # Every state but the initial one can be reached.
    reached = set().union(*table.values())
    assert len(set(states) - reached) == 1


def test_state_changes_of_a_leg_are_published_on_the_bus() -> None:
    bus, seen = EventBus(), list[StateChangedEvent]()
    bus.subscribe(StateChangedEvent, seen.append)
    leg = Leg(device=Phone(User("bob", "Bob", "201"), "1"), direction="incoming", id="leg-1")
    leg.state_observer = state_publisher(bus)
    leg.transition(LegState.RINGING)
    leg.transition(LegState.ACTIVE)
    assert [(e.kind, e.id, e.old, e.new) for e in seen] == [
        ("leg", "leg-1", "new", "ringing"),
        ("leg", "leg-1", "ringing", "active"),
    ]
    with pytest.raises(InvalidTransition):
        leg.transition(LegState.TRYING)
