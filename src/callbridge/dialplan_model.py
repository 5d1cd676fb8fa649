"""The dial plan's model (issue 16): patterns, time-of-day conditions, rules and ring groups.

Pure data and checks, shared by the store (``store/dialplan.py``), the engine
(``core/dialplan.py``, ``core/huntgroup.py``), REST (``api/dial_plans.py``) and the CLI.

**Patterns** (``docs/routing.md``, "The dial plan"):

- ``2000-2099``: a range of numbers of one length (both ends the same number of digits, a
  leading ``+`` on both or neither); a destination matches when it has that length and lies
  within;
- digits, ``+``, ``#`` and ``*`` match themselves; ``X`` any digit, ``N`` 2-9, ``Z`` 1-9
  (Asterisk's letters); a trailing ``*`` matches anything further, including nothing
  (``+44*``, ``9*``; ``*`` alone matches every destination), a trailing ``.`` one or more
  characters (Asterisk's); a ``*`` anywhere else is a literal star (feature codes);
- anything with another letter is an exact name (``sales``), matched without regard to case.

**Order.** The rules of an account are tried in their ``position`` order and the first that
matches wins, as FreeSWITCH's dialplan does (and Asterisk's ``GotoIfTime`` chains): no
"most specific" ranking, so what the list says is what happens. A rule with a time condition
matches only inside its hours.

**Time conditions** (business hours): ``days`` (weekdays, empty: every day) and ``start``/
``end`` (``end`` before ``start`` crosses midnight), read in the account's time zone
(:class:`DialSettings`). On the account's holidays a rule with a time condition never matches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "DAYS",
    "GROUP_STRATEGIES",
    "NO_ANSWER_KINDS",
    "RULE_TARGETS",
    "DialRule",
    "DialSettings",
    "GroupMember",
    "RingGroupDef",
    "matches",
    "parse_days",
    "parse_time",
    "validate_name",
    "validate_pattern",
    "validate_target",
    "validate_time_zone",
]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
RULE_TARGETS = ("user", "ring_group", "queue", "conference", "application", "trunk")
NO_ANSWER_KINDS = ("hangup", "user", "ring_group", "queue", "conference", "application")
GROUP_STRATEGIES = ("simultaneous", "sequential", "round_robin")
MAX_PATTERN = 32
MAX_MEMBERS = 32
MAX_SECONDS = 600
DEFAULT_MEMBER_SECONDS = 20

_RANGE = re.compile(r"(\+?)(\d{1,15})-(\+?)(\d{1,15})")
_WILD = re.compile(r"[0-9+#*XNZxnz]+[*.]?")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_TARGET = re.compile(r"[A-Za-z0-9+][A-Za-z0-9._@+-]{0,63}")
_DIGIT_CLASS = {"x": "0123456789", "n": "23456789", "z": "123456789"}


def validate_pattern(pattern: str) -> str:
    """The pattern, trimmed; ValueError saying what is wrong (see the module docstring)."""
    text = pattern.strip() if isinstance(pattern, str) else ""
    if not text or len(text) > MAX_PATTERN:
        raise ValueError(
            f"invalid pattern {pattern!r}: give 1 to {MAX_PATTERN} characters, such as 2000-2099, "
            "9XXX, +44* or an exact number or name"
        )
    if "-" in text and (text[0].isdigit() or text[0] == "+"):
        m = _RANGE.fullmatch(text)
        if m is None:
            raise ValueError(
                f"invalid pattern {text!r}: a range is two numbers of the same length, e.g. "
                "2000-2099"
            )
        plus1, low, plus2, high = m.groups()
        if plus1 != plus2 or len(low) != len(high):
            raise ValueError(
                f"invalid pattern {text!r}: both ends of a range need the same number of digits "
                "(and a '+' on both or neither)"
            )
        if int(low) > int(high):
            raise ValueError(f"invalid pattern {text!r}: the range starts above its end")
        return text
    if any(ch.isalpha() and ch.lower() not in _DIGIT_CLASS for ch in text):
        if not _NAME.fullmatch(text):
            raise ValueError(
                f"invalid pattern {text!r}: an exact name has letters, digits, '.', '_', '-' "
                "or '@' only"
            )
        return text
    if not _WILD.fullmatch(text) or (text.endswith(".") and len(text) == 1):
        raise ValueError(
            f"invalid pattern {text!r}: use digits, '+', '#', X (any digit), N (2-9), Z (1-9), "
            "and '*' (anything) or '.' (one or more) only at the end"
        )
    return text


def matches(pattern: str, destination: str) -> bool:
    """Whether ``destination`` matches the (valid) ``pattern``."""
    dest = destination.strip()
    m = _RANGE.fullmatch(pattern)
    if m is not None:
        plus, low, _, high = m.groups()
        if not dest.startswith(plus) or (not plus and dest.startswith("+")):
            return False
        digits = dest[len(plus) :]
        return len(digits) == len(low) and digits.isdigit() and int(low) <= int(digits) <= int(high)
    if any(ch.isalpha() and ch.lower() not in _DIGIT_CLASS for ch in pattern):
        return pattern.lower() == dest.lower()
    body, tail = pattern, ""
    if pattern.endswith(("*", ".")) and (len(pattern) > 1 or pattern == "*"):
        body, tail = pattern[:-1], pattern[-1]
    if len(dest) < len(body):
        return False
    for want, got in zip(body, dest, strict=False):
        allowed = _DIGIT_CLASS.get(want.lower())
        if (allowed is not None and got not in allowed) or (allowed is None and want != got):
            return False
    rest = dest[len(body) :]
    if tail == "*":
        return True
    if tail == ".":
        return bool(rest)
    return not rest


def parse_time(value: str, what: str) -> time:
    """``HH:MM`` (24 hours); ValueError naming ``what``."""
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", value.strip()) if isinstance(value, str) else None
    if m is None or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise ValueError(f"invalid {what} {value!r}: use HH:MM, 24 hours, e.g. 09:00 or 17:30")
    return time(int(m.group(1)), int(m.group(2)))


def parse_days(values: list[str] | str) -> tuple[int, ...]:
    """Weekdays as 0 (Monday) … 6: names (``mon``…``sun``), ranges (``mon-fri``), comma lists."""
    items = values.split(",") if isinstance(values, str) else list(values)
    days: set[int] = set()
    for item in items:
        text = str(item).strip().lower()[:32]
        if not text:
            continue
        ends = [e.strip() for e in text.split("-")]
        if len(ends) > 2 or any(e not in DAYS for e in ends):
            raise ValueError(
                f"invalid days {item!r}: use mon, tue, wed, thu, fri, sat, sun or a range such "
                "as mon-fri"
            )
        a, b = DAYS.index(ends[0]), DAYS.index(ends[-1])
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return tuple(sorted(days))


def validate_time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(
            f"invalid time_zone {value!r}: use an IANA time zone name such as Europe/London, "
            "America/New_York or UTC"
        ) from None
    return value


def validate_name(value: str, what: str = "name") -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValueError(
            f"invalid {what} {value!r}: 1 to 64 letters, digits, '.', '_', '-' or '@', "
            "starting with a letter or digit"
        )
    return value


def validate_target(kind: str, target: str | None, what: str = "target") -> str | None:
    """The target checked for its kind: ``user`` and ``trunk`` may leave it out (the dialled
    number, rewritten, is the extension or the number sent out)."""
    kinds = NO_ANSWER_KINDS if what == "no_answer" else RULE_TARGETS
    if kind not in kinds:
        raise ValueError(f"invalid {what} kind {kind!r}: use one of {', '.join(kinds)}")
    if kind == "hangup" or (kind == "trunk" and not target):
        return None
    if not target:
        if kind == "user" and what != "no_answer":
            return None
        raise ValueError(
            f"invalid {what}: kind {kind!r} needs a target, the "
            f"{kind.replace('_', ' ')}'s name or id"
        )
    if not _TARGET.fullmatch(target):
        raise ValueError(
            f"invalid {what} {target!r}: 1 to 64 letters, digits, '+', '.', '_', '-' or '@'"
        )
    return target


@dataclass(frozen=True, slots=True)
class DialSettings:
    """An account's dial plan settings: its time zone and holidays."""

    account_id: str
    time_zone: str = "UTC"
    holidays: tuple[date, ...] = ()

    def local(self, at: datetime) -> datetime:
        return at.astimezone(ZoneInfo(self.time_zone))


