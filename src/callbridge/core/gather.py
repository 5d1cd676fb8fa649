"""``gather``: collect the DTMF digits a call's device sends, for its application.

A gather ends when the terminating digit comes (``valid`` or ``invalid`` by the digits so
far), when ``maximum`` digits came, when no digit came in time (the first within
``initial_timeout``, each next within ``inter_digit_timeout``; ``timeout`` unless enough
digits came), when the whole ``timeout`` is over, when a new gather replaces it or the
application stops it (``cancelled``), or when the call ends (``call_hangup``). It reports
``call.gather.ended`` once, with the digits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from typing import TYPE_CHECKING, ClassVar

from callbridge.core.app_events import AppGatherEnded, GatherStatus
from callbridge.core.app_model import AppCall
from callbridge.core.calls import new_id
from callbridge.errors import ErrorCode, ProtocolError
from callbridge.statemachine import StateMachine

if TYPE_CHECKING:
    from callbridge.core.appcalls import AppCalls

__all__ = ["Gather", "GatherState", "Gathers"]


class GatherState(StrEnum):
    """State of a gather.

    ::

        collecting ──terminating digit / enough digits / timeout / cancel / hangup──► ended
    """

    COLLECTING = "collecting"  # digits are being collected
    ENDED = "ended"  # ``call.gather.ended`` was published


@dataclass(eq=False)
class Gather(StateMachine[GatherState]):
    """One gather on one call: its rules and the digits so far."""

    TRANSITIONS: ClassVar[dict[GatherState, frozenset[GatherState]]] = {
        GatherState.COLLECTING: frozenset({GatherState.ENDED}),
        GatherState.ENDED: frozenset(),
    }

    call: AppCall
    minimum: int
    maximum: int
    terminating: str
    valid: str
    timeout: float  # whole gather, seconds
    initial_timeout: float  # for the first digit
    inter_digit_timeout: float
    gather_id: str | None = None  # the application's id for it, echoed in the event
    digits: str = ""
    state: GatherState = GatherState.COLLECTING
    id: str = field(default_factory=new_id)

    @property
    def kind(self) -> str:
        return "gather"

    @property
    def status(self) -> GatherStatus:
        """``valid`` if the digits so far meet the rules, else ``invalid``."""
        digits = self.digits
        ok = self.minimum <= len(digits) <= self.maximum and all(d in self.valid for d in digits)
        return "valid" if ok else "invalid"


class Gathers:
    """Gathers of application calls (one per :class:`AppCalls`)."""

    def __init__(self, apps: AppCalls) -> None:
        self.apps = apps

    def start(self, gather: Gather) -> None:
        """Collect digits; ``call.gather.ended`` reports them. A new gather replaces one that
        is running (which ends ``cancelled``)."""
        call = gather.call
        self.apps.answered_leg(call, "gather")
        if call.gather is not None:
            self._over(call.gather, "cancelled")
        gather.state_observer = self.apps.controller.observer
        call.gather = gather
        scheduler = self.apps.scheduler
        timeout = partial(self._timeout, gather)
        scheduler.later(gather.initial_timeout, (gather, "digit"), timeout, "gather: no digit")
        scheduler.later(gather.timeout, (gather, "total"), timeout, "gather: timeout")

    def stop(self, call: AppCall) -> None:
        self.apps.live(call)
        if call.gather is None:
            raise ProtocolError(ErrorCode.INVALID_STATE, f"call {call.id} is not gathering")
        self._over(call.gather, "cancelled")

    def digit(self, call: AppCall, digit: str) -> None:
        """The call's device sent ``digit``."""
        gather = call.gather
        if gather is None or gather.state is not GatherState.COLLECTING:
            return
        if digit == gather.terminating:
            self._over(gather, gather.status)
            return
        gather.digits += digit
        if len(gather.digits) >= gather.maximum:
            self._over(gather, gather.status)
            return
        self.apps.scheduler.later(
            gather.inter_digit_timeout,
            (gather, "digit"),
            partial(self._timeout, gather),
            "gather: no next digit",
        )

    def call_ended(self, call: AppCall) -> None:
        if call.gather is not None:
            self._over(call.gather, "call_hangup")

    def _timeout(self, gather: Gather) -> None:
        if gather.state is not GatherState.COLLECTING:
            return
        enough = gather.digits and len(gather.digits) >= gather.minimum
        self._over(gather, gather.status if enough else "timeout")

    def _over(self, gather: Gather, status: GatherStatus) -> None:
        if gather.state is not GatherState.COLLECTING:
            return
        gather.transition(GatherState.ENDED, cause=status)
        scheduler = self.apps.scheduler
        scheduler.cancel((gather, "digit"))
        scheduler.cancel((gather, "total"))
        call = gather.call
        if call.gather is gather:
            call.gather = None
        self.apps.publish(
            AppGatherEnded(
                call=self.apps.facts(call),
                digits=gather.digits,
                status=status,
                gather_id=gather.gather_id,
            )
        )
