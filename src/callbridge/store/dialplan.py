"""Dial plans in the store (issue 16): rules, ring groups and each account's dial settings.

Tables (migration ``0010``): ``dial_rules`` (an account's ordered patterns: tried by
``position``, then by creation), ``ring_groups`` (name unique in the account; members as a JSON
list of ``{"user", "seconds"}`` in ring order) and ``dial_settings`` (the account's time zone and
holidays; no row: UTC, no holidays). The model and its checks are in
:mod:`callbridge.dialplan_model`; a bad value is a ``ValueError`` that starts ``invalid
<field>`` (or names the field), which REST turns into a 422 pointing at it.

    StoreError
    ├── RingGroupExists       the ring group's name is taken in the account
    └── NotFound
        ├── DialRuleNotFound  no rule has this id in this account
        └── RingGroupNotFound no ring group has this id (or name) in this account
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime, time
from functools import partial
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from callbridge.dialplan_model import (
    DEFAULT_MEMBER_SECONDS,
    GROUP_STRATEGIES,
    MAX_MEMBERS,
    MAX_SECONDS,
    DialRule,
    DialSettings,
    GroupMember,
    RingGroupDef,
    parse_days,
    parse_time,
    validate_name,
    validate_pattern,
    validate_target,
    validate_time_zone,
)
from callbridge.store.errors import NotFound, StoreError
from callbridge.store.readcache import bump
from callbridge.store.repository import Repository, new_id, now
from callbridge.store.schema import DEFAULT_ACCOUNT_ID, Base, UTCDateTime

__all__ = [
    "DialPlanRepository",
    "DialRuleNotFound",
    "DialRuleRow",
    "DialSettingsRow",
    "RingGroupExists",
    "RingGroupNotFound",
    "RingGroupRow",
]

_PREPEND = re.compile(r"\+?[0-9#*]{0,15}")
_MAX_RULES = 1000  # per account: a dial plan is read on every call
_MAX_HOLIDAYS = 366


class RingGroupExists(StoreError):
    def __init__(self, name: str) -> None:
        super().__init__(f"ring group name {name!r} is taken in this account: pick another")


class DialRuleNotFound(NotFound):
    what = "dial plan rule"


class RingGroupNotFound(NotFound):
    what = "ring group"


def _account_fk() -> Mapped[str]:
    return mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True, server_default=DEFAULT_ACCOUNT_ID
    )


class DialRuleRow(Base):
    __tablename__ = "dial_rules"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = _account_fk()
    position: Mapped[int] = mapped_column(Integer)
    pattern: Mapped[str] = mapped_column(String(64))
    target_kind: Mapped[str] = mapped_column(String(16))
    target: Mapped[str | None] = mapped_column(String(64))
    strip: Mapped[int] = mapped_column(Integer)
    prepend: Mapped[str] = mapped_column(String(16))
    days: Mapped[str] = mapped_column(String(16))  # weekday numbers, comma-separated
    start_time: Mapped[str | None] = mapped_column(String(5))  # HH:MM
    end_time: Mapped[str | None] = mapped_column(String(5))
    description: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RingGroupRow(Base):
    __tablename__ = "ring_groups"
    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = _account_fk()
    name: Mapped[str] = mapped_column(String(64))
    strategy: Mapped[str] = mapped_column(String(16))
    members: Mapped[str] = mapped_column(Text)  # JSON [{"user": ..., "seconds": ...}]
    no_answer_kind: Mapped[str] = mapped_column(String(16))
    no_answer_target: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DialSettingsRow(Base):
    __tablename__ = "dial_settings"

    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    time_zone: Mapped[str] = mapped_column(String(64))
    holidays: Mapped[str] = mapped_column(Text)  # JSON ["YYYY-MM-DD", ...]
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


def _rule(row: DialRuleRow) -> DialRule:
    return DialRule(
        id=row.id,
        account_id=row.account_id,
        position=row.position,
        pattern=row.pattern,
        target_kind=row.target_kind,
        target=row.target,
        strip=row.strip,
        prepend=row.prepend,
        days=tuple(int(d) for d in row.days.split(",") if d),
        start=time.fromisoformat(row.start_time) if row.start_time else None,
        end=time.fromisoformat(row.end_time) if row.end_time else None,
        description=row.description,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _group(row: RingGroupRow) -> RingGroupDef:
    return RingGroupDef(
        id=row.id,
        account_id=row.account_id,
        name=row.name,
        strategy=row.strategy,
        members=tuple(GroupMember(m["user"], int(m["seconds"])) for m in json.loads(row.members)),
        no_answer_kind=row.no_answer_kind,
        no_answer_target=row.no_answer_target,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _whole(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"invalid {name} {value!r}: use a whole number {low} to {high}")
    return value


def check_rule(
    pattern: str,
    target_kind: str,
    target: str | None,
    *,
    strip: int = 0,
    prepend: str = "",
    days: list[str] | str | None = None,
    start: str | None = None,
    end: str | None = None,
    description: str = "",
) -> dict[str, Any]:
    """A rule's column values, checked; ValueError naming the field."""
    target = validate_target(target_kind, target)
    if not isinstance(prepend, str) or not _PREPEND.fullmatch(prepend):
        raise ValueError(
            f"invalid prepend {prepend!r}: up to 15 digits, '#' or '*', maybe after '+'"
        )
    if (start is None) != (end is None):
        field = "end_time" if end is None else "start_time"
        raise ValueError(f"invalid {field}: give both start_time and end_time, or neither")
    starts = parse_time(start, "start_time") if start is not None else None
    ends = parse_time(end, "end_time") if end is not None else None
    if starts is not None and starts == ends:
        raise ValueError("invalid end_time: it equals start_time; leave both out for all day")
    if not isinstance(description, str) or len(description) > 255:
        raise ValueError("invalid description: up to 255 characters")
    return {
        "pattern": validate_pattern(pattern),
        "target_kind": target_kind,
        "target": target,
        "strip": _whole("strip", strip, 0, 15),
        "prepend": prepend,
        "days": ",".join(str(d) for d in parse_days(days or [])),
        "start_time": starts.strftime("%H:%M") if starts else None,
        "end_time": ends.strftime("%H:%M") if ends else None,
        "description": description,
    }


