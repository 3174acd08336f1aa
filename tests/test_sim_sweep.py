"""Knob sweeps: the grid per policy, the refinement pass and the choice of each policy's best setting."""

from __future__ import annotations

from typing import Any

from autoscaler.sim import sweep
from autoscaler.sim.sweep import SweepTask


def _row(policy: str, knobs: dict[str, Any], rh: float, meets: bool, scenario: str = "s") -> dict[str, Any]:
    return {
        "scenario": scenario,
        "policy": policy,
        "knobs": knobs,
        "replica_hours": rh,
        "meets_slo": meets,
        "slo_attainment": 0.9995 if meets else 0.99,
    }


def test_refine_tries_points_between_the_cheapest_pass_and_its_failing_neighbour() -> None:
    grid = [0.0, 0.15, 0.35, 0.5]
    tasks = [SweepTask("s", "predictive", {"headroom": h}, {}, {}) for h in grid]
    rows = [
        _row("predictive", {"headroom": 0.0}, 100.0, False),
        _row("predictive", {"headroom": 0.15}, 120.0, False),
        _row("predictive", {"headroom": 0.35}, 160.0, False),
        _row("predictive", {"headroom": 0.5}, 200.0, True),
    ]
    extra = sweep.refine(tasks, rows)
    assert [t.knobs["headroom"] for t in extra] == [0.45, 0.4]
    assert all(t.policy == "predictive" and t.scenario == "s" for t in extra)


def test_refine_keeps_integer_knobs_integral_and_works_in_either_direction() -> None:
    # hpa-cpu: a *higher* target is cheaper; 40 % passes, 55 % fails
    tasks = [SweepTask("s", "hpa-cpu", {"target_utilization_pct": v}, {}, {}) for v in (25, 40, 55, 70)]
    rows = [
        _row("hpa-cpu", {"target_utilization_pct": 25}, 400.0, True),
        _row("hpa-cpu", {"target_utilization_pct": 40}, 300.0, True),
        _row("hpa-cpu", {"target_utilization_pct": 55}, 220.0, False),
        _row("hpa-cpu", {"target_utilization_pct": 70}, 150.0, False),
    ]
    extra = sweep.refine(tasks, rows)
    assert [t.knobs["target_utilization_pct"] for t in extra] == [45, 50]
    assert all(isinstance(t.knobs["target_utilization_pct"], int) for t in extra)


def test_refine_skips_policies_that_never_or_always_meet_the_goal_and_clairvoyant_ones() -> None:
    tasks = [SweepTask("s", "keda", {"threshold_rps": v}, {}, {}) for v in (100.0, 200.0)]
    tasks += [SweepTask("s", "oracle", {}, {}, {})]
    never = [_row("keda", {"threshold_rps": 100.0}, 10.0, False), _row("keda", {"threshold_rps": 200.0}, 5.0, False)]
    always = [_row("keda", {"threshold_rps": 100.0}, 10.0, True), _row("keda", {"threshold_rps": 200.0}, 5.0, True)]
    oracle = [_row("oracle", {}, 3.0, True)]
    assert sweep.refine(tasks, never + oracle) == []
    assert sweep.refine(tasks, always + oracle) == []


def test_best_setting_is_the_cheapest_that_meets_the_goal_including_refined_ones() -> None:
    rows = [
        _row("oracle", {}, 50.0, True),
        _row("predictive", {"headroom": 0.35}, 160.0, False),
        _row("predictive", {"headroom": 0.5}, 200.0, True),
        _row("predictive", {"headroom": 0.4}, 170.0, True),  # a refined setting
    ]
    best = {b["policy"]: b for b in sweep.best_by_policy(rows)}
    assert best["predictive"]["best_knobs"] == {"headroom": 0.4}
    assert best["predictive"]["x_oracle"] == 170.0 / 50.0
    assert best["predictive"]["settings_tried"] == 3


def test_refine_ignores_settings_that_combine_the_knob_with_another() -> None:
    """The predictive grid also tries lower forecast quantiles at headroom 0; those rows carry a
    `headroom` too and must not stand in for the plain headroom setting of the same value."""
    tasks = [SweepTask("s", "predictive", {"headroom": h}, {}, {}) for h in (0.0, 0.15)]
    rows = [
        _row("predictive", {"headroom": 0.0}, 100.0, False),
        _row("predictive", {"headroom": 0.15}, 120.0, True),
        _row("predictive", {"forecast_quantile": 0.5, "headroom": 0.0}, 90.0, True),  # after: would win
    ]
    extra = sweep.refine(tasks, rows)
    assert [t.knobs["headroom"] for t in extra] == [0.1, 0.05]
    assert sweep.best_by_policy(rows)[0]["best_knobs"] == {"forecast_quantile": 0.5, "headroom": 0.0}


def test_the_predictive_grid_tries_lower_forecast_quantiles_at_headroom_zero() -> None:
    from autoscaler.sim.sweep import knob_grid
    from autoscaler.spec.types import ServingAutoscalerSpec, TargetRef

    spec = ServingAutoscalerSpec(name="t", target=TargetRef("ns", "d", "m"))
    grid = knob_grid("predictive", spec)
    lean = [k for k in grid if "forecast_quantile" in k]
    below = spec.provisioning.forecast_quantile
    assert lean and all(k["headroom"] == 0.0 and k["forecast_quantile"] < below for k in lean)
    assert [k["headroom"] for k in grid if set(k) == {"headroom"}] == [0.0, 0.05, 0.15, 0.25, 0.35, 0.5]
