"""`State`: everything `decide()` remembers between ticks, as one frozen value.

Owned here (beside `decide.py`) so that the decision function stays pure: the caller keeps the
`State` it got back and passes it to the next call; nothing is hidden in module globals, so the
daemon, the simulator and the tests replay identically. It holds the HPA-style history
(recommendations and scale events), the burst guard's panic mode, the last scale-up and the pods it
created, the batching parameters in effect and when they last rolled out, the online capacity
calibration, and the last valid decision.

Replica arithmetic runs on the sequence of *our own* desired counts (`last_desired_replicas`), the
way the Kubernetes HPA runs on `scale.spec.replicas`: in `direct` mode the two are the same number,
and in `hpa`/`preview` mode it keeps the rate limits from collapsing while the Deployment lags us.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from autoscaler.core.capacity import Calibration
from autoscaler.core.hpa import HpaHistory, record_initial_recommendation
from autoscaler.core.types import Decision
from autoscaler.spec.types import BatchingParams, ServingAutoscalerSpec


@dataclass(frozen=True)
class State:
    """Memory of one target's autoscaler. Replace, never mutate: `decide()` returns a new one."""

    created_s: float
    last_desired_replicas: int  # the last valid desired count (the HPA's "current" for rate limits)
    hpa: HpaHistory = field(default_factory=HpaHistory)
    # Burst guard (Knative panic mode): time of the last over-threshold tick, None = not panicking.
    panic_last_trigger_s: float | None = None
    panic_max_replicas: int = 0  # highest desired count while panicking (never scale down in panic)
    # The last scale-up we asked for: its time and the counts before/after (pods it created).
    last_scale_up_s: float | None = None
    last_scale_up_from_replicas: int = 0
    last_scale_up_to_replicas: int = 0
    # Batching parameters that will be in effect, and when we last changed them (None = never).
    batching: BatchingParams = field(default_factory=BatchingParams)
    last_rollout_s: float | None = None
    last_batching_check_s: float | None = None  # when the tuner last ran (costly: a capacity search per setting)
    calibration: Calibration = field(default_factory=Calibration)
    # Since when the replicas have been in the regime the capacity model explains (fresh data, all
    # pods ready, no rejections, below capacity at the SLO); None = not in it. Calibration learns
    # only once this has held for a settle time, so windows still holding an overload are skipped.
    calibration_regime_since_s: float | None = None
    last_decision_s: float | None = None  # time of the last decide() call, valid or not
    last_valid: Decision | None = None
    invalid_streak: int = 0  # consecutive invalid decisions (for alerts)

    @staticmethod
    def initial(
        spec: ServingAutoscalerSpec,
        now_s: float,
        current_replicas: int,
        *,
        batching: BatchingParams | None = None,
        last_rollout_s: float | None = None,
    ) -> State:
        """Fresh state for a target that currently runs `current_replicas` (clamped to the spec).

        `batching` defaults to `spec.batching.initial` (the parameters the pods start with).
        """
        start = min(max(int(current_replicas), spec.min_replicas), spec.max_replicas)
        return State(
            created_s=float(now_s),
            last_desired_replicas=start,
            # Like the HPA's first sync: the current count is a recommendation, so a restarted
            # daemon cannot scale down before one stabilization window has passed.
            hpa=record_initial_recommendation(HpaHistory(), start, float(now_s)),
            batching=batching if batching is not None else spec.batching.initial,
            last_rollout_s=last_rollout_s,
        )

    @property
    def panicking(self) -> bool:
        return self.panic_last_trigger_s is not None
