"""Joint replicas × batching: a batching change must pay for its restart wave in replica-hours.

Unit cases for the cost arithmetic (a rolling restart with maxUnavailable 0 runs
ceil(replicas / maxSurge) waves of one startup, with maxSurge extra pods), then `decide()`:
the same gain in per-replica capacity rolls out when it cuts replicas and is kept back when the
replica count cannot fall (at min_replicas), which the capacity-first tuner alone did not see.
"""

from __future__ import annotations

import dataclasses

import pytest
from test_decide_batching import POOR, SPEC, obs, steady

from autoscaler.core.decide import State, decide
from autoscaler.core.joint import PairOption, choose_pair, horizon_s, restart_wave_pod_s
from autoscaler.spec.types import BatchingParams

BIG = BatchingParams(max_batch_size=16, batch_timeout_us=1_000, num_batch_threads=2, max_enqueued_batches=100)


def test_restart_wave_is_surge_pods_times_waves_times_startup() -> None:
    assert restart_wave_pod_s(10, 60.0) == 600.0
    assert restart_wave_pod_s(10, 60.0, max_surge=3) == 3 * 4 * 60.0
    assert restart_wave_pod_s(2, 60.0, max_surge=5) == 2 * 1 * 60.0
    assert restart_wave_pod_s(0, 60.0) == 0.0
    with pytest.raises(ValueError, match="max_surge >= 1"):
        restart_wave_pod_s(3, 60.0, max_surge=0)


def test_fewer_replicas_win_only_when_they_pay_for_the_wave() -> None:
    keep = PairOption(POOR, 100.0, 10, restart=False)
    new = PairOption(BIG, 170.0, 6, restart=True)
    won = choose_pair((keep, new), horizon=3_600.0, startup_s=60.0)
    assert won.option is new and won.costs_pod_s == (36_000.0, 6 * 3_600.0 + 360.0)
    assert "10 -> 6 replicas saves 4.00 replica-h" in won.reason
    # the same count with either batching: the wave is pure cost
    same = choose_pair((keep, dataclasses.replace(new, replicas=10)), horizon=3_600.0, startup_s=60.0)
    assert same.option is keep and "restart wave" in same.reason
    # one replica saved for an hour does not pay for a 2-replica wave of 40-minute startups
    slow = choose_pair(
        (dataclasses.replace(keep, replicas=3), dataclasses.replace(new, replicas=2)),
        horizon=3_600.0,
        startup_s=2_400.0,
    )
    assert slow.option.restart is False
    with pytest.raises(ValueError, match="horizon"):
        choose_pair((keep,), horizon=0.0, startup_s=60.0)


def test_horizon_is_the_rollout_interval_at_least_an_hour() -> None:
    assert horizon_s(SPEC) == 3_600.0
    longer = dataclasses.replace(SPEC, batching=dataclasses.replace(SPEC.batching, min_rollout_interval_s=7_200.0))
    assert horizon_s(longer) == 7_200.0


def test_decide_keeps_batching_when_min_replicas_holds_the_count() -> None:
    spec = dataclasses.replace(SPEC, min_replicas=4)
    d, state = decide(spec, State.initial(spec, 0.0, 4), obs(0.0, steady(4), current=4), None, now_s=0.0)
    assert not d.batching_changed and state.batching == POOR
    assert any("keep current" in n and "restart wave" in n for n in d.notes), d.notes
    # without the floor the same load and gain roll out (4 -> fewer replicas)
    d, _ = decide(SPEC, State.initial(SPEC, 0.0, 4), obs(0.0, steady(4), current=4), None, now_s=0.0)
    assert d.batching_changed and any("replica-h" in n for n in d.notes if n.startswith("batching: roll out"))
