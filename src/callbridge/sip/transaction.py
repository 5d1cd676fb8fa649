"""SIP transactions (RFC 3261 §17, with the INVITE fixes of RFC 6026).

Four machines, each drawn in its state enum: the client INVITE and non-INVITE transactions
(:class:`ClientInvite`, :class:`ClientNonInvite`) and the server ones (:class:`ServerInvite`,
:class:`ServerNonInvite`). :class:`TransactionLayer` holds the live ones, matches messages to
them (§17.1.3, §17.2.3 with the RFC 2543 fallback; CANCEL by §9.2) and owns their timers.

Timers (§17 and Table 4 of RFC 3261; T1, T2 and T4 come from :class:`Timers`, small in tests):

    A  INVITE request retransmit (UDP)     T1, doubling             client INVITE, Calling
    B  INVITE transaction timeout           64*T1, Calling only      client INVITE
    D  wait for response retransmits        32 s UDP, 0 stream       client INVITE, Completed
    E  non-INVITE request retransmit (UDP)  T1, doubling up to T2    client non-INVITE
    F  non-INVITE transaction timeout       64*T1                    client non-INVITE
    G  INVITE final response retransmit     T1, doubling up to T2    server INVITE, Completed
    H  wait for ACK                         64*T1                    server INVITE, Completed
    I  wait for ACK retransmits             T4 UDP, 0 stream         server INVITE, Confirmed
    J  wait for non-INVITE retransmits      64*T1 UDP, 0 stream      server non-INVITE
    K  wait for response retransmits        T4 UDP, 0 stream         client non-INVITE
    L  wait for INVITE retransmits (6026)   64*T1                    server INVITE, Accepted
    M  wait for 2xx retransmits (6026)      64*T1                    client INVITE, Accepted

Timer B runs only in Calling: once a provisional response arrives, the INVITE waits for as
long as the far end rings. The ring timeout is the TU's (an application timer that sends
CANCEL); an INVITE that rings for minutes is normal.

Retransmissions run over UDP only (§17.1.1.2, §17.1.2.2, §17.2.1): a reliable transport
delivers or fails. A 2xx to an INVITE is not retransmitted here: RFC 6026 moves both
transactions to Accepted, and the 2xx and its ACK are the dialog's (``dialog.py``, §13.3.1.4).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar

from callbridge.sip import wire
from callbridge.sip.message import Request, Response
from callbridge.sip.transport import Flow
from callbridge.statemachine import StateMachine

__all__ = [
    "ClientInvite",
    "ClientNonInvite",
    "ClientTransaction",
    "ServerInvite",
    "ServerNonInvite",
    "ServerTransaction",
    "Timers",
    "TransactionLayer",
    "TxState",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Timers:
    """The base timers of §17.1.1.1, in seconds (RFC 3261's defaults)."""

    t1: float = 0.5  # round-trip estimate
    t2: float = 4.0  # longest retransmit interval of non-INVITE requests and INVITE responses
    t4: float = 5.0  # longest time a message stays in the network

    @property
    def b(self) -> float:  # also F, H, J, L, M
        return 64 * self.t1

    @property
    def d(self) -> float:  # "at least 32 s" (§17.1.1.2); scaled with T1 so tests stay fast
        return max(32.0 * self.t1 / 0.5, self.b) if self.t1 < 0.5 else 32.0


class TxState(Enum):
    """The states of all four machines (each uses a subset, see its TRANSITIONS)::

    client INVITE        Calling -> Proceeding -> Completed -> Terminated
                             \\___________\\______> Accepted --> Terminated   (2xx, RFC 6026)
    client non-INVITE    Trying -> Proceeding -> Completed -> Terminated
    server INVITE        Proceeding -> Completed -> Confirmed -> Terminated
                              \\______> Accepted -> Terminated               (2xx, RFC 6026)
    server non-INVITE    Trying -> Proceeding -> Completed -> Terminated
    """

    CALLING = "calling"  # client INVITE sent, no response yet (timers A, B)
    TRYING = "trying"  # non-INVITE request sent or received, no response yet
    PROCEEDING = "proceeding"  # a provisional response was sent or received
    COMPLETED = "completed"  # a 300-699 final (INVITE) or any final (non-INVITE)
    CONFIRMED = "confirmed"  # server INVITE: the ACK for its 300-699 arrived (timer I)
    ACCEPTED = "accepted"  # INVITE with a 2xx: retransmits absorbed, the dialog ACKs (6026)
    TERMINATED = "terminated"  # gone from the layer


_T = TxState
Key = tuple[str, ...]


class _Transaction(StateMachine[TxState]):
    """What the four machines share: the request, the flow, the layer and the timers."""

    TRANSITIONS: ClassVar[dict[TxState, frozenset[TxState]]]

    def __init__(self, layer: TransactionLayer, request: Request, flow: Flow, key: Key) -> None:
        self.layer = layer
        self.request = request
        self.flow = flow
        self.key = key
        self.id = f"{request.method} {key[0]}"
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self.done = asyncio.get_running_loop().create_future()  # set once Terminated

    @property
    def timers(self) -> Timers:
        return self.layer.timers

    def _start(self, name: str, delay: float, fire: Callable[[], None]) -> None:
        self._stop(name)
        self._timers[name] = asyncio.get_running_loop().call_later(delay, self._fire, name, fire)

    def _fire(self, name: str, fire: Callable[[], None]) -> None:
        self._timers.pop(name, None)
        if self.state is not _T.TERMINATED:
            fire()

    def _stop(self, *names: str) -> None:
        for name in names:
            handle = self._timers.pop(name, None)
            if handle is not None:
                handle.cancel()

    def _send(self, data: bytes) -> None:
        self.flow.send(data)

    def _wait(self, name: str, state: TxState, delay: float) -> None:
        """Go to ``state`` and end after ``delay`` (0 on a reliable transport: at once)."""
        self.transition(state)
        if delay <= 0:
            self.terminate()
        else:
            self._start(name, delay, self.terminate)

    def terminate(self, cause: str = "") -> None:
        if self.state is _T.TERMINATED:
            return
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        self.transition(_T.TERMINATED, cause=cause)
        self.layer.forget(self)
        if not self.done.done():
            self.done.set_result(None)


# client transactions ---------------------------------------------------------------------------
ResponseHandler = Callable[[Response], None]
FailureHandler = Callable[[int, str], None]  # status to act as if received (408, 503), why


class ClientTransaction(_Transaction):
    """Sends ``request`` over ``flow``; every response it passes up goes to ``on_response``,
    a timeout or transport failure to ``on_failure`` (§8.1.3.1: act as if 408 / 503 came)."""

    def __init__(
        self,
        layer: TransactionLayer,
        request: Request,
        flow: Flow,
        on_response: ResponseHandler,
        on_failure: FailureHandler,
    ) -> None:
        super().__init__(layer, request, flow, client_key(request.branch or "", request.method))
        self.on_response = on_response
        self.on_failure = on_failure
        self._data = request.to_bytes()
        self.final: Response | None = None

    def start(self) -> None:
        self.layer.add(self)
        self._send_request()

    def _send_request(self) -> None:
        try:
            self._send(self._data)
        except OSError as exc:  # §17.1.4: a transport error ends the transaction (503)
            self._fail(503, f"transport error: {exc}")

    def _fail(self, status: int, why: str) -> None:
        log.info("SIP %s to %s: %s", self.request.method, self.flow.remote[0], why)
        self.terminate(why)
        try:
            self.on_failure(status, why)
        except Exception:
            log.exception("SIP: the TU's failure handler raised")

    def _pass_up(self, response: Response) -> None:
        try:
            self.on_response(response)
        except Exception:
            log.exception("SIP: the TU's response handler raised")

    def _retransmitter(self, name: str, cap: float | None) -> Callable[[], None]:
        """Timer A or E: resend, then wait twice as long (capped at ``cap``)."""
        interval = self.timers.t1

        def fire() -> None:
            nonlocal interval
            self._send_request()
            interval = interval * 2 if cap is None else min(interval * 2, cap)
            if self.state in (_T.CALLING, _T.TRYING):
                self._start(name, interval, fire)
            elif self.state is _T.PROCEEDING and cap is not None:
                self._start(name, self.timers.t2, fire)  # §17.1.2.2: T2 once proceeding

        return fire

    def receive(self, response: Response) -> None:
        raise NotImplementedError


class ClientInvite(ClientTransaction):
    """The client INVITE transaction (§17.1.1, RFC 6026 §8.4)."""

    TRANSITIONS: ClassVar[dict[TxState, frozenset[TxState]]] = {
        _T.CALLING: frozenset({_T.PROCEEDING, _T.COMPLETED, _T.ACCEPTED, _T.TERMINATED}),
        _T.PROCEEDING: frozenset({_T.COMPLETED, _T.ACCEPTED, _T.TERMINATED}),
        _T.COMPLETED: frozenset({_T.TERMINATED}),
        _T.ACCEPTED: frozenset({_T.TERMINATED}),
        _T.TERMINATED: frozenset(),
    }

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.state = _T.CALLING
        self._ack: bytes | None = None

    def start(self) -> None:
        super().start()
        if not self.flow.reliable:
            self._start("A", self.timers.t1, self._retransmitter("A", None))
        self._start("B", self.timers.b, lambda: self._fail(408, "Timer B: no response"))

    def receive(self, response: Response) -> None:
        status = response.status
        if self.state in (_T.CALLING, _T.PROCEEDING):
            self._stop("A", "B")  # Timer B never fires once the far end answered at all
            if status < 200:
                self.transition(_T.PROCEEDING)
            elif status < 300:
                # RFC 6026 §8.4: Accepted; 2xx retransmissions (and forks) still go up.
                self.transition(_T.ACCEPTED)
                self._start("M", self.timers.b, self.terminate)
            else:
                self.final = response
                self._send_ack(response)
                self._wait("D", _T.COMPLETED, 0 if self.flow.reliable else self.timers.d)
            self._pass_up(response)
        elif self.state is _T.COMPLETED and status >= 300:
            self._send_ack(response)  # §17.1.1.2: the ACK again, the TU hears nothing
        elif self.state is _T.ACCEPTED and 200 <= status < 300:
            self._pass_up(response)

    def _send_ack(self, response: Response) -> None:
        # §17.1.1.3: the ACK for a non-2xx is the transaction's: same branch, same flow.
        if self._ack is None:
            self._ack = wire.ack_for_failure(self.request, response).to_bytes()
        self._send(self._ack)


class ClientNonInvite(ClientTransaction):
    """The client non-INVITE transaction (§17.1.2)."""

    TRANSITIONS: ClassVar[dict[TxState, frozenset[TxState]]] = {
        _T.TRYING: frozenset({_T.PROCEEDING, _T.COMPLETED, _T.TERMINATED}),
        _T.PROCEEDING: frozenset({_T.COMPLETED, _T.TERMINATED}),
        _T.COMPLETED: frozenset({_T.TERMINATED}),
        _T.TERMINATED: frozenset(),
        _T.CALLING: frozenset(),
        _T.CONFIRMED: frozenset(),
        _T.ACCEPTED: frozenset(),
    }

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.state = _T.TRYING

    def start(self) -> None:
        super().start()
        if not self.flow.reliable:
            self._start("E", self.timers.t1, self._retransmitter("E", self.timers.t2))
        self._start("F", self.timers.b, lambda: self._fail(408, "Timer F: no final response"))

    def receive(self, response: Response) -> None:
        if self.state not in (_T.TRYING, _T.PROCEEDING):
            return  # Completed: a retransmitted final, absorbed
        if response.status < 200:
            self.transition(_T.PROCEEDING)
        else:
            self._stop("E", "F")
            self.final = response
            self._wait("K", _T.COMPLETED, 0 if self.flow.reliable else self.timers.t4)
        self._pass_up(response)


# server transactions ---------------------------------------------------------------------------
class ServerTransaction(_Transaction):
    """Receives ``request``; the TU answers with :meth:`respond`. Retransmissions of the
    request are absorbed here (the last response is sent again where §17.2 says so)."""

    def __init__(self, layer: TransactionLayer, request: Request, flow: Flow, key: Key) -> None:
        super().__init__(layer, request, flow, key)
        self.last: bytes | None = None  # the last response sent, for retransmissions
        self.final: Response | None = None
        self.on_timeout: Callable[[], None] | None = None  # Timer H: the ACK never came
        self.owner: object = None  # the TU's object for this request (stack.Incoming)

    @property
    def answered(self) -> bool:
        """A final response was sent."""
        return self.final is not None

    def respond(self, response: Response) -> None:
        raise NotImplementedError

    def receive(self, request: Request) -> None:
        """A retransmission of the request (or, for INVITE, its ACK)."""
        raise NotImplementedError

    def _emit(self, response: Response) -> None:
        self.last = response.to_bytes()
        self._send(self.last)


class ServerInvite(ServerTransaction):
    """The server INVITE transaction (§17.2.1, RFC 6026 §8.5-8.7)."""

    TRANSITIONS: ClassVar[dict[TxState, frozenset[TxState]]] = {
        _T.PROCEEDING: frozenset({_T.COMPLETED, _T.ACCEPTED, _T.TERMINATED}),
        _T.COMPLETED: frozenset({_T.CONFIRMED, _T.TERMINATED}),
        _T.CONFIRMED: frozenset({_T.TERMINATED}),
        _T.ACCEPTED: frozenset({_T.TERMINATED}),
        _T.TERMINATED: frozenset(),
        _T.CALLING: frozenset(),
        _T.TRYING: frozenset(),
    }

    def __init__(self, layer: TransactionLayer, request: Request, flow: Flow, key: Key) -> None:
        super().__init__(layer, request, flow, key)
        self.state = _T.PROCEEDING

    def respond(self, response: Response) -> None:
        status = response.status
        if self.state is _T.ACCEPTED and 200 <= status < 300:
            self._emit(response)  # RFC 6026 §8.6: the dialog's 2xx retransmissions
            return
        if self.state is not _T.PROCEEDING:
            log.debug("SIP: %d after the final response of %s dropped", status, self.id)
            return
        self._emit(response)
        if status < 200:
            return
        self.final = response
        if status < 300:
            self.transition(_T.ACCEPTED)
            self._start("L", self.timers.b, self.terminate)
            return
        self.transition(_T.COMPLETED)
        if not self.flow.reliable:
            interval = self.timers.t1

            def timer_g() -> None:
                nonlocal interval
                if self.state is _T.COMPLETED and self.last is not None:
                    self._send(self.last)
                    interval = min(2 * interval, self.timers.t2)
                    self._start("G", interval, timer_g)

            self._start("G", interval, timer_g)
        self._start("H", self.timers.b, self._timer_h)

    def _timer_h(self) -> None:
        log.info("SIP: no ACK for the %d to %s (Timer H)", self.final.status if self.final else 0,
                 self.id)  # fmt: skip
        self.terminate("Timer H")
        if self.on_timeout is not None:
            self.on_timeout()

    def receive(self, request: Request) -> None:
        if request.method == "ACK":
            if self.state is _T.COMPLETED:
                self._stop("G", "H")
                self._wait("I", _T.CONFIRMED, 0 if self.flow.reliable else self.timers.t4)
            return  # an ACK in Accepted is the dialog's; others are absorbed
        if self.state in (_T.PROCEEDING, _T.COMPLETED) and self.last is not None:
            self._send(self.last)  # §17.2.1: the last provisional or the final again
        # Accepted: absorbed (RFC 6026 §8.5); Confirmed: absorbed.


class ServerNonInvite(ServerTransaction):
    """The server non-INVITE transaction (§17.2.2)."""

    TRANSITIONS: ClassVar[dict[TxState, frozenset[TxState]]] = {
        _T.TRYING: frozenset({_T.PROCEEDING, _T.COMPLETED, _T.TERMINATED}),
        _T.PROCEEDING: frozenset({_T.COMPLETED, _T.TERMINATED}),
        _T.COMPLETED: frozenset({_T.TERMINATED}),
        _T.TERMINATED: frozenset(),
        _T.CALLING: frozenset(),
        _T.CONFIRMED: frozenset(),
        _T.ACCEPTED: frozenset(),
    }

    def __init__(self, layer: TransactionLayer, request: Request, flow: Flow, key: Key) -> None:
        super().__init__(layer, request, flow, key)
        self.state = _T.TRYING

    def respond(self, response: Response) -> None:
        if self.state not in (_T.TRYING, _T.PROCEEDING):
            return
        self._emit(response)
        if response.status < 200:
            self.transition(_T.PROCEEDING)
            return
        self.final = response
        self._wait("J", _T.COMPLETED, 0 if self.flow.reliable else self.timers.b)

    def receive(self, request: Request) -> None:
        # §17.2.2: absorbed in Trying; the last response again in Proceeding and Completed.
        if self.state is not _T.TRYING and self.last is not None:
            self._send(self.last)


# matching ----------------------------------------------------------------------------------------
MAGIC_COOKIE = "z9hG4bK"  # §8.1.1.7: branches of RFC 3261 elements start with it


def client_key(branch: str, method: str) -> Key:
    """§17.1.3: a response matches the client transaction of its top Via's branch and its
    CSeq method (a CANCEL has the INVITE's branch but a transaction of its own)."""
    return ("c", branch, "INVITE" if method == "ACK" else method)


def server_key(request: Request, method: str | None = None) -> Key:
    """§17.2.3: the branch, the top Via's sent-by and the method (INVITE for an ACK); the RFC
    2543 fallback when the branch lacks the magic cookie. ``method`` overrides (CANCEL
    looks up its INVITE, §9.2)."""
    method = method or ("INVITE" if request.method == "ACK" else request.method)
    via = request.top_via
    if via.rfc3261_branch:
        return ("s", via.branch or "", via.sent_by.lower(), method)
    # RFC 2543: Request-URI, From tag, Call-ID, CSeq number, top Via (To tag aside: an ACK
    # carries the tag of our response, the INVITE none). The Via without the parameters
    # our own processing adds (received, rport), so a retransmission matches.
    via.params.remove("received")
    via.params.remove("rport")
    return ("s2543", str(request.uri), request.from_tag or "", request.call_id,
            str(request.cseq_number), str(via).lower(), method)  # fmt: skip


class TransactionLayer:
    """The live transactions of one SIP endpoint, and their timers' base values."""

    def __init__(self, timers: Timers | None = None) -> None:
        self.timers = timers or Timers()
        self._live: dict[Key, _Transaction] = {}

    def __len__(self) -> int:
        return len(self._live)

    def add(self, tx: _Transaction) -> None:
        self._live[tx.key] = tx

    def forget(self, tx: _Transaction) -> None:
        if self._live.get(tx.key) is tx:
            del self._live[tx.key]

    def client(
        self, request: Request, flow: Flow, on_response: ResponseHandler, on_failure: FailureHandler
    ) -> ClientTransaction:
        """A new client transaction, started (the request is on the wire)."""
        kind = ClientInvite if request.method == "INVITE" else ClientNonInvite
        tx = kind(self, request, flow, on_response, on_failure)
        tx.start()
        return tx

    def match_response(self, response: Response) -> ClientTransaction | None:
        tx = self._live.get(client_key(response.branch or "", response.cseq_method))
        return tx if isinstance(tx, ClientTransaction) else None

    def match_request(self, request: Request) -> ServerTransaction | None:
        """The server transaction a request (a retransmission, an ACK) belongs to."""
        tx = self._live.get(server_key(request))
        return tx if isinstance(tx, ServerTransaction) else None

    def match_cancel(self, cancel: Request) -> ServerInvite | None:
        """§9.2: the INVITE transaction a CANCEL cancels."""
        tx = self._live.get(server_key(cancel, "INVITE"))
        return tx if isinstance(tx, ServerInvite) else None

    def server(self, request: Request, flow: Flow) -> ServerTransaction:
        """A new server transaction for a request that matched none."""
        kind = ServerInvite if request.method == "INVITE" else ServerNonInvite
        tx = kind(self, request, flow, server_key(request))
        self.add(tx)
        return tx

    def close(self) -> None:
        for tx in list(self._live.values()):
            tx.terminate("stack closed")
