"""The simulated pod CPU (`sim/cpu.py`): a saturated pod reads near its request, so `hpa-cpu` can scale."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from autoscaler.core.capacity import CapacityModel
from autoscaler.sim import engine
from autoscaler.sim.cpu import CpuModel
from autoscaler.sim.scenario import REPO_ROOT
from autoscaler.spec import load_spec

SPEC = load_spec(REPO_ROOT / "examples" / "resnet50-t4.yaml")


def test_a_saturated_pod_reads_near_its_cpu_request_and_an_idle_one_near_nothing() -> None:
    cpu = CpuModel.for_spec(SPEC)
    model = CapacityModel(SPEC.profile)
    params = SPEC.batching.initial
    mu = model.max_throughput_rps(params)
    request = SPEC.profile.cpu_request_millicores
    saturated = cpu.millicores(mu, model.busy_fraction(mu, params))
    assert 0.95 * request <= saturated <= 1.0 * request
    assert cpu.millicores(0.0, 0.0) == pytest.approx(50.0)
    # usage grows with load across the whole range (the HPA's proportional rule needs that)
    rates = np.linspace(0.0, mu, 40)
    usage = [cpu.millicores(r, model.busy_fraction(r, params)) for r in rates]
    assert all(b > a for a, b in zip(usage, usage[1:], strict=False))


def test_per_request_cpu_alone_above_the_request_adds_no_device_term() -> None:
    heavy = replace(SPEC, profile=replace(SPEC.profile, cpu_ms_per_request=10.0))
    assert CpuModel.for_spec(heavy).batch_m == 0.0


def test_tutorial_hpa_cpu_scales_up_under_overload() -> None:
    """Load steps from what 3 pods serve at the SLO to what 9 need: the 70 % CPU HPA must follow.

    With CPU = idle + 3 ms per request alone a saturated pod read 61.6 % of its request, under the
    70 % target, and the HPA stayed at 3 replicas while rejecting most of the load.
    """
    cap = CapacityModel(SPEC.profile).capacity_at_slo_rps(SPEC.batching.initial, SPEC.slo)
    rate = np.concatenate([np.full(900, 3 * 0.8 * cap), np.full(1800, 9 * 0.8 * cap)])
    res = engine.run_rates(rate, SPEC, "hpa-cpu")
    tl = res.timeline
    desired = tl.desired[tl.window()]
    assert desired[:900].max() <= 4
    assert desired[-300:].min() >= 9  # 7.2 pods of load at ~70 % CPU each
    late = slice(tl.index(1800), tl.index(2700))
    assert tl.rejected[late].sum() < 1e-3 * tl.arrivals[late].sum()
