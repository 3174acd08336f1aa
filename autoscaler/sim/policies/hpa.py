"""`hpa-cpu` and `hpa-rps`: the Kubernetes HorizontalPodAutoscaler as teams run it today.

Both drive the faithful copy of the controller in `autoscaler.core.hpa` once per sync period
(`--horizontal-pod-autoscaler-sync-period`, 15 s) over the simulated `ClusterView`:

* `HpaCpuPolicy` (`hpa-cpu`): a `Resource` cpu metric with an `averageUtilization` target
  (knob `target_utilization_pct`, default 70, the setting of the tutorials this product replaces).
  Usage is metrics-server's per-pod cpu (`PodView.cpu_millicores`) against the pod's cpu request,
  through `GetResourceReplicas` with its readiness rules (cpu initialization period 300 s,
  initial readiness delay 30 s: the kube-controller-manager defaults).
* `HpaRpsPolicy` (`hpa-rps`): a `Pods` metric with an `averageValue` target (knob
  `target_rps_per_pod`, default 100): each pod's `rate(request_count[1m])` as prometheus-adapter
  serves it (`PodView.rps`; a pod without a series is a "missing" pod), through `GetMetricReplicas`.

The controller reads `scale.spec.replicas` (`view.spec_replicas`) as currentReplicas, records the
initial recommendation on first sight, and normalizes with the classic rules (300 s downscale
stabilization, scale-up limit max(2*current, 4)) unless a `behavior=` knob is given, in which case
`normalizeDesiredReplicasWithBehaviors` and per-direction tolerances apply. A metric the controller
cannot compute (no samples, no ready pods) is a failed metric: the HPA then does nothing.
Sources: kubernetes/kubernetes `pkg/controller/podautoscaler/{horizontal,replica_calculator}.go`;
defaults from `pkg/controller/podautoscaler/config/v1alpha1/defaults.go`
(`RecommendedDefaultHPAControllerConfiguration`) and `pkg/apis/autoscaling/v2/defaults.go`.
"""

from __future__ import annotations

import math
from typing import ClassVar

from autoscaler.core.hpa import (
    DEFAULT_CPU_INITIALIZATION_PERIOD_S,
    DEFAULT_INITIAL_READINESS_DELAY_S,
    HpaHistory,
    HpaMetricError,
    HpaPod,
    PodPhase,
    PodSample,
    ReconcileResult,
    Tolerances,
    get_metric_replicas,
    get_resource_replicas,
    milli_value,
    reconcile,
)
from autoscaler.sim.view import ClusterView, PodView, PolicyContext, PolicyOutput
from autoscaler.spec.types import Behavior, ServingAutoscalerSpec

HPA_SYNC_PERIOD_S = 15.0  # --horizontal-pod-autoscaler-sync-period
DEFAULT_TOLERANCE = 0.1  # --horizontal-pod-autoscaler-tolerance


def hpa_pod(pod: PodView) -> HpaPod:
    """A simulated pod as the HPA's pod lister shows it.

    A starting pod is Pending (the simulator does not separate "Running, not Ready" from Pending);
    its Ready condition is False since creation, True since `ready_since_s` once ready; the
    kubelet's startTime is the creation time (scheduling is not modelled separately).
    """
    running = pod.phase == "Running"
    return HpaPod(
        name=pod.name,
        phase=PodPhase.RUNNING if running else PodPhase.PENDING,
        ready=pod.ready,
        ready_transition_s=pod.ready_since_s if pod.ready and pod.ready_since_s is not None else pod.created_s,
        start_time_s=pod.created_s,
        request_milli=pod.cpu_request_millicores,
    )


