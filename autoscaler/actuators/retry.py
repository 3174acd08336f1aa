"""Bounded, fenced retries for Kubernetes API calls (429 Too Many Requests and 5xx).

Kept apart from the actuators so scale, batching, Events and the Lease share one policy. Three
bounds hold for every call made through `call_with_backoff`:

* each attempt carries a client-side timeout (`_request_timeout`, passed to `fn`), so a stalled
  API server cannot hold a write open past the point where another replica may lead;
* the whole call (attempts + backoff sleeps, Retry-After honoured but capped) stays within
  `budget_s`; a retry that would not fit is not started and the last error is raised;
* with a `fence` (the leader elector's `is_leader`), every attempt is fenced on the current lease:
  when the fence is down the attempt is not sent and `LostLeadership` is raised.

Safety argument (client-go leaderelection's): a leader writes only while its last renewal is
younger than `renewDeadline`; a standby takes over only `leaseDuration` after it saw that renewal.
An attempt that starts while the fence is up and is cut off after `request_timeout_s <=
leaseDuration - renewDeadline` therefore lands (or dies) before any other replica may write.
`Backoff.within_lease()` sizes the timeouts that way. The sleep function is injected (tests pass a
recorder or a fake clock), and so is the monotonic clock used to account the budget.
409 Conflict is *not* retried here: a conflict means our read is stale and the caller must re-read
(see `scale.py`), fencing each re-read through this function.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from kubernetes.client.exceptions import ApiException

T = TypeVar("T")
Sleep = Callable[[float], None]
Fence = Callable[[], bool]


class LostLeadership(Exception):
    """The fence went down before an attempt: the write was not sent."""


@dataclass(frozen=True)
class Backoff:
    attempts: int = 5  # total tries, including the first
    base_s: float = 0.2
    factor: float = 2.0
    cap_s: float = 5.0
    request_timeout_s: float = 3.0  # client-side timeout of one API call
    budget_s: float = 10.0  # the whole call: attempts + sleeps

    def __post_init__(self) -> None:
        if not 0 < self.request_timeout_s <= self.budget_s:
            raise ValueError(
                f"need 0 < request_timeout_s ({self.request_timeout_s}) <= budget_s ({self.budget_s}): "
                "one attempt must fit the budget"
            )
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1 (got {self.attempts})")

    @staticmethod
    def within_lease(window_s: float, attempts: int = 5) -> Backoff:
        """A policy whose every call fits `window_s` = leaseDuration - renewDeadline (10 % margin)."""
        budget_s = 0.9 * window_s
        return Backoff(
            attempts=attempts,
            base_s=min(0.2, budget_s / 8),
            cap_s=budget_s / 2,
            request_timeout_s=budget_s / 2,
            budget_s=budget_s,
        )

    def delay_s(self, retry_index: int, retry_after_s: float | None = None) -> float:
        d = min(self.cap_s, self.base_s * self.factor**retry_index)
        if retry_after_s is not None:
            d = min(self.cap_s, max(d, retry_after_s))
        return d

    def fits(self, spent_s: float, delay_s: float) -> bool:
        """Whether a retry after `delay_s`, with a full request timeout, still fits the budget."""
        return spent_s + delay_s + self.request_timeout_s <= self.budget_s + 1e-9

    def worst_case_s(self) -> float:
        """The longest a call can take: every attempt times out, every sleep is the longest allowed."""
        spent_s = self.request_timeout_s
        for i in range(self.attempts - 1):
            delay_s = self.delay_s(i, self.cap_s)
            if not self.fits(spent_s, delay_s):
                break
            spent_s += delay_s + self.request_timeout_s
        return spent_s


def is_retryable(exc: ApiException) -> bool:
    status = int(exc.status or 0)
    return status == 429 or status >= 500


def _retry_after_s(exc: ApiException) -> float | None:
    headers = exc.headers or {}
    raw = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return float(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None


def call_with_backoff(
    fn: Callable[[float], T],
    *,
    backoff: Backoff | None = None,
    sleep: Sleep | None = None,
    fence: Fence | None = None,
    monotonic_s: Callable[[], float] = time.monotonic,
) -> T:
    """Call `fn(request_timeout_s)`; on 429/5xx wait (bounded, exponential, honours Retry-After)
    and retry while the budget allows. With `fence`, each attempt first checks it."""
    backoff = backoff or Backoff()
    do_sleep = sleep or time.sleep
    spent_s = 0.0
    for i in range(backoff.attempts):
        if fence is not None and not fence():
            raise LostLeadership("lost leadership: write not sent")
        started_s = monotonic_s()
        try:
            return fn(min(backoff.request_timeout_s, max(0.001, backoff.budget_s - spent_s)))
        except ApiException as exc:
            spent_s += max(0.0, monotonic_s() - started_s)
            if not is_retryable(exc) or i == backoff.attempts - 1:
                raise
            delay_s = backoff.delay_s(i, _retry_after_s(exc))
            if not backoff.fits(spent_s, delay_s):
                raise
            do_sleep(delay_s)
            spent_s += delay_s
    raise AssertionError("unreachable")  # pragma: no cover
