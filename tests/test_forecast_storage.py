"""The driver's compact storage (numpy ring buffer, no sorted error copy) changes no forecast value.

`tests/data/forecast_golden_nasa.npz` holds the forecasts (mean, lo, hi per step, every third 15 s
tick) that the driver produced before the storage change (a list of Python floats for the history,
a sorted copy of the error matrix), on 6 h of the real NASA-HTTP trace at 60 s warm-started with its
14 days of history: `auto` at the spec defaults refitting hourly, and a holt-winters with a 1 h
season and 12 h of history refitting every 30 min; one tick in 97 has missing data. The replay
here must reproduce them bit for bit, refit counts included.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autoscaler.forecast.driver import ForecastDriver
from autoscaler.sim.scenario import load_inputs, load_scenario
from autoscaler.spec.types import ForecasterSpec

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "data" / "forecast_golden_nasa.npz"
CASES = {
    "auto": (ForecasterSpec(), 3600.0),
    "hw1h": (
        ForecasterSpec(model="holt-winters", season_length_s=3600, history_s=12 * 3600, refit_interval_s=1800),
        0.0,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_forecasts_match_the_pre_ring_buffer_driver_bit_for_bit(case: str) -> None:
    sc = load_scenario(ROOT / "simulations" / "nasa-60s-7d.yaml")
    inp = load_inputs(sc, start_s=sc.start_s + 86_400 + 12 * 3600, duration_s=6 * 3600)
    fspec, min_refit_s = CASES[case]
    d = ForecastDriver(fspec, min_refit_interval_s=min_refit_s, surge_budget=0.01)
    start_s = float(inp.trace.start_s)
    d.warm_start(inp.history_rps, start_s, step_s=1.0)
    rate = inp.trace.rate_per_second()
    rows = []
    for i in range(0, inp.trace.n_seconds, 15):
        v = float(np.mean(rate[i : i + 15]))
        if (i // 15) % 97 == 5:
            v = float("nan")
        d.observe(start_s + i, v)
        fc = d.forecast(start_s + i, 600.0 if i % 2 == 0 else 300.0)
        m = np.full((3, 11), np.nan)
        if fc is not None:
            m[0, : fc.horizon], m[1, : fc.horizon], m[2, : fc.horizon] = fc.mean, fc.lo, fc.hi
        rows.append(m)
    golden = np.load(GOLDEN)
    got = np.stack(rows)[::3]
    assert np.isfinite(got[-1]).any(), "the replay must forecast"
    np.testing.assert_array_equal(got, golden[case])  # NaN == NaN here; bit for bit otherwise
    assert [d.fit_count, d.select_count] == golden[f"{case}_fits"].tolist()
