"""Several models per TF Serving server: spec parsing and the shared-device capacity model."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from autoscaler.control.controller import PredictiveController
from autoscaler.core.capacity import CapacityModel
from autoscaler.core.multimodel import (
    declared_shares,
    device_utilisation,
    mixed_profile,
    quantized,
    spec_for_mix,
)
from autoscaler.core.types import Observation, Signal
from autoscaler.spec import SpecError, load_spec, parse_spec
from autoscaler.spec.types import ServedModel

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "multimodel-t4.yaml"


def doc() -> dict[str, object]:
    return yaml.safe_load(EXAMPLE.read_text())


def problems(d: object) -> list[str]:
    with pytest.raises(SpecError) as exc:
        parse_spec(d, "m.yaml")
    return exc.value.problems


def test_models_parse_with_their_profiles_and_the_first_is_model_name() -> None:
    s = load_spec(EXAMPLE)
    assert s.target.model_name == "resnet-fp32"
    assert s.target.model_names == ("resnet-fp32", "resnet-amp")
    assert s.target.models[0].share == 0.6 and s.target.models[0].profile is None
    amp = s.target.models[1].profile
    assert amp is not None and amp.batch_latency_ms[0] == 4.77
    single = load_spec(ROOT / "examples" / "resnet50-t4.yaml")
    assert single.target.models == () and single.target.model_names == ("resnet",)


def test_bad_models_are_refused_naming_the_field() -> None:
    d = doc()
    d["spec"]["target"]["models"].append({"name": "resnet-amp"})  # type: ignore[index]
    assert problems(d) == [
        "m.yaml: spec.target.models[2].name: duplicate model name 'resnet-amp' (expected each model once)"
    ]
    d = doc()
    d["spec"]["target"]["modelName"] = "bert"  # type: ignore[index]
    assert problems(d)[0].startswith("m.yaml: spec.target.modelName: 'bert' is not among models")
    d = doc()
    d["spec"]["target"]["models"][1]["share"] = 0.5  # type: ignore[index]
    assert "spec.target.models: the shares add up to 1.1 (expected at most 1)" in problems(d)[0]
    d = doc()
    del d["spec"]["target"]["models"]  # type: ignore[attr-defined]
    assert problems(d) == ["m.yaml: spec.target.modelName: required field is missing"]
    d = doc()
    d["spec"]["slo"]["latencyMs"] = 6  # type: ignore[index]  # above AMP's 4.77 ms, below FP32's 7.34 ms
    assert any("spec.slo.latencyMs" in p for p in problems(d))
    d["spec"]["slo"]["latencyMs"] = 4  # type: ignore[index]
    assert any(p.startswith("m.yaml: spec.target.models[1].profile: model 'resnet-amp'") for p in problems(d))


def test_single_model_spec_is_returned_untouched() -> None:
    s = load_spec(ROOT / "examples" / "resnet50-t4.yaml")
    assert spec_for_mix(s, {"resnet": 10.0}) is s
    ctl = PredictiveController(s, None)
    obs = Observation(time_s=0.0, request_rate_rps=Signal.of(100.0), current_replicas=2, ready_replicas=2)
    d = ctl.decide(obs, None, 0.0)
    assert d.valid and d.capacity_rps is not None


def test_shares_declared_observed_and_quantized() -> None:
    assert declared_shares([ServedModel("a", 0.6), ServedModel("b"), ServedModel("c")]) == pytest.approx(
        (0.6, 0.2, 0.2)
    )
    assert quantized((1 / 3, 1 / 3, 1 / 3)) == (0.34, 0.34, 0.32)  # 2 % steps, largest remainder
    s = load_spec(EXAMPLE)
    m = spec_for_mix(s)  # no observation: declared 0.6 / 0.4
    assert [x.share for x in m.target.models] == [0.6, 0.4]
    assert spec_for_mix(m) == m  # idempotent: every profile and share spelled out
    o = spec_for_mix(s, (("resnet-fp32", 30.0), ("resnet-amp", 70.0)))
    assert [x.share for x in o.target.models] == [0.3, 0.7]
    # a model without a request_count series yet has had no request: share 0
    assert [x.share for x in spec_for_mix(s, {"resnet-amp": 5.0}).target.models] == [0.0, 1.0]
    assert spec_for_mix(s, {"resnet-amp": float("nan")}) == m  # unusable rates: declared shares


def test_device_time_adds_up() -> None:
    """GPU utilisation = Σ rate_m × S_m(b)/b, and the mixed profile reproduces it at every batch size."""
    s = load_spec(EXAMPLE)
    fp32, amp = s.profile, s.target.models[1].profile
    assert amp is not None
    u = device_utilisation([60.0, 40.0], [fp32, amp], [8, 8])
    assert u == pytest.approx(60 * 23.41e-3 / 8 + 40 * 10.16e-3 / 8)
    mix = mixed_profile([fp32, amp], [0.6, 0.4], fp32)
    for b in (1, 8, 32, 100):
        assert device_utilisation([100.0], [mix], [b]) == pytest.approx(
            device_utilisation([60.0, 40.0], [fp32, amp], [b, b])
        )
    with pytest.raises(ValueError, match="expected one per model"):
        device_utilisation([1.0], [fp32, amp], [1])


def test_mixed_capacity_lies_between_and_near_the_harmonic_mean() -> None:
    """Capacity of the mix: between the two models' own, within 5 % of the share-weighted harmonic
    mean that additive device time predicts when each model ran at its own capacity."""
    s = load_spec(EXAMPLE)
    caps = {}
    for shares in ((1.0, 0.0), (0.6, 0.4), (0.0, 1.0)):
        m = spec_for_mix(s, {"resnet-fp32": shares[0], "resnet-amp": shares[1]})
        caps[shares] = CapacityModel(m.profile).capacity_at_slo_rps(m.batching.initial, m.slo)
    lo, mid, hi = caps[(1.0, 0.0)], caps[(0.6, 0.4)], caps[(0.0, 1.0)]
    assert lo < mid < hi
    harmonic = 1.0 / (0.6 / lo + 0.4 / hi)
    assert mid == pytest.approx(harmonic, rel=0.05)


def test_controller_sizes_a_multi_model_deployment_for_its_mix() -> None:
    """The same total load needs more replicas when the slow model dominates the mix."""
    s = load_spec(EXAMPLE)
    desired = {}
    for name, rates in {"fp32-heavy": (900.0, 100.0), "amp-heavy": (100.0, 900.0)}.items():
        ctl = PredictiveController(s, None)
        obs = Observation(
            time_s=0.0,
            request_rate_rps=Signal.of(1000.0),
            current_replicas=1,  # scaling up: the scale-down stabilization window does not hold it
            ready_replicas=1,
            model_rates_rps=(("resnet-fp32", rates[0]), ("resnet-amp", rates[1])),
        )
        d = ctl.decide(obs, None, 0.0)
        assert d.valid and d.capacity_rps is not None
        a, b = round(100 * rates[0] / 1000), round(100 * rates[1] / 1000)
        assert d.notes[-1] == f"capacity per pod of the model mix: {a}% resnet-fp32 + {b}% resnet-amp"
        desired[name] = (d.desired_replicas, d.capacity_rps)
    assert desired["fp32-heavy"][1] < desired["amp-heavy"][1]
    assert desired["fp32-heavy"][0] > desired["amp-heavy"][0]


def test_validate_lists_every_served_model(capsys: pytest.CaptureFixture[str]) -> None:
    from autoscaler.cli import main

    assert main(["validate", str(EXAMPLE)]) == 0
    assert "-> serving/resnet-multi (models resnet-fp32, resnet-amp), mode hpa" in capsys.readouterr().out


def test_simulate_from_prometheus_keeps_every_model_of_the_spec() -> None:
    import argparse

    from autoscaler.commands.simulate_history import target_spec

    args = argparse.Namespace(target="serving/resnet-multi", spec=str(EXAMPLE), model=None)
    s = target_spec(args)
    assert s.target.model_names == ("resnet-fp32", "resnet-amp")  # the history query sums both
    assert s.profile.source == "mix: 60% resnet-fp32 + 40% resnet-amp"
    one = target_spec(argparse.Namespace(target="serving/resnet-multi", spec=str(EXAMPLE), model="resnet-amp"))
    assert one.target.model_names == ("resnet-amp",) and one.profile == load_spec(EXAMPLE).target.models[1].profile
