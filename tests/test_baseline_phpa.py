"""The simulated predictive-horizontal-pod-autoscaler (Holt-Winters over replica history)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autoscaler.core.types import Observation
from autoscaler.sim.policies.phpa import (
    HoltWintersOneStep,
    PredictiveHpaPolicy,
    ceil_forecast,
    holt_winters_additive,
)
from autoscaler.sim.policies.registry import create
from autoscaler.sim.view import ClusterView, PodView, PolicyContext, empty_history
from autoscaler.spec.types import BatchingParams, ServingAutoscalerSpec, TargetRef

SPEC = ServingAutoscalerSpec(name="m", target=TargetRef("ns", "dep", "m"), min_replicas=1, max_replicas=30)
PATTERN = [2, 4, 8, 4]  # calculated replicas over one season of 4 syncs (exact per-pod rates)


def view(now_s: float, replicas: int, total_rps: float) -> ClusterView:
    per_pod = total_rps / replicas
    pods = tuple(PodView(f"p{i}", "Running", True, -100.0, -50.0, None, 1000, per_pod, None) for i in range(replicas))
    return ClusterView(
        now_s=now_s,
        spec_replicas=replicas,
        status_replicas=replicas,
        ready_replicas=replicas,
        pending_replicas=0,
        pods=pods,
        total_rps=total_rps,
        observation=Observation(time_s=now_s),
        batching=BatchingParams(),
    )


def run(policy: PredictiveHpaPolicy, syncs: int) -> list[tuple[int, int, str]]:
    """Drive the policy with load that makes the HPA calculate PATTERN; returns (calculated, out, reason)."""
    policy.start(PolicyContext(SPEC, 0.0, 2, 1.0, empty_history(), 60.0))
    replicas = 2
    seen = []
    for k in range(syncs):
        calc = PATTERN[k % len(PATTERN)]
        out = policy.decide(view(15.0 * k, replicas, 100.0 * calc))
        seen.append((calc, out.desired_replicas, out.reason))
        replicas = out.desired_replicas
    return seen


def test_registry_and_defaults() -> None:
    policy = create("phpa", SPEC)
    assert isinstance(policy, PredictiveHpaPolicy)
    assert policy.seasonal_periods == 86_400 // 15  # one forecaster season in 15 s syncs
    assert (policy.alpha, policy.beta, policy.gamma, policy.stored_seasons) == (0.9, 0.9, 0.9, 2)


def test_holt_winters_recursion() -> None:
    assert holt_winters_additive(np.full(12, 5.0), 4, 0.9, 0.9, 0.9)[-1] == pytest.approx(5.0)
    periodic = np.array(PATTERN * 4, dtype=float)
    nxt = holt_winters_additive(periodic, 4, 0.5, 0.5, 0.5, horizon=2)[-2:]
    assert nxt == pytest.approx([2.0, 4.0], abs=0.3)
    with pytest.raises(ValueError):
        holt_winters_additive(np.ones(3), 4, 0.5, 0.5, 0.5)


def test_falls_back_to_the_hpa_calculation_before_enough_history() -> None:
    """statsmodels' minimum: 2 * seasonalPeriods and 10 + 2 * (seasonalPeriods // 2) points (14 here)."""
    policy = PredictiveHpaPolicy(SPEC, seasonal_periods=4, downscale_stabilization_s=0.0)
    seen = run(policy, 13)
    assert [out for _, out, _ in seen] == [calc for calc, _, _ in seen]
    assert all("prediction unavailable" in reason for _, _, reason in seen)
    assert not policy.can_predict()


def test_predicts_the_next_season_value_once_warm() -> None:
    policy = PredictiveHpaPolicy(SPEC, seasonal_periods=4, stored_seasons=4, downscale_stabilization_s=0.0,
                                 alpha=0.5, beta=0.1, gamma=0.5, chronological_history=True)  # fmt: skip
    seen = run(policy, 40)
    warm = seen[14:]
    assert all(out >= calc for calc, out, _ in warm)  # decision = max(calculated, prediction)
    # at the sync before each 8 the prediction already asks for about 8: scaling ahead of the load
    ahead = [out for k, (calc, out, _) in enumerate(seen) if k >= 14 and PATTERN[(k + 1) % 4] == 8]
    assert ahead and all(out >= 7 for out in ahead)


