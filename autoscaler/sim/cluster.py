"""The simulated Deployment: pods, their startup delays, readiness, scale and batching rollouts.

Owns the Kubernetes side of the simulated cluster — what exists, what is ready, what a patch of
`scale.spec.replicas` or of the batching parameters does — so that every policy's output is
applied the same way. Serving the load on the ready pods is done by `sim/fluid.py` (analytic,
per second) or `sim/reqlevel.py` (every request through the batching DES); both read the ready
set from here.

Faithful to the controllers it copies:

* a new pod is Pending (scheduling, image pull, model load, warmup) for a startup delay drawn
  (seeded) from a lognormal with mean `spec.startup.mean_s` and coefficient of variation
  `spec.startup.jitter_cv`, then Running and Ready; readiness is on whole seconds;
* scale-down follows the ReplicaSet controller's ranking: not-ready pods first (newest first),
  then ready pods that became ready most recently;
* a batching change is a rolling update of the pod template with maxUnavailable 0 and maxSurge
  25 % (rounded up, at least 1): the new ReplicaSet grows to at most replicas + surge pods, old
  pods are removed only while the ready count stays at least `spec.replicas`, unready old pods go
  first (deployment controller `reconcileNewReplicaSet` / `reconcileOldReplicaSets`).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np

from autoscaler.spec.types import BatchingParams, StartupSpec

MAX_SURGE_FRACTION = 0.25


@dataclass
class Pod:
    """One pod of the simulated Deployment (mutable: the cluster updates it in place)."""

    pod_id: int
    created_s: float
    ready_s: int  # first whole second at which it is Ready and receives traffic
    params: BatchingParams
    deleted_s: float | None = None

    @property
    def name(self) -> str:
        return f"tfserving-{self.pod_id:05d}"


def lognormal_params(mean_s: float, cv: float) -> tuple[float, float]:
    """(mu, sigma) of the lognormal with the given mean and coefficient of variation."""
    sigma2 = math.log1p(cv * cv)
    return math.log(mean_s) - sigma2 / 2.0, math.sqrt(sigma2)


def startup_quantile_s(startup: StartupSpec, q: float) -> float:
    """q-quantile of the startup delay distribution the cluster draws from, seconds."""
    if startup.jitter_cv <= 0.0:
        return startup.mean_s
    from statistics import NormalDist

    mu, sigma = lognormal_params(startup.mean_s, startup.jitter_cv)
    return math.exp(mu + sigma * NormalDist().inv_cdf(q))


class Cluster:
    """The pods of one Deployment and the controllers acting on them."""

    def __init__(
        self,
        startup: StartupSpec,
        template: BatchingParams,
        *,
        initial_replicas: int,
        seed: int,
        now_s: int = 0,
    ) -> None:
        if initial_replicas < 0:
            raise ValueError(f"initial_replicas: expected >= 0 (got {initial_replicas})")
        self.startup = startup
        self.template = template
        self.spec_replicas = initial_replicas
        self._rng = np.random.default_rng(seed)
        self._lognormal = lognormal_params(startup.mean_s, startup.jitter_cv) if startup.jitter_cv > 0 else (0.0, 0.0)
        self._next_id = 0
        self.pods: list[Pod] = []
        self.deleted: list[Pod] = []  # kept for the metrics pipeline (series live on in Prometheus)
        self.cold_starts_s: list[float] = []  # measured startup delays of pods that became ready
        self.cold_start_at_s: list[int] = []  # ... and the second each became ready (ascending)
        self.scale_events = 0
        for _ in range(initial_replicas):
            self.pods.append(Pod(self._new_id(), float(now_s) - startup.mean_s, now_s, template))
        self._ready_times: list[int] | None = None  # sorted ready_s of the pods (cache)
        self._uniform = True  # every pod runs `template`
        self._off_template: bool | None = False  # cache of deleted_off_template()

    # ---- what the API server shows ---------------------------------------------------------
    def ready_pods(self, now_s: float) -> list[Pod]:
        return [p for p in self.pods if p.ready_s <= now_s]

    def _sorted_ready_s(self) -> list[int]:
        if self._ready_times is None:
            self._ready_times = sorted(p.ready_s for p in self.pods)
        return self._ready_times

    def ready_count(self, now_s: float) -> int:
        return bisect.bisect_right(self._sorted_ready_s(), now_s)

    def next_ready_s(self, after_s: int) -> int | None:
        """The first whole second > after_s at which some existing pod becomes ready."""
        times = self._sorted_ready_s()
        i = bisect.bisect_right(times, after_s)
        return times[i] if i < len(times) else None

    @property
    def uniform(self) -> bool:
        """Every pod runs the current template (no rollout in progress)."""
        return self._uniform

    def ready_by_params(self, now_s: float) -> dict[BatchingParams, int]:
        out: dict[BatchingParams, int] = {}
        for p in self.pods:
            if p.ready_s <= now_s:
                out[p.params] = out.get(p.params, 0) + 1
        return out

    def running_batching(self, now_s: float) -> BatchingParams:
        """Parameters in effect: the template once any ready pod runs it, else the old ones."""
        ready = [p for p in self.pods if p.ready_s <= now_s]
        if not ready or any(p.params == self.template for p in ready):
            return self.template
        return ready[0].params

    # ---- what patches do --------------------------------------------------------------------
    def draw_startup_s(self, n: int = 1) -> list[float]:
        """n startup delays, seconds (one RNG call draws the same numbers as n calls of one: tested)."""
        s = self.startup
        if s.jitter_cv <= 0.0:
            return [s.mean_s] * n
        mu, sigma = self._lognormal
        delays: list[float] = self._rng.lognormal(mu, sigma, size=n).tolist()
        return delays

    def patch_replicas(self, replicas: int, now_s: int) -> None:
        if replicas != self.spec_replicas:
            self.scale_events += 1
            self.spec_replicas = replicas
        self.reconcile(now_s)

    def patch_batching(self, params: BatchingParams, now_s: int) -> bool:
        """Change the pod template (starts a rolling update); False if nothing changed."""
        if params == self.template:
            return False
        self.template = params
        self._uniform = False
        self._off_template = None
        self.reconcile(now_s)
        return True

    def reconcile(self, now_s: int) -> None:
        """The Deployment + ReplicaSet controllers at `now_s`, run to a fixed point."""
        if self._uniform:  # no rollout: the fixed point of `_reconcile_once`, in one step
            n, want = len(self.pods), self.spec_replicas
            if n > want:
                self._delete(_rank_for_deletion(self.pods, now_s)[: n - want], now_s)
            elif n < want:
                self._create(want - n, now_s)
            return
        for _ in range(8):
            before = [p.pod_id for p in self.pods]
            self._reconcile_once(now_s)
            if [p.pod_id for p in self.pods] == before:
                break
        t = self.template
        self._uniform = all(p.params is t or p.params == t for p in self.pods)

    def _reconcile_once(self, now_s: int) -> None:
        new = [p for p in self.pods if p.params == self.template]
        old = [p for p in self.pods if p.params != self.template]
        want = self.spec_replicas
        if len(new) > want:
            self._delete(_rank_for_deletion(new, now_s)[: len(new) - want], now_s)
            new = [p for p in self.pods if p.params == self.template]
        if not old:
            if len(new) < want:
                self._create(want - len(new), now_s)
            return
        # rolling update, maxUnavailable 0: new pods up to replicas + surge in total ...
        surge = max(1, math.ceil(MAX_SURGE_FRACTION * want))
        grow = min(want + surge - len(self.pods), want - len(new))
        if grow > 0:
            self._create(grow, now_s)
        # ... old pods down only while the ready count stays at least `replicas`
        new_unready = sum(1 for p in self.pods if p.params == self.template and p.ready_s > now_s)
        max_scaled_down = len(self.pods) - want - new_unready
        if max_scaled_down <= 0:
            return
        unready_old = [p for p in _rank_for_deletion(old, now_s) if p.ready_s > now_s]
        self._delete(unready_old[:max_scaled_down], now_s)
        ready_total = sum(1 for p in self.pods if p.ready_s <= now_s)
        ready_old = [p for p in _rank_for_deletion(old, now_s) if p.ready_s <= now_s]
        self._delete(ready_old[: max(0, ready_total - want)], now_s)

    def on_second(self, now_s: int) -> None:
        """Pods that became ready at `now_s`: record their cold start, continue any rollout."""
        became = False
        for p in self.pods:
            if p.ready_s == now_s:
                self.cold_starts_s.append(now_s - p.created_s)
                self.cold_start_at_s.append(now_s)
                became = True
        if became:
            self.reconcile(now_s)

    def recent_cold_starts_s(self, now_s: int, k: int) -> list[float]:
        """The last k measured startup delays of pods ready at or before `now_s`."""
        end = bisect.bisect_right(self.cold_start_at_s, now_s)
        return self.cold_starts_s[max(0, end - k) : end]

    def rewind_to(self, now_s: int) -> None:
        """Forget what `on_second` recorded after `now_s`: the engine served ahead speculatively
        and the policy changed something at `now_s`. Only valid over seconds in which no patch
        happened (then readiness was the only change: pods are as they were)."""
        end = bisect.bisect_right(self.cold_start_at_s, now_s)
        del self.cold_starts_s[end:], self.cold_start_at_s[end:]

    # ---- helpers ------------------------------------------------------------------------------
    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _create(self, n: int, now_s: int) -> None:
        for delay in self.draw_startup_s(n):
            self.pods.append(Pod(self._new_id(), float(now_s), now_s + max(1, math.ceil(delay)), self.template))
        self._ready_times = None

    def _delete(self, victims: list[Pod], now_s: int) -> None:
        if not victims:
            return
        ids = {p.pod_id for p in victims}
        keep: list[Pod] = []
        for p in self.pods:
            if p.pod_id in ids:
                p.deleted_s = float(now_s)
                if p.ready_s <= now_s:
                    self.deleted.append(p)
                    self._off_template = None
            else:
                keep.append(p)
        self.pods = keep
        self._ready_times = None

    def forget_deleted_before(self, t_s: float) -> None:
        """Drop deleted pods deleted before `t_s` (`deleted` is in deletion order)."""
        d = self.deleted
        if d and d[0].deleted_s is not None and d[0].deleted_s < t_s:
            self.deleted = [p for p in d if p.deleted_s is not None and p.deleted_s >= t_s]
            self._off_template = None

    def deleted_off_template(self) -> bool:
        """Some pod in `deleted` runs parameters other than the template (cached)."""
        if self._off_template is None:
            t = self.template
            self._off_template = any(p.params is not t and p.params != t for p in self.deleted)
        return self._off_template


def _rank_for_deletion(pods: list[Pod], now_s: float) -> list[Pod]:
    """ReplicaSet controller order: not-ready first (newest first), then most recently ready first."""
    unready = sorted((p for p in pods if p.ready_s > now_s), key=lambda p: -p.created_s)
    ready = sorted((p for p in pods if p.ready_s <= now_s), key=lambda p: (-p.ready_s, -p.pod_id))
    return unready + ready
