"""Find-me/follow-me: ringing a user by their forwarding rules (issue 16).

:mod:`callbridge.core.routing` asks :meth:`FollowMe.rules_of` once it found the user a call is
for. No rules (the default :class:`~callbridge.forwarding.Forwarding`): the call rings as it
always did (ring-all for ``--ring-timeout``) and this module is not involved. With rules,
:meth:`FollowMe.run` takes the call and runs the steps::

    step 1 ──answered──► bridged (routing._answered)
      │ busy / no answer / offline / dnd
      ▼  the rules' action for that outcome
    next step (the caller gets call.ringing again) │ a destination │ end with a seed reason

Each step is one :class:`StepGroup` (a :class:`~callbridge.core.ringgroup.RingGroup`) ringing
all its targets at once for the step's seconds: the user's own devices (none while DND is on),
another user's devices, outside numbers through a trunk (``controller.trunk_router``). The
caller hears the server's ringback throughout, from the first step on.

Call screening: an outside number with ``screening`` that answers is not connected at once.
It hears a prompt and must press 1 (RFC 4733 or SIP INFO) within :data:`SCREENING_SECONDS`;
then it wins the step as any answer would. Otherwise it is hung up and the step goes on with
its other targets (a voicemail that answered does not take the call).

Each step tried is kept for the call's CDR (:meth:`FollowMe.steps_of`, read by
``callbridge.cdr_details``).

Where else a user is rung: a blind transfer and a dial plan rule go through
``routing.route``/``ring_user`` and so through the rules; a conference invitation honours DND
and ``ring_seconds`` (:meth:`FollowMe.limits`); a ``move`` rings the user's own other devices
on the user's own request, so the rules do not apply to it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from callbridge.core.calls import Call, Caller, CallState, Leg, LegState
from callbridge.core.events import CallRinging, CommandFailed, LegDtmf, LegInitiated
from callbridge.core.ringgroup import RingGroup, RingState
from callbridge.core.tenancy import account_of
from callbridge.core.tollfraud import Placer
from callbridge.errors import ErrorCode, MediaError, ProtocolError
from callbridge.forwarding import OUTCOME_REASONS, Forwarding, Step, Target
from callbridge.media.interface import AudioSpec
from callbridge.vocabulary import EndReason

if TYPE_CHECKING:
    from callbridge.core.controller import CallController
    from callbridge.core.devices import Device

__all__ = ["SCREENING_SECONDS", "FollowMe", "StepGroup", "StepRecord"]

log = logging.getLogger(__name__)

SCREENING_SECONDS = 8.0  # how long an answered outside number has to press 1
SCREENING_PROMPT = "You have a call. Press 1 to accept it."
_KEPT = 2000  # calls whose steps are remembered for their CDR


@dataclass(slots=True)
class StepRecord:
    """One step tried for a call: what rang, how long, how it ended, who answered."""

    step: int  # 1-based; 0 for an outcome action's destination
    targets: list[str]
    seconds: float
    outcome: str = "ringing"  # answered | busy | no_answer | offline | dnd | screened_out
    answered_by: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "targets": list(self.targets),
            "seconds": self.seconds,
            "outcome": self.outcome,
            "answered_by": self.answered_by,
        }


class RulesSource(Protocol):
    async def get_forwarding(self, user_name: str) -> Forwarding: ...


class StepGroup(RingGroup):
    """A ring group whose screened legs (outside numbers with ``screening``) must press 1
    before their answer counts; while one is screening the group is not exhausted."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.screened: set[str] = set()  # leg ids to screen on answer
        self.screening: dict[str, Leg] = {}  # answered, being screened
        self.screened_out = 0
        self.on_screen: Any = None  # async (leg, sdp, req_id) -> None, set by the runner

    async def answer(self, leg: Leg, sdp: str, req_id: str | None) -> None:
        if leg.id in self.screened and self.open and leg in self.legs:
            self.legs.remove(leg)  # no longer ringing; ring_owner stays: its hangup reaches us
            self.screening[leg.id] = leg
            self.screened.discard(leg.id)
            self._scheduler.spawn(self.on_screen(leg, sdp, req_id), f"screening {leg.id}")
            return
        await super().answer(leg, sdp, req_id)

    async def accept_screened(self, leg: Leg) -> bool:
        """The screened leg pressed 1: it answers the group (False: too late)."""
        if self.screening.pop(leg.id, None) is None or not self.open:
            return False
        self.legs.append(leg)
        await super().answer(leg, "", None)
        return True

    async def refuse_screened(self, leg: Leg, reason: EndReason) -> None:
        """The screened leg did not accept (timeout, hung up): it ends; the step goes on."""
        if self.screening.pop(leg.id, None) is None:
            return
        self.screened_out += 1
        leg.ring_owner = None
        await self._ender.end_leg(leg, reason)
        await self._settle(EndReason.NO_ANSWER)

    async def decline(self, leg: Leg, reason: EndReason, req_id: str | None) -> None:
        if leg.id in self.screening:  # the outside number hung up during the prompt
            await self.refuse_screened(leg, EndReason.HANGUP)
            return
        if leg not in self.legs:
            raise ProtocolError(ErrorCode.INVALID_STATE, f"call {leg.id} is no longer ringing")
        self.legs.remove(leg)
        leg.ring_owner = None
        self.busy = self.busy or reason is EndReason.BUSY
        self._last_decline = reason
        await self._ender.end_leg(leg, reason, req_id)
        await self._settle(reason)

    async def _settle(self, reason: EndReason) -> None:
        if not self.legs and not self.screening and self.state is RingState.RINGING:
            self.transition(RingState.EXHAUSTED, cause=f"last target: {reason}")
            self._scheduler.cancel(self)
            await self._on_exhausted(reason)

    async def cancel(self, reason: EndReason) -> None:
        screening, self.screening = list(self.screening.values()), {}
        await super().cancel(reason)
        for leg in screening:
            leg.ring_owner = None
            await self._ender.end_leg(leg, reason)

    async def _timeout(self) -> None:
        if self.state is not RingState.RINGING:
            return
        screening, self.screening = list(self.screening.values()), {}
        for leg in screening:  # still deciding when the step's time is up
            leg.ring_owner = None
            await self._ender.end_leg(leg, EndReason.NO_ANSWER)
        await super()._timeout()