def test_history_is_pruned_to_stored_seasons_newest_first() -> None:
    policy = PredictiveHpaPolicy(SPEC, seasonal_periods=4, stored_seasons=2)
    run(policy, 30)
    assert len(policy.history) <= 2 * 4 + 3
    times = [t for t, _ in policy.history]
    assert times == sorted(times, reverse=True)  # upstream keeps it sorted newest first after pruning
    assert times[0] == 15.0 * 29


def test_downscale_stabilization_holds_the_highest_recent_decision() -> None:
    policy = PredictiveHpaPolicy(SPEC, seasonal_periods=4, downscale_stabilization_s=300.0)
    seen = run(policy, 12)
    # within 300 s the 8 of the third sync is never given up
    assert [out for _, out, _ in seen] == [2, 4] + [8] * 10


@pytest.mark.parametrize("seed", range(4))
def test_one_step_forecast_matches_the_recursion(seed: int) -> None:
    """The dot-product forecast the policy uses equals the scalar recursion (up to rounding)."""
    rng = np.random.default_rng(seed)
    for _ in range(150):
        L = int(rng.integers(2, 51))
        y = rng.integers(0, 40, int(rng.integers(2 * L, 3 * L + 1))).astype(float)
        alpha, beta, gamma = rng.choice([0.0, 1.0, *rng.random(3)], 3) if rng.random() < 0.2 else rng.random(3)
        model = HoltWintersOneStep(L, float(alpha), float(beta), float(gamma))
        for n in (len(y), 2 * L, L + 1):  # one model serves every length (extends itself as needed)
            ref = float(holt_winters_additive(y[:n], L, alpha, beta, gamma, smoothed=False)[-1])
            assert model.forecast(y[:n]) == pytest.approx(ref, rel=1e-9, abs=1e-9)


def test_constant_history_forecasts_exactly_that_constant() -> None:
    for L in (2, 7, 96, 5760):
        for c in (1, 3, 5, 17, 30):
            for alpha, beta, gamma in ((0.9, 0.9, 0.9), (0.3, 0.7, 0.1)):
                x = HoltWintersOneStep(L, alpha, beta, gamma).forecast(np.full(2 * L + L // 2 + 1, float(c)))
                assert ceil_forecast(x) == c
    assert ceil_forecast(5.000000000000001) == 5 and ceil_forecast(4.999999999999999) == 5
    assert ceil_forecast(5.001) == 6 and ceil_forecast(0.0) == 0 and ceil_forecast(-0.5) == 0


@pytest.mark.parametrize(("chronological", "warm_start"), [(False, False), (True, False), (False, True)])
def test_policy_predictions_match_the_reference_on_its_history(chronological: bool, warm_start: bool) -> None:
    """The replica array the policy keeps in step with `history` (and its pruning) feeds the same forecast."""
    rng = np.random.default_rng(7)
    policy = PredictiveHpaPolicy(SPEC, seasonal_periods=5, stored_seasons=3, chronological_history=chronological,
                                 beta=0.4, downscale_stabilization_s=0.0, warm_start=warm_start)  # fmt: skip
    history_rps = 100.0 * rng.integers(1, 20, 40).astype(float) if warm_start else empty_history()
    policy.start(PolicyContext(SPEC, 0.0, 2, 1.0, history_rps, 15.0))
    checked, seeded = 0, len(policy.history)
    for k in range(300):  # long enough for the policy to move its replica buffer
        calc = int(rng.integers(1, 20))
        history = [*policy.history, (15.0 * k, calc)]
        out = policy.decide(view(15.0 * k, 4, 100.0 * calc))
        assert f"calculated {calc}," in out.reason
        if len(history) >= 14:
            series = np.array([r for _, r in (sorted(history) if chronological else history)], dtype=float)
            ref = math.ceil(holt_winters_additive(series, 5, 0.9, 0.4, 0.9, smoothed=False)[-1])
            assert (f"predicted {ref}," if ref else "prediction unavailable") in out.reason
            checked += 1
    assert checked == (300 if warm_start else 300 - 13) and (seeded > 0) == warm_start
