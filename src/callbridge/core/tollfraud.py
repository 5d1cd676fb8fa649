"""Toll-fraud safety (issue 12): who may place a call through a SIP trunk, to where, how often.

Asked by the SIP side before every attempt on a trunk (failover asks again for the next trunk):

- **who**: a :class:`Placer` of the trunk's account that is an authenticated user, an
  application (authorised: its account's API key placed the call), or a call that arrived on a
  number whose route sets ``allow_outbound``. Anything else (another account, an
  unauthenticated source, an inbound call on a number that does not allow it) is refused
  ``trunk_not_allowed``;
- **where**: the account's :class:`~callbridge.trunks.DialPolicy`: a destination starting with
  a denied prefix (by default the NANP premium-rate ranges +1900 and +1976) or, when the account
  has an allow-list, one matching none of it, is refused ``destination_blocked``;
- **how much**: per placer (users and inbound numbers; applications are bounded by the trunk's
  limits only) at most ``user_max_calls`` concurrent trunk calls and ``user_calls_per_minute``
  new ones in any 60 s; per trunk its ``max_calls`` and ``calls_per_minute``. Refused
  ``too_many_calls`` / ``call_rate_exceeded``. A call that fails over counts once for its
  placer's rate (its ``call_id``), once per attempt for each trunk's.

Every refusal is logged at WARNING on ``callbridge.tollfraud`` in one line that starts
``toll-fraud refused`` and names the code, the placer, its source, the account, the trunk and
the destination (``grep 'toll-fraud refused'``).

**Caller ID on a trunk** (:func:`trunk_caller_id`): a call that reaches a trunk presents an
E.164 number its account owns (``numbers``) or the calling user's own number; an application
may also present the number of one of its account's users. The lenient rule of local calls (an
account that owns no numbers may present any unclaimed E.164 number, ``core.callerid``) does not
apply: the carrier would pass it on to the public network. Refused ``caller_id_not_allowed``
naming the numbers the account owns.

Use: ``await guard.admit(placer, destination, trunk, call_id)`` (check and count in one step,
nothing awaited in between) and ``guard.ended(call_id)`` when the attempt ends, whatever way
it ends. ``check`` alone answers without counting; :func:`evaluate` is the pure rule.
"""

from __future__ import annotations

import logging
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from callbridge.core.callerid import CallerIdNotAllowed, ClaimsDirectory
from callbridge.errors import ErrorCode, ProtocolError
from callbridge.trunks import DialPolicy, Trunk

__all__ = [
    "Placer",
    "PolicySource",
    "TollFraudGuard",
    "TollFraudRefused",
    "evaluate",
    "matches_prefix",
    "trunk_caller_id",
]

log = logging.getLogger("callbridge.tollfraud")
WINDOW = 60.0  # seconds: "calls per minute" is a sliding window

PlacerKind = Literal["user", "application", "inbound"]


@dataclass(frozen=True, slots=True)
class Placer:
    """Who places a call that would go through a trunk.

    ``kind``/``id``: ``user`` and the user name; ``application`` and its id; ``inbound`` and
    the number the call arrived on. ``authenticated``: the user logged in (token, SIP digest),
    the application's call came with its account's API key (not used for ``inbound``).
    ``allow_outbound``: for ``inbound``, the number's route allows sending calls on
    (``NumberRoute.allow_outbound``); nothing else lets an inbound call reach a trunk.
    ``source`` says where the request came from, for the log ("ws 127.0.0.1:50312",
    "sip udp 192.0.2.1:5060", "rest key KEY…abcd").
    """

    kind: PlacerKind
    id: str
    account_id: str
    source: str = ""
    authenticated: bool = True
    allow_outbound: bool = False

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.account_id}:{self.id}"

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"


class TollFraudRefused(ProtocolError):
    """A call may not go through the trunk; ``code`` says why, the message how to fix it."""

    def __init__(self, code: ErrorCode, message: str, retry_after: int | None = None) -> None:
        super().__init__(code, message)
        self.retry_after = retry_after


class PolicySource(Protocol):
    async def dial_policy(self, account_id: str) -> DialPolicy: ...