class PodLister:
    """The HPA's pod lister over simulated pods: `hpa_pod` of each, memoized.

    A pod's HpaPod changes only when it becomes ready, so one per (pod, state) is kept instead of
    building ~17 frozen dataclasses per sync (the replay's hot path); bounded like an informer cache.
    """

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str, bool, float, float | None, int], HpaPod] = {}

    def list(self, views: tuple[PodView, ...]) -> list[HpaPod]:
        cache, out = self._cache, []
        for p in views:
            key = (p.name, p.phase, p.ready, p.created_s, p.ready_since_s, p.cpu_request_millicores)
            pod = cache.get(key)
            if pod is None:
                if len(cache) > 10_000:
                    cache.clear()
                pod = cache[key] = hpa_pod(p)
            out.append(pod)
        return out


def tolerances_for(behavior: Behavior | None, tolerance: float) -> Tolerances:
    """Per-direction tolerances come from `spec.behavior` when it is set (HPAConfigurableTolerance)."""
    if behavior is None:
        return Tolerances(tolerance, tolerance)
    return Tolerances(behavior.scale_down.tolerance, behavior.scale_up.tolerance)


class HpaController:
    """One HPA object: its controller memory and the reconcile step, shared by the HPA-based baselines."""

    def __init__(
        self,
        *,
        min_replicas: int,
        max_replicas: int,
        behavior: Behavior | None = None,
        downscale_window_s: float = 300.0,
    ) -> None:
        if not 1 <= min_replicas <= max_replicas:
            raise ValueError(f"hpa: expected 1 <= minReplicas <= maxReplicas (got {min_replicas}, {max_replicas})")
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas
        self.behavior = behavior
        self.downscale_window_s = downscale_window_s
        self.history = HpaHistory()

    def sync(self, current_replicas: int, proposals: list[int | None], now_s: float) -> ReconcileResult:
        result = reconcile(
            self.history,
            self.behavior,
            current_replicas=current_replicas,
            proposals=proposals,
            min_replicas=self.min_replicas,
            max_replicas=self.max_replicas,
            now_s=now_s,
            downscale_window_s=self.downscale_window_s,
        )
        self.history = result.history
        return result


def _output(result: ReconcileResult, current: int, detail: str) -> PolicyOutput:
    desired = result.desired_replicas if result.rescale else current
    return PolicyOutput(desired_replicas=desired, reason=f"{detail}; {result.reason}")


class HpaCpuPolicy:
    """The HPA on cpu utilization (Resource metric, averageUtilization target)."""

    name: ClassVar[str] = "hpa-cpu"
    knob: ClassVar[str] = "target_utilization_pct"
    clairvoyant: ClassVar[bool] = False

    def __init__(
        self,
        spec: ServingAutoscalerSpec,
        *,
        target_utilization_pct: int = 70,
        behavior: Behavior | None = None,
        tolerance: float = DEFAULT_TOLERANCE,
        cpu_initialization_period_s: float = DEFAULT_CPU_INITIALIZATION_PERIOD_S,
        initial_readiness_delay_s: float = DEFAULT_INITIAL_READINESS_DELAY_S,
        metrics_window_s: float = 30.0,
        period_s: float = HPA_SYNC_PERIOD_S,
    ) -> None:
        if int(target_utilization_pct) != target_utilization_pct or target_utilization_pct < 1:
            raise ValueError(
                f"hpa-cpu.target_utilization_pct: expected an integer percent >= 1 (got {target_utilization_pct})"
            )
        self.spec = spec
        self.target_utilization_pct = int(target_utilization_pct)
        self.tolerances = tolerances_for(behavior, tolerance)
        self.cpu_initialization_period_s = cpu_initialization_period_s
        self.initial_readiness_delay_s = initial_readiness_delay_s
        self.metrics_window_s = metrics_window_s
        self.period_s = period_s
        self.hpa = HpaController(min_replicas=spec.min_replicas, max_replicas=spec.max_replicas, behavior=behavior)
        self.lister = PodLister()

    def start(self, ctx: PolicyContext) -> None:
        self.hpa = HpaController(
            min_replicas=self.spec.min_replicas, max_replicas=self.spec.max_replicas, behavior=self.hpa.behavior
        )
        self.lister = PodLister()

    def proposal(self, view: ClusterView) -> tuple[int | None, str]:
        """`GetResourceReplicas` over the view; None (a failed metric) with the controller's error."""
        pods = self.lister.list(view.pods)
        samples = {
            # metrics-server reports nanocores; MilliValue() rounds them up to whole millicores
            p.name: PodSample(math.ceil(round(p.cpu_millicores, 6)), view.now_s, self.metrics_window_s)
            for p in view.pods
            if p.cpu_millicores is not None
        }
        try:
            out = get_resource_replicas(
                view.spec_replicas,
                self.target_utilization_pct,
                pods,
                samples,
                now_s=view.now_s,
                tolerances=self.tolerances,
                cpu_initialization_period_s=self.cpu_initialization_period_s,
                initial_readiness_delay_s=self.initial_readiness_delay_s,
            )
        except HpaMetricError as err:
            return None, f"cpu: {err}"
        return out.replicas, f"cpu {out.utilization_pct}% of request (target {self.target_utilization_pct}%)"

    def decide(self, view: ClusterView) -> PolicyOutput:
        proposal, detail = self.proposal(view)
        result = self.hpa.sync(view.spec_replicas, [proposal], view.now_s)
        return _output(result, view.spec_replicas, detail)


