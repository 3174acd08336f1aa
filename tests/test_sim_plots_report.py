"""The what-if report's readability: fixed policy styles, coinciding lines and labels grouped,
oscillating policies on their own panel, the verdict sentence and the settings actually used."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from autoscaler.cli import main
from autoscaler.sim import plots
from autoscaler.sim.policies import registry
from autoscaler.sim.report import verdict


def test_every_registered_policy_has_its_own_fixed_colour() -> None:
    colours = [plots.style(p).color for p in registry.names()]
    assert set(registry.names()) <= set(plots.POLICY_STYLES)
    assert len(set(colours)) == len(colours)
    # an unlisted policy's style depends on its name only (crc32), not on the process or the order
    assert plots.style("my-policy") == plots.style("my-policy") == plots.Style("#e6550d", "-", "o")


def test_coinciding_lines_share_a_group_and_an_oscillating_one_gets_its_own_panel() -> None:
    rng = np.random.default_rng(0)
    base = 10 + 5 * np.sin(np.linspace(0, 6, 500))
    kpa = np.where(np.arange(500) % 10 < 5, 40.0, 25.0)
    series = {
        "predictive": base * 1.3,
        "hpa-rps": base,
        "keda": base + rng.normal(0, 0.1, 500),
        "phpa": base.copy(),
        "kpa": kpa,
    }
    assert plots.coinciding_groups(series, 20.0) == [["predictive"], ["hpa-rps", "keda", "phpa"], ["kpa"]]
    main_, own = plots.split_outliers(series, ref_peak=20.0)  # kpa above 25 all the time
    assert own == ["kpa"] and "predictive" in main_
    assert plots.split_outliers({"kpa": kpa}, ref_peak=20.0) == (["kpa"], [])  # never all on their own


def test_cost_labels_of_overprinting_points_are_merged() -> None:
    points = {"hpa-rps": (96.4, 0.053), "keda": (95.8, 0.0531), "phpa": (96.6, 0.053), "oracle": (27.9, 0.0006)}
    points |= {"kpa": (259.2, 0.41), "predictive": (110.6, 0.027)}
    groups = plots.cost_label_groups(points)
    assert ["hpa-rps", "keda", "phpa"] in groups and ["predictive"] in groups and len(groups) == 4


def _row(policy: str, att: float, rh: float, meets: bool, x: float | None = None) -> dict[str, Any]:
    return {"policy": policy, "slo_attainment": att, "replica_hours": rh, "meets_slo": meets, "x_oracle": x}


def test_verdict_names_the_cheapest_deployable_policy_and_its_margin() -> None:
    rows = [
        _row("predictive", 0.9993, 80.0, True, 1.25),
        _row("hpa-rps", 0.9991, 100.0, True, 1.56),
        _row("kpa", 0.6, 300.0, False),
        _row("static-peak", 1.0, 120.0, True),
        _row("oracle", 0.9994, 64.0, True, 1.0),  # clairvoyant: never the verdict
    ]
    assert verdict(rows, 0.999) == (
        "predictive met the 99.9 % attainment goal cheapest: 80.0 replica-hours, 1.25× the oracle, "
        "20 % less than the next that met it (hpa-rps, 100.0 replica-hours)."
    )
    tie = [_row("predictive-direct", 0.9995, 80.5, True, 1.26), *rows]
    assert verdict(tie, 0.999).startswith(
        "predictive met the 99.9 % attainment goal cheapest: 80.0 replica-hours, 1.25× the oracle "
        "(within 1 %: predictive-direct), 20 % less than the next that met it (hpa-rps, 100.0 replica-hours)."
    )
    none = [_row("predictive", 0.973, 110.6, False), _row("keda", 0.9469, 95.8, False), rows[3], rows[4]]
    assert verdict(none, 0.999) == (
        "No policy that runs without knowing the future met the 99.9 % goal; the closest was predictive at "
        "97.30 % (110.6 replica-hours); with hindsight: oracle 64.0 replica-hours, static-peak 120.0 replica-hours."
    )


def test_report_shows_the_settings_used_and_opens_with_the_verdict(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["simulate", "azure-functions-8h", "--duration-s", "1800", "--policies", "predictive,hpa-rps,oracle"]
    assert main([*args, "--knob", "hpa-rps.target_rps_per_pod=300", "--no-timelines", "--out", str(out)]) == 0
    rows = {r["policy"]: r for r in json.loads((out / "summary.json").read_text())}
    assert rows["hpa-rps"]["knobs"] == {"target_rps_per_pod": 300}
    assert rows["hpa-rps"]["settings"] == {"target_rps_per_pod": 300.0}
    assert rows["oracle"]["settings"] == {"budget_fraction": 0.9}  # the default, not {}
    assert rows["predictive"]["settings"]["mode"] == "hpa" and "headroom" in rows["predictive"]["settings"]
    html = (out / "report.html").read_text()
    assert "target_rps_per_pod=300" in html and "budget_fraction=0.9" in html and "<td>{}</td>" not in html
    first = html.index("<p class='verdict'>")
    assert first < html.index("<table>") and "goal" in html[first : first + 400]
