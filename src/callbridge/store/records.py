"""What the store hands out: users and call detail records, plus the rules for their fields."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = [
    "Cdr",
    "User",
    "as_utc",
    "normalize_number",
    "validate_extension",
    "validate_name",
    "validate_number",
]

# re.ASCII: `\d` and friends would otherwise accept any Unicode digit ("١٢٣").
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}", re.ASCII)
_EXTENSION = re.compile(r"[0-9]{2,8}", re.ASCII)
# E.164 (ITU-T E.164 §6): at most 15 digits, country codes never start with 0. Numbers
# shorter than 8 digits are short codes or extensions, not routable numbers.
_E164 = re.compile(r"\+[1-9][0-9]{7,14}", re.ASCII)
_NUMBER_SEPARATORS = re.compile(r"[\s\-.()]")


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    extension: str
    number: str | None  # E.164, "+" and digits only
    display_name: str | None


@dataclass(frozen=True, slots=True)
class Cdr:
    """A call detail record: one finished call. Datetimes are timezone-aware UTC."""

    call_id: str
    caller: str
    callee: str
    destination: str
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime
    end_reason: str
    direction: str | None = None

    @property
    def duration_seconds(self) -> float:
        """Talk time: from the answer to the end; 0 for a call nobody answered."""
        if self.answered_at is None:
            return 0.0
        return max(0.0, (self.ended_at - self.answered_at).total_seconds())


def as_utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime; a naive value is taken to be UTC already.

    SQLite keeps no time zone, so everything read back from it is naive UTC.
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def validate_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"invalid user name {name!r}: use 1 to 64 letters, digits, '.', '_' or '-'"
        )
    return name


def validate_extension(extension: str) -> str:
    if not _EXTENSION.fullmatch(extension):
        raise ValueError(f"invalid extension {extension!r}: use 2 to 8 digits")
    return extension


def validate_number(number: str) -> str:
    """The E.164 form of ``number``; spaces, dashes, dots and parentheses are dropped."""
    compact = _NUMBER_SEPARATORS.sub("", number)
    if not _E164.fullmatch(compact):
        raise ValueError(
            f"invalid number {number!r}: use E.164, '+' and 8 to 15 digits, e.g. +14155550100"
        )
    return compact


def normalize_number(dialled: str) -> str | None:
    """The E.164 form a dialled string could mean, or ``None`` if it cannot be a number.

    Accepts the number with or without its leading '+' and with spaces, dashes, dots or
    parentheses anywhere ("+1 (415) 555-0100", "14155550100").
    """
    compact = _NUMBER_SEPARATORS.sub("", dialled)
    if not compact.startswith("+"):
        compact = "+" + compact
    return compact if _E164.fullmatch(compact) else None
