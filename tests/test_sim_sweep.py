"""Knob sweeps: the grid per policy, the refinement pass and the choice of each policy's best setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from autoscaler.core.capacity import CapacityModel
from autoscaler.sim import sweep
from autoscaler.sim.policies import registry
from autoscaler.sim.scenario import REPO_ROOT
from autoscaler.sim.sweep import SweepTask
from autoscaler.spec import load_spec


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
    assert [k["headroom"] for k in grid if set(k) == {"headroom"}] == [0.0, 0.05, 0.1, 0.15, 0.25, 0.35, 0.5]


T4 = load_spec(REPO_ROOT / "examples" / "resnet50-t4.yaml")


@pytest.mark.parametrize(
    ("policy", "default"),
    [
        ("hpa-cpu", {"target_utilization_pct": 70}),
        ("hpa-rps", {"target_rps_per_pod": 100.0}),
        ("keda", {"threshold_rps": 100.0}),
        ("phpa", {"target_rps_per_pod": 100.0}),
        ("kpa", {"target_concurrency": 11.2}),
        ("predictive", {"headroom": 0.1}),
    ],
)
def test_every_grid_holds_the_policys_documented_default(policy: str, default: dict[str, Any]) -> None:
    assert sweep.default_knobs(policy, T4) == default
    assert default in sweep.knob_grid(policy, T4)
    # and it is the setting the policy runs with when given no knob
    p: Any = registry.create(policy, T4)
    untuned = {
        "hpa-cpu": lambda: p.target_utilization_pct,
        "hpa-rps": lambda: p.target_rps_per_pod,
        "keda": lambda: p.threshold_rps,
        "phpa": lambda: p.hpa.target_rps_per_pod,
        "kpa": lambda: p.target,
        "predictive": lambda: p.spec.provisioning.headroom,
    }[policy]()
    assert untuned == pytest.approx(next(iter(default.values())))


def test_extend_steps_a_never_meeting_policy_towards_more_replicas() -> None:
    tasks = [SweepTask("s", "hpa-rps", {"target_rps_per_pod": v}, {}, {}) for v in (100.0, 200.0)]
    tasks += [SweepTask("s", "predictive", {"headroom": h}, {}, {}) for h in (0.0, 0.5)]
    rows = [
        _row("hpa-rps", {"target_rps_per_pod": 100.0}, 30.0, False),
        _row("hpa-rps", {"target_rps_per_pod": 200.0}, 15.0, False),
        _row("predictive", {"headroom": 0.0}, 10.0, False),
        _row("predictive", {"headroom": 0.5}, 20.0, False),
        _row("static-peak", {}, 60.0, True),
    ]
    extra = {t.policy: t for t in sweep.extend(tasks, rows)}
    assert extra["hpa-rps"].knobs == {"target_rps_per_pod": 70.0} and extra["hpa-rps"].extension_step == 1
    assert extra["predictive"].knobs == {"headroom": 0.65}  # usable share 0.5 -> 0.35
    # the step ran and met the goal: no further step; best_by_policy picks it
    rows.append({**_row("hpa-rps", {"target_rps_per_pod": 70.0}, 43.0, True), "extension_step": 1})
    assert [t.policy for t in sweep.extend(tasks, rows)] == ["predictive"]
    best = {b["policy"]: b for b in sweep.best_by_policy(rows)}
    assert best["hpa-rps"]["best_knobs"] == {"target_rps_per_pod": 70.0} and best["hpa-rps"]["settings_extended"] == 1


def test_extend_stops_past_static_peaks_cost_and_says_so() -> None:
    tasks = [SweepTask("s", "keda", {"threshold_rps": v}, {}, {}) for v in (100.0, 200.0)]
    rows = [
        _row("keda", {"threshold_rps": 100.0}, 30.0, False),
        _row("keda", {"threshold_rps": 200.0}, 15.0, False),
        {**_row("keda", {"threshold_rps": 70.0}, 61.0, False), "extension_step": 1},
        _row("static-peak", {}, 60.0, True),
        _row("oracle", {}, 12.0, True),
    ]
    assert sweep.extend(tasks, rows) == []
    best = {b["policy"]: b for b in sweep.best_by_policy(rows)}
    assert best["keda"]["x_oracle"] is None
    assert best["keda"]["never_meets_reason"].startswith("costs more than static-peak before reaching the goal")
    # cheaper than static-peak: steps on (cost need not grow: the KPA's limit cycle), up to the limit
    rows[2] = {**_row("keda", {"threshold_rps": 70.0}, 30.0, False), "extension_step": 1}
    assert [t.knobs for t in sweep.extend(tasks, rows)] == [{"threshold_rps": 49.0}]
    rows[2] = {**_row("keda", {"threshold_rps": 70.0}, 30.0, False), "extension_step": sweep.MAX_EXTENSION_STEPS}
    assert sweep.extend(tasks, rows) == []
    assert "8 extension steps past the grid" in sweep.best_by_policy(rows)[0]["never_meets_reason"]


def test_run_all_extends_a_grid_that_misses_the_goal_on_a_synthetic_trace(tmp_path: Path) -> None:
    """A slow ramp to 6 replicas of load, then a 4x jump for 5 minutes: hpa-rps meets the goal at no
    grid setting (the jump outruns a 0.3-of-capacity target), one extension step (70 rps/pod) does,
    well under static-peak's cost; refinement then finds a cheaper passing setting between."""
    cap = CapacityModel(T4.profile).capacity_at_slo_rps(T4.batching.initial, T4.slo)
    need = np.concatenate(
        [np.full(40, 1.0), np.linspace(1, 6, 60), np.full(20, 6.0), np.full(5, 24.0), np.full(15, 6.0)]
    )
    trace = tmp_path / "jump_60s.csv"
    trace.write_text("t_s,requests\n" + "".join(f"{i * 60},{round(n * cap * 60)}\n" for i, n in enumerate(need)))
    scenario = tmp_path / "jump.yaml"
    scenario.write_text(f"trace: {trace}\nspec: {REPO_ROOT / 'examples' / 'resnet50-t4.yaml'}\nrate_scale: 1\n")
    tasks = sweep.plan([str(scenario)], ["hpa-rps", "static-peak", "oracle"])
    rows = sweep.run_all(tasks, jobs=1)
    grid = [
        r
        for r in rows
        if r["policy"] == "hpa-rps" and r["extension_step"] == 0 and r["knobs"] in [t.knobs for t in tasks]
    ]
    assert grid and not any(r["meets_slo"] for r in grid)
    best = {b["policy"]: b for b in sweep.best_by_policy(rows)}["hpa-rps"]
    assert best["settings_extended"] >= 1 and best["x_oracle"] is not None and best["never_meets_reason"] is None
    static = {b["policy"]: b for b in sweep.best_by_policy(rows)}["static-peak"]
    assert best["best_replica_hours"] < static["best_replica_hours"]


def test_sweep_table_without_an_oracle_says_so_instead_of_never_meets() -> None:
    import io

    from rich.console import Console

    from autoscaler.commands.sweep import print_best

    row = {
        "scenario": "s", "policy": "hpa-rps", "settings_meeting_slo": 2, "settings_tried": 3,
        "best_knobs": {"target_rps_per_pod": 100.0}, "best_replica_hours": 12.5, "best_attainment": 0.9995,
        "x_oracle": None, "never_meets_reason": None,
    }  # fmt: skip
    never = {**row, "settings_meeting_slo": 0, "best_knobs": None, "best_replica_hours": None,
             "best_attainment": None, "never_meets_reason": "grid exhausted"}  # fmt: skip
    buf = io.StringIO()
    print_best([row, never], Console(file=buf, width=200))
    lines = buf.getvalue().splitlines()
    met = next(line for line in lines if "12.5" in line)
    assert "no oracle run" in met and "never meets" not in met and "None" not in met
    assert any("never meets" in line and "grid exhausted" in line for line in lines)
