"""Leader election on a `coordination.k8s.io/v1` Lease, so exactly one replica actuates.

The algorithm follows client-go's leaderelection: every `retry_period_s` each candidate reads the
Lease; a Lease held by someone else is respected until `lease_duration_s` after *we observed* its
last change (local observation, so clock skew between nodes does not matter); an empty or expired
Lease, or our own, is written back with `replace` carrying the `resourceVersion` we read, so when
two candidates race, the API server's optimistic concurrency (409 Conflict) picks one. Writing
sets holderIdentity, leaseDurationSeconds, renewTime, and acquireTime + leaseTransitions on a
change of holder.

Safety: `is_leader()` is true only until `renew_deadline_s` (< lease duration) after our last
successful renewal. A leader that cannot renew stops actuating before any standby may take over,
so there is never double actuation. On shutdown `release()` empties the holder so a standby takes
over at once. Time comes only from the injected `Clock`.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from autoscaler.runtime.clock import Clock, sleep_or_stop

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaderConfig:
    identity: str
    namespace: str = "default"
    name: str = "tfserving-autoscaler"
    lease_duration_s: float = 15.0
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period_s < self.renew_deadline_s < self.lease_duration_s:
            raise ValueError("need 0 < retry_period_s < renew_deadline_s < lease_duration_s")

    @property
    def request_timeout_s(self) -> float:
        """Client timeout of one Lease call: a round never outlasts its retry period."""
        return self.retry_period_s

    @property
    def write_window_s(self) -> float:
        """How long a write that started while we led may take before a standby may lead."""
        return self.lease_duration_s - self.renew_deadline_s


def _ts(now_s: float) -> datetime:
    return datetime.fromtimestamp(now_s, tz=UTC)


class LeaseElector:
    """One candidate. Blocking API calls: `step()` runs them in a worker thread."""

    def __init__(
        self,
        api_client: k8s.ApiClient,
        config: LeaderConfig,
        clock: Clock,
        *,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self._api = k8s.CoordinationV1Api(api_client)
        self.config = config
        self._clock = clock
        self._on_change = on_change
        self._leader = False
        self._renewed_at_s = float("-inf")
        self._observed: tuple[str | None, str | None] | None = None  # (holder, renewTime) last seen
        self._observed_at_s = float("-inf")
        self.transitions_seen = 0

    # -- state -------------------------------------------------------------------------------
    def is_leader(self) -> bool:
        """True while we hold the Lease and our last renewal is younger than renew_deadline_s."""
        if not self._leader:
            return False
        if self._clock.now_s() - self._renewed_at_s >= self.config.renew_deadline_s:
            self._set_leader(False, "renew deadline passed")
            return False
        return True

    def _set_leader(self, leader: bool, why: str) -> None:
        if leader == self._leader:
            return
        self._leader = leader
        log.info(
            "became leader" if leader else "lost leadership",
            extra={"identity": self.config.identity, "lease": self.config.name, "why": why},
        )
        if self._on_change is not None:
            self._on_change(leader)

    # -- one round ---------------------------------------------------------------------------
    def try_acquire_or_renew(self) -> bool:
        """One client-go style round. Returns whether we hold the Lease afterwards."""
        cfg = self.config
        now_s = self._clock.now_s()
        try:
            lease = self._api.read_namespaced_lease(cfg.name, cfg.namespace, _request_timeout=cfg.request_timeout_s)
        except ApiException as exc:
            if exc.status != 404:
                return self._failed(f"read failed: {exc.status}")
            return self._create(now_s)
        except Exception as exc:  # connection refused, timeouts
            return self._failed(f"read failed: {type(exc).__name__}")
        spec = lease.spec or k8s.V1LeaseSpec()
        holder = spec.holder_identity or None
        renew = spec.renew_time.isoformat() if spec.renew_time is not None else None
        if (holder, renew) != self._observed:
            self._observed = (holder, renew)
            self._observed_at_s = now_s
        duration_s = float(spec.lease_duration_seconds or cfg.lease_duration_s)
        if holder is not None and holder != cfg.identity and now_s < self._observed_at_s + duration_s:
            self._set_leader(False, f"held by {holder}")
            return False
        new_spec = k8s.V1LeaseSpec(
            holder_identity=cfg.identity,
            lease_duration_seconds=math.ceil(cfg.lease_duration_s),
            acquire_time=spec.acquire_time if holder == cfg.identity else _ts(now_s),
            renew_time=_ts(now_s),
            lease_transitions=(spec.lease_transitions or 0) + (0 if holder == cfg.identity else 1),
        )
        lease.spec = new_spec
        try:
            self._api.replace_namespaced_lease(
                cfg.name, cfg.namespace, lease, _request_timeout=cfg.request_timeout_s
            )  # carries resourceVersion
        except ApiException as exc:
            if exc.status == 409:
                self._set_leader(False, "lost the race (409)")
                return False
            return self._failed(f"replace failed: {exc.status}")
        except Exception as exc:
            return self._failed(f"replace failed: {type(exc).__name__}")
        if holder != cfg.identity:
            self.transitions_seen += 1
        self._renewed_at_s = now_s
        self._set_leader(True, "acquired" if holder != cfg.identity else "renewed")
        return True

    def _create(self, now_s: float) -> bool:
        cfg = self.config
        body = k8s.V1Lease(
            metadata=k8s.V1ObjectMeta(name=cfg.name, namespace=cfg.namespace),
            spec=k8s.V1LeaseSpec(
                holder_identity=cfg.identity,
                lease_duration_seconds=math.ceil(cfg.lease_duration_s),
                acquire_time=_ts(now_s),
                renew_time=_ts(now_s),
                lease_transitions=0,
            ),
        )
        try:
            self._api.create_namespaced_lease(cfg.namespace, body, _request_timeout=cfg.request_timeout_s)
        except ApiException as exc:
            reason = "lost the race (409)" if exc.status == 409 else f"create failed: {exc.status}"
            return self._failed(reason)
        except Exception as exc:
            return self._failed(f"create failed: {type(exc).__name__}")
        self._renewed_at_s = now_s
        self.transitions_seen += 1
        self._set_leader(True, "created lease")
        return True

    def _failed(self, why: str) -> bool:
        log.warning("lease round failed", extra={"identity": self.config.identity, "why": why})
        return self.is_leader()  # keep leading until the renew deadline, not a moment longer

    def release(self) -> None:
        """Give the Lease up (graceful shutdown) so a standby takes over without waiting."""
        if not self._leader:
            return
        self._set_leader(False, "released")
        cfg = self.config
        try:
            lease = self._api.read_namespaced_lease(cfg.name, cfg.namespace, _request_timeout=cfg.request_timeout_s)
            if lease.spec is None or lease.spec.holder_identity != cfg.identity:
                return
            lease.spec.holder_identity = None
            lease.spec.lease_duration_seconds = 1
            lease.spec.renew_time = _ts(self._clock.now_s())
            self._api.replace_namespaced_lease(cfg.name, cfg.namespace, lease, _request_timeout=cfg.request_timeout_s)
        except Exception as exc:
            log.warning("could not release lease", extra={"identity": cfg.identity, "error": str(exc)[:200]})

    # -- async driver ------------------------------------------------------------------------
    async def step(self) -> bool:
        return await asyncio.to_thread(self.try_acquire_or_renew)

    async def run(self, stop: asyncio.Event) -> None:
        """Root task: one round every retry_period_s until `stop`, then release."""
        try:
            while not stop.is_set():
                await self.step()
                await sleep_or_stop(self._clock, self.config.retry_period_s, stop)
        finally:
            await asyncio.to_thread(self.release)
