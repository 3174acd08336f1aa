"""The batching rule of core.decide: when a new TF Serving batching configuration may roll out.

Guards under test: only when `spec.batching.tune`, never during a scale-up (or while its pods are
pending, or in panic), never without valid observed load, at most once per
`min_rollout_interval_s`, only when the capacity gain reaches `min_gain` — and when it does roll
out, the replica count is computed with the new parameters.
"""

from __future__ import annotations

import dataclasses
import math

from autoscaler.core.capacity import CapacityModel
from autoscaler.core.decide import BATCHING_RECHECK_S, State, decide
from autoscaler.core.types import Binding, Observation, Signal
from autoscaler.spec.types import (
    BatchingParams,
    BatchingSpec,
    Provisioning,
    ServingAutoscalerSpec,
    TargetRef,
)

# Deliberately poor starting point: one request per batch, one thread (~100 rps per replica).
POOR = BatchingParams(max_batch_size=1, batch_timeout_us=0, num_batch_threads=1, max_enqueued_batches=100)
INTERVAL_S = 3_600.0


def make_spec(*, tune: bool = True, min_gain: float = 0.10) -> ServingAutoscalerSpec:
    return ServingAutoscalerSpec(
        name="resnet",
        target=TargetRef("ml", "resnet", "resnet"),
        min_replicas=1,
        max_replicas=50,
        provisioning=Provisioning(lead_time_s=90.0),
        batching=BatchingSpec(tune=tune, initial=POOR, min_rollout_interval_s=INTERVAL_S, min_gain=min_gain),
    )


SPEC = make_spec()
MODEL = CapacityModel(SPEC.profile)
POOR_USABLE_RPS = MODEL.capacity_at_slo_rps(POOR, SPEC.slo) * (1.0 - SPEC.provisioning.headroom)


def obs(t: float, rps: float | None, *, current: int, pending: int = 0) -> Observation:
    return Observation(
        time_s=t,
        request_rate_rps=Signal.of(rps),
        current_replicas=current,
        ready_replicas=current - pending,
        pending_replicas=pending,
    )


def steady(replicas: int) -> float:
    """A load that `replicas` replicas with POOR parameters carry without scaling."""
    return (replicas - 0.5) * POOR_USABLE_RPS


def batching_notes(notes: tuple[str, ...]) -> list[str]:
    return [n for n in notes if n.startswith("batching:")]


def test_tuning_off_never_changes_batching() -> None:
    spec = make_spec(tune=False)
    d, state = decide(spec, State.initial(spec, 0.0, 4), obs(0.0, steady(4), current=4), None, now_s=0.0)
    assert not d.batching_changed and d.batching == POOR and state.batching == POOR
    assert batching_notes(d.notes) == []


def test_rollout_when_steady_and_replicas_use_the_new_parameters() -> None:
    d, state = decide(SPEC, State.initial(SPEC, 0.0, 4), obs(0.0, steady(4), current=4), None, now_s=0.0)
    assert d.batching_changed
    assert d.batching != POOR and state.batching == d.batching and state.last_rollout_s == 0.0
    assert any(n.startswith("batching: roll out") for n in d.notes)
    # Capacity and replicas are those of the parameters that will be in effect.
    new_capacity = MODEL.capacity_at_slo_rps(d.batching, SPEC.slo)
    assert d.capacity_rps is not None and math.isclose(d.capacity_rps, new_capacity, rel_tol=1e-9)
    assert d.capacity_rps > 1.1 * MODEL.capacity_at_slo_rps(POOR, SPEC.slo)
    usable = new_capacity * (1.0 - SPEC.provisioning.headroom)
    observed = next(p for p in d.proposals if p.signal == "observed")
    assert observed.replicas == math.ceil(steady(4) / usable)
    assert d.desired_replicas <= 4


def test_no_batching_change_during_a_scale_up() -> None:
    d, state = decide(SPEC, State.initial(SPEC, 0.0, 2), obs(0.0, steady(4), current=2), None, now_s=0.0)
    assert d.desired_replicas > 2
    assert not d.batching_changed and d.batching == POOR and state.last_rollout_s is None
    assert "batching: no change during a scale-up" in d.notes


def test_no_batching_change_while_scale_up_pods_are_pending() -> None:
    state = dataclasses.replace(
        State.initial(SPEC, 0.0, 4),
        last_scale_up_s=-15.0,
        last_scale_up_from_replicas=2,
        last_scale_up_to_replicas=4,
    )
    d, _ = decide(SPEC, state, obs(0.0, steady(4), current=4, pending=2), None, now_s=0.0)
    assert not d.batching_changed
    assert any("pending" in n for n in batching_notes(d.notes))


def test_at_most_one_rollout_per_interval() -> None:
    state = State.initial(SPEC, 0.0, 4, last_rollout_s=0.0)
    d, _ = decide(SPEC, state, obs(600.0, steady(4), current=4), None, now_s=600.0)
    assert not d.batching_changed and d.batching == POOR
    assert "batching: next rollout allowed in 3000 s" in d.notes
    d, _ = decide(SPEC, state, obs(INTERVAL_S, steady(4), current=4), None, now_s=INTERVAL_S)
    assert d.batching_changed


def test_gain_below_min_gain_keeps_current() -> None:
    spec = make_spec(min_gain=1_000.0)  # demand a 100 000 % gain: never worth a restart wave
    d, state = decide(spec, State.initial(spec, 0.0, 4), obs(0.0, steady(4), current=4), None, now_s=0.0)
    assert not d.batching_changed and state.batching == POOR and state.last_rollout_s is None
    assert batching_notes(d.notes) and not any("roll out" in n for n in d.notes)


def test_no_batching_change_without_observed_load() -> None:
    o = dataclasses.replace(obs(0.0, None, current=4))
    d, _ = decide(SPEC, State.initial(SPEC, 0.0, 4), o, None, now_s=0.0)
    assert not d.batching_changed and d.binding is Binding.HOLD_MISSING_DATA
    assert "batching: no change without valid observed load" in d.notes


def test_tuner_not_rerun_within_recheck_interval() -> None:
    spec = make_spec(min_gain=1_000.0)
    state = State.initial(spec, 0.0, 4)
    d, state = decide(spec, state, obs(0.0, steady(4), current=4), None, now_s=0.0)
    assert state.last_batching_check_s == 0.0
    d, state = decide(spec, state, obs(15.0, steady(4), current=4), None, now_s=15.0)
    assert "batching: checked recently, keep current" in d.notes and state.last_batching_check_s == 0.0
    t = BATCHING_RECHECK_S
    d, state = decide(spec, state, obs(t, steady(4), current=4), None, now_s=t)
    assert state.last_batching_check_s == t and "batching: checked recently, keep current" not in d.notes
