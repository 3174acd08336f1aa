"""The engine: conservation, replica bounds, determinism, infinite capacity, bad input."""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

import numpy as np
import pytest
from fixed_policy import Fixed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoscaler.sim import engine
from autoscaler.sim.view import ClusterView, PolicyContext, PolicyOutput
from autoscaler.spec.types import ServiceProfile, ServingAutoscalerSpec, TargetRef

SPEC = ServingAutoscalerSpec(name="t", target=TargetRef("ns", "d", "m"), min_replicas=2, max_replicas=9)


class Wild:
    """Asks for random replica counts, far outside [min, max] too."""

    name: ClassVar[str] = "wild"
    knob: ClassVar[str] = "seed"
    clairvoyant: ClassVar[bool] = False

    def __init__(self, seed: int = 0, period_s: float = 15.0) -> None:
        self.rng = np.random.default_rng(seed)
        self.period_s = period_s

    def start(self, ctx: PolicyContext) -> None:
        assert ctx.future_rps is None, "a non-clairvoyant policy must not get the future"

    def decide(self, view: ClusterView) -> PolicyOutput:
        assert view.ready_replicas <= SPEC.max_replicas
        return PolicyOutput(int(self.rng.integers(-5, 30)))


def _bursty(n: int, seed: int, mean: float = 1500.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = mean * (1 + 0.8 * np.sin(np.arange(n) / 300.0))
    return np.maximum(base * rng.lognormal(0, 0.5, n), 0.0)


@pytest.mark.parametrize("fidelity", ["fluid", "request"])
def test_conservation_and_replica_bounds(fidelity: str) -> None:
    n = 900
    rate = _bursty(n, 1)
    arrivals = None
    if fidelity == "request":
        rng = np.random.default_rng(2)
        counts = rng.poisson(rate)
        arrivals = np.sort(np.repeat(np.arange(n), counts) + rng.random(int(counts.sum())))
        rate = counts.astype(float)
    res = engine.run_rates(rate, SPEC, Wild(), fidelity=fidelity, arrivals_s=arrivals)
    tl = res.timeline
    w = tl.window()
    assert np.allclose(tl.arrivals[w], tl.served[w] + tl.rejected[w])
    assert res.summary["requests"] == round(float(rate.sum()))
    assert (tl.within_slo[w] <= tl.served[w] + 1e-9).all()
    assert tl.desired[w].min() >= SPEC.min_replicas and tl.desired[w].max() <= SPEC.max_replicas
    assert tl.ready[w].max() <= SPEC.max_replicas
    assert res.summary["rejected"] > 0, "the wild policy should overload the fleet at least once"
    assert 0.0 < res.summary["slo_attainment"] < 1.0


def test_same_seed_same_result_and_seed_matters() -> None:
    rate = _bursty(1200, 4)
    a = engine.run_rates(rate, SPEC, Wild(seed=1), seed=5).summary
    b = engine.run_rates(rate, SPEC, Wild(seed=1), seed=5).summary
    c = engine.run_rates(rate, SPEC, Wild(seed=1), seed=6).summary
    keys = ("slo_attainment", "replica_hours", "rejected", "scale_events")
    assert [a[k] for k in keys] == [b[k] for k in keys]
    # pods are paid from creation, but when they become ready depends on the seeded delays
    assert a["ready_replica_hours"] != c["ready_replica_hours"], "startup delays are drawn from the seed"


FAST = replace(
    SPEC,
    profile=ServiceProfile(batch_sizes=(1, 128), batch_latency_ms=(0.001, 0.002)),
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rates=st.lists(st.floats(min_value=0.0, max_value=50_000.0), min_size=30, max_size=120),
    replicas=st.integers(min_value=2, max_value=9),
)
def test_an_infinite_capacity_cluster_never_queues(rates: list[float], replicas: int) -> None:
    res = engine.run_rates(np.array(rates), FAST, Fixed(replicas), preroll_s=60)
    tl = res.timeline
    w = tl.window()
    assert float(tl.rejected[w].sum()) == 0.0
    assert res.summary["slo_attainment"] == pytest.approx(1.0, abs=1e-9)
    busy = tl.ready[w] > 0
    # latency = batch timeout + (negligible) service time: no wait for a thread, ever
    timeout_ms = FAST.batching.initial.batch_timeout_us / 1000.0
    assert np.nanmax(tl.p99_ms[w][busy]) <= timeout_ms + 0.01


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="unknown policy 'nope'"):
        engine.run_rates(np.ones(60), SPEC, "nope")
    with pytest.raises(ValueError, match="fidelity"):
        engine.run_rates(np.ones(60), SPEC, Fixed(2), fidelity="exact")
    with pytest.raises(ValueError, match="rate_rps"):
        engine.run_rates(np.ones((2, 2)), SPEC, Fixed(2))
    with pytest.raises(ValueError, match="arrivals_s"):
        engine.run_rates(np.ones(60), SPEC, Fixed(2), fidelity="request")


