"""Several real traces replayed onto one multi-model Deployment (sim/multitrace.py, scenario `models:`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autoscaler.core.capacity import CapacityModel
from autoscaler.sim import engine
from autoscaler.sim.multitrace import mean_rate, summed
from autoscaler.sim.scenario import ScenarioError, load_inputs, load_scenario, parse_scenario
from autoscaler.sim.workload import load_trace, resolve_trace

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = "multimodel-t4-7h"
AZURE, NASA = "azure_functions2019_500fn_8h_http_only_60s.csv", "nasa_http_jul95_60s.csv"


def test_two_shipped_traces_become_one_deployments_load() -> None:
    sc = load_scenario(SCENARIO)
    inp = load_inputs(sc, duration_s=2 * 3600.0)
    azure = load_trace(resolve_trace(AZURE), start_s=3600, duration_s=7200).rate_per_second()
    nasa = load_trace(resolve_trace(NASA), start_s=777600, duration_s=7200).rate_per_second()
    # each trace scaled to its model's share of the spec (0.6 / 0.4 of the mean), then the sum as a whole
    want = (azure * 0.6 / mean_rate(azure) + nasa * 0.4 / mean_rate(nasa)) * inp.rate_scale
    got = inp.trace.rate_per_second()
    assert inp.trace.n_seconds == 7200 and np.allclose(got, want, equal_nan=True)
    assert [m.share for m in inp.spec.target.models] == [0.6, 0.4]
    assert inp.spec.profile.source == "mix: 60% resnet-fp32 + 40% resnet-amp"
    # the busiest second needs 20 replicas at the capacity of the mix, not of either model
    cap = CapacityModel(inp.spec.profile).capacity_at_slo_rps(inp.spec.batching.initial, inp.spec.slo)
    assert np.nanmax(got) == pytest.approx(20 * cap, rel=1e-9)
    one = CapacityModel(load_inputs(load_scenario("azure-functions-8h"), duration_s=60.0).spec.profile)
    assert cap > one.capacity_at_slo_rps(inp.spec.batching.initial, inp.spec.slo)  # FP32 alone is slower
    assert len(inp.history_rps) == 3600 and np.all(np.isfinite(inp.history_rps))


def test_policies_replay_the_mixed_load() -> None:
    inp = load_inputs(load_scenario(SCENARIO), duration_s=3600.0)
    offered = float(np.nansum(inp.trace.rate_per_second()))
    rows = {}
    for name in ("oracle", "hpa-rps", "predictive"):
        knobs = {"tune_batching": False} if name == "predictive" else {}
        rows[name] = engine.run(inp.trace, inp.spec, name, knobs=knobs, history_rps=inp.history_rps).summary
    for r in rows.values():
        assert r["requests"] == pytest.approx(offered, rel=0.01)
        assert 0.9 < r["slo_attainment"] <= 1.0
    assert rows["oracle"]["meets_slo"]
    assert rows["oracle"]["replica_hours"] < rows["hpa-rps"]["replica_hours"]


def test_models_list_errors_name_the_field(tmp_path: Path) -> None:
    spec = str(ROOT / "examples" / "multimodel-t4.yaml")
    base = {"spec": spec, "models": [{"model": "resnet-fp32", "trace": AZURE}]}
    with pytest.raises(ScenarioError, match=r"trace: give either trace or models"):
        parse_scenario({**base, "trace": AZURE}, "s.yaml")
    with pytest.raises(ScenarioError, match=r"s.yaml: models\[0\].rate_scale: expected a number > 0 \(got -1\)"):
        parse_scenario({**base, "models": [{"trace": AZURE, "rate_scale": -1}]}, "s.yaml")
    with pytest.raises(ScenarioError, match=r"models\[0\].speed: unknown field"):
        parse_scenario({**base, "models": [{"trace": AZURE, "speed": 2}]}, "s.yaml")
    with pytest.raises(ScenarioError, match=r"models: expected a non-empty list"):
        parse_scenario({**base, "models": []}, "s.yaml")
    sc = parse_scenario({**base, "models": [{"model": "bert", "trace": AZURE}]}, "s.yaml")
    want = r"models\[0\].model: expected one of the spec's models resnet-fp32, resnet-amp \(got 'bert'\)"
    with pytest.raises(ScenarioError, match=want):
        load_inputs(sc)


def test_summed_keeps_gaps_unknown_and_aligns_histories() -> None:
    a, b = np.array([1.0, np.nan, 3.0, 4.0]), np.array([10.0, 20.0, 30.0])
    assert np.array_equal(summed([a, b]), np.array([11.0, np.nan, 33.0]), equal_nan=True)
    assert np.array_equal(summed([a, b], align_end=True), np.array([np.nan, 23.0, 34.0]), equal_nan=True)