@dataclass(eq=False)
class _Run:
    """One call going through one user's rules."""

    call: Call
    user: Any  # store User
    rules: Forwarding
    records: list[StepRecord] = field(default_factory=list)
    rang: bool = False  # the caller has been told call.ringing (ringback is playing)


class FollowMe:
    """Runs forwarding rules for calls to users (one per controller, ``routing.followme``)."""

    def __init__(self, calls: CallController) -> None:
        self.calls = calls
        self._steps: OrderedDict[str, list[StepRecord]] = OrderedDict()

    async def rules_of(self, user_name: str) -> Forwarding | None:
        """The user's rules, or None when they have none (ring as before issue 16)."""
        directory = self.calls.directory
        # The store's cached read for routing (store.readcache), else the plain one.
        source = getattr(directory, "routing_forwarding", None) or getattr(
            directory, "get_forwarding", None
        )
        if source is None:
            return None
        try:
            rules: Forwarding = await source(user_name)
        except Exception:  # a store hiccup must not lose the call: ring as without rules
            log.exception("could not read the forwarding rules of %s", user_name)
            return None
        return None if rules == Forwarding() else rules

    async def limits(self, user_name: str) -> tuple[bool, float]:
        """For ringing a user's own devices outside a call to them (a conference invitation,
        an application's dial): whether they are on DND, and how long to ring."""
        rules = await self.rules_of(user_name)
        if rules is None:
            return False, self.calls.ring_timeout
        return rules.dnd, float(rules.ring_seconds or self.calls.ring_timeout)

    def steps_of(self, call_id: str) -> list[dict[str, Any]]:
        """The steps tried for call ``call_id`` (for its CDR), oldest first."""
        return [r.as_dict() for r in self._steps.get(call_id, [])]

    async def run(self, call: Call, user: Any, rules: Forwarding) -> None:
        """Take ``call`` (to ``user``, who has ``rules``) through the steps."""
        run = _Run(call, user, rules)
        self._steps[call.id] = run.records
        while len(self._steps) > _KEPT:
            self._steps.popitem(last=False)
        await self._step(run, 0)

    # steps -------------------------------------------------------------------------------------
    def _seconds(self, run: _Run, step: Step) -> float:
        return float(step.seconds or run.rules.ring_seconds or self.calls.ring_timeout)

    async def _step(self, run: _Run, index: int) -> None:
        steps = run.rules.effective_steps()
        if index >= len(steps):
            return
        step = steps[index]
        await self._ring(run, index + 1, step, index)

    async def _ring(self, run: _Run, number: int, step: Step, index: int) -> None:
        """Ring ``step``'s targets at once; its outcome goes to :meth:`_outcome`."""
        c = self.calls
        call = run.call
        origin = call.origin
        seconds = self._seconds(run, step)
        record = StepRecord(number, [t.describe() for t in step.targets], seconds)
        run.records.append(record)
        devices: list[Device] = []
        numbers: list[Target] = []
        dnd_only = True
        for target in step.targets:
            if target.type == "devices":
                if run.rules.dnd:
                    continue
                dnd_only = False
                devices += await c.ringable_devices(run.user.name, but=origin.device)
            elif target.type == "user":
                dnd_only = False
                devices += await self._user_devices(call, target.value or "")
            elif target.type == "number":
                dnd_only = False
                numbers.append(target)
            else:
                await self._take(run, record, target)
                return
            if not origin.live:
                return
        if not origin.live or call.ended:
            return
        if run.rules.dnd and dnd_only:
            await self._outcome(run, record, index, "dnd")
            return
        unique = list({d.id: d for d in devices}.values())
        step_group = StepGroup(
            c,
            c.scheduler,
            on_answer=partial(self._answered, run, record),
            on_exhausted=partial(self._exhausted, run, record, index),
            what=f"follow-me step {number}",
        )
        step_group.state_observer = c.observer
        step_group.on_screen = partial(self._screen, run, step_group)
        call.ring = step_group  # before any await: a hangup meanwhile cancels it
        info = await c.endpoint_info(origin)
        prefer = info.codec if info else None
        caller = Caller(call.caller_id, call.caller_name, call.destination, call.media_type)
        for leg in await c.ring_devices(step_group, unique, caller, prefer, call=call):
            c.bus.publish(LegInitiated(leg=leg.facts()))
        for target in numbers:
            if not step_group.open:
                break
            await self._ring_number(run, step_group, target, caller)
        if call.ended or not await step_group.start(seconds):
            return
        if step_group.state is not RingState.RINGING:
            return  # answered while the others were being rung
        await self._ringing(run)

    async def _ringing(self, run: _Run) -> None:
        """The caller hears ringback (from the first step on) and gets ``call.ringing``."""
        c = self.calls
        call, origin = run.call, run.call.origin
        if call.state is CallState.ROUTING:
            call.transition(CallState.RINGING)
            origin.transition(LegState.RINGING)
        if not run.rang:
            if not await c.on_live(c.media.play(origin.id, "ringback"), origin):
                return
            run.rang = True
        ring = call.ring
        if ring is not None and ring.state is RingState.RINGING and origin.live:
            origin.device.deliver(CallRinging(call_id=origin.id))

    async def _user_devices(self, call: Call, name: str) -> list[Device]:
        """Another user's devices (of the caller's account); none while that user is DND."""
        return await self.devices_of(name, account_of(call.origin.device), call.origin.device)

    async def devices_of(self, name: str, account: str, but: Device | None = None) -> list[Device]:
        """The devices a ``user:NAME`` target rings (a user of ``account``): none while that
        user is on DND or has none."""
        c = self.calls
        other = await c.directory.find_user(name, account)
        if other is None:
            log.info("follow-me: no user %r to ring", name)
            return []
        rules = await self.rules_of(other.name)
        if rules is not None and rules.dnd:
            return []
        return await c.ringable_devices(other.name, but=but)

    async def _ring_number(
        self, run: _Run, group: StepGroup, target: Target, caller: Caller
    ) -> None:
        """Ring an outside number through the account's trunks (``controller.trunk_router``)."""
        c = self.calls
        trunks = c.trunk_router
        plan = getattr(trunks, "plan", None)
        ring = getattr(trunks, "ring", None)
        if plan is None or ring is None or target.value is None:
            log.info("follow-me: no trunks to reach %s", target.value)
            return
        account = account_of(run.call.origin.device)
        # The forwarding user places the outside call: the toll-fraud policy counts it against
        # that user's limits (as if they had dialled the number), not an application's.
        placer = Placer("user", run.user.name, account, source=f"forwarding {run.call.id}")
        try:
            planned = await plan(target.value, None, account, placer=placer)
        except ProtocolError as exc:
            log.info("follow-me: %s unreachable: %s", target.value, exc.message)
            return
        if planned is None:
            log.info("follow-me: %s is no trunk destination", target.value)
            return
        leg = await ring(group, planned, caller, run.call.id, account)
        if leg is None:
            return
        if target.screening:
            group.screened.add(leg.id)  # joins the call only once it pressed 1
        else:
            leg.call = run.call
        c.bus.publish(LegInitiated(leg=leg.facts()))

    # outcomes ----------------------------------------------------------------------------------
    async def _answered(
        self, run: _Run, record: StepRecord, leg: Leg, sdp: str, req_id: str | None
    ) -> None:
        record.outcome = "answered"
        record.answered_by = leg.device.user_name
        leg.call = run.call
        await self.calls.routing._answered(run.call, leg, sdp, req_id)

    async def _exhausted(
        self, run: _Run, record: StepRecord, index: int, reason: EndReason
    ) -> None:
        ring = run.call.ring
        if ring is not None and ring.busy:
            outcome = "busy"
        elif reason is EndReason.FAILED:
            outcome = "offline"  # nothing could be rung
        else:
            outcome = "no_answer"
        await self._outcome(run, record, index, outcome)

    async def _outcome(self, run: _Run, record: StepRecord, index: int, outcome: str) -> None:
        """What the rules say after a step ended ``outcome``."""
        record.outcome = outcome
        call = run.call
        if call.ended:
            return
        action = run.rules.action(outcome) if index >= 0 else "end"
        steps = run.rules.effective_steps()
        if action == "next" and 0 <= index < len(steps) - 1:
            await self._step(run, index + 1)
            return
        if action.startswith("end") or action == "next":
            _, _, named = action.partition(":")
            reason = EndReason(named or OUTCOME_REASONS[outcome])
            if reason is EndReason.FAILED:
                why = f"{call.destination!r} ({run.user.name}) has no device to ring"
                error = ProtocolError(ErrorCode.DESTINATION_NOT_FOUND, why)
                call.origin.device.deliver(CommandFailed(error=error, call_id=call.origin.id))
            await self.calls.end_call(call, reason, reason)
            return
        kind, _, value = action.partition(":")
        final = Step((Target(kind, value),))  # type: ignore[arg-type]
        await self._ring(run, 0, final, -1)

    async def _take(self, run: _Run, record: StepRecord, target: Target) -> None:
        """A queue, application or conference target: the call goes there (no way back)."""
        record.outcome = "answered"
        record.answered_by = target.describe()
        call = run.call
        c = self.calls
        router = c.router
        dialer = getattr(router, "dialer", router)
        park = getattr(dialer, "park", None)
        if park is None:
            await self._outcome(run, record, -1, "offline")
            return
        try:
            await _take_with(c, dialer, call, target)
        except (ProtocolError, MediaError) as exc:
            log.info("follow-me: %s refused the call: %s", target.describe(), exc)
            if not call.ended:
                await c.end_call(call, EndReason.FAILED, EndReason.FAILED)

    # screening ---------------------------------------------------------------------------------
    async def _screen(self, run: _Run, group: StepGroup, leg: Leg, sdp: str, _: Any) -> None:
        """An outside number answered: it hears the prompt and must press 1 in time."""
        c = self.calls
        if not await c.accept_answer(leg, sdp, None):
            await group.refuse_screened(leg, EndReason.FAILED)
            return
        if hasattr(leg.device, "answer_applied"):
            leg.device.answer_applied = True  # routing._answered must not apply it again
        pressed = asyncio.get_running_loop().create_future()

        def on_dtmf(event: LegDtmf) -> None:
            if event.leg.call_control_id == leg.id and event.digit == "1" and not pressed.done():
                pressed.set_result(True)

        unsubscribe = c.bus.subscribe(LegDtmf, on_dtmf)
        playback = f"screen-{secrets.token_hex(4)}"
        spec = AudioSpec("tts", SCREENING_PROMPT, loops=0)
        try:
            try:
                await c.media.play_to(leg.id, playback, spec)
            except MediaError as exc:  # no prompt (no TTS): the digit still decides
                log.info("follow-me: screening prompt for %s: %s", leg.id, exc)
            try:
                await asyncio.wait_for(pressed, SCREENING_SECONDS)
                accepted = True
            except TimeoutError:
                accepted = False
        finally:
            unsubscribe()
            try:
                await c.media.stop_playback(playback)
            except MediaError:
                pass
        if accepted and leg.live and await group.accept_screened(leg):
            return
        await group.refuse_screened(leg, EndReason.NO_ANSWER)


async def _take_with(c: CallController, dialer: Any, call: Call, target: Target) -> None:
    """Hand the call to an application (parked for it), a queue or a conference, as a trunk's
    inbound call to a number with that target is (sip/trunk_targets.py)."""
    value = target.value or ""
    application = None
    if target.type == "application":
        application = await dialer.apps.directory.get_application(value)
        if application is None or not application.active:
            raise ProtocolError(ErrorCode.DESTINATION_NOT_FOUND, f"no active application {value}")
    parked = await dialer.park(call, application, call.destination)
    if parked is None or application is not None:
        return
    leg = parked.leg
    account = account_of(leg.device)
    await dialer.answer_parked(parked, leg)
    if parked.ended or not leg.live:
        return
    apps = dialer.apps
    if target.type == "queue":
        await apps.queues.enqueue(parked, value, account_id=account)
        return
    conferences = apps.conferences
    for record in list(conferences.records.values()):
        if (
            (record.name, record.account_id) == (value, account)
            and record.id
            and not record.ended_at
        ):
            try:
                await conferences.join(record.id, parked)
                return
            except ProtocolError:
                continue
    await conferences.create(parked, value, account_id=account)