def _bits(res: engine.SimResult) -> tuple[dict[str, object], dict[str, bytes]]:
    summary = {k: v for k, v in res.summary.items() if k != "wall_s"}
    tl = res.timeline
    arrays = {k: np.ascontiguousarray(v).tobytes() for k, v in vars(tl).items() if isinstance(v, np.ndarray)}
    return summary, arrays


def _assert_same_replay(a: engine.SimResult, b: engine.SimResult) -> None:
    sa, aa = _bits(a)
    sb, ab = _bits(b)
    assert sa == sb
    for name in aa:
        assert aa[name] == ab[name], f"timeline.{name} differs"


@pytest.mark.parametrize("policy", ["predictive", "hpa-cpu", "hpa-rps", "keda", "kpa", "phpa", "static-peak", "oracle"])
def test_serving_ahead_replays_bit_for_bit_like_serving_each_period(policy: str) -> None:
    """The engine serves ahead of the policy and takes back the seconds after a change; the
    replay must be exactly the one that serves each period after its decision."""
    from autoscaler.sim.scenario import load_inputs, load_scenario

    inp = load_inputs(load_scenario("nasa-1s-7d"), duration_s=3 * 3600)
    kw = {"history_rps": inp.history_rps}
    ahead = engine.run(inp.trace, inp.spec, policy, speculate=True, **kw)
    each = engine.run(inp.trace, inp.spec, policy, speculate=False, **kw)
    _assert_same_replay(ahead, each)
    assert ahead.summary["scale_events"] > 0 or policy == "static-peak"


class Rollouts:
    """Changes replicas and batching parameters now and then (hashing the tick time), so the
    engine takes back served-ahead seconds in the middle of rollouts and of uniform stretches."""

    name: ClassVar[str] = "rollouts"
    knob: ClassVar[str] = "seed"
    clairvoyant: ClassVar[bool] = False

    def __init__(self, seed: int, period_s: float) -> None:
        self.seed = seed
        self.period_s = period_s

    def start(self, ctx: PolicyContext) -> None:
        pass

    def decide(self, view: ClusterView) -> PolicyOutput:
        from autoscaler.spec.types import BatchingParams

        h = hash((self.seed, int(view.now_s))) % 1000
        replicas = view.spec_replicas if h < 850 else 2 + h % 8
        batching = None if h % 97 else BatchingParams(max_batch_size=(16, 32, 64)[h % 3])
        return PolicyOutput(replicas, batching=batching)


@pytest.mark.parametrize(("seed", "period_s"), [(1, 2.0), (2, 5.0), (3, 15.0)])
def test_serving_ahead_through_rollouts_and_replica_changes(seed: int, period_s: float) -> None:
    rate = _bursty(5400, seed)
    a = engine.run_rates(rate, SPEC, Rollouts(seed, period_s), speculate=True)
    b = engine.run_rates(rate, SPEC, Rollouts(seed, period_s), speculate=False)
    _assert_same_replay(a, b)
    assert a.summary["scale_events"] >= 5
