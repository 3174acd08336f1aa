"""sim.compare: every policy on one per-second load; a failing policy never loses the others."""

from __future__ import annotations

import numpy as np

from autoscaler.sim.compare import compare_rates
from autoscaler.sim.shipped import DEFAULT_SPEC
from autoscaler.spec import load_spec


def test_compare_rates_runs_each_policy_and_returns_failures_beside_results() -> None:
    spec = load_spec(DEFAULT_SPEC)
    rate = np.concatenate([np.full(300, 200.0), np.full(300, 900.0)])
    ticks: dict[str, int] = {}

    def progress_for(policy: str, total: int):  # type: ignore[no-untyped-def]
        assert total == len(rate)

        def tick(done: int, total: int) -> None:
            ticks[policy] = done

        return tick

    results, errors = compare_rates(
        rate, spec, ["hpa-rps", "no-such-policy", "oracle"], name="t", progress_for=progress_for
    )
    assert [r.policy for r in results] == ["hpa-rps", "oracle"]
    assert list(errors) == ["no-such-policy"] and "no-such-policy" in errors["no-such-policy"]
    assert ticks["hpa-rps"] == len(rate)
    assert all(r.summary["requests"] > 0 for r in results)