@dataclass(frozen=True, slots=True)
class DialRule:
    """One line of an account's dial plan."""

    id: str
    account_id: str
    position: int
    pattern: str
    target_kind: str
    target: str | None = None
    strip: int = 0
    prepend: str = ""
    days: tuple[int, ...] = ()
    start: time | None = None
    end: time | None = None
    description: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def timed(self) -> bool:
        return bool(self.days) or self.start is not None

    def applies(self, destination: str, at: datetime, settings: DialSettings) -> bool:
        """The pattern matches and, for a timed rule, ``at`` is inside its hours."""
        if not matches(self.pattern, destination):
            return False
        if not self.timed:
            return True
        local = settings.local(at)
        if local.date() in settings.holidays:
            return False
        if self.start is None or self.end is None:
            return local.weekday() in self.days if self.days else True
        now, start, end = local.time(), self.start, self.end
        if start <= end:
            inside, day = start <= now < end, local.weekday()
        else:  # crosses midnight: the hours after midnight belong to the day before
            inside = now >= start or now < end
            day = local.weekday() if now >= start else (local.weekday() - 1) % 7
        return inside and (not self.days or day in self.days)

    def rewrite(self, destination: str) -> str:
        return self.prepend + destination[self.strip :]


@dataclass(frozen=True, slots=True)
class GroupMember:
    user: str
    seconds: int = DEFAULT_MEMBER_SECONDS


@dataclass(frozen=True, slots=True)
class RingGroupDef:
    """Several users rung for one destination: at once, one after the other, or one after the
    other starting after the member who was first last time (round robin)."""

    id: str
    account_id: str
    name: str
    strategy: str
    members: tuple[GroupMember, ...]
    no_answer_kind: str = "hangup"
    no_answer_target: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
