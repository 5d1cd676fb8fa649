"""What the core asks the store about tenants: who may present a number as caller ID, and
whether an account tells the parties of a call that it is recorded.

The caller-ID rules themselves are the core's (:mod:`callbridge.core.callerid`); the store
only answers, in one short read transaction, who claims a number: the account that owns it
(``numbers``), the user whose number it is (users' numbers are global), and whether a route of
the asking account sends it to one of its applications.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from callbridge.store.records import normalize_number
from callbridge.store.repository import Repository
from callbridge.store.schema import AccountRow, NumberRow, RouteRow, UserRow
from callbridge.store.trunks import TrunkRow

__all__ = ["NumberClaims", "TenancyRepository"]


@dataclass(frozen=True, slots=True)
class NumberClaims:
    """Who claims the E.164 ``number``, as seen from ``account_id``."""

    account_id: str
    number: str
    owner_account: str | None  # the account that owns it (the ``numbers`` table), if any
    user_account: str | None  # the account of the user whose number it is, if any
    routed: bool  # a route of ``account_id`` sends it to one of its applications
    account_owns_numbers: bool  # ``account_id`` owns at least one number
    account_has_trunks: bool = False  # ``account_id`` has a SIP trunk (issue 12)


class TenancyRepository(Repository):
    async def number_claims(self, account_id: str, number: str) -> NumberClaims | None:
        """Who claims ``number`` (any spelling of an E.164 number); ``None`` if it cannot be
        one."""
        e164 = normalize_number(number)
        if e164 is None:
            return None
        async with self._read() as session:
            owner = await session.scalar(
                select(NumberRow.account_id).where(NumberRow.number == e164)
            )
            user_account = await session.scalar(
                select(UserRow.account_id).where(UserRow.number == e164)
            )
            routed = await session.scalar(
                select(RouteRow.application_id).where(
                    RouteRow.account_id == account_id, RouteRow.destination == e164
                )
            )
            any_owned = await session.scalar(
                select(NumberRow.number).where(NumberRow.account_id == account_id).limit(1)
            )
            any_trunk = await session.scalar(
                select(TrunkRow.id).where(TrunkRow.account_id == account_id).limit(1)
            )
        return NumberClaims(
            account_id=account_id,
            number=e164,
            owner_account=owner,
            user_account=user_account,
            routed=routed is not None,
            account_owns_numbers=any_owned is not None,
            account_has_trunks=any_trunk is not None,
        )

    async def owned_numbers(self, account_id: str, limit: int = 5) -> tuple[list[str], int]:
        """The first ``limit`` numbers the account owns (sorted) and how many it owns in all:
        what a refused caller ID is told it may use."""
        async with self._read() as session:
            numbers = list(
                await session.scalars(
                    select(NumberRow.number)
                    .where(NumberRow.account_id == account_id)
                    .order_by(NumberRow.number)
                    .limit(limit)
                )
            )
            total = await session.scalar(
                select(func.count())
                .select_from(NumberRow)
                .where(NumberRow.account_id == account_id)
            )
        return numbers, int(total or 0)

    async def recording_notice(self, account_id: str) -> bool:
        """Whether recording a 1:1 call of the account tells both parties (on unless the
        account turned it off; an unknown account keeps the safe default, on)."""
        async with self._read() as session:
            notice = await session.scalar(
                select(AccountRow.recording_notice).where(AccountRow.id == account_id)
            )
        return notice is not False