async def trunk_caller_id(
    claims: ClaimsDirectory,
    placer: Placer,
    presented: str,
    *,
    user_number: str | None = None,
    field: str = "caller_id",
) -> str:
    """The E.164 caller ID a trunk call of ``placer`` presents, when allowed (see the module
    docstring); ``user_number``: the calling user's own number. ``field`` names the request's
    field in the error (``caller_id`` on ``/ws``, ``from`` in REST).

    :raises CallerIdNotAllowed:
    """
    e164 = _e164(presented)
    if e164 is not None:
        if user_number is not None and e164 == _e164(user_number):
            return e164
        found = await claims.number_claims(placer.account_id, e164)
        if found is not None and found.owner_account == placer.account_id:
            return e164
        if (
            found is not None
            and placer.kind == "application"
            and found.user_account == placer.account_id
        ):
            return e164
    numbers, total = await claims.owned_numbers(placer.account_id, 5)
    owned = ", ".join(numbers) + (f" and {total - len(numbers)} more" if total > 5 else "")
    own = f" or your number {user_number}" if user_number else ""
    hint = (
        f"a number the account owns ({owned}){own}"
        if numbers
        else f"a number the account owns{own} (it owns none: add one with "
        "'callbridge numbers add +E164')"
    )
    shown = presented if len(presented) <= 40 else presented[:40] + "…"
    raise CallerIdNotAllowed(
        field,
        f"{field} {shown!r} may not be presented on a call through a trunk: present {hint}",
    )


def _e164(text: str) -> str | None:
    compact = re.sub(r"[ \-.()]", "", text.strip())
    return compact if re.fullmatch(r"\+[1-9][0-9]{7,14}", compact) else None


def matches_prefix(destination: str, prefixes: tuple[str, ...]) -> str | None:
    """The longest of ``prefixes`` the destination starts with, if any."""
    found = [p for p in prefixes if destination.startswith(p)]
    return max(found, key=len) if found else None


def evaluate(policy: DialPolicy, placer: Placer, destination: str, trunk: Trunk) -> None:
    """The who and where rules (no counting). :raises TollFraudRefused:"""
    if placer.account_id != trunk.account_id:
        raise TollFraudRefused(
            ErrorCode.TRUNK_NOT_ALLOWED,
            f"trunk {trunk.name!r} belongs to another account: a call of account "
            f"{placer.account_id!r} may only use that account's trunks",
        )
    # An inbound call's allowance is its number's route (the carrier is no user of ours:
    # ``authenticated`` does not apply to it); anyone else must have authenticated.
    if placer.kind != "inbound" and not placer.authenticated:
        raise TollFraudRefused(
            ErrorCode.TRUNK_NOT_ALLOWED,
            f"{placer} is not authenticated: only a logged-in user or an application's "
            "API-key request may place a call through a trunk",
        )
    if placer.kind == "inbound" and not placer.allow_outbound:
        raise TollFraudRefused(
            ErrorCode.TRUNK_NOT_ALLOWED,
            f"a call that arrived on {placer.id} may not be sent on through a trunk: allow it "
            f"with 'callbridge numbers add {placer.id} … --allow-outbound' if that is wanted",
        )
    denied = matches_prefix(destination, policy.deny_prefixes)
    if denied is not None:
        raise TollFraudRefused(
            ErrorCode.DESTINATION_BLOCKED,
            f"{destination} is blocked: the account denies calls to {denied}… (change it with "
            "'callbridge outbound policy --deny …')",
        )
    if (
        policy.allow_prefixes is not None
        and matches_prefix(destination, policy.allow_prefixes) is None
    ):
        allowed = ", ".join(policy.allow_prefixes) or "nothing"
        raise TollFraudRefused(
            ErrorCode.DESTINATION_BLOCKED,
            f"{destination} is not on the account's allow-list ({allowed}): add its prefix "
            "with 'callbridge outbound policy --allow …'",
        )


class _Window:
    """Call starts in the last :data:`WINDOW` seconds, one per distinct call id."""

    def __init__(self) -> None:
        self.starts: deque[tuple[float, str]] = deque()

    def prune(self, at: float) -> None:
        while self.starts and self.starts[0][0] <= at - WINDOW:
            self.starts.popleft()

    def count(self, at: float) -> int:
        self.prune(at)
        return len(self.starts)

    def retry_after(self, at: float) -> int:
        return max(1, int(self.starts[0][0] + WINDOW - at + 0.999)) if self.starts else 1

    def add(self, at: float, call_id: str) -> None:
        if not any(cid == call_id for _, cid in self.starts):
            self.starts.append((at, call_id))