class HpaRpsPolicy:
    """The HPA on per-pod requests/s (Pods metric, averageValue target) via prometheus-adapter."""

    name: ClassVar[str] = "hpa-rps"
    knob: ClassVar[str] = "target_rps_per_pod"
    clairvoyant: ClassVar[bool] = False

    def __init__(
        self,
        spec: ServingAutoscalerSpec,
        *,
        target_rps_per_pod: float = 100.0,
        behavior: Behavior | None = None,
        tolerance: float = DEFAULT_TOLERANCE,
        period_s: float = HPA_SYNC_PERIOD_S,
    ) -> None:
        if not target_rps_per_pod > 0:
            raise ValueError(f"hpa-rps.target_rps_per_pod: expected > 0 (got {target_rps_per_pod})")
        self.spec = spec
        self.target_rps_per_pod = float(target_rps_per_pod)
        self.target_milli = milli_value(target_rps_per_pod)
        self.tolerances = tolerances_for(behavior, tolerance)
        self.period_s = period_s
        self.hpa = HpaController(min_replicas=spec.min_replicas, max_replicas=spec.max_replicas, behavior=behavior)
        self.lister = PodLister()

    def start(self, ctx: PolicyContext) -> None:
        self.hpa = HpaController(
            min_replicas=self.spec.min_replicas, max_replicas=self.spec.max_replicas, behavior=self.hpa.behavior
        )
        self.lister = PodLister()

    def proposal(self, view: ClusterView) -> tuple[int | None, str]:
        """`GetMetricReplicas` over the per-pod rates; None (a failed metric) when none is served."""
        pods = self.lister.list(view.pods)
        # the adapter serves the rate as a Quantity; the controller reads MilliValue() (ceil);
        # pods share rates in the fluid model, so each distinct rate is converted once per sync
        samples: dict[str, PodSample] = {}
        by_rate: dict[float, PodSample] = {}
        for p in view.pods:
            if p.rps is not None:
                sample = by_rate.get(p.rps)
                if sample is None:
                    sample = by_rate[p.rps] = PodSample(milli_value(round(p.rps, 6)))
                samples[p.name] = sample
        try:
            out = get_metric_replicas(view.spec_replicas, self.target_milli, pods, samples, tolerances=self.tolerances)
        except HpaMetricError as err:
            return None, f"rps: {err}"
        return out.replicas, f"{out.usage_milli / 1000:.3f} rps/pod (target {self.target_rps_per_pod:g})"

    def decide(self, view: ClusterView) -> PolicyOutput:
        proposal, detail = self.proposal(view)
        result = self.hpa.sync(view.spec_replicas, [proposal], view.now_s)
        return _output(result, view.spec_replicas, detail)
