"""Bounded exponential backoff for Kubernetes API calls (429 Too Many Requests and 5xx).

Kept apart from the actuators so scale, batching, Events and the Lease share one policy. The
sleep function is injected (the runtime passes a thread-safe sleep; tests pass a recorder), so
this module never reads the clock. 409 Conflict is *not* retried here: a conflict means our
read is stale and the caller must re-read and re-decide (see `scale.py`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from kubernetes.client.exceptions import ApiException

T = TypeVar("T")
Sleep = Callable[[float], None]


@dataclass(frozen=True)
class Backoff:
    attempts: int = 5  # total tries, including the first
    base_s: float = 0.2
    factor: float = 2.0
    cap_s: float = 5.0

    def delay_s(self, retry_index: int, retry_after_s: float | None = None) -> float:
        d = min(self.cap_s, self.base_s * self.factor**retry_index)
        if retry_after_s is not None:
            d = min(self.cap_s, max(d, retry_after_s))
        return d


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


def call_with_backoff(fn: Callable[[], T], *, backoff: Backoff | None = None, sleep: Sleep | None = None) -> T:
    """Call `fn`; on 429/5xx wait (bounded, exponential, honours Retry-After) and retry."""
    backoff = backoff or Backoff()
    do_sleep = sleep or time.sleep
    for i in range(backoff.attempts):
        try:
            return fn()
        except ApiException as exc:
            if not is_retryable(exc) or i == backoff.attempts - 1:
                raise
            do_sleep(backoff.delay_s(i, _retry_after_s(exc)))
    raise AssertionError("unreachable")  # pragma: no cover