class TollFraudGuard:
    """Toll-fraud rules and the counters behind them (one per server; see the module docs)."""

    def __init__(
        self,
        policies: PolicySource | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._policies = policies
        self._clock = clock
        self._active_by_key: dict[str, set[str]] = {}  # placer key or "trunk:id" -> call ids
        self._windows: dict[str, _Window] = {}
        self._calls: dict[str, tuple[str, str]] = {}  # call id -> (placer key, trunk key)

    async def policy(self, account_id: str) -> DialPolicy:
        if self._policies is None:
            return DialPolicy(account_id)
        return await self._policies.dial_policy(account_id)

    async def check(self, placer: Placer, destination: str, trunk: Trunk) -> None:
        """Whether ``placer`` may call ``destination`` through ``trunk`` now (counts nothing).

        :raises TollFraudRefused: with the code and a message saying how to fix it (logged).
        """
        policy = await self.policy(placer.account_id)
        self._check(policy, placer, destination, trunk, call_id=None)

    async def admit(self, placer: Placer, destination: str, trunk: Trunk, call_id: str) -> None:
        """:meth:`check`, then :meth:`started` (atomically: nothing is awaited between)."""
        policy = await self.policy(placer.account_id)
        self._check(policy, placer, destination, trunk, call_id=call_id)
        self.started(placer, trunk, call_id)

    def started(self, placer: Placer, trunk: Trunk, call_id: str) -> None:
        """Count an attempt on ``trunk`` (replacing the call's previous attempt, if any)."""
        self.ended(call_id)
        at = self._clock()
        placer_key, trunk_key = placer.key, f"trunk:{trunk.id}"
        self._calls[call_id] = (placer_key, trunk_key)
        for key in (placer_key, trunk_key):
            self._active_by_key.setdefault(key, set()).add(call_id)
        # The placer's rate counts a call once; the trunk's counts each attempt on it.
        self._windows.setdefault(placer_key, _Window()).add(at, call_id)
        self._windows.setdefault(trunk_key, _Window()).add(at, f"{call_id}@{trunk.id}")

    def ended(self, call_id: str) -> None:
        """The attempt ``call_id`` is over (unknown ids are ignored: ending is idempotent)."""
        keys = self._calls.pop(call_id, None)
        if keys is None:
            return
        for key in keys:
            active = self._active_by_key.get(key)
            if active is not None:
                active.discard(call_id)
                if not active:
                    del self._active_by_key[key]

    def active(self, *, placer: Placer | None = None, trunk: Trunk | None = None) -> int:
        """Calls up now for the placer or the trunk."""
        key = placer.key if placer is not None else f"trunk:{trunk.id}" if trunk else ""
        return len(self._active_by_key.get(key, ()))

    def _check(
        self,
        policy: DialPolicy,
        placer: Placer,
        destination: str,
        trunk: Trunk,
        call_id: str | None,
    ) -> None:
        try:
            evaluate(policy, placer, destination, trunk)
            self._limits(policy, placer, trunk, call_id)
        except TollFraudRefused as refused:
            log.warning(
                "toll-fraud refused code=%s placer=%s account=%s source=%r trunk=%s "
                "destination=%s: %s",
                refused.code,
                placer,
                placer.account_id,
                placer.source,
                trunk.name,
                destination,
                refused,
            )
            raise

    def _limits(
        self, policy: DialPolicy, placer: Placer, trunk: Trunk, call_id: str | None
    ) -> None:
        at = self._clock()
        limits: list[tuple[str, str, int | None, int | None, str]] = [
            (
                f"trunk:{trunk.id}",
                f"trunk {trunk.name!r}",
                trunk.max_calls,
                trunk.calls_per_minute,
                "the trunk's max_calls / calls_per_minute",
            ),
        ]
        if placer.kind != "application":
            limits.insert(
                0,
                (
                    placer.key,
                    str(placer),
                    policy.user_max_calls,
                    policy.user_calls_per_minute,
                    "the account's user_max_calls / user_calls_per_minute",
                ),
            )
        for key, who, max_calls, per_minute, setting in limits:
            active = self._active_by_key.get(key, set()) - ({call_id} if call_id else set())
            if max_calls is not None and len(active) >= max_calls:
                raise TollFraudRefused(
                    ErrorCode.TOO_MANY_CALLS,
                    f"{who} has {len(active)} trunk calls up, its limit: hang one up or raise "
                    f"{setting}",
                )
            window = self._windows.get(key)
            if per_minute is None or window is None:
                continue
            repeat = (
                call_id is not None
                and key == placer.key
                and any(cid == call_id for _, cid in window.starts)
            )
            if not repeat and window.count(at) >= per_minute:
                wait = window.retry_after(at)
                raise TollFraudRefused(
                    ErrorCode.CALL_RATE_EXCEEDED,
                    f"{who} placed {per_minute} trunk calls in the last minute, its limit: "
                    f"retry in {wait} s or raise {setting}",
                    retry_after=wait,
                )
