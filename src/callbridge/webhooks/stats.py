"""What the webhook outbox has done since the server started, for ``/metrics``.

The outbox counts; :mod:`callbridge.metrics` reads the counts at each scrape and watches each
delivery's lag (from the event's enqueue to its receiver's 2xx) through :attr:`on_delivered`.
Plain integers: no lock, nothing the delivery path waits on.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["DeliveryStats"]


class DeliveryStats:
    """Counts of one outbox: messages delivered, attempts that failed, messages given up."""

    __slots__ = ("attempts_failed", "delivered", "given_up", "on_delivered")

    def __init__(self) -> None:
        self.delivered = 0  # messages a receiver accepted (2xx)
        self.attempts_failed = 0  # attempts that failed (a retry follows, or the message fails)
        self.given_up = 0  # messages that failed for good (attempts or age exhausted)
        # Called with each delivered message's lag in seconds (enqueue to 2xx).
        self.on_delivered: Callable[[float], None] | None = None

    def delivered_after(self, lag: float) -> None:
        self.delivered += 1
        if self.on_delivered is not None:
            self.on_delivered(lag)
