"""A user's forwarding rules in the store (issue 16, migration ``0009``).

``followme_rules`` holds one row per user with rules (ring duration, DND, the four outcome
actions); ``followme_steps`` their ordered steps, each a JSON list of targets. Both go with
their user. The model and its checks are :mod:`callbridge.forwarding`: the store only keeps
what :func:`~callbridge.forwarding.parse_forwarding` accepted, and reads back what it wrote.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import partial

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    delete,
    false,
    select,
)
from sqlalchemy.orm import Mapped, mapped_column

from callbridge.forwarding import Forwarding, Step, parse_forwarding
from callbridge.store.errors import UserNotFound
from callbridge.store.readcache import bump
from callbridge.store.repository import Repository, now
from callbridge.store.schema import Base, UserRow, UTCDateTime

__all__ = ["FollowMeRepository", "FollowMeRuleRow", "FollowMeStepRow"]


class FollowMeRuleRow(Base):
    """A user's forwarding settings (no row: no rules)."""

    __tablename__ = "followme_rules"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    ring_seconds: Mapped[int | None] = mapped_column(Integer)
    dnd: Mapped[bool] = mapped_column(Boolean, server_default=false())
    on_busy: Mapped[str] = mapped_column(String(255), server_default="next")
    on_no_answer: Mapped[str] = mapped_column(String(255), server_default="next")
    on_offline: Mapped[str] = mapped_column(String(255), server_default="next")
    on_dnd: Mapped[str] = mapped_column(String(255), server_default="next")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class FollowMeStepRow(Base):
    """One step of a user's rules, at ``position`` (0 first)."""

    __tablename__ = "followme_steps"
    __table_args__ = (UniqueConstraint("user_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    seconds: Mapped[int | None] = mapped_column(Integer)
    targets: Mapped[str] = mapped_column(Text)  # JSON list of Target.as_dict()


class FollowMeRepository(Repository):
    """Reading and replacing a user's forwarding rules."""

    async def get_forwarding(self, user_name: str) -> Forwarding:
        """The user's rules (the default, "no rules", when none are stored);
        ``UserNotFound``. Read through the routing cache (store.readcache): every call to a
        user reads them."""
        key = ("forwarding", user_name)
        return await self._cache.read(key, partial(self._forwarding, user_name))

    async def routing_forwarding(self, user_name: str) -> Forwarding:
        """``get_forwarding`` for routing, of a user it has just found: most users have no
        rules, and the names of those who do (one cached query for all users) answer for them
        without a read of their own (no ``UserNotFound`` for them)."""
        with_rules = await self._cache.read("forwarding users", self._forwarding_users)
        if user_name not in with_rules:
            return Forwarding()
        return await self.get_forwarding(user_name)

    async def _forwarding_users(self) -> frozenset[str]:
        async with self._read() as session:
            names = await session.scalars(
                select(UserRow.name).join(FollowMeRuleRow, FollowMeRuleRow.user_id == UserRow.id)
            )
            return frozenset(names)

    async def _forwarding(self, user_name: str) -> Forwarding:
        async with self._read() as session:
            user_id = await session.scalar(select(UserRow.id).where(UserRow.name == user_name))
            if user_id is None:
                raise UserNotFound(user_name)
            row = await session.get(FollowMeRuleRow, user_id)
            steps = list(
                await session.scalars(
                    select(FollowMeStepRow)
                    .where(FollowMeStepRow.user_id == user_id)
                    .order_by(FollowMeStepRow.position)
                )
            )
        if row is None:
            return Forwarding()
        return Forwarding(
            ring_seconds=row.ring_seconds,
            dnd=row.dnd,
            steps=tuple(_step(s) for s in steps),
            on_busy=row.on_busy,
            on_no_answer=row.on_no_answer,
            on_offline=row.on_offline,
            on_dnd=row.on_dnd,
        )

    async def set_forwarding(self, user_name: str, rules: Forwarding) -> Forwarding:
        """Replace the user's rules with ``rules`` (already checked); ``UserNotFound``."""
        async with self._write.begin() as session:
            user_id = await session.scalar(select(UserRow.id).where(UserRow.name == user_name))
            if user_id is None:
                raise UserNotFound(user_name)
            row = await session.get(FollowMeRuleRow, user_id)
            if row is None:
                row = FollowMeRuleRow(user_id=user_id, updated_at=now())
                session.add(row)
            row.ring_seconds = rules.ring_seconds
            row.dnd = rules.dnd
            row.on_busy = rules.on_busy
            row.on_no_answer = rules.on_no_answer
            row.on_offline = rules.on_offline
            row.on_dnd = rules.on_dnd
            row.updated_at = now()
            await session.execute(delete(FollowMeStepRow).where(FollowMeStepRow.user_id == user_id))
            for position, step in enumerate(rules.steps):
                session.add(
                    FollowMeStepRow(
                        user_id=user_id,
                        position=position,
                        seconds=step.seconds,
                        targets=json.dumps([t.as_dict() for t in step.targets]),
                    )
                )
            await bump(session)
        self._cache.clear()  # the next call to this user follows the new rules
        return rules

    async def clear_forwarding(self, user_name: str) -> None:
        """Remove the user's rules: back to ring-all; ``UserNotFound``."""
        async with self._write.begin() as session:
            user_id = await session.scalar(select(UserRow.id).where(UserRow.name == user_name))
            if user_id is None:
                raise UserNotFound(user_name)
            await session.execute(delete(FollowMeStepRow).where(FollowMeStepRow.user_id == user_id))
            await session.execute(delete(FollowMeRuleRow).where(FollowMeRuleRow.user_id == user_id))
            await bump(session)
        self._cache.clear()

    async def update_forwarding(self, user_name: str, changes: dict[str, object]) -> Forwarding:
        """Apply JSON-shaped ``changes`` over the stored rules (fields left out are kept);
        ValueError naming the bad field, ``UserNotFound``."""
        current = await self.get_forwarding(user_name)
        return await self.set_forwarding(user_name, parse_forwarding(changes, current))


def _step(row: FollowMeStepRow) -> Step:
    # Written by set_forwarding from checked rules: parsed back as the same targets.
    parsed = parse_forwarding({"steps": [{"targets": json.loads(row.targets)}]})
    return Step(parsed.steps[0].targets, row.seconds)
