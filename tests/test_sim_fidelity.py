"""Fluid (analytic, per second) and request-level (exact DES) fidelities agree on a shipped trace.

Window: 30 min of the Azure Functions HTTP trace (interval trace: Poisson arrivals within each
minute), scaled so the busiest minute needs 3 replicas at the SLO capacity (~1.3 M requests
through the DES).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from fixed_policy import Fixed

from autoscaler.core.capacity import CapacityModel
from autoscaler.sim import engine
from autoscaler.sim.policies.predictive import PredictivePolicy
from autoscaler.sim.scenario import Inputs, load_inputs, load_scenario
from autoscaler.spec.parse import load_spec


@pytest.fixture(scope="module")
def window() -> tuple[Inputs, np.ndarray, np.ndarray]:
    inp = load_inputs(load_scenario("azure-functions-8h"), target_peak_replicas=3.0, duration_s=1800.0, start_s=7200.0)
    arrivals = inp.trace.arrivals(7)
    n = inp.trace.n_seconds
    counts = np.bincount(np.floor(arrivals).astype(np.int64), minlength=n)[:n].astype(np.float64)
    return inp, arrivals, counts


@pytest.mark.parametrize(("policy", "target_fraction"), [("hpa-rps", 0.6), ("oracle", None)])
def test_fidelities_agree_under_the_same_policy(
    window: tuple[Inputs, np.ndarray, np.ndarray], policy: str, target_fraction: float | None
) -> None:
    """Reactive policies tuned to a sane target (a fraction of the SLO capacity), and the oracle."""
    inp, arrivals, counts = window
    knobs = {}
    if target_fraction is not None:
        cap = CapacityModel(inp.spec.profile).capacity_at_slo_rps(inp.spec.batching.initial, inp.spec.slo)
        knobs = {"target_rps_per_pod" if policy == "hpa-rps" else "threshold_rps": target_fraction * cap}
    fluid = engine.run_rates(counts, inp.spec, policy, knobs=knobs, seed=1).summary
    exact = engine.run_rates(
        counts, inp.spec, policy, knobs=knobs, fidelity="request", arrivals_s=arrivals, seed=1
    ).summary
    assert exact["requests"] == len(arrivals) == fluid["requests"]
    assert abs(fluid["slo_attainment"] - exact["slo_attainment"]) <= 0.02
    assert abs(fluid["replica_hours"] / exact["replica_hours"] - 1.0) <= 0.01


@pytest.mark.parametrize("replicas", [1, 2])
def test_fidelities_agree_on_an_undersized_fleet(window: tuple[Inputs, np.ndarray, np.ndarray], replicas: int) -> None:
    """Overload is where a fluid model usually breaks: misses and rejections must still agree."""
    inp, arrivals, counts = window
    spec = replace(inp.spec, min_replicas=1)
    fluid = engine.run_rates(counts, spec, Fixed(replicas), seed=1).summary
    exact = engine.run_rates(counts, spec, Fixed(replicas), fidelity="request", arrivals_s=arrivals, seed=1).summary
    # (2 replicas: peaks at ~1.5x capacity; the queue built in overload drains for seconds after it,
    # which the fluid server carries as backlog: attainment 0.179 fluid vs 0.181 exact, rejected
    # 1.03x exact; 0.313 and 1.24x while each fluid second was an independent steady state)
    assert abs(fluid["slo_attainment"] - exact["slo_attainment"]) <= 0.03
    assert exact["rejected"] > 0.05 * exact["requests"], "the fleet must be overloaded here"
    if replicas == 1:
        # In deep overload (one replica at ~2x its capacity) the queue stays full and both reject
        # the excess: fluid / exact = 1.002 (it read 1.31 while the exact server restarted each
        # replica with free threads at every decision period).
        assert 1.0 <= fluid["rejected"] / exact["rejected"] <= 1.5
    else:
        assert abs(fluid["rejected"] / exact["rejected"] - 1.0) <= 0.10


@pytest.mark.parametrize("load_fraction", [0.3, 0.7])
def test_predictive_calibration_learns_the_simulated_replica_speed(load_fraction: float) -> None:
    """The simulated p99 is what histogram_quantile over TF Serving's buckets reports, as in a cluster,
    so the daemon's debiasing recovers the true service scale (1.0 here: the simulator serves with the
    spec's own profile). Fed the exact quantile instead, calibration settled ~8 % fast."""
    sp = load_spec(load_scenario("worldcup98-7d").spec_path)
    cap = CapacityModel(sp.profile).capacity_at_slo_rps(sp.batching.initial, sp.slo)
    pol = PredictivePolicy(sp, tune_batching=False)
    engine.run_rates(np.full(2 * 3600, load_fraction * cap * 4), sp, pol)
    assert pol.state is not None
    cal = pol.state.calibration
    assert cal.samples > 100
    assert abs(cal.service_scale - 1.0) < 0.02, cal
