"""A user's forwarding rules (find-me/follow-me, do-not-disturb): the model and its checks.

Issue 16. Stored by :mod:`callbridge.store.followme`, run by :mod:`callbridge.core.followme`,
set over REST (``/v2/telephony_credentials/{id}/forwarding``), the CLI (``callbridge
forwarding``) and ``/ws`` (``forwarding.get`` / ``forwarding.set`` / ``forwarding.dnd``).
docs/routing.md describes the model; in short:

- ``steps`` ring in order; each rings its ``targets`` at once for its ``seconds`` (none: the
  rules' ``ring_seconds``, none there either: the server's ``--ring-timeout``);
- a target is the user's own ``devices``, another ``user``, an outside ``number`` (through a
  trunk; ``screening``: the answerer must press 1), a ``queue``, an ``application`` or a
  ``conference`` (these three take the call at once, so they stand alone in their step);
- when a step ends unanswered its outcome is ``busy`` (someone said busy), ``offline``
  (nothing could be rung), ``no_answer``, or ``dnd`` (the step was only the user's own devices
  and DND is on); the rules say what follows each: ``next`` (the next step; after the last,
  the call ends with the outcome's reason), ``end`` / ``end:<reason>``, or a destination
  (``user:NAME``, ``number:+E164``, ``queue:NAME``, ``application:ID``, ``conference:NAME``).

No rules (or no steps): one step ringing the user's own devices, exactly as before issue 16.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from callbridge.vocabulary import END_REASONS

__all__ = [
    "ACTIONS",
    "MAX_SECONDS",
    "MAX_STEPS",
    "MAX_TARGETS",
    "OUTCOMES",
    "TARGET_TYPES",
    "Forwarding",
    "Outcome",
    "Step",
    "Target",
    "TargetType",
    "parse_action",
    "parse_forwarding",
]

TargetType = Literal["devices", "user", "number", "queue", "application", "conference"]
TARGET_TYPES: tuple[str, ...] = get_args(TargetType)
# Targets that take the call as soon as they are reached: nothing else can ring beside them.
TAKING = frozenset({"queue", "application", "conference"})
Outcome = Literal["busy", "no_answer", "offline", "dnd"]
OUTCOMES: tuple[str, ...] = get_args(Outcome)
# What ends a call when an outcome has nowhere else to go (seed 001's reasons).
OUTCOME_REASONS: dict[str, str] = {
    "busy": "busy",
    "no_answer": "no-answer",
    "offline": "failed",
    "dnd": "busy",
}
ACTIONS = ("next", "end", "end:<reason>", *(f"{t}:<value>" for t in TARGET_TYPES[1:]))

MAX_STEPS = 10
MAX_TARGETS = 10
MAX_SECONDS = 600
MIN_SECONDS = 1
MAX_SCREENING_SECONDS = 60
_VALUE = re.compile(r"[A-Za-z0-9+][A-Za-z0-9._+-]{0,63}", re.ASCII)
_NUMBER = re.compile(r"\+?[0-9]{2,20}", re.ASCII)


@dataclass(frozen=True, slots=True)
class Target:
    """Something one step rings: ``devices`` has no ``value``; the others name it."""

    type: TargetType
    value: str | None = None
    screening: bool = False  # outside numbers only: the answerer must press 1

    def describe(self) -> str:
        return self.type if self.value is None else f"{self.type}:{self.value}"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.value is not None:
            out["value"] = self.value
        if self.type == "number":
            out["screening"] = self.screening
        return out


@dataclass(frozen=True, slots=True)
class Step:
    """Targets ringing at once for ``seconds`` (None: the rules' ring duration)."""

    targets: tuple[Target, ...]
    seconds: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"targets": [t.as_dict() for t in self.targets], "seconds": self.seconds}


@dataclass(frozen=True, slots=True)
class Forwarding:
    """A user's rules. The default value is "no rules": ring-all for the server's timeout."""

    ring_seconds: int | None = None
    dnd: bool = False
    steps: tuple[Step, ...] = ()
    on_busy: str = "next"
    on_no_answer: str = "next"
    on_offline: str = "next"
    on_dnd: str = "next"

    def action(self, outcome: str) -> str:
        return str(getattr(self, f"on_{outcome}"))

    def effective_steps(self) -> tuple[Step, ...]:
        """The steps to run: the stored ones, or the user's own devices alone."""
        return self.steps or (Step((Target("devices"),)),)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ring_seconds": self.ring_seconds,
            "dnd": self.dnd,
            "steps": [s.as_dict() for s in self.steps],
            "on_busy": self.on_busy,
            "on_no_answer": self.on_no_answer,
            "on_offline": self.on_offline,
            "on_dnd": self.on_dnd,
        }


def _seconds(name: str, value: Any, *, optional: bool = True) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(
            f"invalid {name} {value!r}: use whole seconds, {MIN_SECONDS} to {MAX_SECONDS}"
        )
    if not MIN_SECONDS <= value <= MAX_SECONDS:
        raise ValueError(f"invalid {name} {value}: use {MIN_SECONDS} to {MAX_SECONDS} seconds")
    return value