def check_members(members: list[Any]) -> str:
    """Members as ``user`` or ``{"user", "seconds"}``, checked, as the column's JSON."""
    if not isinstance(members, list) or not 1 <= len(members) <= MAX_MEMBERS:
        raise ValueError(f"invalid members: give 1 to {MAX_MEMBERS} users, in ring order")
    out: list[dict[str, Any]] = []
    for i, member in enumerate(members):
        user, seconds = (
            (member, DEFAULT_MEMBER_SECONDS)
            if isinstance(member, str)
            else (
                (member.get("user"), member.get("seconds", DEFAULT_MEMBER_SECONDS))
                if isinstance(member, dict)
                else (None, None)
            )
        )
        if not isinstance(user, str) or not user:
            raise ValueError(f"invalid members[{i}]: give a user name (and seconds)")
        validate_name(user, f"members[{i}].user")
        if any(m["user"] == user for m in out):
            raise ValueError(f"invalid members[{i}].user {user!r}: listed twice")
        out.append(
            {"user": user, "seconds": _whole(f"members[{i}].seconds", seconds, 1, MAX_SECONDS)}
        )
    return json.dumps(out)


class DialPlanRepository(Repository):
    """Dial plan rules, ring groups and dial settings (mixed into ``Store``)."""

    # rules -------------------------------------------------------------------------------------
    async def dial_rules(self, account_id: str) -> list[DialRule]:
        """The account's rules in the order they are tried. Read through the routing cache
        (store.readcache): every call of the account reads them."""
        key = ("dial_rules", account_id)
        return list(await self._cache.read(key, partial(self._dial_rules, account_id)))

    async def _dial_rules(self, account_id: str) -> tuple[DialRule, ...]:
        async with self._read() as session:
            rows = await session.scalars(
                select(DialRuleRow)
                .where(DialRuleRow.account_id == account_id)
                .order_by(DialRuleRow.position, DialRuleRow.created_at, DialRuleRow.id)
            )
            return tuple(_rule(r) for r in rows)

    async def add_dial_rule(
        self, account_id: str, pattern: str, target_kind: str, target: str | None = None,
        *, position: int | None = None, **fields: Any,
    ) -> DialRule:  # fmt: skip
        """A new rule; ``position`` None puts it last. ValueError naming the bad field."""
        values = check_rule(pattern, target_kind, target, **fields)
        async with self._write() as session, session.begin():
            rows = list(
                await session.scalars(
                    select(DialRuleRow).where(DialRuleRow.account_id == account_id)
                )
            )
            if len(rows) >= _MAX_RULES:
                raise ValueError(f"invalid pattern: the account has {_MAX_RULES} rules, the most")
            if position is None:
                position = max((r.position for r in rows), default=0) + 10
            _whole("position", position, 0, 1_000_000)
            stamp = now()
            row = DialRuleRow(
                id=new_id(), account_id=account_id, position=position,
                created_at=stamp, updated_at=stamp, **values,
            )  # fmt: skip
            session.add(row)
            await bump(session)
        self._cache.clear()  # the next call tries the new rule
        return _rule(row)

    async def find_dial_rule(self, rule_id: str, account_id: str) -> DialRule | None:
        async with self._read() as session:
            row = await session.get(DialRuleRow, rule_id)
            return _rule(row) if row is not None and row.account_id == account_id else None

    async def remove_dial_rule(self, rule_id: str, account_id: str) -> DialRule:
        async with self._write() as session, session.begin():
            row = await session.get(DialRuleRow, rule_id)
            if row is None or row.account_id != account_id:
                raise DialRuleNotFound(rule_id)
            rule = _rule(row)
            await session.delete(row)
            await bump(session)
        self._cache.clear()
        return rule

    # ring groups -------------------------------------------------------------------------------
    async def ring_groups(self, account_id: str) -> list[RingGroupDef]:
        async with self._read() as session:
            rows = await session.scalars(
                select(RingGroupRow)
                .where(RingGroupRow.account_id == account_id)
                .order_by(RingGroupRow.name)
            )
            return [_group(r) for r in rows]

    async def find_ring_group(self, key: str, account_id: str) -> RingGroupDef | None:
        """The account's ring group whose id or name is ``key``."""
        async with self._read() as session:
            row = await session.get(RingGroupRow, key)
            if row is None or row.account_id != account_id:
                row = await session.scalar(
                    select(RingGroupRow).where(
                        RingGroupRow.account_id == account_id, RingGroupRow.name == key
                    )
                )
            return _group(row) if row is not None else None

    async def add_ring_group(
        self,
        account_id: str,
        name: str,
        members: list[Any],
        *,
        strategy: str = "simultaneous",
        no_answer_kind: str = "hangup",
        no_answer_target: str | None = None,
    ) -> RingGroupDef:
        validate_name(name)
        if strategy not in GROUP_STRATEGIES:
            raise ValueError(
                f"invalid strategy {strategy!r}: use one of {', '.join(GROUP_STRATEGIES)}"
            )
        members_json = check_members(members)
        target = validate_target(no_answer_kind, no_answer_target, "no_answer")
        stamp = now()
        row = RingGroupRow(
            id=new_id(), account_id=account_id, name=name, strategy=strategy,
            members=members_json, no_answer_kind=no_answer_kind, no_answer_target=target,
            created_at=stamp, updated_at=stamp,
        )  # fmt: skip
        try:
            async with self._write() as session, session.begin():
                session.add(row)
        except IntegrityError:
            raise RingGroupExists(name) from None
        return _group(row)

    async def remove_ring_group(self, key: str, account_id: str) -> RingGroupDef:
        """Remove the group (id or name); rules naming it stay (a call to them fails)."""
        group = await self.find_ring_group(key, account_id)
        if group is None:
            raise RingGroupNotFound(key)
        async with self._write() as session, session.begin():
            await session.execute(delete(RingGroupRow).where(RingGroupRow.id == group.id))
        return group

    # settings ----------------------------------------------------------------------------------
    async def dial_settings(self, account_id: str) -> DialSettings:
        """The account's time zone and holidays (through the routing cache, as its rules)."""
        key = ("dial_settings", account_id)
        return await self._cache.read(key, partial(self._dial_settings, account_id))

    async def _dial_settings(self, account_id: str) -> DialSettings:
        async with self._read() as session:
            row = await session.get(DialSettingsRow, account_id)
            if row is None:
                return DialSettings(account_id)
            holidays = tuple(date.fromisoformat(d) for d in json.loads(row.holidays))
            return DialSettings(account_id, row.time_zone, holidays)

    async def set_dial_settings(
        self, account_id: str, *, time_zone: str | None = None, holidays: list[str] | None = None
    ) -> DialSettings:
        """Change what is given (None: keep). Holidays are ``YYYY-MM-DD`` dates."""
        if time_zone is not None:
            validate_time_zone(time_zone)
        days: list[str] | None = None
        if holidays is not None:
            if not isinstance(holidays, list) or len(holidays) > _MAX_HOLIDAYS:
                raise ValueError(f"invalid holidays: a list of up to {_MAX_HOLIDAYS} dates")
            days = []
            for i, text in enumerate(holidays):
                try:
                    days.append(date.fromisoformat(str(text)).isoformat())
                except ValueError:
                    raise ValueError(
                        f"invalid holidays[{i}] {text!r}: use a date as YYYY-MM-DD"
                    ) from None
        async with self._write() as session, session.begin():
            row = await session.get(DialSettingsRow, account_id)
            if row is None:
                row = DialSettingsRow(account_id=account_id, time_zone="UTC", holidays="[]")
                session.add(row)
            if time_zone is not None:
                row.time_zone = time_zone
            if days is not None:
                row.holidays = json.dumps(sorted(set(days)))
            row.updated_at = now()
            await bump(session)
        self._cache.clear()
        return await self.dial_settings(account_id)