def _target(where: str, raw: Any) -> Target:
    if isinstance(raw, str):  # "devices", "user:bob", "number:+1555..." shorthand
        text_kind, _, text_value = raw.partition(":")
        raw = {"type": text_kind, "value": text_value or None}
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: a target is an object {{type, value}} or 'type:value' text")
    unknown = set(raw) - {"type", "value", "screening"}
    if unknown:
        raise ValueError(f"{where}: unknown target field(s) {', '.join(sorted(map(str, unknown)))}")
    kind: Any = raw.get("type")
    if kind not in TARGET_TYPES:
        raise ValueError(
            f"{where}: invalid target type {kind!r}: use one of {', '.join(TARGET_TYPES)}"
        )
    value: Any = raw.get("value")
    screening = raw.get("screening", False)
    if not isinstance(screening, bool):
        raise ValueError(f"{where}: invalid screening {screening!r}: use true or false")
    if screening and kind != "number":
        raise ValueError(f"{where}: screening is only for outside numbers (type 'number')")
    if kind == "devices":
        if value not in (None, ""):
            raise ValueError(f"{where}: a 'devices' target has no value (it is the user's own)")
        return Target("devices")
    if not isinstance(value, str) or not _VALUE.fullmatch(value):
        raise ValueError(
            f"{where}: a {kind!r} target needs a value (a name, id or number, up to 64 of "
            "letters, digits, '.', '_', '-', '+')"
        )
    if kind == "number":
        digits = re.sub(r"[\s().-]", "", value)
        if not _NUMBER.fullmatch(digits):
            raise ValueError(f"{where}: invalid number {value!r}: use E.164, e.g. +14155550100")
        value = digits
    return Target(kind, value, screening)


def parse_action(where: str, raw: Any) -> str:
    """An outcome's action, checked: ``next``, ``end``, ``end:<reason>`` or a destination."""
    if not isinstance(raw, str) or not raw:
        raise ValueError(f"invalid {where} {raw!r}: use one of {', '.join(ACTIONS)}")
    if raw in ("next", "end"):
        return raw
    kind, colon, value = raw.partition(":")
    if not colon or kind not in (*TARGET_TYPES, "end"):
        raise ValueError(
            f"invalid {where} {raw!r}: use next, end, end:<reason>, or a destination "
            "user:NAME, number:+E164, queue:NAME, application:ID or conference:NAME"
        )
    if kind == "end":
        if value not in END_REASONS:
            raise ValueError(
                f"invalid {where} {raw!r}: end with one of {', '.join(sorted(END_REASONS))}"
            )
        return raw
    if kind == "devices":
        raise ValueError(f"invalid {where} {raw!r}: 'devices' is a step target, not an action")
    return _target(where, {"type": kind, "value": value}).describe()


def parse_forwarding(raw: Mapping[str, Any], base: Forwarding | None = None) -> Forwarding:
    """Rules from JSON-shaped ``raw`` (fields left out keep ``base``'s); ValueError naming
    the field that is wrong and how to fix it."""
    if not isinstance(raw, Mapping):
        raise ValueError("forwarding rules are an object")
    allowed = {"ring_seconds", "dnd", "steps", *(f"on_{o}" for o in OUTCOMES)}
    unknown = set(raw) - allowed
    if unknown:
        raise ValueError(
            f"unknown forwarding field(s): {', '.join(sorted(map(str, unknown)))}; "
            f"use {', '.join(sorted(allowed))}"
        )
    current = base or Forwarding()
    values: dict[str, Any] = {}
    if "ring_seconds" in raw:
        values["ring_seconds"] = _seconds("ring_seconds", raw["ring_seconds"])
    if "dnd" in raw:
        if not isinstance(raw["dnd"], bool):
            raise ValueError(f"invalid dnd {raw['dnd']!r}: use true or false")
        values["dnd"] = raw["dnd"]
    if "steps" in raw:
        values["steps"] = _steps(raw["steps"])
    for outcome in OUTCOMES:
        name = f"on_{outcome}"
        if name in raw:
            values[name] = parse_action(name, raw[name])
    return Forwarding(
        ring_seconds=values.get("ring_seconds", current.ring_seconds),
        dnd=values.get("dnd", current.dnd),
        steps=values.get("steps", current.steps),
        on_busy=values.get("on_busy", current.on_busy),
        on_no_answer=values.get("on_no_answer", current.on_no_answer),
        on_offline=values.get("on_offline", current.on_offline),
        on_dnd=values.get("on_dnd", current.on_dnd),
    )


def _steps(raw: Any) -> tuple[Step, ...]:
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise ValueError("steps is a list of {targets, seconds}")
    if len(raw) > MAX_STEPS:
        raise ValueError(f"too many steps ({len(raw)}): at most {MAX_STEPS}")
    steps: list[Step] = []
    for n, item in enumerate(raw, 1):
        where = f"step {n}"
        if not isinstance(item, Mapping):
            raise ValueError(f"{where}: a step is an object {{targets, seconds}}")
        unknown = set(item) - {"targets", "seconds"}
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        targets = item.get("targets")
        if not isinstance(targets, Sequence) or isinstance(targets, str) or not targets:
            raise ValueError(f"{where}: targets is a non-empty list")
        if len(targets) > MAX_TARGETS:
            raise ValueError(f"{where}: too many targets ({len(targets)}): at most {MAX_TARGETS}")
        parsed = tuple(_target(f"{where} target {i}", t) for i, t in enumerate(targets, 1))
        if len(parsed) > 1 and any(t.type in TAKING for t in parsed):
            raise ValueError(
                f"{where}: a queue, application or conference takes the call at once: put it "
                "in a step of its own"
            )
        if len(set(parsed)) != len(parsed):
            raise ValueError(f"{where}: a target is listed twice")
        steps.append(Step(parsed, _seconds(f"{where} seconds", item.get("seconds"))))
    return tuple(steps)
